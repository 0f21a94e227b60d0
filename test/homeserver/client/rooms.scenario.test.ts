/** End-to-end scenarios built with the room builder, one per endpoint family, read back through the API. */
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { TestServer, bodies, room, scenario } from "../roomserver/harness.ts";
import type { TestUser } from "../roomserver/harness.ts";

let t: TestServer;
let alice: TestUser;
let bob: TestUser;
let carol: TestUser;
beforeEach(async () => {
  t = await TestServer.start();
  alice = await t.user("alice", { displayname: "Alice" });
  bob = await t.user("bob", { displayname: "Bob" });
  carol = await t.user("carol");
});
afterEach(async () => t.close());

describe("scenarios", () => {
  it("a private conversation: invite, join, talk, edit, thread, redact, leave, forget", async () => {
    const { roomId, ids } = await scenario(t, alice, { name: "Chat" })
      .invite(alice, bob).join(bob)
      .send(alice, "hello bob", "hello")
      .relate(alice, "m.replace", "hello", "hello Bob!", "edit")
      .relate(bob, "m.thread", "hello", "in a thread", "reply")
      .send(bob, "oops", "oops").redact(bob, "oops", "redaction")
      .leave(bob);
    const timeline = (await t.ok("GET", room(roomId, "/messages?dir=f&limit=100"), alice)).chunk as any[];
    expect(timeline.map((e) => e.type)).toEqual([
      "m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules", "m.room.history_visibility",
      "m.room.guest_access", "m.room.name", "m.room.member", "m.room.member",
      "m.room.message", "m.room.message", "m.room.message", "m.room.message", "m.room.redaction", "m.room.member",
    ]);
    const hello = timeline.find((e) => e.event_id === ids.hello);
    expect(hello.unsigned["m.relations"]["m.replace"].event_id).toBe(ids.edit);
    expect(hello.unsigned["m.relations"]["m.thread"].latest_event.event_id).toBe(ids.reply);
    const oops = timeline.find((e) => e.event_id === ids.oops);
    expect(oops.content).toEqual({});
    expect(oops.unsigned.redacted_because.event_id).toBe(ids.redaction);
    // bob left: he still reads up to his leave, and may now forget the room
    expect(bodies((await t.ok("GET", room(roomId, "/messages?dir=b"), bob)).chunk)).toContain("hello bob");
    await t.ok("POST", room(roomId, "/forget"), bob, {});
    expect((await t.ok("GET", "/joined_rooms", bob)).joined_rooms).toEqual([]);
  });

  it("a public room: alias, directory, join by alias, search, members", async () => {
    const { roomId } = await scenario(t, alice, { preset: "public_chat", room_alias_name: "town", visibility: "public", name: "Town square" })
      .state(alice, "m.room.topic", { topic: "everyone welcome" })
      .send(alice, "welcome to town");
    expect((await t.ok("GET", "/publicRooms")).chunk.map((r: any) => r.canonical_alias)).toEqual(["#town:hs.test"]);
    await t.join(bob, "#town:hs.test");
    await t.join(carol, "#town:hs.test");
    await t.send(bob, roomId, "hi town");
    const found = (await t.ok("POST", "/search", carol, { search_categories: { room_events: { search_term: "town", keys: ["content.body"] } } })).search_categories.room_events;
    expect(found.results.map((r: any) => r.result.content.body)).toEqual(["hi town", "welcome to town"]);
    const jm = await t.ok("GET", room(roomId, "/joined_members"), carol);
    expect(Object.keys(jm.joined)).toHaveLength(3);
    expect((await t.ok("POST", "/user_directory/search", carol, { search_term: "ali" })).results[0].user_id).toBe(alice.userId);
  });

  it("a moderated room: power levels, kick, ban, upgrade", async () => {
    const { roomId } = await scenario(t, alice, { preset: "public_chat", room_version: "11" })
      .join(bob).join(carol)
      .state(alice, "m.room.power_levels", {
        users: { [alice.userId]: 100, [bob.userId]: 50 }, users_default: 0, events: {}, events_default: 0, state_default: 50,
        ban: 50, kick: 50, redact: 50, invite: 0,
      })
      .send(carol, "spam", "spam");
    await t.ok("POST", room(roomId, "/kick"), bob, { user_id: carol.userId, reason: "spam" });
    await t.ok("POST", room(roomId, "/ban"), bob, { user_id: carol.userId });
    expect((await t.req("POST", room(roomId, "/join"), carol, {})).status).toBe(403);
    const { replacement_room } = await t.ok("POST", room(roomId, "/upgrade"), alice, { new_version: "12" });
    expect((await t.ok("GET", room(roomId, "/state/m.room.tombstone"), bob)).replacement_room).toBe(replacement_room);
    await t.join(bob, replacement_room);
    const pl = await t.ok("GET", room(replacement_room, "/state/m.room.power_levels"), bob);
    expect(pl.users).toEqual({ [bob.userId]: 50 });
    expect((await t.ok("GET", room(replacement_room, `/state/m.room.member/${carol.userId}`), bob)).membership).toBe("ban");
  });
});
