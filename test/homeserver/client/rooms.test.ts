import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { TestServer, room } from "../roomserver/harness.ts";
import type { TestUser } from "../roomserver/harness.ts";

let t: TestServer;
let alice: TestUser;
let bob: TestUser;
beforeEach(async () => {
  t = await TestServer.start();
  alice = await t.user("alice", { displayname: "Alice" });
  bob = await t.user("bob");
});
afterEach(async () => t.close());

describe("POST /createRoom", () => {
  it("creates a v12 room with the preset's state in the spec's order", async () => {
    const roomId = await t.createRoom(alice, { name: "Hello", topic: "T", preset: "public_chat" });
    expect(roomId).toMatch(/^![A-Za-z0-9_-]{43}$/);
    const state = (await t.req("GET", room(roomId, "/state"), alice)).body as unknown as Record<string, any>[];
    const byType = Object.fromEntries(state.map((e) => [`${e.type}|${e.state_key}`, e]));
    expect(byType["m.room.create|"].content.room_version).toBe("12");
    expect(byType["m.room.create|"].content.creator).toBeUndefined();
    expect(byType[`m.room.member|${alice.userId}`].content).toMatchObject({ membership: "join", displayname: "Alice" });
    expect(byType["m.room.join_rules|"].content.join_rule).toBe("public");
    expect(byType["m.room.history_visibility|"].content.history_visibility).toBe("shared");
    expect(byType["m.room.guest_access|"].content.guest_access).toBe("forbidden");
    expect(byType["m.room.name|"].content.name).toBe("Hello");
    expect(byType["m.room.topic|"].content.topic).toBe("T");
    const pl = byType["m.room.power_levels|"].content;
    expect(pl.users[alice.userId]).toBeUndefined(); // v12 creators are not listed
    expect(pl.events["m.room.tombstone"]).toBe(150);
  });

  it("puts the creator at 100 in earlier versions and sets creator in the create content", async () => {
    const roomId = await t.createRoom(alice, { room_version: "10" });
    expect(roomId).toMatch(/^!.+:hs\.test$/);
    const pl = await t.ok("GET", room(roomId, "/state/m.room.power_levels/"), alice);
    expect(pl.users[alice.userId]).toBe(100);
    const create = await t.ok("GET", room(roomId, "/state/m.room.create"), alice);
    expect(create).toMatchObject({ creator: alice.userId, room_version: "10" });
  });

  it.each(["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"])("creates and sends in room version %s", async (v) => {
    const roomId = await t.createRoom(alice, { room_version: v, invite: [bob.userId], name: "n" });
    await t.join(bob, roomId);
    const id = await t.send(bob, roomId, "hi");
    const ev = await t.ok("GET", room(roomId, `/event/${encodeURIComponent(id)}`), alice);
    expect(ev.content.body).toBe("hi");
  });

  it("rejects an unknown room version with M_UNSUPPORTED_ROOM_VERSION", async () => {
    const r = await t.req("POST", "/createRoom", alice, { room_version: "999" });
    expect(r.status).toBe(400);
    expect(r.body.errcode).toBe("M_UNSUPPORTED_ROOM_VERSION");
  });

  it("creates the alias and refuses a taken one with M_ROOM_IN_USE", async () => {
    const roomId = await t.createRoom(alice, { room_alias_name: "home" });
    const canon = await t.ok("GET", room(roomId, "/state/m.room.canonical_alias"), alice);
    expect(canon.alias).toBe("#home:hs.test");
    const r = await t.req("POST", "/createRoom", bob, { room_alias_name: "home" });
    expect(r.status).toBe(400);
    expect(r.body.errcode).toBe("M_ROOM_IN_USE");
  });

  it("applies initial_state over the preset and power_level_content_override", async () => {
    const roomId = await t.createRoom(alice, {
      preset: "private_chat",
      initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "joined" } }],
      power_level_content_override: { events_default: 10 },
    });
    expect((await t.ok("GET", room(roomId, "/state/m.room.history_visibility"), alice)).history_visibility).toBe("joined");
    expect((await t.ok("GET", room(roomId, "/state/m.room.power_levels"), alice)).events_default).toBe(10);
  });

  it("invites with is_direct", async () => {
    const roomId = await t.createRoom(alice, { invite: [bob.userId], is_direct: true, preset: "trusted_private_chat" });
    const m = await t.ok("GET", room(roomId, `/state/m.room.member/${bob.userId}`), alice);
    expect(m).toMatchObject({ membership: "invite", is_direct: true });
    const create = await t.ok("GET", room(roomId, "/state/m.room.create"), alice);
    expect(create.additional_creators).toEqual([bob.userId]);
  });

  it("puts a local invitee's profile into the createRoom invite, as /invite does", async () => {
    await t.ok("PUT", `/profile/${encodeURIComponent(bob.userId)}/displayname`, bob, { displayname: "Bobby" });
    const roomId = await t.createRoom(alice, { invite: [bob.userId] });
    const m = await t.ok("GET", room(roomId, `/state/m.room.member/${bob.userId}`), alice);
    expect(m).toMatchObject({ membership: "invite", displayname: "Bobby" });
  });

  it("gives two identical requests in the same millisecond two distinct v12 rooms", async () => {
    const frozen = await TestServer.start(undefined, { frozenClock: true });
    try {
      const carol = await frozen.user("carol");
      const first = await frozen.createRoom(carol, { name: "same" });
      const second = await frozen.createRoom(carol, { name: "same" });
      expect(second).not.toBe(first);
      for (const id of [first, second]) {
        const state = (await frozen.req("GET", room(id, "/state"), carol)).body as unknown as unknown[];
        expect(state.filter((e) => (e as { type: string }).type === "m.room.create")).toHaveLength(1);
      }
      const joined = (await frozen.req("GET", "/joined_rooms", carol)).body as { joined_rooms: string[] };
      expect(joined.joined_rooms.sort()).toEqual([first, second].sort());
    } finally {
      await frozen.close();
    }
  });

  it("rejects malformed bodies", async () => {
    expect((await t.req("POST", "/createRoom", alice, { invite: "x" })).body.errcode).toBe("M_BAD_JSON");
    expect((await t.req("POST", "/createRoom", alice, { preset: "nope" })).body.errcode).toBe("M_BAD_JSON");
    expect((await t.req("POST", "/createRoom", alice, "[1]")).body.errcode).toBe("M_BAD_JSON");
    expect((await t.req("POST", "/createRoom", alice, "{")).body.errcode).toBe("M_NOT_JSON");
  });
});

describe("POST /createRoom, impossible initial state", () => {
  it("answers 400 M_INVALID_ROOM_STATE when the creator could not send the requested state", async () => {
    const r = await t.req("POST", "/createRoom", alice, {
      room_version: "10", name: "x",
      power_level_content_override: { users: { [alice.userId]: 10 }, events: { "m.room.name": 50 } },
    });
    expect([r.status, r.body.errcode]).toEqual([400, "M_INVALID_ROOM_STATE"]);
    const again = await t.req("POST", "/createRoom", alice, { initial_state: [{ type: "m.room.create", content: {} }] });
    expect([again.status, again.body.errcode]).toEqual([400, "M_INVALID_ROOM_STATE"]);
  });
});

describe("POST /createRoom, v12 creators", () => {
  it("keeps every creator out of power_levels.users, even when the override lists them", async () => {
    const roomId = await t.createRoom(alice, {
      creation_content: { additional_creators: [bob.userId] },
      power_level_content_override: { users: { [alice.userId]: 100, [bob.userId]: 100, "@carol:hs.test": 50 } },
    });
    const pl = await t.ok("GET", room(roomId, "/state/m.room.power_levels"), alice);
    expect(pl.users).toEqual({ "@carol:hs.test": 50 });
    const create = await t.ok("GET", room(roomId, "/state/m.room.create"), alice);
    expect(create.additional_creators).toEqual([bob.userId]);
    const bad = await t.req("POST", "/createRoom", alice, { creation_content: { additional_creators: ["nope"] } });
    expect(bad.body.errcode).toBe("M_BAD_JSON");
  });
});
