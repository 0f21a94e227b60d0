import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { TestServer as Server, room, startWithAliceAndBob } from "../roomserver/harness.ts";
import { key } from "../../../src/storage/store.ts";
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
const joined = (s: Sync, roomId: string): Sync => s.rooms.join[roomId];
const bodies = (events: Sync[]): unknown[] => events.filter((e) => e.type === "m.room.message").map((e) => e.content.body);

async function sharedRoom(): Promise<string> {
  const roomId = await t.createRoom(alice, { preset: "private_chat", name: "Shared" });
  await t.invite(alice, roomId, bob.userId);
  await t.join(bob, roomId);
  return roomId;
}

describe("GET /sync", () => {
  it("needs an access token", async () => {
    expect((await t.req("GET", "/sync")).body.errcode).toBe("M_MISSING_TOKEN");
    const bad = await t.req("GET", "/sync", "nope");
    expect(bad.status).toBe(401);
    expect(bad.body.errcode).toBe("M_UNKNOWN_TOKEN");
  });

  it("rejects a malformed since token and an unknown filter ID", async () => {
    expect((await t.req("GET", "/sync?since=garbage", alice)).body.errcode).toBe("M_INVALID_PARAM");
    expect((await t.req("GET", "/sync?filter=999", alice)).body.errcode).toBe("M_INVALID_PARAM");
    expect((await t.req("GET", "/sync?set_presence=busy", alice)).status).toBe(400);
  });

  it("initial sync: the whole room, state before the timeline, summary, push rules", async () => {
    const roomId = await sharedRoom();
    await t.send(bob, roomId, "hello");
    const s = await sync(alice, { filter: JSON.stringify({ room: { timeline: { limit: 1 } } }) });
    expect(s.next_batch).toMatch(/^s\d+_\d+$/);
    const r = joined(s, roomId);
    expect(bodies(r.timeline.events)).toEqual(["hello"]);
    expect(r.timeline.limited).toBe(true);
    expect(r.timeline.prev_batch).toMatch(/^s\d+_\d+$/);
    // Timeline events carry no room_id in sync.
    expect(r.timeline.events[0].room_id).toBeUndefined();
    // The state before the timeline plus the timeline is the current state.
    const all = [...r.state.events, ...r.timeline.events].filter((e: Sync) => e.state_key !== undefined);
    const types = new Set(all.map((e: Sync) => `${e.type}|${e.state_key}`));
    for (const k of ["m.room.create|", "m.room.name|", "m.room.power_levels|", `m.room.member|${alice.userId}`, `m.room.member|${bob.userId}`]) expect(types).toContain(k);
    // A named room needs no heroes (RoomSummary).
    expect(r.summary).toEqual({ "m.joined_member_count": 2, "m.invited_member_count": 0 });
    expect(s.account_data.events.map((e: Sync) => e.type)).toContain("m.push_rules");
    expect(s.device_one_time_keys_count).toBeDefined();
    expect(s.to_device.events).toEqual([]);
  });

  it("incremental sync returns only what is new, and nothing when nothing happened", async () => {
    const roomId = await sharedRoom();
    const s1 = await sync(alice);
    const s2 = await sync(alice, { since: s1.next_batch, timeout: "0" });
    expect(s2.rooms.join[roomId]).toBeUndefined();
    expect(s2.next_batch).toBe(s1.next_batch);
    await t.send(bob, roomId, "one");
    await t.send(bob, roomId, "two");
    const s3 = await sync(alice, { since: s1.next_batch });
    const r = joined(s3, roomId);
    expect(bodies(r.timeline.events)).toEqual(["one", "two"]);
    expect(r.timeline.limited).toBe(false);
    expect(r.state.events).toEqual([]);
    expect(r.unread_notifications).toEqual({ notification_count: 2, highlight_count: 0 });
  });

  it("a profile change of a member is an ordinary incremental update, not a new room", async () => {
    const roomId = await sharedRoom();
    await t.send(bob, roomId, "before rename");
    const s1 = await sync(alice);
    await t.ok("PUT", `/profile/${encodeURIComponent(alice.userId)}/displayname`, alice, { displayname: "Alice 2" });
    const r = joined(await sync(alice, { since: s1.next_batch }), roomId);
    expect(r.timeline.limited).toBe(false);
    expect(r.timeline.events.map((e: Sync) => e.type)).toEqual(["m.room.member"]);
    expect(r.state.events).toEqual([]);
    // Bob's message from before the rename is still unread.
    expect(r.unread_notifications.notification_count).toBe(1);
  });

  it("a long-poll returns as soon as an event arrives", async () => {
    const roomId = await sharedRoom();
    const s1 = await sync(alice);
    let answeredAt = 0;
    const pending = sync(alice, { since: s1.next_batch, timeout: "30000" }).then((r) => {
      answeredAt = performance.now();
      return r;
    });
    await new Promise((r) => setTimeout(r, 20));
    await t.send(bob, roomId, "wake up");
    // The send returned, so its commit is done: the long-poll must answer within 100 ms of it.
    const committedAt = performance.now();
    const s2 = await pending;
    expect(bodies(joined(s2, roomId).timeline.events)).toEqual(["wake up"]);
    expect(answeredAt - committedAt).toBeLessThan(100);
  });

  it("limits the timeline, flags it limited with a prev_batch, and gives the state gap", async () => {
    const roomId = await sharedRoom();
    const s1 = await sync(alice);
    await t.state(bob, roomId, "m.room.topic", { topic: "gap" }).catch(() => undefined);
    await t.state(alice, roomId, "m.room.topic", { topic: "gap" });
    for (let i = 0; i < 8; i++) await t.send(bob, roomId, `m${i}`);
    const filter = JSON.stringify({ room: { timeline: { limit: 3 } } });
    const s2 = await sync(alice, { since: s1.next_batch, filter });
    const r = joined(s2, roomId);
    expect(bodies(r.timeline.events)).toEqual(["m5", "m6", "m7"]);
    expect(r.timeline.limited).toBe(true);
    expect(r.state.events.map((e: Sync) => e.type)).toEqual(["m.room.topic"]);
    // prev_batch pages back into the gap through /messages.
    const page = await t.ok("GET", room(roomId, `/messages?dir=b&limit=2&from=${r.timeline.prev_batch}`), alice);
    expect(page.chunk.map((e: Sync) => e.content.body)).toEqual(["m4", "m3"]);
  });

  it("full_state gives the whole state even with a since token", async () => {
    const roomId = await sharedRoom();
    const s1 = await sync(alice);
    const s2 = await sync(alice, { since: s1.next_batch, full_state: "true" });
    expect(joined(s2, roomId).state.events.length).toBeGreaterThan(4);
  });

  it("invites carry stripped state; the join then brings the room", async () => {
    const roomId = await t.createRoom(alice, { name: "Invite me" });
    const s0 = await sync(bob);
    await t.invite(alice, roomId, bob.userId);
    const s1 = await sync(bob, { since: s0.next_batch });
    const inv = s1.rooms.invite[roomId];
    const types = inv.invite_state.events.map((e: Sync) => e.type);
    expect(types).toContain("m.room.create");
    expect(types).toContain("m.room.name");
    const me = inv.invite_state.events.find((e: Sync) => e.type === "m.room.member" && e.state_key === bob.userId);
    expect(me.content.membership).toBe("invite");
    await t.join(bob, roomId);
    const s2 = await sync(bob, { since: s1.next_batch });
    expect(s2.rooms.invite[roomId]).toBeUndefined();
    const r = joined(s2, roomId);
    expect(r.timeline.events.at(-1)).toMatchObject({ type: "m.room.member", state_key: bob.userId, content: { membership: "join" } });
  });

  it("a leave shows once in rooms.leave with the timeline up to the leave", async () => {
    const roomId = await sharedRoom();
    const s1 = await sync(bob);
    await t.ok("POST", room(roomId, "/leave"), bob, {});
    await t.send(alice, roomId, "after you left");
    const s2 = await sync(bob, { since: s1.next_batch });
    const left = s2.rooms.leave[roomId];
    expect(left.timeline.events.at(-1)).toMatchObject({ type: "m.room.member", state_key: bob.userId, content: { membership: "leave" } });
    expect(bodies(left.timeline.events)).toEqual([]);
    const s3 = await sync(bob, { since: s2.next_batch });
    expect(s3.rooms.leave[roomId]).toBeUndefined();
    // Initial sync shows left rooms only with include_leave.
    expect((await sync(bob)).rooms.leave[roomId]).toBeUndefined();
    expect((await sync(bob, { filter: JSON.stringify({ room: { include_leave: true } }) })).rooms.leave[roomId]).toBeDefined();
  });

  it("knocks show in rooms.knock with stripped state; the room sees the knock", async () => {
    const roomId = await t.createRoom(alice, { name: "Knock here" });
    await t.state(alice, roomId, "m.room.join_rules", { join_rule: "knock" });
    const a0 = await sync(alice);
    await t.ok("POST", `/knock/${encodeURIComponent(roomId)}`, bob, { reason: "let me in" });
    const s = await sync(bob);
    const k = s.rooms.knock[roomId];
    expect(k.knock_state.events.map((e: Sync) => e.type)).toEqual(expect.arrayContaining(["m.room.create", "m.room.name", "m.room.join_rules", "m.room.member"]));
    expect(k.knock_state.events.find((e: Sync) => e.type === "m.room.member").content.membership).toBe("knock");
    const a1 = joined(await sync(alice, { since: a0.next_batch }), roomId);
    expect(a1.timeline.events.at(-1)).toMatchObject({ type: "m.room.member", state_key: bob.userId, content: { membership: "knock" } });
  });

  it("does not serve history the user may not see", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.state(alice, roomId, "m.room.history_visibility", { history_visibility: "joined" });
    await t.send(alice, roomId, "secret before bob");
    await t.join(bob, roomId);
    await t.send(alice, roomId, "after bob");
    const r = joined(await sync(bob), roomId);
    expect(bodies(r.timeline.events)).toEqual(["after bob"]);
  });

  it("applies stored and inline filters", async () => {
    const roomId = await sharedRoom();
    await t.send(bob, roomId, "text");
    await t.send(bob, roomId, { key: "v" }, "org.example.custom");
    const { filter_id } = await t.ok("POST", `/user/${encodeURIComponent(alice.userId)}/filter`, alice, { room: { timeline: { not_types: ["org.example.*"] } } });
    expect(typeof filter_id).toBe("string");
    const r = joined(await sync(alice, { filter: filter_id }), roomId);
    expect(r.timeline.events.map((e: Sync) => e.type)).not.toContain("org.example.custom");
    const r2 = joined(await sync(alice, { filter: JSON.stringify({ room: { timeline: { types: ["org.example.custom"] } } }) }), roomId);
    expect(r2.timeline.events.map((e: Sync) => e.type)).toEqual(["org.example.custom"]);
    const other = await sync(alice, { filter: JSON.stringify({ room: { not_rooms: [roomId] } }) });
    expect(other.rooms.join[roomId]).toBeUndefined();
    const fields = joined(await sync(alice, { filter: JSON.stringify({ event_fields: ["type", "content.body"], room: { timeline: { limit: 1 } } }) }), roomId);
    expect(fields.timeline.events[0]).toEqual({ type: "org.example.custom" });
  });

  it("lazy-loads members: only the timeline's senders", async () => {
    const roomId = await sharedRoom();
    const carol = await t.user("carol");
    await t.invite(alice, roomId, carol.userId);
    await t.join(carol, roomId);
    for (let i = 0; i < 3; i++) await t.send(bob, roomId, `b${i}`);
    const filter = JSON.stringify({ room: { timeline: { limit: 2 }, state: { lazy_load_members: true } } });
    const r = joined(await sync(alice, { filter }), roomId);
    const members = r.state.events.filter((e: Sync) => e.type === "m.room.member").map((e: Sync) => e.state_key).sort();
    expect(members).toEqual([alice.userId, bob.userId].sort());
    expect(r.state.events.some((e: Sync) => e.type === "m.room.create")).toBe(true);
    // The same with state_after: Carol's membership is not needed for this timeline.
    const after = joined(await sync(alice, { filter, use_state_after: "true" }), roomId);
    const afterMembers = after.state_after.events.filter((e: Sync) => e.type === "m.room.member").map((e: Sync) => e.state_key).sort();
    expect(afterMembers).toEqual([alice.userId, bob.userId].sort());
  });
});

describe("unread counts across a restart", () => {
  interface StoredCounts { sig: string; upTo: number; main: { notification_count: number; highlight_count: number } }
  const storedCounts = (server: TestServer, userId: string, roomId: string): Promise<StoredCounts | undefined> =>
    server.hs.services.store.read((tx) => tx.get<StoredCounts>("unread_counts", key(userId, roomId)));

  it("are stored by /sync and extended, not recounted, by a restarted server", async () => {
    const roomId = await sharedRoom();
    for (let i = 0; i < 3; i++) await t.send(bob, roomId, `m${i}`);
    expect(joined(await sync(alice), roomId).unread_notifications.notification_count).toBe(3);
    // Stored after the response (bounded wait: the write follows the read transaction).
    let stored: StoredCounts | undefined;
    for (let i = 0; i < 100 && stored?.main.notification_count !== 3; i++) {
      await new Promise((r) => setTimeout(r, 10));
      stored = await storedCounts(t, alice.userId, roomId);
    }
    expect(stored?.main).toEqual({ notification_count: 3, highlight_count: 0 });

    // A second instance on the same data knows nothing in memory. A count only the stored row
    // holds shows that it starts from the row and adds what came after, instead of rescanning.
    const store = t.hs.services.store;
    await store.write(async (tx) => tx.put("unread_counts", key(alice.userId, roomId), { ...stored!, main: { notification_count: 40, highlight_count: 0 } }));
    const again = await Server.start({ ...store, close: async () => undefined });
    try {
      const s1 = await again.ok("GET", "/sync?set_presence=offline", alice);
      expect(s1.rooms.join[roomId].unread_notifications.notification_count).toBe(40);
      // (Its own transaction ID: the second harness counts transaction IDs from 1 again.)
      await again.ok("PUT", room(roomId, "/send/m.room.message/after-restart"), bob, { msgtype: "m.text", body: "after the restart" });
      const s2 = await again.ok("GET", `/sync?set_presence=offline&since=${encodeURIComponent(s1.next_batch)}`, alice);
      expect(s2.rooms.join[roomId].unread_notifications.notification_count).toBe(41);
      // What the restarted instance extended is stored at once, not after the 5 s throttle: a
      // browser stops an idle worker sooner than that, and the next start would scan the same
      // events again (up to 500 reads before its first /sync answers).
      let restored: StoredCounts | undefined;
      for (let i = 0; i < 100 && restored?.main.notification_count !== 41; i++) {
        await new Promise((r) => setTimeout(r, 10));
        restored = await storedCounts(again, alice.userId, roomId);
      }
      expect(restored?.main.notification_count).toBe(41);
      // Reading resets them, as ever (the receipt changes what the counts depend on).
      await again.ok("POST", room(roomId, "/read_markers"), alice, { "m.read": s2.rooms.join[roomId].timeline.events.at(-1).event_id });
      const s3 = await again.ok("GET", `/sync?set_presence=offline&since=${encodeURIComponent(s2.next_batch)}`, alice);
      expect(s3.rooms.join[roomId].unread_notifications.notification_count).toBe(0);
    } finally {
      await again.hs.close();
    }
  });
});

describe("use_state_after", () => {
  it("gives the state at the end of the timeline in state_after and omits state", async () => {
    const roomId = await sharedRoom();
    const s1 = await sync(alice, { use_state_after: "true" });
    const r1 = joined(s1, roomId);
    expect(r1.state).toBeUndefined();
    const keys = r1.state_after.events.map((e: Sync) => `${e.type}|${e.state_key}`);
    // Everything, including the state events that are also in the timeline.
    expect(keys).toContain(`m.room.member|${bob.userId}`);
    expect(keys).toContain("m.room.create|");
    await t.state(alice, roomId, "m.room.topic", { topic: "new" });
    await t.send(bob, roomId, "after topic");
    const r2 = joined(await sync(alice, { since: s1.next_batch, use_state_after: "true" }), roomId);
    expect(r2.state_after.events.map((e: Sync) => e.type)).toEqual(["m.room.topic"]);
    expect(bodies(r2.timeline.events)).toEqual(["after topic"]);
    // The unstable MSC4222 name answers under the unstable key.
    const r3 = joined(await sync(alice, { "org.matrix.msc4222.use_state_after": "true" }), roomId);
    expect(r3["org.matrix.msc4222.state_after"].events.length).toBeGreaterThan(3);
    expect(r3.state).toBeUndefined();
  });
});

describe("ignoring users", () => {
  it("drops ignored users' messages (not their state) and their invites", async () => {
    const roomId = await sharedRoom();
    await t.ok("PUT", `/user/${encodeURIComponent(alice.userId)}/account_data/m.ignored_user_list`, alice, { ignored_users: { [bob.userId]: {} } });
    await t.send(bob, roomId, "you cannot see me");
    await t.state(bob, roomId, "m.room.member", { membership: "join", displayname: "Bobby" }, bob.userId);
    const r = joined(await sync(alice), roomId);
    expect(bodies(r.timeline.events)).toEqual([]);
    expect(r.timeline.events.some((e: Sync) => e.type === "m.room.member" && e.content.displayname === "Bobby")).toBe(true);
    expect(r.unread_notifications.notification_count).toBe(0);
    const other = await t.createRoom(bob);
    await t.invite(bob, other, alice.userId);
    expect((await sync(alice)).rooms.invite[other]).toBeUndefined();
  });
});

describe("filters API", () => {
  it("stores and returns a filter; 404 for an unknown one; 403 for another user", async () => {
    const f = { room: { timeline: { limit: 5 } }, event_format: "client" };
    const path = `/user/${encodeURIComponent(alice.userId)}/filter`;
    const { filter_id } = await t.ok("POST", path, alice, f);
    expect(await t.ok("GET", `${path}/${filter_id}`, alice)).toEqual(f);
    const missing = await t.req("GET", `${path}/12345`, alice);
    expect(missing.status).toBe(404);
    expect(missing.body.errcode).toBe("M_NOT_FOUND");
    expect((await t.req("POST", path, bob, f)).status).toBe(403);
    expect((await t.req("GET", `${path}/${filter_id}`, bob)).status).toBe(403);
    expect((await t.req("POST", path, alice, { room: { timeline: { limit: "x" } } })).body.errcode).toBe("M_BAD_JSON");
    expect((await t.req("POST", path, alice, "{not json")).body.errcode).toBe("M_NOT_JSON");
    expect((await t.req("POST", path, undefined, f)).body.errcode).toBe("M_MISSING_TOKEN");
  });
});

describe("GET /rooms/{roomId}/initialSync", () => {
  it("gives members the state and latest messages; refuses outsiders unless world_readable", async () => {
    const roomId = await sharedRoom();
    await t.send(bob, roomId, "latest");
    const r = await t.ok("GET", room(roomId, "/initialSync"), alice);
    expect(r.room_id).toBe(roomId);
    expect(r.membership).toBe("join");
    expect(r.messages.chunk.at(-1).content.body).toBe("latest");
    expect(r.messages.end).toMatch(/^s\d+_\d+$/);
    expect(r.state.some((e: Sync) => e.type === "m.room.create")).toBe(true);
    expect(r.visibility).toBe("private");
    const carol = await t.user("carol");
    const denied = await t.req("GET", room(roomId, "/initialSync"), carol);
    expect(denied.status).toBe(403);
    expect(denied.body.errcode).toBe("M_FORBIDDEN");
    await t.state(alice, roomId, "m.room.history_visibility", { history_visibility: "world_readable" });
    await t.send(alice, roomId, "public now");
    const peek = await t.ok("GET", room(roomId, "/initialSync"), carol);
    expect(peek.membership).toBeUndefined();
    // History visibility is judged at each event: what was sent while "shared" stays hidden.
    expect(peek.messages.chunk.map((e: Sync) => e.content.body).filter(Boolean)).toEqual(["public now"]);
  });

  it("shows a former member the room up to their leave", async () => {
    const roomId = await sharedRoom();
    await t.ok("POST", room(roomId, "/leave"), bob, {});
    await t.send(alice, roomId, "after bob left");
    const r = await t.ok("GET", room(roomId, "/initialSync"), bob);
    expect(r.membership).toBe("leave");
    expect(r.messages.chunk.map((e: Sync) => e.content.body)).not.toContain("after bob left");
    expect(r.messages.chunk.at(-1)).toMatchObject({ type: "m.room.member", state_key: bob.userId });
  });
});

describe("deprecated GET /initialSync and GET /events", () => {
  it("/initialSync lists joined and invited rooms; archived adds left ones", async () => {
    const roomId = await sharedRoom();
    const invitedTo = await t.createRoom(alice);
    await t.invite(alice, invitedTo, bob.userId);
    const left = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, left);
    await t.ok("POST", room(left, "/leave"), bob, {});
    await t.send(alice, roomId, "hi");
    const r = await t.ok("GET", "/initialSync?limit=5", bob);
    expect(r.end).toMatch(/^s\d+_\d+$/);
    const byId = Object.fromEntries(r.rooms.map((x: Sync) => [x.room_id, x]));
    expect(byId[roomId].membership).toBe("join");
    expect(byId[roomId].messages.chunk.at(-1).content.body).toBe("hi");
    expect(byId[roomId].messages.chunk.length).toBeLessThanOrEqual(5);
    expect(byId[invitedTo]).toMatchObject({ membership: "invite", invite: { type: "m.room.member", state_key: bob.userId } });
    expect(byId[left]).toBeUndefined();
    const archived = await t.ok("GET", "/initialSync?archived=true", bob);
    expect(archived.rooms.map((x: Sync) => x.room_id)).toContain(left);
    expect((await t.req("GET", "/initialSync")).status).toBe(401);
  });

  it("/events streams new events after `from`, long-polling; room_id peeks only into world_readable rooms", async () => {
    const roomId = await sharedRoom();
    const { end } = await t.ok("GET", "/initialSync", bob);
    const pending = t.ok("GET", `/events?from=${end}&timeout=30000`, bob);
    await new Promise((r) => setTimeout(r, 20));
    await t.send(alice, roomId, "streamed");
    const r = await pending;
    expect(r.start).toBe(end);
    expect(r.chunk.map((e: Sync) => e.content.body)).toEqual(["streamed"]);
    expect(r.chunk[0].room_id).toBe(roomId);
    const again = await t.ok("GET", `/events?from=${r.end}&timeout=0`, bob);
    expect(again.chunk).toEqual([]);
    const carol = await t.user("carol");
    expect((await t.req("GET", `/events?room_id=${encodeURIComponent(roomId)}&timeout=0`, carol)).status).toBe(403);
    await t.state(alice, roomId, "m.room.history_visibility", { history_visibility: "world_readable" });
    const before = await t.ok("GET", `/events?room_id=${encodeURIComponent(roomId)}&timeout=0`, carol);
    await t.send(alice, roomId, "for everyone");
    const peek = await t.ok("GET", `/events?room_id=${encodeURIComponent(roomId)}&timeout=0&from=${before.end}`, carol);
    expect(peek.chunk.map((e: Sync) => e.content.body)).toEqual(["for everyone"]);
    expect((await t.req("GET", "/events?from=bad", bob)).status).toBe(400);
  });
});
