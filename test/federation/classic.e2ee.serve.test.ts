/**
 * The federation issue's encrypted-room acceptance over real HTTPS: two matrix-js-sdk clients with
 * Rust crypto, Alice on A and Bob on B, two `npm run serve` processes in classic mode
 * (test/federation/classic.ts). Bob's invite, his join, the device lists (`/user/keys/query`,
 * `m.device_list_update`), the one-time key claim (`/user/keys/claim`) and the room key (a
 * to-device EDU) all cross between the processes over HTTPS; each decrypts the other's message
 * (test/e2e/crossServerE2ee.ts).
 */
import { afterAll, beforeAll, describe, it, vi } from "vitest";
import type { MatrixClient } from "matrix-js-sdk";
import { exchangeEncryptedMessages, quietClientLogs } from "../e2e/crossServerE2ee.ts";
import { startClassicFederation } from "./classic.ts";
import type { ClassicFederation, ClassicNode } from "./classic.ts";

let fed: ClassicFederation | undefined;
const clients: MatrixClient[] = [];

beforeAll(async () => {
  quietClientLogs();
  fed = await startClassicFederation(2);
}, 240_000);
afterAll(async () => {
  for (const c of clients) c.stopClient();
  await fed?.close();
  vi.restoreAllMocks();
}, 60_000);

describe("acceptance over HTTPS: an encrypted room between js-sdk clients on two classic servers", () => {
  it("Alice (on A) and Bob (on B) exchange megolm-encrypted messages both ways", async () => {
    const [a, b] = fed!.nodes as [ClassicNode, ClassicNode];
    await exchangeEncryptedMessages({
      aliceServer: a.httpUrl,
      bobServer: b.httpUrl,
      clients,
      via: "over HTTPS",
      context: () => `\n--- A ---\n${a.output().slice(-4000)}\n--- B ---\n${b.output().slice(-4000)}`,
    });
  }, 420_000);
});
