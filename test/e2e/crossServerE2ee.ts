/**
 * The encrypted-room exchange between two homeservers that both the P2P acceptance
 * (test/p2p/e2ee.serve.test.ts) and the classic HTTPS one (test/federation/classic.e2ee.serve.test.ts)
 * run: two matrix-js-sdk clients with Rust crypto, Alice on one server and Bob on the other. Device
 * keys, one-time keys and the room key cross between the servers (`/user/keys/query`,
 * `/user/keys/claim`, to-device EDUs); Bob decrypts what Alice sends and Alice decrypts Bob's answer.
 */
import { expect, vi } from "vitest";
import { createClient, MsgType, Preset } from "matrix-js-sdk";
import type { MatrixClient } from "matrix-js-sdk";
import { register, within } from "./http.ts";
import type { Session } from "./http.ts";
import { startClientSynced, waitForMessage } from "./jssdk.ts";

/** js-sdk and the Rust crypto tracing log every step at debug/info level; keeps warnings only (undo with vi.restoreAllMocks). */
export function quietClientLogs(): void {
  for (const level of ["debug", "info", "log"] as const) vi.spyOn(console, level).mockImplementation(() => undefined);
}

/** A started js-sdk client with Rust crypto (in memory), resolved after its first sync. */
export async function startCryptoClient(base: string, s: Session): Promise<MatrixClient> {
  const client = createClient({ baseUrl: base, userId: s.user_id, accessToken: s.access_token, deviceId: s.device_id });
  await client.initRustCrypto({ useIndexedDB: false });
  await startClientSynced(client, `${s.user_id}/${s.device_id} first sync`);
  return client;
}

/** Polls until `fn` returns true, failing after `ms` (the clients' own sync loops do the work). */
export async function eventuallyTrue(fn: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** What `exchangeEncryptedMessages` is given. */
export interface ExchangeOptions {
  /** Client-Server API base URLs of Alice's and Bob's servers. */
  aliceServer: string;
  bobServer: string;
  /** Started clients are pushed here, so that the test's afterAll stops them even after a failure. */
  clients: MatrixClient[];
  /** Words for the messages and failure texts ("over libp2p", "over HTTPS"). */
  via: string;
  /** The servers' output, added to a failure's message. */
  context?: () => string;
}

/**
 * Registers Alice and Bob, starts their crypto clients, has Alice create an encrypted private room
 * inviting Bob, Bob join it, and both send one message the other must decrypt. Every wait is bounded.
 */
export async function exchangeEncryptedMessages(o: ExchangeOptions): Promise<void> {
  const password = "correct horse battery staple";
  const aliceS = await register(o.aliceServer, "alice", password);
  const bobS = await register(o.bobServer, "bob", password);
  const alice = await startCryptoClient(o.aliceServer, aliceS);
  o.clients.push(alice);
  const bob = await startCryptoClient(o.bobServer, bobS);
  o.clients.push(bob);
  try {
    const created = await alice.createRoom({
      preset: Preset.PrivateChat,
      invite: [bobS.user_id],
      initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    const roomId = created.room_id;
    await eventuallyTrue(() => bob.getRoom(roomId) !== null, 60_000, `Bob to see the invite ${o.via}`);
    await bob.joinRoom(roomId);
    await eventuallyTrue(() => alice.getRoom(roomId)?.getMember(bobS.user_id)?.membership === "join", 60_000, "Alice to see Bob join");
    // Each client learns the other's device through its own server, which asks the other server.
    await eventuallyTrue(
      async () => (await alice.getCrypto()!.getUserDeviceInfo([bobS.user_id], true)).get(bobS.user_id)?.has(bobS.device_id) === true,
      60_000,
      "Alice to see Bob's device",
    );

    const first = `secret ${o.via}`;
    const toBob = waitForMessage(bob, roomId, first);
    await alice.sendMessage(roomId, { msgtype: MsgType.Text, body: first });
    const got = await within(toBob, 90_000, "Bob to decrypt Alice's message");
    expect(got.isEncrypted()).toBe(true);
    expect(got.getContent()["body"]).toBe(first);

    const toAlice = waitForMessage(alice, roomId, "and back");
    await bob.sendMessage(roomId, { msgtype: MsgType.Text, body: "and back" });
    const answer = await within(toAlice, 90_000, "Alice to decrypt Bob's answer");
    expect(answer.isEncrypted()).toBe(true);
    expect(answer.getContent()["body"]).toBe("and back");
  } catch (err) {
    throw new Error(`${String(err)}${o.context?.() ?? ""}`, { cause: err });
  }
}
