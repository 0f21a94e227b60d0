/** The room server's stateful layer, called directly: table contents per CONTRACTS.md, ordering, notification. */
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { key, pos, prefix } from "../../../src/storage/store.ts";
import { createRoom, sendEvent, currentState, stateAfter, membershipOf, canSeeEvent } from "../../../src/homeserver/roomserver/index.ts";
import { stateKeyOf } from "../../../src/homeserver/events/types.ts";
import type { StoredEvent } from "../../../src/homeserver/events/types.ts";
import { TestServer } from "./harness.ts";
import type { TestUser } from "./harness.ts";

let t: TestServer;
let alice: TestUser;
let bob: TestUser;
beforeEach(async () => {
  t = await TestServer.start();
  alice = await t.user("alice");
  bob = await t.user("bob");
});
afterEach(async () => t.close());

describe("sendEvent", () => {
  it("writes events, timeline, stream, room_state, state groups, extremities, memberships and relations", async () => {
    const hs = t.hs.services;
    const { roomId } = await createRoom(hs, alice.userId, { preset: "public_chat" });
    const join = await sendEvent(hs, { roomId, sender: bob.userId, type: "m.room.member", stateKey: bob.userId, content: { membership: "join" } });
    const msg = await sendEvent(hs, { roomId, sender: bob.userId, type: "m.room.message", content: { body: "hi" }, txn: { deviceId: bob.deviceId, txnId: "1" } });
    const rel = await sendEvent(hs, { roomId, sender: alice.userId, type: "m.reaction", content: { "m.relates_to": { rel_type: "m.annotation", event_id: msg.eventId, key: "👍" } } });
    await hs.store.read(async (tx) => {
      const e = await tx.get<StoredEvent>("events", msg.eventId);
      expect(e).toMatchObject({ eventId: msg.eventId, roomId, streamPos: msg.streamPos, txn: { deviceId: bob.deviceId, txnId: "1" } });
      expect(await tx.get("timeline", key(roomId, pos(msg.streamPos)))).toBe(msg.eventId);
      expect(await tx.get("stream", pos(msg.streamPos))).toEqual({ roomId, eventId: msg.eventId });
      expect(await tx.get("room_state", key(roomId, "m.room.member", bob.userId))).toBe(join.eventId);
      expect(await tx.get("memberships", key(bob.userId, roomId))).toEqual({ membership: "join", eventId: join.eventId, streamPos: join.streamPos });
      expect(await tx.get("relations", key(msg.eventId, "m.annotation", rel.eventId))).toEqual({ type: "m.reaction", sender: alice.userId, streamPos: rel.streamPos, key: "👍" });
      const ext = await tx.range("extremities", { prefix: prefix(roomId) });
      expect(ext.map((r) => r.key)).toEqual([key(roomId, rel.eventId)]);
      const after = await stateAfter(tx, msg.eventId);
      expect(after.get(stateKeyOf("m.room.member", bob.userId))).toBe(join.eventId);
      const cur = await currentState(tx, roomId);
      expect(cur.get(stateKeyOf("m.room.member", bob.userId))?.eventId).toBe(join.eventId);
      expect(await membershipOf(tx, roomId, bob.userId)).toBe("join");
      expect(await membershipOf(tx, roomId, "@nobody:hs.test")).toBeUndefined();
      expect(await tx.get("settings", "stream_pos")).toBe(rel.streamPos);
      expect(await canSeeEvent(tx, bob.userId, (await tx.get<StoredEvent>("events", msg.eventId))!)).toBe(true);
    });
  });

  it("serializes concurrent sends into one chain with increasing positions and depths", async () => {
    const hs = t.hs.services;
    const { roomId } = await createRoom(hs, alice.userId, {});
    const results = await Promise.all(Array.from({ length: 25 }, (_, i) => sendEvent(hs, { roomId, sender: alice.userId, type: "m.room.message", content: { body: String(i) } })));
    const events = await hs.store.read(async (tx) => Promise.all(results.map(async (r) => (await tx.get<StoredEvent>("events", r.eventId))!)));
    events.sort((a, b) => a.streamPos! - b.streamPos!);
    for (let i = 1; i < events.length; i++) {
      expect(events[i]!.pdu.prev_events).toEqual([events[i - 1]!.eventId]);
      expect(events[i]!.pdu.depth).toBe(events[i - 1]!.pdu.depth + 1);
    }
    const ext = await hs.store.read((tx) => tx.range("extremities", { prefix: prefix(roomId) }));
    expect(ext).toHaveLength(1);
  });

  it("wakes /sync waiters only after the commit", async () => {
    const hs = t.hs.services;
    const { roomId } = await createRoom(hs, alice.userId, {});
    const since = await hs.store.read(async (tx) => (await tx.get<number>("settings", "stream_pos"))!);
    let seenAtWake: unknown;
    let wokeAt = 0;
    const waiter = hs.notifier.wait(since, 10_000).then(async () => {
      wokeAt = performance.now();
      seenAtWake = await hs.store.read((tx) => tx.get("stream", pos(since + 1)));
    });
    await sendEvent(hs, { roomId, sender: alice.userId, type: "m.room.message", content: { body: "x" } });
    const sentAt = performance.now();
    await waiter;
    expect(seenAtWake).toMatchObject({ roomId });
    // Woken by the commit itself, not by the 10 s timeout.
    expect(wokeAt - sentAt).toBeLessThan(100);
  });

  it("refuses with 403 and the auth rule's reason; 404 for unknown rooms; stores nothing on failure", async () => {
    const hs = t.hs.services;
    const { roomId } = await createRoom(hs, alice.userId, {});
    const before = await hs.store.read((tx) => tx.count("events"));
    await expect(sendEvent(hs, { roomId, sender: bob.userId, type: "m.room.message", content: {} })).rejects.toMatchObject({ status: 403, errcode: "M_FORBIDDEN" });
    await expect(sendEvent(hs, { roomId: "!x:hs.test", sender: bob.userId, type: "m.room.message", content: {} })).rejects.toMatchObject({ status: 404, errcode: "M_NOT_FOUND" });
    expect(await hs.store.read((tx) => tx.count("events"))).toBe(before);
  });
});

describe("on the sql.js store", () => {
  it("creates, sends, paginates and aggregates the same way", async () => {
    const { createSqliteStore } = await import("../../../src/storage/sqlite.ts");
    const s = await TestServer.start(await createSqliteStore());
    try {
      const a = await s.user("alice");
      const b = await s.user("bob");
      const roomId = await s.createRoom(a, { preset: "public_chat", room_alias_name: "sql" });
      await s.join(b, "#sql:hs.test");
      const root = await s.send(a, roomId, "root");
      await s.send(b, roomId, { body: "reply", "m.relates_to": { rel_type: "m.thread", event_id: root } });
      const msgs = await s.ok("GET", `/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=2`, b);
      expect(msgs.chunk.map((e: any) => e.content.body)).toEqual(["reply", "root"]);
      expect(msgs.chunk[1].unsigned["m.relations"]["m.thread"].count).toBe(1);
      const older = await s.ok("GET", `/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=1&from=${msgs.end}`, b);
      expect(older.chunk[0]).toMatchObject({ type: "m.room.member", state_key: b.userId });
    } finally {
      await s.close();
    }
  });
});
