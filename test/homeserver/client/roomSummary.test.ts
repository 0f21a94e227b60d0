/** `GET /_matrix/client/v1/room_summary/{roomIdOrAlias}` (room_summary.yaml). */
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { TestServer, SERVER } from "../roomserver/harness.ts";
import type { TestUser } from "../roomserver/harness.ts";

let t: TestServer;
let alice: TestUser;
let bob: TestUser;
beforeEach(async () => {
  t = await TestServer.start();
  alice = await t.user("alice");
  bob = await t.user("bob");
});
afterEach(async () => t.close());

const summary = (roomIdOrAlias: string): string => `/_matrix/client/v1/room_summary/${encodeURIComponent(roomIdOrAlias)}`;

describe("room summary", () => {
  it("summarises a public room, by ID and by alias, with the caller's membership", async () => {
    const roomId = await t.createRoom(alice, {
      preset: "public_chat", name: "Cheese", topic: "Tasty", room_alias_name: "cheese",
      initial_state: [
        { type: "m.room.avatar", state_key: "", content: { url: "mxc://hs.test/brie" } },
        { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
        { type: "m.room.guest_access", state_key: "", content: { guest_access: "can_join" } },
      ],
    });
    const expected = {
      room_id: roomId, name: "Cheese", topic: "Tasty", avatar_url: "mxc://hs.test/brie",
      canonical_alias: `#cheese:${SERVER}`, num_joined_members: 1, join_rule: "public",
      world_readable: false, guest_can_join: true, encryption: "m.megolm.v1.aes-sha2", room_version: "12",
    };
    expect(await t.ok("GET", summary(roomId), alice)).toEqual({ ...expected, membership: "join" });
    expect(await t.ok("GET", summary(`#cheese:${SERVER}`), bob)).toEqual({ ...expected, membership: "leave" });
    // unauthenticated: allowed for a public room, and without `membership`
    expect(await t.ok("GET", summary(roomId))).toEqual(expected);
    await t.join(bob, roomId);
    const after = await t.ok("GET", summary(roomId), bob);
    expect(after.membership).toBe("join");
    expect(after.num_joined_members).toBe(2);
  });

  it("gives room_type for spaces and allowed_room_ids for restricted rooms", async () => {
    const space = await t.createRoom(alice, { preset: "public_chat", creation_content: { type: "m.space" } });
    expect((await t.ok("GET", summary(space), alice)).room_type).toBe("m.space");
    const restricted = await t.createRoom(alice, {
      preset: "private_chat",
      initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: space }] } }],
    });
    // bob is not in the space: not visible; once he joins the space it is (the restricted rule)
    expect((await t.req("GET", summary(restricted), bob)).status).toBe(404);
    await t.join(bob, space);
    const s = await t.ok("GET", summary(restricted), bob);
    expect(s).toMatchObject({ room_id: restricted, join_rule: "restricted", allowed_room_ids: [space], membership: "leave" });
    // unauthenticated callers cannot see a restricted room
    expect((await t.req("GET", summary(restricted))).status).toBe(404);
  });

  it("shows world-readable and knockable rooms to anyone, private ones to members and invitees only", async () => {
    const wr = await t.createRoom(alice, { preset: "private_chat", initial_state: [{ type: "m.room.history_visibility", state_key: "", content: { history_visibility: "world_readable" } }] });
    expect((await t.ok("GET", summary(wr))).world_readable).toBe(true);
    expect((await t.ok("GET", summary(wr), bob)).membership).toBe("leave");

    const knock = await t.createRoom(alice, { preset: "private_chat", initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } }] });
    expect((await t.ok("GET", summary(knock), bob)).join_rule).toBe("knock");
    expect((await t.ok("GET", summary(knock))).join_rule).toBe("knock");

    const priv = await t.createRoom(alice, { preset: "private_chat", name: "Secret" });
    for (const as of [bob, undefined]) {
      const r = await t.req("GET", summary(priv), as);
      expect(r.status).toBe(404);
      expect(r.body.errcode).toBe("M_NOT_FOUND");
    }
    expect((await t.ok("GET", summary(priv), alice)).name).toBe("Secret");
    await t.invite(alice, priv, bob.userId);
    expect(await t.ok("GET", summary(priv), bob)).toMatchObject({ name: "Secret", membership: "invite", join_rule: "invite" });
    await t.ok("POST", `/rooms/${encodeURIComponent(priv)}/leave`, bob, {}); // rejects the invite
    expect((await t.req("GET", summary(priv), bob)).status).toBe(404);
  });

  describe("errors", () => {
    it("404 M_NOT_FOUND for an unknown room ID or alias", async () => {
      for (const id of [`!nope:${SERVER}`, "!nope", `#nope:${SERVER}`, "#nope:elsewhere.example"]) {
        const r = await t.req("GET", summary(id), alice);
        expect({ id, status: r.status, errcode: r.body.errcode }).toEqual({ id, status: 404, errcode: "M_NOT_FOUND" });
      }
    });

    it("400 M_INVALID_PARAM for something that is neither a room ID nor an alias", async () => {
      const r = await t.req("GET", summary("cheese"), alice);
      expect(r.status).toBe(400);
      expect(r.body.errcode).toBe("M_INVALID_PARAM");
    });

    it("401 M_UNKNOWN_TOKEN for a bad token, even on a public room", async () => {
      const roomId = await t.createRoom(alice, { preset: "public_chat" });
      const r = await t.req("GET", summary(roomId), "not-a-token");
      expect(r.status).toBe(401);
      expect(r.body.errcode).toBe("M_UNKNOWN_TOKEN");
    });
  });
});
