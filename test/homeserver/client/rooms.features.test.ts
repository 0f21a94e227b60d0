import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { TestServer, room } from "../roomserver/harness.ts";
import type { TestUser } from "../roomserver/harness.ts";

let t: TestServer;
let alice: TestUser;
let bob: TestUser;
let carol: TestUser;
beforeEach(async () => {
  t = await TestServer.start();
  alice = await t.user("alice", { displayname: "Alice Liddell" });
  bob = await t.user("bob", { displayname: "Bobby" });
  carol = await t.user("carol");
});
afterEach(async () => t.close());

const v1 = (roomId: string, rest: string): string => `/_matrix/client/v1/rooms/${encodeURIComponent(roomId)}${rest}`;
const ev = (id: string): string => encodeURIComponent(id);

describe("relations and bundled aggregations", () => {
  it("bundles the latest edit, thread summary and references; /relations paginates and filters", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, roomId);
    const root = await t.send(alice, roomId, "root");
    await t.send(alice, roomId, { msgtype: "m.text", body: "* edit1", "m.new_content": { msgtype: "m.text", body: "edit1" }, "m.relates_to": { rel_type: "m.replace", event_id: root } });
    const edit2 = await t.send(alice, roomId, { msgtype: "m.text", body: "* edit2", "m.new_content": { msgtype: "m.text", body: "edit2" }, "m.relates_to": { rel_type: "m.replace", event_id: root } });
    // an edit by someone else is not valid and is not bundled
    await t.send(bob, roomId, { msgtype: "m.text", body: "* evil", "m.new_content": { body: "evil" }, "m.relates_to": { rel_type: "m.replace", event_id: root } });
    const t1 = await t.send(bob, roomId, { msgtype: "m.text", body: "t1", "m.relates_to": { rel_type: "m.thread", event_id: root } });
    const t2 = await t.send(bob, roomId, { msgtype: "m.text", body: "t2", "m.relates_to": { rel_type: "m.thread", event_id: root } });
    const ref = await t.send(bob, roomId, { "m.relates_to": { rel_type: "m.reference", event_id: root } }, "org.example.ref");
    await t.send(bob, roomId, { "m.relates_to": { rel_type: "m.annotation", event_id: root, key: "👍" } }, "m.reaction");

    const served = await t.ok("GET", room(roomId, `/event/${ev(root)}`), alice);
    const rel = served.unsigned["m.relations"];
    expect(rel["m.replace"].event_id).toBe(edit2);
    expect(rel["m.thread"]).toMatchObject({ count: 2, current_user_participated: true });
    expect(rel["m.thread"].latest_event.event_id).toBe(t2);
    expect(rel["m.reference"]).toEqual({ chunk: [{ event_id: ref }] });
    expect(rel["m.annotation"]).toBeUndefined();
    const carolView = await t.ok("GET", room(roomId, `/event/${ev(root)}`), bob);
    expect(carolView.unsigned["m.relations"]["m.thread"].current_user_participated).toBe(true);

    const all = await t.ok("GET", v1(roomId, `/relations/${ev(root)}`), alice);
    expect(all.chunk).toHaveLength(7);
    const threads = await t.ok("GET", v1(roomId, `/relations/${ev(root)}/m.thread?limit=1`), alice);
    expect(threads.chunk.map((e: any) => e.event_id)).toEqual([t2]);
    const next = await t.ok("GET", v1(roomId, `/relations/${ev(root)}/m.thread?limit=1&from=${threads.next_batch}`), alice);
    expect(next.chunk.map((e: any) => e.event_id)).toEqual([t1]);
    expect(next.next_batch).toBeUndefined();
    const fwd = await t.ok("GET", v1(roomId, `/relations/${ev(root)}/m.thread?dir=f`), alice);
    expect(fwd.chunk.map((e: any) => e.event_id)).toEqual([t1, t2]);
    const reactions = await t.ok("GET", v1(roomId, `/relations/${ev(root)}/m.annotation/m.reaction`), alice);
    expect(reactions.chunk).toHaveLength(1);
    const none = await t.ok("GET", v1(roomId, `/relations/${ev(root)}/m.annotation/m.other`), alice);
    expect(none.chunk).toHaveLength(0);

    // recurse: a reaction to a thread reply counts as a relation of the root's thread
    await t.send(alice, roomId, { "m.relates_to": { rel_type: "m.annotation", event_id: t1, key: "x" } }, "m.reaction");
    const flat = await t.ok("GET", v1(roomId, `/relations/${ev(root)}/m.annotation`), alice);
    expect(flat.chunk).toHaveLength(1);
    const deep = await t.ok("GET", v1(roomId, `/relations/${ev(root)}/m.annotation?recurse=true`), alice);
    expect(deep.chunk).toHaveLength(2);

    // the edit is redacted: the previous one is bundled now
    await t.ok("PUT", room(roomId, `/redact/${ev(edit2)}/x1`), alice, {});
    const after = await t.ok("GET", room(roomId, `/event/${ev(root)}`), alice);
    expect(after.unsigned["m.relations"]["m.replace"].content.body).toBe("* edit1");

    expect((await t.req("GET", v1(roomId, `/relations/${ev(root)}`), carol)).status).toBe(404);
    expect((await t.req("GET", v1(roomId, `/relations/$missing`), alice)).status).toBe(404);
  });

  it("lists threads by latest activity, all or participated", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, roomId);
    const a = await t.send(alice, roomId, "thread A");
    const b = await t.send(bob, roomId, "thread B");
    await t.send(bob, roomId, { body: "in A", "m.relates_to": { rel_type: "m.thread", event_id: a } });
    await t.send(bob, roomId, { body: "in B", "m.relates_to": { rel_type: "m.thread", event_id: b } });
    await t.send(bob, roomId, { body: "in A again", "m.relates_to": { rel_type: "m.thread", event_id: a } });
    const list = await t.ok("GET", v1(roomId, "/threads"), alice);
    expect(list.chunk.map((e: any) => e.event_id)).toEqual([a, b]);
    expect(list.chunk[0].unsigned["m.relations"]["m.thread"].count).toBe(2);
    const page = await t.ok("GET", v1(roomId, "/threads?limit=1"), alice);
    expect(page.chunk.map((e: any) => e.event_id)).toEqual([a]);
    const page2 = await t.ok("GET", v1(roomId, `/threads?limit=1&from=${page.next_batch}`), alice);
    expect(page2.chunk.map((e: any) => e.event_id)).toEqual([b]);
    const mine = await t.ok("GET", v1(roomId, "/threads?include=participated"), alice);
    expect(mine.chunk.map((e: any) => e.event_id)).toEqual([a]);
    expect((await t.req("GET", v1(roomId, "/threads?include=some"), alice)).body.errcode).toBe("M_INVALID_PARAM");
  });
});

describe("aliases and the room directory", () => {
  it("maps, resolves, lists and deletes aliases with access control", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.ok("PUT", "/directory/room/%23x:hs.test", alice, { room_id: roomId });
    expect(await t.ok("GET", "/directory/room/%23x:hs.test")).toEqual({ room_id: roomId, servers: ["hs.test"] });
    const dup = await t.req("PUT", "/directory/room/%23x:hs.test", bob, { room_id: roomId });
    expect([dup.status, dup.body.errcode]).toEqual([409, "M_UNKNOWN"]);
    expect((await t.req("PUT", "/directory/room/nohash", alice, { room_id: roomId })).body.errcode).toBe("M_INVALID_PARAM");
    expect((await t.req("PUT", "/directory/room/%23y:other.server", alice, { room_id: roomId })).body.errcode).toBe("M_INVALID_PARAM");
    expect((await t.req("PUT", "/directory/room/%23y:hs.test", alice, { room_id: "!missing:hs.test" })).status).toBe(404);
    await t.join(bob, roomId);
    expect((await t.ok("GET", room(roomId, "/aliases"), bob)).aliases).toEqual(["#x:hs.test"]);
    expect((await t.req("GET", room(roomId, "/aliases"), carol)).status).toBe(403);
    expect((await t.req("DELETE", "/directory/room/%23x:hs.test", bob)).status).toBe(403);
    await t.state(alice, roomId, "m.room.canonical_alias", { alias: "#x:hs.test", alt_aliases: ["#x:hs.test"] });
    await t.ok("DELETE", "/directory/room/%23x:hs.test", alice);
    expect(await t.ok("GET", room(roomId, "/state/m.room.canonical_alias"), alice)).toEqual({ alt_aliases: [] });
    expect((await t.req("GET", "/directory/room/%23x:hs.test")).status).toBe(404);
    expect((await t.req("DELETE", "/directory/room/%23x:hs.test", alice)).status).toBe(404);
  });

  it("publishes rooms and lists them with search, limit and since", async () => {
    const a = await t.createRoom(alice, { visibility: "public", name: "Cats", topic: "all about cats" });
    const b = await t.createRoom(bob, { visibility: "public", name: "Dogs" });
    const hidden = await t.createRoom(alice, { name: "Secret" });
    await t.join(carol, b);
    expect((await t.ok("GET", `/directory/list/room/${encodeURIComponent(a)}`)).visibility).toBe("public");
    expect((await t.ok("GET", `/directory/list/room/${encodeURIComponent(hidden)}`)).visibility).toBe("private");
    const list = await t.ok("GET", "/publicRooms");
    expect(list.chunk.map((r: any) => r.room_id)).toEqual([b, a]);
    expect(list.total_room_count_estimate).toBe(2);
    expect(list.chunk[1]).toMatchObject({ name: "Cats", topic: "all about cats", num_joined_members: 1, world_readable: false, guest_can_join: false, join_rule: "public" });
    const page = await t.ok("GET", "/publicRooms?limit=1");
    expect(page.chunk.map((r: any) => r.room_id)).toEqual([b]);
    const page2 = await t.ok("GET", `/publicRooms?limit=1&since=${page.next_batch}`);
    expect(page2.chunk.map((r: any) => r.room_id)).toEqual([a]);
    expect(page2.next_batch).toBeUndefined();
    const found = await t.ok("POST", "/publicRooms", alice, { filter: { generic_search_term: "CATS" } });
    expect(found.chunk.map((r: any) => r.room_id)).toEqual([a]);
    expect((await t.req("POST", "/publicRooms", undefined, {})).status).toBe(401);
    // visibility changes need power
    expect((await t.req("PUT", `/directory/list/room/${encodeURIComponent(hidden)}`, bob, { visibility: "public" })).status).toBe(403);
    await t.ok("PUT", `/directory/list/room/${encodeURIComponent(hidden)}`, alice, { visibility: "public" });
    expect((await t.ok("GET", "/publicRooms")).chunk).toHaveLength(3);
    expect((await t.req("GET", "/directory/list/room/!nope:hs.test")).status).toBe(404);
    expect((await t.req("PUT", `/directory/list/room/${encodeURIComponent(a)}`, alice, { visibility: "odd" })).body.errcode).toBe("M_INVALID_PARAM");
  });

  it("searches the user directory: shared rooms and public rooms only", async () => {
    const dave = await t.user("dave", { displayname: "Dave Lonely" });
    const pub = await t.createRoom(bob, { preset: "public_chat" });
    void pub;
    const priv = await t.createRoom(alice);
    await t.invite(alice, priv, carol.userId);
    await t.join(carol, priv);
    const byName = await t.ok("POST", "/user_directory/search", carol, { search_term: "liddell" });
    expect(byName.results).toEqual([{ user_id: alice.userId, display_name: "Alice Liddell" }]);
    expect((await t.ok("POST", "/user_directory/search", carol, { search_term: "bob" })).results.map((r: any) => r.user_id)).toEqual([bob.userId]);
    expect((await t.ok("POST", "/user_directory/search", carol, { search_term: "dave" })).results).toEqual([]);
    void dave;
    const limited = await t.ok("POST", "/user_directory/search", carol, { search_term: "o", limit: 1 });
    expect(limited.results).toHaveLength(1);
    expect(limited.limited).toBe(true);
    expect((await t.req("POST", "/user_directory/search", carol, {})).body.errcode).toBe("M_MISSING_PARAM");
  });
});

describe("room upgrades", () => {
  it("creates the replacement, copies state, moves aliases, tombstones and restricts the old room", async () => {
    const old = await t.createRoom(alice, { room_version: "10", preset: "public_chat", name: "Old", room_alias_name: "up", visibility: "public" });
    await t.join(bob, old);
    await t.ok("POST", room(old, "/ban"), alice, { user_id: carol.userId });
    const denied = await t.req("POST", room(old, "/upgrade"), bob, { new_version: "12" });
    expect([denied.status, denied.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
    expect((await t.req("POST", room(old, "/upgrade"), alice, { new_version: "77" })).body.errcode).toBe("M_UNSUPPORTED_ROOM_VERSION");
    const { replacement_room: fresh } = await t.ok("POST", room(old, "/upgrade"), alice, { new_version: "12" });
    const create = await t.ok("GET", room(fresh, "/state/m.room.create"), alice);
    expect(create).toMatchObject({ room_version: "12", predecessor: { room_id: old } });
    expect((await t.ok("GET", room(fresh, "/state/m.room.name"), alice)).name).toBe("Old");
    expect((await t.ok("GET", room(fresh, "/state/m.room.join_rules"), alice)).join_rule).toBe("public");
    expect((await t.ok("GET", room(fresh, `/state/m.room.member/${carol.userId}`), alice)).membership).toBe("ban");
    const pl = await t.ok("GET", room(fresh, "/state/m.room.power_levels"), alice);
    expect(pl.users[alice.userId]).toBeUndefined();
    expect((await t.ok("GET", "/directory/room/%23up:hs.test")).room_id).toBe(fresh);
    expect((await t.ok("GET", room(fresh, "/state/m.room.canonical_alias"), alice)).alias).toBe("#up:hs.test");
    const tomb = await t.ok("GET", room(old, "/state/m.room.tombstone"), alice);
    expect(tomb.replacement_room).toBe(fresh);
    const r = await t.req("PUT", room(old, "/send/m.room.message/1"), bob, { body: "still here?" });
    expect(r.status).toBe(403);
    expect((await t.ok("GET", "/publicRooms")).chunk.map((x: any) => x.room_id)).toEqual([fresh]);
    await t.join(bob, fresh);
  });

  it("upgrades to an older-style version, giving the upgrader power", async () => {
    const old = await t.createRoom(alice, { room_version: "12" });
    const { replacement_room: fresh } = await t.ok("POST", room(old, "/upgrade"), alice, { new_version: "11" });
    const pl = await t.ok("GET", room(fresh, "/state/m.room.power_levels"), alice);
    expect(pl.users[alice.userId]).toBe(100);
    const create = await t.ok("GET", room(fresh, "/state/m.room.create"), alice);
    expect(create.predecessor.event_id).toMatch(/^\$/);
  });
});

describe("space hierarchy", () => {
  it("walks m.space.child depth-first with suggested_only, max_depth and pagination", async () => {
    const space = await t.createRoom(alice, { preset: "public_chat", name: "Space", creation_content: { type: "m.space" } });
    const c1 = await t.createRoom(alice, { preset: "public_chat", name: "C1" });
    const c2 = await t.createRoom(alice, { preset: "public_chat", name: "C2" });
    const secret = await t.createRoom(alice, { name: "Secret" });
    const grandchild = await t.createRoom(alice, { preset: "public_chat", name: "G" });
    await t.state(alice, space, "m.space.child", { via: ["hs.test"], order: "b" }, c1);
    await t.state(alice, space, "m.space.child", { via: ["hs.test"], order: "a", suggested: true }, c2);
    await t.state(alice, space, "m.space.child", { via: ["hs.test"] }, secret);
    await t.state(alice, space, "m.space.child", {}, grandchild); // no via: not a child
    await t.state(alice, c2, "m.space.child", { via: ["hs.test"] }, grandchild);
    const h = await t.ok("GET", v1(space, "/hierarchy"), bob);
    expect(h.rooms.map((r: any) => r.name)).toEqual(["Space", "C2", "G", "C1"]);
    expect(h.rooms[0].room_type).toBe("m.space");
    expect(h.rooms[0].room_version).toBe("12");
    expect(h.rooms[0].children_state).toHaveLength(3);
    expect((await t.ok("GET", v1(space, "/hierarchy"), alice)).rooms.map((r: any) => r.name)).toEqual(["Space", "C2", "G", "C1", "Secret"]);
    // suggested_only applies at every level: G is not a suggested child of C2
    expect((await t.ok("GET", v1(space, "/hierarchy?suggested_only=true"), bob)).rooms.map((r: any) => r.name)).toEqual(["Space", "C2"]);
    expect((await t.ok("GET", v1(space, "/hierarchy?max_depth=1"), bob)).rooms.map((r: any) => r.name)).toEqual(["Space", "C2", "C1"]);
    const p1 = await t.ok("GET", v1(space, "/hierarchy?limit=2"), bob);
    expect(p1.rooms.map((r: any) => r.name)).toEqual(["Space", "C2"]);
    const p2 = await t.ok("GET", v1(space, `/hierarchy?limit=2&from=${p1.next_batch}`), bob);
    expect(p2.rooms.map((r: any) => r.name)).toEqual(["G", "C1"]);
    expect((await t.req("GET", v1(space, `/hierarchy?limit=2&from=${p1.next_batch}&max_depth=1`), bob)).body.errcode).toBe("M_INVALID_PARAM");
    expect((await t.req("GET", v1(secret, "/hierarchy"), bob)).status).toBe(403);
  });
});

describe("search", () => {
  it("finds messages in the user's rooms, case-insensitively, with count, context and next_batch", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, roomId);
    const other = await t.createRoom(alice);
    await t.send(alice, other, "hidden banana");
    await t.send(alice, roomId, "I like Bananas");
    await t.send(bob, roomId, "nothing here");
    await t.send(bob, roomId, "banana bread");
    await t.send(alice, roomId, "BANANA split");
    const q = (extra: Record<string, unknown> = {}, next?: string) =>
      t.ok("POST", `/search${next ? `?next_batch=${next}` : ""}`, bob, { search_categories: { room_events: { search_term: "banana", filter: { limit: 2 }, ...extra } } });
    const r = (await q()).search_categories.room_events;
    expect(r.count).toBe(3);
    expect(r.results.map((x: any) => x.result.content.body)).toEqual(["BANANA split", "banana bread"]);
    const r2 = (await q({}, r.next_batch)).search_categories.room_events;
    expect(r2.results.map((x: any) => x.result.content.body)).toEqual(["I like Bananas"]);
    expect(r2.next_batch).toBeUndefined();
    const withCtx = (await q({ event_context: { before_limit: 1, after_limit: 1 } })).search_categories.room_events;
    expect(withCtx.results[1].context.events_before[0].content.body).toBe("nothing here");
    expect(withCtx.results[1].context.events_after[0].content.body).toBe("BANANA split");
    const multi = (await t.ok("POST", "/search", bob, { search_categories: { room_events: { search_term: "banana  BREAD" } } })).search_categories.room_events;
    expect(multi.results.map((x: any) => x.result.content.body)).toEqual(["banana bread"]);
    // profile_info and include_state: one room's state serves both hits.
    const withProfile = (await q({ event_context: { before_limit: 1, after_limit: 1, include_profile: true }, include_state: true })).search_categories.room_events;
    const profiles = { [alice.userId]: { displayname: "Alice Liddell" }, [bob.userId]: { displayname: "Bobby" } };
    expect(withProfile.results.map((x: any) => x.context.profile_info)).toEqual([profiles, profiles]);
    expect(Object.keys(withProfile.state)).toEqual([roomId]);
    expect(withProfile.state[roomId].filter((e: any) => e.type === "m.room.member").map((e: any) => e.state_key).sort()).toEqual([alice.userId, bob.userId].sort());
    await t.send(alice, roomId, "banana? banana! old news");
    const ranked = (await t.ok("POST", "/search", bob, { search_categories: { room_events: { search_term: "banana", order_by: "rank" } } })).search_categories.room_events;
    expect(ranked.results[0].result.content.body).toBe("banana? banana! old news");
    expect(ranked.results[0].rank).toBeGreaterThan(ranked.results[1].rank);
    const recent = (await t.ok("POST", "/search", bob, { search_categories: { room_events: { search_term: "banana", order_by: "recent", filter: { limit: 3 } } } })).search_categories.room_events;
    expect(recent.results.map((x: any) => x.result.content.body)).toEqual(["banana? banana! old news", "BANANA split", "banana bread"]);
    const recent2 = (await t.ok("POST", `/search?next_batch=${recent.next_batch}`, bob, { search_categories: { room_events: { search_term: "banana", order_by: "recent", filter: { limit: 3 } } } })).search_categories.room_events;
    expect(recent2.results.map((x: any) => x.result.content.body)).toEqual(["I like Bananas"]);
    expect((await t.req("POST", "/search", bob, { search_categories: { room_events: {} } })).body.errcode).toBe("M_BAD_JSON");
    expect((await t.req("POST", "/search", bob, {})).body.errcode).toBe("M_BAD_JSON");
  });
});

describe("reporting", () => {
  it("stores event, room and user reports; 404 for unknown or unjoined", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    const id = await t.send(alice, roomId, "bad");
    await t.join(bob, roomId);
    await t.ok("POST", room(roomId, `/report/${ev(id)}`), bob, { reason: "spam", score: -100 });
    await t.ok("POST", room(roomId, "/report"), carol, { reason: "whole room" });
    await t.ok("POST", `/users/${encodeURIComponent(alice.userId)}/report`, carol, { reason: "rude" });
    expect((await t.req("POST", room(roomId, `/report/${ev(id)}`), carol, { reason: "x" })).status).toBe(404);
    expect((await t.req("POST", room(roomId, "/report/$nope"), bob, {})).status).toBe(404);
    expect((await t.req("POST", room("!nope:hs.test", "/report"), bob, {})).status).toBe(404);
    expect((await t.req("POST", room(roomId, "/report"), bob, { reason: 5 })).body.errcode).toBe("M_BAD_JSON");
    const reports = await t.hs.services.store.read((tx) => tx.range<any>("reports", {}));
    expect(reports.map((r) => [r.value.kind, r.value.reporter, r.value.reason])).toEqual([
      ["event", bob.userId, "spam"], ["room", carol.userId, "whole room"], ["user", carol.userId, "rude"],
    ]);
  });
});
