/**
 * Acceptance test for end-to-end encryption: two matrix-js-sdk clients with Rust crypto on one
 * `npm run serve` homeserver. Alice sends in an encrypted room, Bob decrypts; Bob logs in a second
 * device, which appears in Alice's view of Bob's devices and decrypts the next message.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ClientEvent, createClient, MatrixEventEvent, RoomEvent } from "matrix-js-sdk";
import type { MatrixClient, MatrixEvent } from "matrix-js-sdk";
import { startServe } from "./serve.ts";
import type { ServedHomeserver } from "./serve.ts";

interface Session {
  user_id: string;
  access_token: string;
  device_id: string;
}

async function call(base: string, method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers["Authorization"] = `Bearer ${token}`;
  const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

async function register(base: string, username: string, password: string): Promise<Session> {
  const first = await call(base, "POST", "/_matrix/client/v3/register", { username, password });
  if (first.status === 200) return first.body as unknown as Session;
  const session = first.body["session"] as string | undefined;
  const second = await call(base, "POST", "/_matrix/client/v3/register", { username, password, auth: { type: "m.login.dummy", ...(session ? { session } : {}) } });
  expect(second.status, JSON.stringify(second.body)).toBe(200);
  return second.body as unknown as Session;
}

async function login(base: string, user: string, password: string): Promise<Session> {
  const r = await call(base, "POST", "/_matrix/client/v3/login", { type: "m.login.password", identifier: { type: "m.id.user", user }, password });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body as unknown as Session;
}

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    }),
  ]);
}

/** A started js-sdk client with Rust crypto, resolved after its first sync. */
async function startCryptoClient(base: string, s: Session): Promise<MatrixClient> {
  const client = createClient({ baseUrl: base, userId: s.user_id, accessToken: s.access_token, deviceId: s.device_id });
  await client.initRustCrypto({ useIndexedDB: false });
  const ready = new Promise<void>((resolve) => {
    client.on(ClientEvent.Sync, (state) => {
      if (state === "PREPARED") resolve();
    });
  });
  await client.startClient({ initialSyncLimit: 20 });
  await within(ready, 60_000, `${s.user_id}/${s.device_id} first sync`);
  return client;
}

/** Resolves with the decrypted content of the first event in `roomId` whose clear body is `body`. */
function waitForDecrypted(client: MatrixClient, roomId: string, body: string): Promise<MatrixEvent> {
  return new Promise((resolve) => {
    const check = (event: MatrixEvent): void => {
      if (event.getRoomId() !== roomId || event.getType() !== "m.room.message") return;
      if (event.getContent()["body"] !== body) return;
      client.off(RoomEvent.Timeline, onTimeline);
      client.off(MatrixEventEvent.Decrypted, check);
      resolve(event);
    };
    const onTimeline = (event: MatrixEvent): void => {
      check(event);
      // Encrypted events are decrypted asynchronously; Decrypted fires on the client too.
    };
    client.on(RoomEvent.Timeline, onTimeline);
    client.on(MatrixEventEvent.Decrypted, check);
  });
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
    const failureContext = (): string => `\n--- homeserver ---\n${hs!.output().slice(-6000)}`;

    const alice = await startCryptoClient(base, aliceS);
    clients.push(alice);
    const bob = await startCryptoClient(base, bobS);
    clients.push(bob);

    try {
      const created = await alice.createRoom({
        preset: "private_chat" as never,
        invite: [bobS.user_id],
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
      });
      const roomId = created.room_id;
      await eventually(async () => bob.getRoom(roomId) !== null, 30_000, "Bob to see the invite");
      await bob.joinRoom(roomId);
      await eventually(async () => alice.getRoom(roomId)?.getMember(bobS.user_id)?.membership === "join", 30_000, "Alice to see Bob join");
      expect(await alice.getCrypto()!.isEncryptionEnabledInRoom(roomId)).toBe(true);

      const first = waitForDecrypted(bob, roomId, "secret one");
      const sent = await alice.sendMessage(roomId, { msgtype: "m.text", body: "secret one" });
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

      const second = waitForDecrypted(bob2, roomId, "secret two");
      const secondOnFirst = waitForDecrypted(bob, roomId, "secret two");
      await alice.sendMessage(roomId, { msgtype: "m.text", body: "secret two" });
      const ev2 = await within(second, 60_000, "Bob's second device to decrypt the next message");
      expect(ev2.getContent()["body"]).toBe("secret two");
      expect((await within(secondOnFirst, 60_000, "Bob's first device to decrypt it too")).getContent()["body"]).toBe("secret two");
    } catch (err) {
      throw new Error(`${String(err)}${failureContext()}`, { cause: err });
    }
  }, 240_000);
});
