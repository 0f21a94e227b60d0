/**
 * `/sync` state and timeline as the spec's "Syncing", "Lazy-loading room members" and the
 * `RoomSummary` schema say (issue 12, "Conformance"), through the handler. The scenarios follow
 * the ones strict clients and the sytest/Complement suites run.
 */
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { room, startWithAliceAndBob } from "../roomserver/harness.ts";
import type { TestServer, TestUser } from "../roomserver/harness.ts";

let t: TestServer;
let alice: TestUser;
let bob: TestUser;
beforeEach(async () => {
  ({ t, alice, bob } = await startWithAliceAndBob());
});
afterEach(async () => t.close());

type Sync = Record<string, any>;
const sync = (as: TestUser, q: Record<string, string> = {}): Promise<Sync> =>
  t.ok("GET", `/sync?${new URLSearchParams({ set_presence: "offline", ...q })}`, as);
const filterOf = (f: unknown): string => JSON.stringify(f);
/** `type|state_key` of a list of state events. */
const keys = (events: Sync[]): string[] => events.map((e) => `${e.type}|${e.state_key}`).sort();
/** The member events of a state list: state_key → membership. */
const members = (events: Sync[]): Record<string, string> =>
  Object.fromEntries(events.filter((e) => e.type === "m.room.member").map((e) => [e.state_key, e.content.membership]));
const fill = async (as: TestUser, roomId: string, n: number, label = "m"): Promise<void> => {
  for (let i = 0; i < n; i++) await t.send(as, roomId, `${label}${i}`);
};

describe("state is the state at the start of the timeline", () => {
  it("no event is in both state and timeline, and state + timeline replays to the current state (initial and gapped)", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat", name: "One" });
    await t.join(bob, roomId);
    await t.state(alice, roomId, "m.room.topic", { topic: "t1" });
    await t.send(bob, roomId, "x");
    await t.state(alice, roomId, "m.room.topic", { topic: "t2" });
    await t.send(bob, roomId, "y");
    const f = filterOf({ room: { timeline: { limit: 3 } } });
    const s1 = await sync(alice, { filter: f });
    const r1 = s1.rooms.join[roomId];
    const ids = (l: Sync[]): string[] => l.map((e) => e.event_id as string);
    expect(ids(r1.state.events).filter((id) => ids(r1.timeline.events).includes(id))).toEqual([]);
    // The state block carries the topic as it was before the timeline (t1), the timeline t2.
    expect(r1.state.events.find((e: Sync) => e.type === "m.room.topic").content.topic).toBe("t1");
    expect(r1.timeline.events.find((e: Sync) => e.type === "m.room.topic").content.topic).toBe("t2");

    await t.state(alice, roomId, "m.room.topic", { topic: "t3" });
    await fill(bob, roomId, 2, "a");
    await t.state(alice, roomId, "m.room.topic", { topic: "t4" });
    await fill(bob, roomId, 1, "b");
    const r2 = (await sync(alice, { filter: f, since: s1.next_batch })).rooms.join[roomId];
    expect(r2.timeline.limited).toBe(true);
    expect(ids(r2.state.events).filter((id) => ids(r2.timeline.events).includes(id))).toEqual([]);
    expect(r2.state.events.map((e: Sync) => e.content.topic)).toEqual(["t3"]);
  });

  it("a gapped incremental sync carries every state change of the gap, also when the timeline filter leaves no event", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    const f = filterOf({ room: { timeline: { types: ["m.room.message"] } } });
    const s1 = await sync(alice, { filter: f });
    await t.state(alice, roomId, "m.room.topic", { topic: "only state changed" });
    await t.state(alice, roomId, "org.example.state", { k: 1 }, "a");
    const r = (await sync(alice, { filter: f, since: s1.next_batch })).rooms.join[roomId];
    expect(r.timeline.events).toEqual([]);
    expect(keys(r.state.events)).toEqual(["m.room.topic|", "org.example.state|a"]);
  });

  it("a state change inside the timeline that the timeline filter hides still reaches the client", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    const f = filterOf({ room: { timeline: { types: ["m.room.message"] } } });
    const s1 = await sync(alice, { filter: f });
    await t.send(alice, roomId, "before");
    await t.state(alice, roomId, "m.room.topic", { topic: "between" });
    await t.send(alice, roomId, "after");
    const r = (await sync(alice, { filter: f, since: s1.next_batch })).rooms.join[roomId];
    expect(r.timeline.events.map((e: Sync) => e.content.body)).toEqual(["before", "after"]);
    expect(r.state.events.map((e: Sync) => e.content.topic)).toEqual(["between"]);
  });

  it("a room with nothing the filters let through is left out of an incremental sync (a display-name change is no full state sync)", async () => {
    const roomId = await t.createRoom(alice);
    await t.state(alice, roomId, "org.example.state", { k: 1 });
    const f = filterOf({ room: { timeline: { types: [] }, state: { types: ["org.example.state"] }, ephemeral: { types: [] } }, presence: { types: [] } });
    const s1 = await sync(alice, { filter: f });
    expect(keys(s1.rooms.join[roomId].state.events)).toEqual(["org.example.state|"]);
    await t.ok("PUT", `/profile/${encodeURIComponent(alice.userId)}/displayname`, alice, { displayname: "Boris" });
    await t.send(alice, roomId, "a message to wait on");
    const s2 = await sync(alice, { filter: f, since: s1.next_batch });
    expect(s2.rooms.join).toEqual({});
  });
});

describe("joined and left between two syncs", () => {
  it("the room shows in leave with its full state, not a delta from a token the user was not in the room at", async () => {
    const roomId = await t.createRoom(alice);
    await t.state(alice, roomId, "org.example.state", { k: 1 });
    await t.invite(alice, roomId, bob.userId);
    const f = filterOf({ room: { timeline: { types: [] }, state: { types: ["org.example.state"] }, include_leave: true } });
    const s1 = await sync(bob, { filter: f });
    await t.join(bob, roomId);
    await t.ok("POST", room(roomId, "/leave"), bob, {});
    const s2 = await sync(bob, { filter: f, since: s1.next_batch });
    const left = s2.rooms.leave[roomId];
    expect(left).toBeDefined();
    expect(left.state.events.map((e: Sync) => [e.type, e.content.k])).toEqual([["org.example.state", 1]]);
  });

  it("an invite rejected between two syncs does not hand out the room's state", async () => {
    const roomId = await t.createRoom(alice);
    await t.state(alice, roomId, "org.example.state", { k: 1 });
    const f = filterOf({ room: { state: { types: ["org.example.state"] }, include_leave: true } });
    const s1 = await sync(bob, { filter: f });
    await t.invite(alice, roomId, bob.userId);
    await t.ok("POST", room(roomId, "/leave"), bob, {});
    const left = (await sync(bob, { filter: f, since: s1.next_batch })).rooms.leave[roomId];
    expect(left.state.events).toEqual([]);
  });
});

describe("newly joined room in an incremental sync", () => {
  it("is limited, carries the state at the start of its timeline and its members' presence (once)", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat", name: "Joinable" });
    await t.ok("PUT", `/presence/${encodeURIComponent(alice.userId)}/status`, alice, { presence: "online" });
    await fill(alice, roomId, 4);
    const f = filterOf({ room: { timeline: { limit: 10, types: ["m.room.message"] } } });
    const s1 = await sync(bob, { filter: f });
    await fill(alice, roomId, 4, "n");
    await t.join(bob, roomId);
    const s2 = await sync(bob, { filter: f, since: s1.next_batch });
    const r = s2.rooms.join[roomId];
    expect(r.timeline.events.map((e: Sync) => e.type)).toEqual(Array(8).fill("m.room.message"));
    expect(r.timeline.limited).toBe(true);
    expect(keys(r.state.events)).toEqual(expect.arrayContaining(["m.room.create|", "m.room.name|", `m.room.member|${alice.userId}`, `m.room.member|${bob.userId}`]));
    expect(s2.presence.events.map((e: Sync) => e.sender)).toContain(alice.userId);
    const s3 = await sync(bob, { filter: f, since: s2.next_batch });
    expect(s3.presence.events.map((e: Sync) => e.sender)).not.toContain(alice.userId);
  });

  it("members who newly joined a room the user is in bring their presence", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.ok("PUT", `/presence/${encodeURIComponent(bob.userId)}/status`, bob, { presence: "online" });
    const s1 = await sync(alice);
    await t.join(bob, roomId);
    const s2 = await sync(alice, { since: s1.next_batch });
    expect(s2.presence.events.map((e: Sync) => e.sender)).toContain(bob.userId);
    const s3 = await sync(alice, { since: s2.next_batch });
    expect(s3.presence.events.map((e: Sync) => e.sender)).not.toContain(bob.userId);
  });
});

describe("lazy-loading room members", () => {
  const ll = filterOf({ room: { state: { lazy_load_members: true }, timeline: { limit: 10 } } });

  it("does not send redundant members across incremental syncs, unless include_redundant_members", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat", name: "LL" });
    const carol = await t.user("carol");
    await t.join(bob, roomId);
    await t.join(carol, roomId);
    await fill(bob, roomId, 10);
    await fill(carol, roomId, 5);
    const s1 = await sync(alice, { filter: ll });
    expect(Object.keys(members(s1.rooms.join[roomId].state.events)).sort()).toEqual([alice.userId, bob.userId, carol.userId].sort());
    await t.send(bob, roomId, "again");
    await t.send(carol, roomId, "again");
    const s2 = await sync(alice, { filter: ll, since: s1.next_batch });
    expect(members(s2.rooms.join[roomId].state.events)).toEqual({});
    // With include_redundant_members, they come every time.
    const redundant = filterOf({ room: { state: { lazy_load_members: true, include_redundant_members: true }, timeline: { limit: 10 } } });
    const r1 = await sync(alice, { filter: redundant });
    await t.send(bob, roomId, "third");
    const r2 = await sync(alice, { filter: redundant, since: r1.next_batch });
    expect(Object.keys(members(r2.rooms.join[roomId].state.events))).toEqual([bob.userId]);
  });

  it("a retried older since token gets back the members it did not have", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat", name: "LL" });
    const s1 = await sync(alice, { filter: ll });
    await t.join(bob, roomId);
    await fill(bob, roomId, 12);
    const s2 = await sync(alice, { filter: ll, since: s1.next_batch });
    expect(s2.rooms.join[roomId].timeline.limited).toBe(true);
    expect(members(s2.rooms.join[roomId].state.events)).toEqual({ [bob.userId]: "join" });
    // The response s2 may never have arrived: the same since again must not assume it did.
    await t.send(bob, roomId, "again");
    const again = await sync(alice, { filter: ll, since: s1.next_batch });
    expect(members(again.rooms.join[roomId].state.events)).toEqual({ [bob.userId]: "join" });
    // From s2 on, the client has Bob.
    const s3 = await sync(alice, { filter: ll, since: s2.next_batch });
    expect(members(s3.rooms.join[roomId].state.events)).toEqual({});
    // A new initial sync forgets what the device had: the members come again in state.
    await fill(bob, roomId, 10);
    const fresh = await sync(alice, { filter: ll });
    expect(Object.keys(members(fresh.rooms.join[roomId].state.events)).sort()).toEqual([alice.userId, bob.userId].sort());
  });

  it("a gapped sync brings the members whose membership changed in the gap, and nothing redundant", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat", name: "LL" });
    const [carol, dave] = [await t.user("carol"), await t.user("dave")];
    await t.join(bob, roomId);
    await t.join(carol, roomId);
    await fill(bob, roomId, 10);
    const s1 = await sync(alice, { filter: ll });
    expect(Object.keys(members(s1.rooms.join[roomId].state.events)).sort()).toEqual([alice.userId, bob.userId].sort());
    await t.join(dave, roomId);
    await fill(carol, roomId, 20);
    const s2 = await sync(alice, { filter: ll, since: s1.next_batch });
    expect(s2.rooms.join[roomId].timeline.limited).toBe(true);
    expect(members(s2.rooms.join[roomId].state.events)).toEqual({ [carol.userId]: "join", [dave.userId]: "join" });
    await t.ok("POST", room(roomId, "/leave"), dave, {});
    await fill(carol, roomId, 20);
    const s3 = await sync(alice, { filter: ll, since: s2.next_batch });
    expect(members(s3.rooms.join[roomId].state.events)).toEqual({ [dave.userId]: "leave" });
  });

  it("sends the heroes' member events of an unnamed room", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, roomId);
    await t.send(alice, roomId, "only alice speaks");
    const r = (await sync(alice, { filter: filterOf({ room: { state: { lazy_load_members: true }, timeline: { limit: 1 } } }) })).rooms.join[roomId];
    expect(r.summary["m.heroes"]).toEqual([bob.userId]);
    expect(Object.keys(members(r.state.events))).toContain(bob.userId);
  });
});

describe("room summary", () => {
  it("omits m.heroes when the room has a name or a canonical alias", async () => {
    const named = await t.createRoom(alice, { preset: "public_chat", name: "A room name" });
    const aliased = await t.createRoom(alice, { preset: "public_chat", room_alias_name: "summary" });
    const unnamed = await t.createRoom(alice, { preset: "public_chat" });
    for (const r of [named, aliased, unnamed]) await t.join(bob, r);
    const s = await sync(alice);
    expect(s.rooms.join[named].summary).toEqual({ "m.joined_member_count": 2, "m.invited_member_count": 0 });
    expect(s.rooms.join[aliased].summary).toEqual({ "m.joined_member_count": 2, "m.invited_member_count": 0 });
    expect(s.rooms.join[unnamed].summary).toEqual({ "m.heroes": [bob.userId], "m.joined_member_count": 2, "m.invited_member_count": 0 });
    // An empty name is no name.
    await t.state(alice, named, "m.room.name", { name: "" });
    expect((await sync(alice)).rooms.join[named].summary["m.heroes"]).toEqual([bob.userId]);
  });
});
