/**
 * Acceptance test for end-to-end encryption: two matrix-js-sdk clients with Rust crypto on one
 * `npm run serve` homeserver. Alice sends in an encrypted room, Bob decrypts; Bob logs in a second
 * device, which appears in Alice's view of Bob's devices and decrypts the next message.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createClient, MsgType, Preset } from "matrix-js-sdk";
import type { MatrixClient } from "matrix-js-sdk";
import { startServe } from "./serve.ts";
import type { ServedHomeserver } from "./serve.ts";
import { call, login, register, within } from "./http.ts";
import { startClientSynced, waitForMessage } from "./jssdk.ts";
import type { Session } from "./http.ts";

/** Every request the clients made that the server refused, for failure messages. */
const refused: string[] = [];
/** Every request path the clients made (method and path, no query). */
const requested: string[] = [];
const recordingFetch: typeof fetch = async (input, init) => {
  const res = await fetch(input, init);
  const url = new URL(typeof input === "string" ? input : input instanceof URL ? input.href : input.url);
  requested.push(`${init?.method ?? "GET"} ${url.pathname}`);
  if (res.status >= 400) refused.push(`${init?.method ?? "GET"} ${url.pathname}${url.search} → ${res.status} ${await res.clone().text()}`);
  return res;
};

/** A started js-sdk client with Rust crypto, resolved after its first sync. */
async function startCryptoClient(base: string, s: Session): Promise<MatrixClient> {
  const client = createClient({ baseUrl: base, userId: s.user_id, accessToken: s.access_token, deviceId: s.device_id, fetchFn: recordingFetch });
  await client.initRustCrypto({ useIndexedDB: false });
  await startClientSynced(client, `${s.user_id}/${s.device_id} first sync`);
  return client;
}

/** Polls until `fn` returns true (key queries are driven by the clients' own sync loops). */
async function eventually(fn: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("matrix-js-sdk Rust crypto on one homeserver", () => {
  let hs: ServedHomeserver | undefined;
  const clients: MatrixClient[] = [];

  beforeAll(async () => {
    // js-sdk and the Rust crypto tracing log every step at debug/info level; keep warnings only.
    for (const level of ["debug", "info", "log"] as const) vi.spyOn(console, level).mockImplementation(() => undefined);
    hs = await startServe();
  }, 120_000);

  afterAll(async () => {
    for (const c of clients) c.stopClient();
    await hs?.stop();
    vi.restoreAllMocks();
  });

  it("encrypts, decrypts, and shares the room key with a new device", async () => {
    const base = hs!.url;
    const password = "correct horse battery staple";
    const aliceS = await register(base, "alice", password);
    const bobS = await register(base, "bob", password);
    const failureContext = (): string => `\n--- refused requests ---\n${refused.slice(-30).join("\n")}\n--- homeserver ---\n${hs!.output().slice(-6000)}`;

    const alice = await startCryptoClient(base, aliceS);
    clients.push(alice);
    const bob = await startCryptoClient(base, bobS);
    clients.push(bob);

    try {
      const created = await alice.createRoom({
        preset: Preset.PrivateChat,
        invite: [bobS.user_id],
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
      });
      const roomId = created.room_id;
      await eventually(async () => bob.getRoom(roomId) !== null, 30_000, "Bob to see the invite");
      await bob.joinRoom(roomId);
      await eventually(async () => alice.getRoom(roomId)?.getMember(bobS.user_id)?.membership === "join", 30_000, "Alice to see Bob join");
      expect(await alice.getCrypto()!.isEncryptionEnabledInRoom(roomId)).toBe(true);

      const first = waitForMessage(bob, roomId, "secret one");
      const sent = await alice.sendMessage(roomId, { msgtype: MsgType.Text, body: "secret one" });
      // What the server stored is ciphertext.
      const raw = await call(base, "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(sent.event_id)}`, undefined, bobS.access_token);
      expect(raw.body["type"]).toBe("m.room.encrypted");
      expect((raw.body["content"] as Record<string, unknown>)["algorithm"]).toBe("m.megolm.v1.aes-sha2");
      const ev1 = await within(first, 60_000, "Bob to decrypt the first message");
      expect(ev1.isEncrypted()).toBe(true);
      expect(ev1.getContent()["body"]).toBe("secret one");

      // Bob's second device.
      const bob2S = await login(base, "bob", password);
      expect(bob2S.device_id).not.toBe(bobS.device_id);
      const bob2 = await startCryptoClient(base, bob2S);
      clients.push(bob2);
      await eventually(
        async () => (await alice.getCrypto()!.getUserDeviceInfo([bobS.user_id], true)).get(bobS.user_id)?.has(bob2S.device_id) === true,
        60_000,
        "Alice to see Bob's second device",
      );

      const second = waitForMessage(bob2, roomId, "secret two");
      const secondOnFirst = waitForMessage(bob, roomId, "secret two");
      await alice.sendMessage(roomId, { msgtype: MsgType.Text, body: "secret two" });
      const ev2 = await within(second, 60_000, "Bob's second device to decrypt the next message");
      expect(ev2.getContent()["body"]).toBe("secret two");
      expect((await within(secondOnFirst, 60_000, "Bob's first device to decrypt it too")).getContent()["body"]).toBe("secret two");
    } catch (err) {
      throw new Error(`${String(err)}${failureContext()}`, { cause: err });
    }
  }, 240_000);

  it("bootstraps cross-signing and a key backup with Rust crypto's own requests", async () => {
    const base = hs!.url;
    const password = "correct horse battery staple";
    const carolS = await register(base, "carol", password);
    const carol = await startCryptoClient(base, carolS);
    clients.push(carol);
    const crypto = carol.getCrypto()!;
    try {
      // device_signing/upload needs no UIA the first time; provide it anyway as clients do.
      await crypto.bootstrapCrossSigning({
        authUploadDeviceSigningKeys: async (makeRequest) => {
          await makeRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: carolS.user_id }, password });
        },
      });
      expect(await crypto.isCrossSigningReady()).toBe(true);
      const status = await crypto.getCrossSigningStatus();
      expect(status.publicKeysOnDevice).toBe(true);
      // The server stored the keys and the device's signature by the self-signing key.
      const q = await call(base, "POST", "/_matrix/client/v3/keys/query", { device_keys: { [carolS.user_id]: [] } }, carolS.access_token);
      expect(Object.keys(q.body["master_keys"] as object)).toEqual([carolS.user_id]);
      expect(Object.keys(q.body["user_signing_keys"] as object)).toEqual([carolS.user_id]);
      const ssk = (q.body["self_signing_keys"] as Record<string, { keys: Record<string, string> }>)[carolS.user_id]!;
      const sskId = Object.keys(ssk.keys)[0]!;
      await eventually(async () => {
        const again = await call(base, "POST", "/_matrix/client/v3/keys/query", { device_keys: { [carolS.user_id]: [] } }, carolS.access_token);
        const d = (again.body["device_keys"] as Record<string, Record<string, { signatures: Record<string, Record<string, string>> }>>)[carolS.user_id]![carolS.device_id]!;
        return sskId in d.signatures[carolS.user_id]!;
      }, 30_000, "the self-signing signature on Carol's device");
      expect((await crypto.getDeviceVerificationStatus(carolS.user_id, carolS.device_id))?.crossSigningVerified).toBe(true);

      // A room key exists before the backup does: enabling the backup uploads it.
      const { room_id } = await carol.createRoom({ initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }] });
      // Until the client has the room's m.room.encryption state it would send in the clear.
      await eventually(async () => carol.getRoom(room_id) !== null && (await crypto.isEncryptionEnabledInRoom(room_id)), 30_000, "Carol's encrypted room");
      const sent = await carol.sendMessage(room_id, { msgtype: MsgType.Text, body: "backed up" });
      const raw = await call(base, "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(room_id)}/event/${encodeURIComponent(sent.event_id)}`, undefined, carolS.access_token);
      expect(raw.body["type"]).toBe("m.room.encrypted");

      // A key backup version, created through room_keys/version.
      await crypto.resetKeyBackup();
      // Rust crypto enables the new backup after re-reading it from the server.
      await eventually(async () => (await crypto.getActiveSessionBackupVersion()) !== null, 30_000, "the backup to become active");
      const version = await crypto.getActiveSessionBackupVersion();
      const info = await call(base, "GET", "/_matrix/client/v3/room_keys/version", undefined, carolS.access_token);
      expect(info.status).toBe(200);
      expect(info.body["version"]).toBe(version);
      expect(info.body["algorithm"]).toBe("m.megolm_backup.v1.curve25519-aes-sha2");

      // The upload loop starts after a random delay of up to 10 s.
      await eventually(async () => {
        const keys = await call(base, "GET", `/_matrix/client/v3/room_keys/keys?version=${version}`, undefined, carolS.access_token);
        return Object.keys((keys.body["rooms"] as object | undefined) ?? {}).includes(room_id);
      }, 60_000, "Carol's room key in the backup");
      const after = await call(base, "GET", "/_matrix/client/v3/room_keys/version", undefined, carolS.access_token);
      expect(after.body["count"]).toBe(1);
      expect(after.body["etag"]).not.toBe(info.body["etag"]);
    } catch (err) {
      const paths = [...new Set(requested)].join("\n");
      throw new Error(`${String(err)}\n--- refused requests ---\n${refused.slice(-30).join("\n")}\n--- paths requested ---\n${paths}\n--- homeserver ---\n${hs!.output().slice(-6000)}`, { cause: err });
    }
  }, 240_000);
});
