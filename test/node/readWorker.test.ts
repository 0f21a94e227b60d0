/**
 * The read worker (src/node/readWorker.ts, issue 12): `/search` on a worker thread with its own
 * read-only connection to the runner's SQLite file answers exactly as the in-thread search does,
 * sees writes that completed just before it, stops matching redacted events and erased accounts'
 * messages for later members, and closes its connection before the store (which then puts the
 * file back into rollback-journal mode).
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { openSqliteFileStore } from "../../src/node/sqliteFile.ts";
import { startReadWorker } from "../../src/node/readWorker.ts";
import { parseSearch, searchRoomEvents } from "../../src/homeserver/services/search.ts";
import { testServer } from "../homeserver/client/accountHarness.ts";

const V3 = "/_matrix/client/v3";
let dir: string;
let n = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "hyphae-read-worker-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A test server on a SQLite file, searching through a read worker on that file. */
async function fileServer() {
  const path = join(dir, `db${n++}.sqlite`);
  const store = await openSqliteFileStore(path);
  const readWorker = await startReadWorker(path);
  const t = await testServer({}, { store, readWorker });
  return { t, path, store };
}

describe("read worker", () => {
  it("answers /search as the in-thread search does, sees the writes just before it, and drops redacted events", async () => {
    const { t, store } = await fileServer();
    try {
      const alice = await t.register("alice", "pw");
      const bob = await t.register("bob", "pw");
      const room = (await t.call("POST", `${V3}/createRoom`, { preset: "public_chat", topic: "apple orchard" }, { token: alice.token })).body.room_id as string;
      const r = encodeURIComponent(room);
      expect((await t.call("POST", `${V3}/join/${r}`, {}, { token: bob.token })).status).toBe(200);
      for (let i = 0; i < 30; i++) {
        const who = i % 3 === 0 ? bob : alice;
        const sent = await t.call("PUT", `${V3}/rooms/${r}/send/m.room.message/t${i}`, { msgtype: "m.text", body: `apple ${i % 2 ? "pie" : "tart apple"} ${i}` }, { token: who.token });
        expect(sent.status).toBe(200);
      }
      const bodies = [
        { search_categories: { room_events: { search_term: "apple", order_by: "recent", event_context: { before_limit: 3, after_limit: 2, include_profile: true }, include_state: true, filter: { limit: 7 } } } },
        { search_categories: { room_events: { search_term: "apple", order_by: "rank", keys: ["content.body", "content.topic"], filter: { limit: 5, senders: [alice.userId] } } } },
      ];
      for (const body of bodies) {
        let nextBatch: string | undefined;
        let pages = 0;
        do {
          const viaWorker = await t.call("POST", `${V3}/search${nextBatch ? `?next_batch=${encodeURIComponent(nextBatch)}` : ""}`, body, { token: alice.token });
          expect(viaWorker.status).toBe(200);
          expect(viaWorker.headers.get("content-type")).toBe("application/json");
          const job = { viewer: { userId: alice.userId, deviceId: alice.deviceId }, now: t.hs.services.clock(), query: parseSearch(body, nextBatch)! };
          const inThread = await store.read((tx) => searchRoomEvents(tx, job));
          expect(viaWorker.body).toEqual(JSON.parse(JSON.stringify(inThread)));
          expect(viaWorker.body.search_categories.room_events.results.length).toBeGreaterThan(0);
          nextBatch = viaWorker.body.search_categories.room_events.next_batch;
          pages++;
        } while (nextBatch !== undefined && pages < 20);
        expect(pages).toBeGreaterThan(1);
      }

      const search = async (term: string) =>
        ((await t.call("POST", `${V3}/search`, { search_categories: { room_events: { search_term: term } } }, { token: bob.token })).body.search_categories.room_events.results as { result: { event_id: string } }[]).map((x) => x.result.event_id);
      // A write that resolved is seen by the next search, on the worker's own connection.
      const banana = (await t.call("PUT", `${V3}/rooms/${r}/send/m.room.message/b`, { msgtype: "m.text", body: "ripe banana" }, { token: alice.token })).body.event_id as string;
      expect(await search("banana")).toEqual([banana]);
      expect((await t.call("PUT", `${V3}/rooms/${r}/redact/${encodeURIComponent(banana)}/x`, {}, { token: alice.token })).status).toBe(200);
      expect(await search("banana")).toEqual([]);
    } finally {
      await t.hs.close();
    }
  });

  it("does not match an erased account's messages for users who joined after the erasure", async () => {
    const { t } = await fileServer();
    try {
      const alice = await t.register("alice", "pw");
      const bob = await t.register("bob", "pw");
      const dave = await t.register("dave", "pw");
      const r = encodeURIComponent((await t.call("POST", `${V3}/createRoom`, { preset: "public_chat" }, { token: bob.token })).body.room_id as string);
      await t.call("POST", `${V3}/join/${r}`, {}, { token: alice.token });
      const secret = (await t.call("PUT", `${V3}/rooms/${r}/send/m.room.message/s1`, { msgtype: "m.text", body: "my secret" }, { token: alice.token })).body.event_id as string;
      const deactivated = await t.call("POST", `${V3}/account/deactivate`, { erase: true, auth: { type: "m.login.password", identifier: { type: "m.id.user", user: "alice" }, password: "pw" } }, { token: alice.token });
      expect(deactivated.status).toBe(200);
      await t.call("POST", `${V3}/join/${r}`, {}, { token: dave.token });
      const search = async (token: string) =>
        ((await t.call("POST", `${V3}/search`, { search_categories: { room_events: { search_term: "secret" } } }, { token })).body.search_categories.room_events.results as { result: { event_id: string } }[]).map((x) => x.result.event_id);
      expect(await search(dave.token)).toEqual([]);
      expect(await search(bob.token)).toEqual([secret]);
    } finally {
      await t.hs.close();
    }
  });

  it("closes its connection before the store closes, so the file ends in rollback-journal mode", async () => {
    const { t, path } = await fileServer();
    const alice = await t.register("alice", "pw");
    const search = await t.call("POST", `${V3}/search`, { search_categories: { room_events: { search_term: "x" } } }, { token: alice.token });
    expect(search.status).toBe(200);
    await t.hs.close();
    const db = new DatabaseSync(path);
    try {
      expect(db.prepare("PRAGMA journal_mode").get()?.journal_mode).toBe("delete");
    } finally {
      db.close();
    }
  });

  it("does not start on a file it cannot read at the schema's version", async () => {
    await expect(startReadWorker(join(dir, "missing.sqlite"))).rejects.toThrow();
    const empty = join(dir, "empty.sqlite");
    new DatabaseSync(empty).close();
    await expect(startReadWorker(empty)).rejects.toThrow();
  });
});
