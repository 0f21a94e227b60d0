/**
 * Issue 12, "Profiles and directory": `joined_members` entries carry `display_name` and
 * `avatar_url`, profile changes reach the member event of every joined room, and the user
 * directory follows the spec's visibility rules (users.yaml) as rooms change.
 */
import { describe, it, expect } from "vitest";
import { TestServer, room } from "../roomserver/harness.ts";
import type { TestUser } from "../roomserver/harness.ts";

const search = async (t: TestServer, as: TestUser, term: string): Promise<string[]> =>
  ((await t.ok("POST", "/user_directory/search", as, { search_term: term })).results as { user_id: string }[]).map((r) => r.user_id);

describe("joined_members", () => {
  it("carries display_name and avatar_url, whether set before joining or after", async () => {
    const t = await TestServer.start();
    const alice = await t.user("alice", { displayname: "Alice" });
    const bob = await t.user("bob");
    await t.ok("PUT", "/profile/@bob:hs.test/displayname", bob, { displayname: "Bob" });
    await t.ok("PUT", "/profile/@bob:hs.test/avatar_url", bob, { avatar_url: "mxc://hs.test/bob" });
    const r = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, r);
    await t.ok("PUT", "/profile/@alice:hs.test/avatar_url", alice, { avatar_url: "mxc://hs.test/alice" });
    expect((await t.ok("GET", room(r, "/joined_members"), bob)).joined).toEqual({
      "@alice:hs.test": { display_name: "Alice", avatar_url: "mxc://hs.test/alice" },
      "@bob:hs.test": { display_name: "Bob", avatar_url: "mxc://hs.test/bob" },
    });
    // A removed avatar leaves the entry without one (no null: the schema's values are strings).
    await t.ok("DELETE", "/profile/@alice:hs.test/avatar_url", alice);
    expect((await t.ok("GET", room(r, "/joined_members"), bob)).joined["@alice:hs.test"]).toEqual({ display_name: "Alice" });
  });
});

describe("profile changes", () => {
  it("update the member event in every joined room (not in rooms only invited to or left)", async () => {
    const t = await TestServer.start();
    const alice = await t.user("alice", { displayname: "Alice" });
    const bob = await t.user("bob", { displayname: "Bob" });
    const rooms: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await t.createRoom(alice, { preset: i % 2 ? "private_chat" : "public_chat" });
      if (i % 2) await t.invite(alice, r, bob.userId);
      await t.join(bob, r);
      rooms.push(r);
    }
    const invitedOnly = await t.createRoom(alice, {});
    await t.invite(alice, invitedOnly, bob.userId);
    const left = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, left);
    await t.ok("POST", room(left, "/leave"), bob, {});

    await t.ok("PUT", "/profile/@bob:hs.test/displayname", bob, { displayname: "Robert" });
    await t.ok("PUT", "/profile/@bob:hs.test/avatar_url", bob, { avatar_url: "mxc://hs.test/rob" });
    for (const r of rooms) {
      expect(await t.ok("GET", room(r, "/state/m.room.member/@bob:hs.test"), alice)).toEqual({ membership: "join", displayname: "Robert", avatar_url: "mxc://hs.test/rob" });
    }
    expect((await t.ok("GET", room(invitedOnly, "/state/m.room.member/@bob:hs.test"), alice)).membership).toBe("invite");
    expect((await t.ok("GET", room(left, "/state/m.room.member/@bob:hs.test"), alice)).membership).toBe("leave");
    await t.ok("DELETE", "/profile/@bob:hs.test/displayname", bob);
    for (const r of rooms) expect(await t.ok("GET", room(r, "/state/m.room.member/@bob:hs.test"), alice)).toEqual({ membership: "join", avatar_url: "mxc://hs.test/rob" });
  });
});

describe("user directory visibility", () => {
  it("drops a user when the only room that showed them stops being public, even while it stays published", async () => {
    const t = await TestServer.start();
    const alice = await t.user("alice", { displayname: "Alice" });
    const carol = await t.user("carol");
    const r = await t.createRoom(alice, { preset: "public_chat", visibility: "public" });
    expect(await search(t, carol, "alice")).toEqual(["@alice:hs.test"]);
    await t.state(alice, r, "m.room.join_rules", { join_rule: "invite" });
    expect((await t.ok("GET", `/directory/list/room/${encodeURIComponent(r)}`)).visibility).toBe("public");
    expect(await search(t, carol, "alice")).toEqual([]);
    await t.state(alice, r, "m.room.join_rules", { join_rule: "public" });
    expect(await search(t, carol, "alice")).toEqual(["@alice:hs.test"]);
  });

  it("shows members of world_readable rooms, and drops them when history visibility changes back", async () => {
    const t = await TestServer.start();
    const alice = await t.user("alice", { displayname: "Alice" });
    const carol = await t.user("carol");
    const r = await t.createRoom(alice, { preset: "private_chat" });
    expect(await search(t, carol, "alice")).toEqual([]);
    await t.state(alice, r, "m.room.history_visibility", { history_visibility: "world_readable" });
    expect(await search(t, carol, "alice")).toEqual(["@alice:hs.test"]);
    await t.state(alice, r, "m.room.history_visibility", { history_visibility: "shared" });
    expect(await search(t, carol, "alice")).toEqual([]);
  });

  it("users who share a room with the requester are found; a user who left is not", async () => {
    const t = await TestServer.start();
    const alice = await t.user("alice", { displayname: "Alice" });
    const bob = await t.user("bob", { displayname: "Bob" });
    const r = await t.createRoom(alice, {});
    await t.invite(alice, r, bob.userId);
    await t.join(bob, r);
    expect(await search(t, bob, "alice")).toEqual(["@alice:hs.test"]);
    await t.ok("POST", room(r, "/leave"), alice, {});
    expect(await search(t, bob, "alice")).toEqual([]);
  });
});
