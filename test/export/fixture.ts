/**
 * A homeserver with something in every corner (two accounts, a room with history, an alias,
 * account data, E2EE device and one-time keys, uploaded media), built and checked through the
 * Client-Server API only, so the same steps run against an in-process core (`hs.handle`) and a
 * `npm run serve` child process.
 */
import { expect } from "vitest";
import { createHomeserver } from "../../src/homeserver/homeserver.ts";
import type { Homeserver } from "../../src/homeserver/homeserver.ts";
import { serverNameFromSeed } from "../../src/homeserver/keys/server.ts";
import type { Store } from "../../src/storage/store.ts";
import { currentTables } from "../../src/storage/schema.ts";

/** Sends a request somewhere: `hs.handle` or `fetch`. */
export type Fetcher = (request: Request) => Promise<Response>;

/** A JSON client over a fetcher. */
export interface Client {
  call(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: Record<string, any> }>;
  raw(method: string, path: string, init?: { body?: Uint8Array; token?: string; contentType?: string }): Promise<Response>;
}

export function client(fetcher: Fetcher, base = "http://localhost"): Client {
  return {
    async call(method, path, body, token) {
      const headers: Record<string, string> = {};
      if (body !== undefined) headers["Content-Type"] = "application/json";
      if (token) headers.Authorization = `Bearer ${token}`;
      const res = await fetcher(new Request(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) }));
      const text = await res.text();
      return { status: res.status, body: text ? (JSON.parse(text) as Record<string, any>) : {} };
    },
    raw(method, path, init = {}) {
      const headers: Record<string, string> = {};
      if (init.token) headers.Authorization = `Bearer ${init.token}`;
      if (init.contentType) headers["Content-Type"] = init.contentType;
      return fetcher(new Request(base + path, { method, headers, body: init.body as BodyInit | undefined }));
    },
  };
}

/** A fixed seed, so tests know the server name (its public key's hex) up front. */
export const SEED = Uint8Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 0xff);
export const SERVER_NAME = serverNameFromSeed(SEED);
export const ALICE_PASSWORD = "alice-correct-horse";
export const BOB_PASSWORD = "bob-battery-staple";
/** Enough messages that /messages needs several pages. */
const MESSAGES = 45;
/** Bytes of the uploaded file: more than one export chunk in the small-chunk tests. */
export const MEDIA = Uint8Array.from({ length: 70_000 }, (_, i) => (i * 31 + (i >> 8)) & 0xff);

/** What {@link populate} made, for {@link verify}. */
export interface Populated {
  alice: string;
  aliceToken: string;
  bob: string;
  roomId: string;
  alias: string;
  bodies: string[];
  mxc: string;
  deviceKeys: Record<string, unknown>;
  deviceId: string;
}

/**
 * A homeserver core on `store` with the fixed identity (fast password hashing for tests). Like both
 * runners, it records the server name in `settings` first.
 */
export async function homeserverOn(store: Store, serverName = SERVER_NAME): Promise<Homeserver> {
  await store.write(async (tx) => {
    if ((await tx.get("settings", "server_name")) === undefined) tx.put("settings", "server_name", serverName);
  });
  return createHomeserver({ store, seed: SEED, serverName, config: { passwordIterations: 1000 } });
}

async function register(c: Client, username: string, password: string): Promise<{ user_id: string; access_token: string; device_id: string }> {
  const r = await c.call("POST", "/_matrix/client/v3/register", { username, password, auth: { type: "m.login.dummy" } });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body as { user_id: string; access_token: string; device_id: string };
}

/** Fills a homeserver through its API. */
export async function populate(c: Client): Promise<Populated> {
  const alice = await register(c, "alice", ALICE_PASSWORD);
  const bob = await register(c, "bob", BOB_PASSWORD);
  const created = await c.call("POST", "/_matrix/client/v3/createRoom", { name: "Moving day", preset: "public_chat", room_alias_name: "moving" }, alice.access_token);
  expect(created.status, JSON.stringify(created.body)).toBe(200);
  const roomId = created.body.room_id as string;
  const alias = `#moving:${alice.user_id.slice(alice.user_id.indexOf(":") + 1)}`;
  expect((await c.call("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {}, bob.access_token)).status).toBe(200);
  const bodies: string[] = [];
  for (let i = 0; i < MESSAGES; i++) {
    const token = i % 3 === 2 ? bob.access_token : alice.access_token;
    const body = `message ${i} ✨`;
    const r = await c.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t${i}`, { msgtype: "m.text", body }, token);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    bodies.push(body);
  }
  expect((await c.call("PUT", `/_matrix/client/v3/user/${encodeURIComponent(alice.user_id)}/account_data/org.example.prefs`, { theme: "dark" }, alice.access_token)).status).toBe(200);

  const deviceKeys = {
    user_id: alice.user_id,
    device_id: alice.device_id,
    algorithms: ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
    keys: { [`curve25519:${alice.device_id}`]: "3C5BFWi2Y8MaVvjM8M22DBmh24PmgR0nPvJOIArzgyI", [`ed25519:${alice.device_id}`]: "lEuiRJBit0IG6nUf5pUzWTUEsRVVe/HJkoKuEww9ULI" },
    signatures: { [alice.user_id]: { [`ed25519:${alice.device_id}`]: "dSO80A01XiigH3uBiDVx/EjzaoycHcjq9lfQX0uWsqxl2giMIiSPR8a4d291W1ihKJL/a+myXS367WT6NAIcBA" } },
  };
  const up = await c.call(
    "POST",
    "/_matrix/client/v3/keys/upload",
    { device_keys: deviceKeys, one_time_keys: { "signed_curve25519:AAAAHg": { key: "zKbLg+NrIjpnagy+pIY6uPL4ZwEG2v+8F9lmgsnlZzs", signatures: {} } } },
    alice.access_token,
  );
  expect(up.status, JSON.stringify(up.body)).toBe(200);

  const upload = await c.raw("POST", "/_matrix/media/v3/upload?filename=photo.bin", { body: MEDIA, token: alice.access_token, contentType: "application/octet-stream" });
  expect(upload.status).toBe(200);
  const mxc = ((await upload.json()) as { content_uri: string }).content_uri;
  return { alice: alice.user_id, aliceToken: alice.access_token, bob: bob.user_id, roomId, alias, bodies, mxc, deviceKeys, deviceId: alice.device_id };
}

/** Checks that a homeserver holds what {@link populate} made, logging in with the password again. */
export async function verify(c: Client, p: Populated): Promise<void> {
  const login = await c.call("POST", "/_matrix/client/v3/login", { type: "m.login.password", identifier: { type: "m.id.user", user: "alice" }, password: ALICE_PASSWORD });
  expect(login.status, JSON.stringify(login.body)).toBe(200);
  expect(login.body.user_id).toBe(p.alice);
  const token = login.body.access_token as string;
  expect((await c.call("GET", "/_matrix/client/v3/account/whoami", undefined, token)).body.user_id).toBe(p.alice);
  // The session from before the move goes on working too.
  expect((await c.call("GET", "/_matrix/client/v3/account/whoami", undefined, p.aliceToken)).body.user_id).toBe(p.alice);
  expect((await c.call("POST", "/_matrix/client/v3/login", { type: "m.login.password", identifier: { type: "m.id.user", user: "alice" }, password: "wrong" })).status).toBe(403);

  expect((await c.call("GET", "/_matrix/client/v3/joined_rooms", undefined, token)).body.joined_rooms).toEqual([p.roomId]);
  expect((await c.call("GET", `/_matrix/client/v3/directory/room/${encodeURIComponent(p.alias)}`)).body.room_id).toBe(p.roomId);

  // The full history, newest first, page by page.
  const seen: string[] = [];
  let from: string | undefined;
  const types = new Set<string>();
  for (let page = 0; page < 20; page++) {
    const q = `dir=b&limit=10${from ? `&from=${encodeURIComponent(from)}` : ""}`;
    const r = await c.call("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(p.roomId)}/messages?${q}`, undefined, token);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    for (const e of r.body.chunk as { type: string; content: { body?: string } }[]) {
      types.add(e.type);
      if (e.type === "m.room.message") seen.push(e.content.body!);
    }
    if (!r.body.end) break;
    from = r.body.end as string;
  }
  expect(seen.reverse()).toEqual(p.bodies);
  expect(types.has("m.room.create")).toBe(true);

  const name = await c.call("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(p.roomId)}/state/m.room.name/`, undefined, token);
  expect(name.body.name).toBe("Moving day");
  const prefs = await c.call("GET", `/_matrix/client/v3/user/${encodeURIComponent(p.alice)}/account_data/org.example.prefs`, undefined, token);
  expect(prefs.body).toEqual({ theme: "dark" });

  // E2EE: the device keys as uploaded, and the unclaimed one-time key.
  const query = await c.call("POST", "/_matrix/client/v3/keys/query", { device_keys: { [p.alice]: [] } }, token);
  const keys = (query.body.device_keys as Record<string, Record<string, Record<string, unknown>>>)[p.alice]![p.deviceId]!;
  const { unsigned: _u, ...uploaded } = keys;
  expect(uploaded).toEqual(p.deviceKeys);
  const counts = await c.call("POST", "/_matrix/client/v3/keys/upload", {}, p.aliceToken);
  expect(counts.body.one_time_key_counts).toEqual({ signed_curve25519: 1 });

  // Media downloads byte for byte.
  const [serverName, mediaId] = p.mxc.slice("mxc://".length).split("/");
  expect(serverName).toBe(p.alice.slice(p.alice.indexOf(":") + 1));
  const media = await c.raw("GET", `/_matrix/client/v1/media/download/${serverName}/${mediaId}`, { token });
  expect(media.status).toBe(200);
  expect(new Uint8Array(await media.arrayBuffer())).toEqual(MEDIA);
}

/** Every row of every table, for comparing two stores (the seed setting aside: it moves in the manifest). */
export async function dump(store: Store): Promise<Record<string, [string, unknown][]>> {
  const out: Record<string, [string, unknown][]> = {};
  for (const t of currentTables()) {
    const rows = await store.read((tx) => tx.range(t));
    const kept = rows.filter((r) => !(t === "settings" && r.key === "identity_seed")).map((r): [string, unknown] => [r.key, r.value]);
    if (kept.length) out[t] = kept;
  }
  return out;
}

/** Whether every table of `store` is empty. */
export async function isEmpty(store: Store): Promise<boolean> {
  for (const t of currentTables()) if ((await store.read((tx) => tx.range(t, { limit: 1 }))).length) return false;
  return true;
}
