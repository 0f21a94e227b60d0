import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { room, startWithAliceAndBob } from "../roomserver/harness.ts";
import type { TestServer, TestUser } from "../roomserver/harness.ts";

let t: TestServer;
let alice: TestUser;
let bob: TestUser;
let roomId: string;
beforeEach(async () => {
  ({ t, alice, bob } = await startWithAliceAndBob());
  roomId = await t.createRoom(alice, { preset: "private_chat" });
  await t.invite(alice, roomId, bob.userId);
  await t.join(bob, roomId);
});
afterEach(async () => t.close());

type Sync = Record<string, any>;
const sync = (as: TestUser, q: Record<string, string> = {}): Promise<Sync> =>
  t.ok("GET", `/sync?${new URLSearchParams({ set_presence: "offline", ...q })}`, as);
const ephemeral = (s: Sync, type: string): Sync | undefined => s.rooms.join[roomId]?.ephemeral.events.find((e: Sync) => e.type === type);
const typingPath = (u: TestUser): string => room(roomId, `/typing/${encodeURIComponent(u.userId)}`);

describe("typing", () => {
  it("shows in sync, wakes a long-poll, and stops", async () => {
    const s1 = await sync(alice);
    const pending = sync(alice, { since: s1.next_batch, timeout: "30000" });
    await new Promise((r) => setTimeout(r, 20));
    await t.ok("PUT", typingPath(bob), bob, { typing: true, timeout: 30000 });
    const s2 = await pending;
    expect(ephemeral(s2, "m.typing")?.content.user_ids).toEqual([bob.userId]);
    await t.ok("PUT", typingPath(bob), bob, { typing: false });
    const s3 = await sync(alice, { since: s2.next_batch });
    expect(ephemeral(s3, "m.typing")?.content.user_ids).toEqual([]);
    // Nothing changed since: the room is not in the response.
    const s4 = await sync(alice, { since: s3.next_batch });
    expect(s4.rooms.join[roomId]).toBeUndefined();
  });

  it("expires after the timeout", async () => {
    const s1 = await sync(alice);
    await t.ok("PUT", typingPath(bob), bob, { typing: true, timeout: 30 });
    const s2 = await sync(alice, { since: s1.next_batch, timeout: "20000" });
    expect(ephemeral(s2, "m.typing")?.content.user_ids).toEqual([bob.userId]);
    // The expiry itself wakes the long-poll.
    const s3 = await sync(alice, { since: s2.next_batch, timeout: "20000" });
    expect(ephemeral(s3, "m.typing")?.content.user_ids).toEqual([]);
  });

  it("refuses other users, non-members and bad bodies", async () => {
    const carol = await t.user("carol");
    expect((await t.req("PUT", typingPath(bob), alice, { typing: true })).status).toBe(403);
    const r = await t.req("PUT", typingPath(carol), carol, { typing: true });
    expect(r.status).toBe(403);
    expect(r.body.errcode).toBe("M_FORBIDDEN");
    expect((await t.req("PUT", typingPath(bob), bob, { typing: "yes" })).body.errcode).toBe("M_BAD_JSON");
    expect((await t.req("PUT", typingPath(bob), bob, "nope")).body.errcode).toBe("M_NOT_JSON");
    expect((await t.req("PUT", typingPath(bob), undefined, { typing: true })).status).toBe(401);
  });
});

describe("receipts and read markers", () => {
  it("delivers m.read to everyone and m.read.private only to its owner; clears unread counts", async () => {
    const s0 = await sync(alice);
    const e1 = await t.send(bob, roomId, "one");
    const e2 = await t.send(bob, roomId, "two");
    const s1 = await sync(alice, { since: s0.next_batch });
    expect(s1.rooms.join[roomId].unread_notifications.notification_count).toBe(2);
    await t.ok("POST", room(roomId, `/receipt/m.read/${encodeURIComponent(e1)}`), alice, {});
    const s2 = await sync(alice, { since: s1.next_batch });
    expect(ephemeral(s2, "m.receipt")?.content[e1]["m.read"][alice.userId].ts).toEqual(expect.any(Number));
    expect(s2.rooms.join[roomId].unread_notifications.notification_count).toBe(1);
    const sb = await sync(bob);
    expect(ephemeral(sb, "m.receipt")?.content[e1]["m.read"][alice.userId]).toBeDefined();

    await t.ok("POST", room(roomId, `/receipt/m.read.private/${encodeURIComponent(e2)}`), alice, {});
    const s3 = await sync(alice, { since: s2.next_batch });
    expect(ephemeral(s3, "m.receipt")?.content[e2]["m.read.private"][alice.userId]).toBeDefined();
    expect(s3.rooms.join[roomId].unread_notifications.notification_count).toBe(0);
    const sb2 = await sync(bob, { since: sb.next_batch });
    expect(sb2.rooms.join[roomId]).toBeUndefined();
  });

  it("threaded receipts carry thread_id; invalid thread_ids are refused", async () => {
    const root = await t.send(bob, roomId, "root");
    await t.ok("POST", room(roomId, `/receipt/m.read/${encodeURIComponent(root)}`), alice, { thread_id: "main" });
    const s = await sync(alice);
    expect(ephemeral(s, "m.receipt")?.content[root]["m.read"][alice.userId].thread_id).toBe("main");
    for (const thread_id of ["", 5]) {
      expect((await t.req("POST", room(roomId, `/receipt/m.read/${encodeURIComponent(root)}`), alice, { thread_id })).status).toBe(400);
    }
    expect((await t.req("POST", room(roomId, `/receipt/m.fully_read/${encodeURIComponent(root)}`), alice, { thread_id: "main" })).status).toBe(400);
    expect((await t.req("POST", room(roomId, `/receipt/m.bogus/${encodeURIComponent(root)}`), alice, {})).status).toBe(400);
    // A thread receipt must name an event of that thread (or its root).
    const reply = await t.send(bob, roomId, { msgtype: "m.text", body: "re", "m.relates_to": { rel_type: "m.thread", event_id: root } });
    await t.ok("POST", room(roomId, `/receipt/m.read/${encodeURIComponent(reply)}`), alice, { thread_id: root });
    await t.ok("POST", room(roomId, `/receipt/m.read/${encodeURIComponent(root)}`), alice, { thread_id: root });
    const wrong = await t.req("POST", room(roomId, `/receipt/m.read/${encodeURIComponent(reply)}`), alice, { thread_id: "main" });
    expect(wrong.status).toBe(400);
    const other = await t.send(bob, roomId, "unrelated");
    expect((await t.req("POST", room(roomId, `/receipt/m.read/${encodeURIComponent(other)}`), alice, { thread_id: root })).status).toBe(400);
  });

  it("counts threads separately when the filter asks", async () => {
    const root = await t.send(alice, roomId, "root");
    await t.send(bob, roomId, { msgtype: "m.text", body: "in thread", "m.relates_to": { rel_type: "m.thread", event_id: root } });
    await t.send(bob, roomId, "main");
    const filter = JSON.stringify({ room: { timeline: { unread_thread_notifications: true } } });
    const r = (await sync(alice, { filter })).rooms.join[roomId];
    expect(r.unread_notifications.notification_count).toBe(1);
    expect(r.unread_thread_notifications[root].notification_count).toBe(1);
  });

  it("keeps unread counts right across incremental syncs and redactions", async () => {
    const s0 = await sync(alice);
    const e1 = await t.send(bob, roomId, "one");
    await t.send(bob, roomId, "two");
    const s1 = await sync(alice, { since: s0.next_batch });
    expect(s1.rooms.join[roomId].unread_notifications.notification_count).toBe(2);
    await t.send(bob, roomId, "three");
    const s2 = await sync(alice, { since: s1.next_batch });
    expect(s2.rooms.join[roomId].unread_notifications.notification_count).toBe(3);
    await t.ok("PUT", room(roomId, `/redact/${encodeURIComponent(e1)}/r1`), bob, {});
    const s3 = await sync(alice, { since: s2.next_batch });
    expect(s3.rooms.join[roomId].unread_notifications.notification_count).toBe(2);
    // A fresh (initial) sync agrees with the incremental one.
    expect((await sync(alice)).rooms.join[roomId].unread_notifications.notification_count).toBe(2);
  });

  it("highlights mentions", async () => {
    await t.send(bob, roomId, { msgtype: "m.text", body: "hey Alice", "m.mentions": { user_ids: [alice.userId] } });
    const r = (await sync(alice)).rooms.join[roomId];
    expect(r.unread_notifications).toEqual({ notification_count: 1, highlight_count: 1 });
  });

  it("read markers set m.fully_read account data and receipts together", async () => {
    const e1 = await t.send(bob, roomId, "one");
    await t.ok("POST", room(roomId, "/read_markers"), alice, { "m.fully_read": e1, "m.read": e1 });
    const r = (await sync(alice)).rooms.join[roomId];
    expect(r.account_data.events).toContainEqual({ type: "m.fully_read", content: { event_id: e1 } });
    expect(ephemeral({ rooms: { join: { [roomId]: r } } }, "m.receipt")?.content[e1]["m.read"][alice.userId]).toBeDefined();
    const ad = await t.ok("GET", `/user/${encodeURIComponent(alice.userId)}/rooms/${encodeURIComponent(roomId)}/account_data/m.fully_read`, alice);
    expect(ad).toEqual({ event_id: e1 });
  });

  it("refuses unknown events, non-members and bad bodies", async () => {
    const e1 = await t.send(bob, roomId, "one");
    const unknown = await t.req("POST", room(roomId, `/receipt/m.read/${encodeURIComponent("$nope")}`), alice, {});
    expect(unknown.status).toBe(404);
    const carol = await t.user("carol");
    expect((await t.req("POST", room(roomId, `/receipt/m.read/${encodeURIComponent(e1)}`), carol, {})).status).toBe(403);
    expect((await t.req("POST", room(roomId, "/read_markers"), alice, { "m.read": 5 })).body.errcode).toBe("M_BAD_JSON");
    expect((await t.req("POST", room(roomId, "/read_markers"), "bad-token", {})).body.errcode).toBe("M_UNKNOWN_TOKEN");
  });
});
