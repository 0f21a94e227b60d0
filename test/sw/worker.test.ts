/**
 * The Service Worker's start-up and storage guard, in Node on fake-indexeddb (the browser tests in
 * test/browser/ cover the same worker in Chromium):
 * - upgrades: a database written by the previous schema, by a homeserver of that schema, is opened
 *   by the worker's own `startHomeserver`; every migration applies and nothing is lost;
 * - quota: a write the browser refuses for lack of quota answers `M_RESOURCE_LIMIT_EXCEEDED`
 *   (with `admin_contact`), the refused request leaves nothing behind, and the database works after;
 * - a database closed under the worker by a newer version's upgrade answers 503, not 500.
 */
import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import { describe, expect, it } from "vitest";
import { createHomeserver } from "../../src/homeserver/homeserver.ts";
import type { Homeserver } from "../../src/homeserver/homeserver.ts";
import { createIndexedDbStore } from "../../src/storage/indexeddb.ts";
import { MIGRATIONS, SCHEMA_VERSION } from "../../src/storage/schema.ts";
import { StorageError } from "../../src/storage/store.ts";
import type { Store } from "../../src/storage/store.ts";
import { loadOrCreateIdentity } from "../../src/sw/identity.ts";
import { guardStore, isQuotaError, startHomeserver } from "../../src/sw/serviceWorker.ts";

const BASE = "http://localhost";

async function call(hs: Homeserver, method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const headers: Record<string, string> = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await hs.handle(new Request(BASE + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) }));
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

async function register(hs: Homeserver, username: string, password: string): Promise<string> {
  const first = await call(hs, "POST", "/_matrix/client/v3/register", { username, password });
  const second = await call(hs, "POST", "/_matrix/client/v3/register", { username, password, auth: { type: "m.login.dummy", session: first.json.session } });
  expect(second.status, JSON.stringify(second.json)).toBe(200);
  return second.json.access_token as string;
}

async function messageBodies(hs: Homeserver, roomId: string, token: string): Promise<string[]> {
  const r = await call(hs, "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=f&limit=100`, undefined, token);
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return (r.json.chunk as { type: string; content: { body?: string } }[]).filter((e) => e.type === "m.room.message").map((e) => e.content.body ?? "");
}

describe("the Service Worker's homeserver on IndexedDB", () => {
  it("opens a database written by the previous schema: every migration applies, nothing is lost", async () => {
    const indexedDB = new IDBFactory();
    const databaseName = "hyphae";
    // The previous version of the app: its schema, its homeserver, real traffic.
    const oldStore = await createIndexedDbStore({ name: databaseName, indexedDB, migrations: MIGRATIONS.slice(0, SCHEMA_VERSION - 1) });
    expect(await oldStore.schemaVersion()).toBe(SCHEMA_VERSION - 1);
    const identity = await loadOrCreateIdentity(oldStore);
    const old = await createHomeserver({ store: oldStore, seed: identity.seed, serverName: identity.serverName });
    const token = await register(old, "alice", "alice's password");
    const room = await call(old, "POST", "/_matrix/client/v3/createRoom", { name: "Kept", preset: "private_chat" }, token);
    expect(room.status, JSON.stringify(room.json)).toBe(200);
    const roomId = room.json.room_id as string;
    for (let i = 0; i < 3; i++) {
      const sent = await call(old, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t${i}`, { msgtype: "m.text", body: `old ${i}` }, token);
      expect(sent.status).toBe(200);
    }
    const media = await old.handle(new Request(`${BASE}/_matrix/media/v3/upload`, { method: "POST", headers: { Authorization: `Bearer ${token}`, "Content-Type": "text/plain" }, body: "kept bytes" }));
    const mxc = ((await media.json()) as { content_uri: string }).content_uri;
    await old.close();

    // The current worker's start: migrations in the worker, same identity, same data.
    const hs = await startHomeserver({ indexedDB, databaseName });
    try {
      expect(await hs.services.store.schemaVersion()).toBe(SCHEMA_VERSION);
      expect(hs.services.serverName).toBe(identity.serverName);
      const who = await call(hs, "GET", "/_matrix/client/v3/account/whoami", undefined, token);
      expect(who.json.user_id).toBe(`@alice:${identity.serverName}`);
      const login = await call(hs, "POST", "/_matrix/client/v3/login", { type: "m.login.password", identifier: { type: "m.id.user", user: "alice" }, password: "alice's password" });
      expect(login.status).toBe(200);
      expect(await messageBodies(hs, roomId, token)).toEqual(["old 0", "old 1", "old 2"]);
      const download = await hs.handle(new Request(`${BASE}/_matrix/client/v1/media/download/${mxc.slice("mxc://".length)}`, { headers: { Authorization: `Bearer ${token}` } }));
      expect(await download.text()).toBe("kept bytes");
      const sent = await call(hs, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/new`, { msgtype: "m.text", body: "new" }, token);
      expect(sent.status).toBe(200);
    } finally {
      await hs.close();
    }
  });

  it("a write refused for lack of quota: M_RESOURCE_LIMIT_EXCEEDED, nothing of it stored, the database fine afterwards", async () => {
    const raw = await createIndexedDbStore({ name: "quota", indexedDB: new IDBFactory() });
    let full = false;
    // What Chromium does on a full origin: the transaction's requests run, its commit fails with a
    // QuotaExceededError and IndexedDB aborts it as a whole.
    const browserLike: Store = {
      ...raw,
      kind: raw.kind,
      read: (fn) => raw.read(fn),
      write: (fn) =>
        full
          ? raw.write(async (tx) => {
              await fn(tx);
              throw new StorageError("indexeddb: commit: The transaction was aborted", { cause: new DOMException("Quota exceeded", "QuotaExceededError") });
            })
          : raw.write(fn),
      schemaVersion: () => raw.schemaVersion(),
      close: () => raw.close(),
    };
    const store = guardStore(browserLike, "https://chat.example.org/");
    const { seed, serverName } = await loadOrCreateIdentity(store);
    const hs = await createHomeserver({ store, seed, serverName });
    try {
      const token = await register(hs, "alice", "alice's password");
      const room = await call(hs, "POST", "/_matrix/client/v3/createRoom", { preset: "private_chat" }, token);
      const roomId = room.json.room_id as string;
      const path = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message`;
      expect((await call(hs, "PUT", `${path}/before`, { msgtype: "m.text", body: "before" }, token)).status).toBe(200);

      full = true;
      const refused = await call(hs, "PUT", `${path}/refused`, { msgtype: "m.text", body: "refused" }, token);
      expect(refused.status).toBe(403);
      expect(refused.json).toMatchObject({ errcode: "M_RESOURCE_LIMIT_EXCEEDED", admin_contact: "https://chat.example.org/" });
      const upload = await hs.handle(new Request(`${BASE}/_matrix/media/v3/upload`, { method: "POST", headers: { Authorization: `Bearer ${token}`, "Content-Type": "text/plain" }, body: "x".repeat(1000) }));
      expect(upload.status).toBe(403);
      expect(((await upload.json()) as { errcode: string }).errcode).toBe("M_RESOURCE_LIMIT_EXCEEDED");

      full = false;
      expect(await messageBodies(hs, roomId, token)).toEqual(["before"]);
      // The same transaction ID again, now with room: stored once.
      expect((await call(hs, "PUT", `${path}/refused`, { msgtype: "m.text", body: "refused" }, token)).status).toBe(200);
      expect(await messageBodies(hs, roomId, token)).toEqual(["before", "refused"]);
    } finally {
      await hs.close();
    }
  });

  it("recognises quota errors by name or cause, nothing else", () => {
    expect(isQuotaError(new DOMException("x", "QuotaExceededError"))).toBe(true);
    expect(isQuotaError(new StorageError("indexeddb: commit: x", { cause: new DOMException("x", "QuotaExceededError") }))).toBe(true);
    expect(isQuotaError(new StorageError("indexeddb: commit: x", { cause: new DOMException("x", "AbortError") }))).toBe(false);
    expect(isQuotaError(new Error("constraint failed"))).toBe(false);
    expect(isQuotaError(undefined)).toBe(false);
  });

  it("a database closed under the worker (a newer version upgraded it) answers 503 with Retry-After", async () => {
    const indexedDB = new IDBFactory();
    const hs = await startHomeserver({ indexedDB, databaseName: "closing" });
    const token = await register(hs, "alice", "alice's password");
    // A newer worker opens the database at a higher version: this connection steps aside.
    const newer = await createIndexedDbStore({ name: "closing", indexedDB, migrations: [...MIGRATIONS, { createTables: ["from_the_future"] }] });
    const res = await hs.handle(new Request(`${BASE}/_matrix/client/v3/account/whoami`, { headers: { Authorization: `Bearer ${token}` } }));
    expect(res.status).toBe(503);
    expect(res.headers.get("Retry-After")).toBe("1");
    expect(((await res.json()) as { errcode: string }).errcode).toBe("M_UNKNOWN");
    await newer.close();
    await hs.close();
  });
});
