/**
 * The P2P issue's encrypted-room acceptance: two matrix-js-sdk clients with Rust crypto, each on its
 * own `npm run serve` peer in P2P mode (test/p2p/p2pProcesses.ts). Device keys, one-time keys and
 * the room key travel over libp2p (`/user/keys/query`, `/user/keys/claim`, to-device EDUs); Bob
 * decrypts what Alice sends, and Alice decrypts Bob's answer (test/e2e/crossServerE2ee.ts).
 */
import { afterAll, beforeAll, describe, it, vi } from "vitest";
import type { MatrixClient } from "matrix-js-sdk";
import { exchangeEncryptedMessages, quietClientLogs } from "../e2e/crossServerE2ee.ts";
import { startP2PNetwork } from "./p2pProcesses.ts";
import type { P2PNetwork, P2PPeer } from "./p2pProcesses.ts";

let net: P2PNetwork | undefined;
const clients: MatrixClient[] = [];

beforeAll(async () => {
  quietClientLogs();
  net = await startP2PNetwork(2);
}, 240_000);
afterAll(async () => {
  for (const c of clients) c.stopClient();
  await net?.close();
  vi.restoreAllMocks();
}, 60_000);

describe("P2P acceptance: an encrypted room between js-sdk clients on two P2P peers", () => {
  it("Alice (peer A) and Bob (peer B) exchange megolm-encrypted messages both ways", async () => {
    const [a, b] = net!.peers as [P2PPeer, P2PPeer];
    await exchangeEncryptedMessages({
      aliceServer: a.httpUrl,
      bobServer: b.httpUrl,
      clients,
      via: "over libp2p",
      context: () => `\n--- A ---\n${a.output().slice(-4000)}\n--- B ---\n${b.output().slice(-4000)}`,
    });
  }, 420_000);
});
