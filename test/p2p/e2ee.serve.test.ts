/**
 * The P2P issue's encrypted-room acceptance: two matrix-js-sdk clients with Rust crypto, each on its
 * own `npm run serve` peer in P2P mode (test/p2p/p2pProcesses.ts). Device keys, one-time keys and
 * the room key travel over libp2p (`/user/keys/query`, `/user/keys/claim`, to-device EDUs); Bob
 * decrypts what Alice sends, and Alice decrypts Bob's answer.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createClient, MsgType, Preset } from "matrix-js-sdk";
import type { MatrixClient } from "matrix-js-sdk";
import { register, within } from "../e2e/http.ts";
import type { Session } from "../e2e/http.ts";
import { startClientSynced, waitForMessage } from "../e2e/jssdk.ts";
import { startP2PNetwork } from "./p2pProcesses.ts";
import type { P2PNetwork, P2PPeer } from "./p2pProcesses.ts";

let net: P2PNetwork | undefined;
const clients: MatrixClient[] = [];

beforeAll(async () => {
  // js-sdk and the Rust crypto tracing log every step at debug/info level; keep warnings only.
  for (const level of ["debug", "info", "log"] as const) vi.spyOn(console, level).mockImplementation(() => undefined);
  net = await startP2PNetwork(2);
}, 240_000);
afterAll(async () => {
  for (const c of clients) c.stopClient();
  await net?.close();
  vi.restoreAllMocks();
}, 60_000);

async function startCryptoClient(base: string, s: Session): Promise<MatrixClient> {
  const client = createClient({ baseUrl: base, userId: s.user_id, accessToken: s.access_token, deviceId: s.device_id });
  await client.initRustCrypto({ useIndexedDB: false });
  await startClientSynced(client, `${s.user_id}/${s.device_id} first sync`);
  clients.push(client);
  return client;
}

async function eventually(fn: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("P2P acceptance: an encrypted room between js-sdk clients on two P2P peers", () => {
  it("Alice (peer A) and Bob (peer B) exchange megolm-encrypted messages both ways", async () => {
    const [a, b] = net!.peers as [P2PPeer, P2PPeer];
    const password = "correct horse battery staple";
    const aliceS = await register(a.httpUrl, "alice", password);
    const bobS = await register(b.httpUrl, "bob", password);
    const alice = await startCryptoClient(a.httpUrl, aliceS);
    const bob = await startCryptoClient(b.httpUrl, bobS);
    const context = (): string => `\n--- A ---\n${a.output().slice(-4000)}\n--- B ---\n${b.output().slice(-4000)}`;
    try {
      const created = await alice.createRoom({
        preset: Preset.PrivateChat,
        invite: [bobS.user_id],
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
      });
      const roomId = created.room_id;
      await eventually(() => bob.getRoom(roomId) !== null, 60_000, "Bob to see the invite over libp2p");
      await bob.joinRoom(roomId);
      await eventually(() => alice.getRoom(roomId)?.getMember(bobS.user_id)?.membership === "join", 60_000, "Alice to see Bob join");
      // Alice's client learns Bob's device through her server, which asks B over libp2p.
      await eventually(
        async () => (await alice.getCrypto()!.getUserDeviceInfo([bobS.user_id], true)).get(bobS.user_id)?.has(bobS.device_id) === true,
        60_000,
        "Alice to see Bob's device",
      );

      const toBob = waitForMessage(bob, roomId, "secret over libp2p");
      await alice.sendMessage(roomId, { msgtype: MsgType.Text, body: "secret over libp2p" });
      const got = await within(toBob, 90_000, "Bob to decrypt Alice's message");
      expect(got.isEncrypted()).toBe(true);
      expect(got.getContent()["body"]).toBe("secret over libp2p");

      const toAlice = waitForMessage(alice, roomId, "and back");
      await bob.sendMessage(roomId, { msgtype: MsgType.Text, body: "and back" });
      const answer = await within(toAlice, 90_000, "Alice to decrypt Bob's answer");
      expect(answer.isEncrypted()).toBe(true);
      expect(answer.getContent()["body"]).toBe("and back");
    } catch (err) {
      throw new Error(`${String(err)}${context()}`, { cause: err });
    }
  }, 420_000);
});
