/**
 * createRoom and room upgrades are one transaction each: when the commit fails (a crash, a full
 * disk), nothing of them is stored — no room without its state, no tombstone without its room.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createMemoryStore } from "../../../src/storage/memory.ts";
import type { Store } from "../../../src/storage/store.ts";
import { prefix } from "../../../src/storage/store.ts";
import { TestServer, room } from "./harness.ts";

/** A memory store whose next `failWrites` commits fail after the transaction ran. */
function failingStore(): Store & { failWrites: number; writes: number } {
  const inner = createMemoryStore();
  const s = {
    kind: inner.kind,
    failWrites: 0,
    writes: 0,
    read: inner.read.bind(inner),
    schemaVersion: inner.schemaVersion.bind(inner),
    close: inner.close.bind(inner),
    write<T>(fn: Parameters<Store["write"]>[0]): Promise<T> {
      s.writes++;
      if (s.failWrites === 0) return inner.write(fn) as Promise<T>;
      s.failWrites--;
      return inner.write(async (tx) => {
        await fn(tx);
        throw new Error("the disk is full");
      });
    },
  };
  return s;
}

let t: TestServer | undefined;
afterEach(async () => t?.close());

const snapshot = (store: Store): Promise<Record<string, number>> =>
  store.read(async (tx) => {
    const out: Record<string, number> = {};
    for (const table of ["rooms", "events", "timeline", "stream", "room_state", "state_groups", "event_state", "extremities", "memberships", "aliases", "room_directory", "room_state_log"]) {
      out[table] = await tx.count(table);
    }
    return out;
  });

describe("atomic room operations", () => {
  it("createRoom writes its whole room in one transaction, or nothing", async () => {
    const store = failingStore();
    t = await TestServer.start(store);
    const alice = await t.user("alice");
    const before = await snapshot(store);
    store.failWrites = 1;
    const r = await t.req("POST", "/createRoom", alice, { name: "n", topic: "t", room_alias_name: "atomic", preset: "public_chat", visibility: "public" });
    expect(r.status).toBe(500);
    expect(await snapshot(store)).toEqual(before);
    // One write: create, join, power levels, alias, join rules, history, guest access, name, topic, the alias and directory rows.
    const w0 = store.writes;
    await t.ok("GET", "/account/whoami", alice);
    const perRequest = store.writes - w0; // what any authenticated request writes (device activity)
    const w1 = store.writes;
    const created = await t.ok("POST", "/createRoom", alice, { name: "n", topic: "t", room_alias_name: "atomic", preset: "public_chat", visibility: "public" });
    expect(store.writes - w1 - perRequest).toBe(1);
    const state = (await t.ok("GET", room(created.room_id as string, "/state"), alice)) as unknown as unknown[];
    expect(state.length).toBe(9);
  });

  it("an upgrade stores the new room, the tombstone and the moved aliases together, or nothing", async () => {
    const store = failingStore();
    t = await TestServer.start(store);
    const alice = await t.user("alice");
    const oldRoom = (await t.ok("POST", "/createRoom", alice, { room_alias_name: "up", preset: "public_chat", visibility: "public" })).room_id as string;
    const before = await snapshot(store);
    store.failWrites = 1;
    expect((await t.req("POST", room(oldRoom, "/upgrade"), alice, { new_version: "12" })).status).toBe(500);
    expect(await snapshot(store)).toEqual(before);
    expect((await t.req("GET", room(oldRoom, "/state/m.room.tombstone/"), alice)).status).toBe(404);

    const w0 = store.writes;
    await t.ok("GET", "/account/whoami", alice);
    const perRequest = store.writes - w0;
    const w1 = store.writes;
    const up = await t.ok("POST", room(oldRoom, "/upgrade"), alice, { new_version: "12" });
    expect(store.writes - w1 - perRequest).toBe(1);
    const newRoom = up.replacement_room as string;
    expect((await t.ok("GET", room(oldRoom, "/state/m.room.tombstone/"), alice)).replacement_room).toBe(newRoom);
    expect((await t.ok("GET", `/directory/room/${encodeURIComponent("#up:hs.test")}`)).room_id).toBe(newRoom);
    const ext = await store.read((tx) => tx.range("extremities", { prefix: prefix(newRoom) }));
    expect(ext).toHaveLength(1);
  });
});
