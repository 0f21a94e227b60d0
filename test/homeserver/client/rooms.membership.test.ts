import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { TestServer, room } from "../roomserver/harness.ts";
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

const membership = async (roomId: string, userId: string): Promise<string> =>
  (await t.ok("GET", room(roomId, `/state/m.room.member/${encodeURIComponent(userId)}`), alice)).membership as string;

describe("joining", () => {
  it("joins a public room by ID and by alias; joined_rooms and joined_members follow", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat", room_alias_name: "pub" });
    expect((await t.ok("POST", room(roomId, "/join"), bob, {})).room_id).toBe(roomId);
    expect((await t.ok("POST", `/join/${encodeURIComponent("#pub:hs.test")}`, carol, { reason: "hi" })).room_id).toBe(roomId);
    expect((await t.ok("GET", room(roomId, `/state/m.room.member/${carol.userId}`), alice)).reason).toBe("hi");
    expect((await t.ok("GET", "/joined_rooms", bob)).joined_rooms).toEqual([roomId]);
    const jm = await t.ok("GET", room(roomId, "/joined_members"), bob);
    expect(Object.keys(jm.joined).sort()).toEqual([alice.userId, bob.userId, carol.userId].sort());
    expect(jm.joined[alice.userId]).toEqual({ display_name: "Alice" });
  });

  it("joining twice adds no event", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, roomId);
    const before = (await t.ok("GET", room(roomId, "/messages?dir=b&limit=100"), bob)).chunk.length;
    await t.join(bob, roomId);
    expect((await t.ok("GET", room(roomId, "/messages?dir=b&limit=100"), bob)).chunk.length).toBe(before);
  });

  it("refuses a private room without an invite, allows it with one", async () => {
    const roomId = await t.createRoom(alice);
    const r = await t.req("POST", room(roomId, "/join"), bob, {});
    expect(r.status).toBe(403);
    expect(r.body.errcode).toBe("M_FORBIDDEN");
    await t.invite(alice, roomId, bob.userId);
    await t.join(bob, roomId);
    expect(await membership(roomId, bob.userId)).toBe("join");
  });

  it("answers 404 for unknown rooms and aliases", async () => {
    expect((await t.req("POST", "/join/!nope:elsewhere", bob, {})).body.errcode).toBe("M_NOT_FOUND");
    expect((await t.req("POST", `/join/${encodeURIComponent("#nope:hs.test")}`, bob, {})).status).toBe(404);
    expect((await t.req("POST", room("!nope:elsewhere", "/join"), bob, {})).status).toBe(404);
  });

  it("restricted rooms let members of an allowed room join", async () => {
    const space = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, space);
    const roomId = await t.createRoom(alice, {
      initial_state: [{ type: "m.room.join_rules", content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: space }] } }],
    });
    await t.join(bob, roomId);
    const m = await t.ok("GET", room(roomId, `/state/m.room.member/${bob.userId}`), alice);
    expect(m.join_authorised_via_users_server).toBe(alice.userId);
    expect((await t.req("POST", room(roomId, "/join"), carol, {})).status).toBe(403);
  });
});

describe("invite, leave, forget, kick, ban, unban, knock", () => {
  it("goes through the membership lifecycle", async () => {
    const roomId = await t.createRoom(alice);
    await t.ok("POST", room(roomId, "/invite"), alice, { user_id: bob.userId, reason: "come" });
    expect(await membership(roomId, bob.userId)).toBe("invite");
    // re-inviting a joined user is refused
    await t.join(bob, roomId);
    expect((await t.req("POST", room(roomId, "/invite"), alice, { user_id: bob.userId })).status).toBe(403);
    // forget is refused while joined
    const f = await t.req("POST", room(roomId, "/forget"), bob, {});
    expect(f.status).toBe(400);
    expect(f.body.errcode).toBe("M_UNKNOWN");
    await t.ok("POST", room(roomId, "/leave"), bob, { reason: "bye" });
    expect(await membership(roomId, bob.userId)).toBe("leave");
    await t.ok("POST", room(roomId, "/forget"), bob, {});
    // kick
    await t.invite(alice, roomId, bob.userId);
    await t.join(bob, roomId);
    await t.ok("POST", room(roomId, "/kick"), alice, { user_id: bob.userId, reason: "out" });
    const kicked = await t.ok("GET", room(roomId, `/state/m.room.member/${bob.userId}`), alice);
    expect(kicked).toMatchObject({ membership: "leave", reason: "out" });
    // ban, rejoin refused, unban
    await t.ok("POST", room(roomId, "/ban"), alice, { user_id: bob.userId, reason: "spam" });
    expect(await membership(roomId, bob.userId)).toBe("ban");
    expect((await t.req("POST", room(roomId, "/join"), bob, {})).status).toBe(403);
    expect((await t.req("POST", room(roomId, "/unban"), alice, { user_id: carol.userId })).status).toBe(403);
    await t.ok("POST", room(roomId, "/unban"), alice, { user_id: bob.userId });
    expect(await membership(roomId, bob.userId)).toBe("leave");
  });

  it("refuses kick and ban without power", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, roomId);
    await t.join(carol, roomId);
    for (const action of ["kick", "ban"]) {
      const r = await t.req("POST", room(roomId, `/${action}`), bob, { user_id: carol.userId });
      expect(r.status).toBe(403);
      expect(r.body.errcode).toBe("M_FORBIDDEN");
    }
  });

  it("knocks on a knock room and can be let in", async () => {
    const roomId = await t.createRoom(alice, { initial_state: [{ type: "m.room.join_rules", content: { join_rule: "knock" } }] });
    await t.ok("POST", `/knock/${encodeURIComponent(roomId)}`, bob, { reason: "let me in" });
    expect(await membership(roomId, bob.userId)).toBe("knock");
    await t.invite(alice, roomId, bob.userId);
    await t.join(bob, roomId);
    expect(await membership(roomId, bob.userId)).toBe("join");
    // knocking on an invite-only room is refused
    const closed = await t.createRoom(alice);
    expect((await t.req("POST", `/knock/${encodeURIComponent(closed)}`, carol, {})).status).toBe(403);
  });

  it("rejects bad user IDs and bodies", async () => {
    const roomId = await t.createRoom(alice);
    expect((await t.req("POST", room(roomId, "/invite"), alice, { user_id: "bob" })).body.errcode).toBe("M_INVALID_PARAM");
    expect((await t.req("POST", room(roomId, "/invite"), alice, {})).body.errcode).toBe("M_MISSING_PARAM");
    expect((await t.req("POST", room(roomId, "/kick"), alice, { user_id: 5 })).body.errcode).toBe("M_BAD_JSON");
    expect((await t.req("POST", room(roomId, "/ban"), alice, "nope")).body.errcode).toBe("M_NOT_JSON");
  });
});

describe("GET /members", () => {
  it("filters by membership and not_membership and reads the state at a token", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, roomId);
    const msgs = await t.ok("GET", room(roomId, "/messages?dir=b&limit=1"), alice);
    const at = msgs.start as string;
    await t.invite(alice, roomId, carol.userId);
    const all = await t.ok("GET", room(roomId, "/members"), alice);
    expect(all.chunk.map((e: any) => e.state_key).sort()).toEqual([alice.userId, bob.userId, carol.userId].sort());
    const joined = await t.ok("GET", room(roomId, "/members?membership=join"), alice);
    expect(joined.chunk.map((e: any) => e.state_key).sort()).toEqual([alice.userId, bob.userId].sort());
    const notJoined = await t.ok("GET", room(roomId, "/members?not_membership=join"), alice);
    expect(notJoined.chunk.map((e: any) => e.state_key)).toEqual([carol.userId]);
    const past = await t.ok("GET", room(roomId, `/members?at=${at}`), alice);
    expect(past.chunk.map((e: any) => e.state_key).sort()).toEqual([alice.userId, bob.userId].sort());
    expect((await t.req("GET", room(roomId, "/members?membership=weird"), alice)).body.errcode).toBe("M_INVALID_PARAM");
    expect((await t.req("GET", room(roomId, "/members"), carol)).status).toBe(403);
    expect((await t.req("GET", room(roomId, "/joined_members"), carol)).status).toBe(403);
  });

  it("a user who left sees the members as they were when they left", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, roomId);
    await t.ok("POST", room(roomId, "/leave"), bob, {});
    await t.join(carol, roomId);
    const seen = await t.ok("GET", room(roomId, "/members"), bob);
    expect(seen.chunk.map((e: any) => e.state_key).sort()).toEqual([alice.userId, bob.userId].sort());
  });
});
