import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { room, startWithAliceAndBob } from "../roomserver/harness.ts";
import type { TestServer, TestUser } from "../roomserver/harness.ts";
import { presenceContent } from "../../../src/homeserver/services/edus.ts";

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
const u = (x: TestUser): string => `/user/${encodeURIComponent(x.userId)}`;

describe("account data", () => {
  it("global: put, get, delivered by sync once", async () => {
    const s0 = await sync(alice);
    await t.ok("PUT", `${u(alice)}/account_data/org.example.settings`, alice, { theme: "dark" });
    expect(await t.ok("GET", `${u(alice)}/account_data/org.example.settings`, alice)).toEqual({ theme: "dark" });
    const s1 = await sync(alice, { since: s0.next_batch });
    expect(s1.account_data.events).toEqual([{ type: "org.example.settings", content: { theme: "dark" } }]);
    const s2 = await sync(alice, { since: s1.next_batch });
    expect(s2.account_data.events).toEqual([]);
    const filtered = await sync(alice, { filter: JSON.stringify({ account_data: { not_types: ["org.example.*"] } }) });
    expect(filtered.account_data.events.map((e: Sync) => e.type)).not.toContain("org.example.settings");
  });

  it("per room, and tags", async () => {
    const roomId = await t.createRoom(alice);
    const base = `${u(alice)}/rooms/${encodeURIComponent(roomId)}`;
    await t.ok("PUT", `${base}/account_data/org.example.r`, alice, { a: 1 });
    expect(await t.ok("GET", `${base}/account_data/org.example.r`, alice)).toEqual({ a: 1 });
    await t.ok("PUT", `${base}/tags/m.favourite`, alice, { order: 0.5 });
    await t.ok("PUT", `${base}/tags/u.work`, alice, {});
    expect(await t.ok("GET", `${base}/tags`, alice)).toEqual({ tags: { "m.favourite": { order: 0.5 }, "u.work": {} } });
    await t.ok("DELETE", `${base}/tags/u.work`, alice);
    expect(await t.ok("GET", `${base}/tags`, alice)).toEqual({ tags: { "m.favourite": { order: 0.5 } } });
    const r = (await sync(alice)).rooms.join[roomId];
    expect(r.account_data.events).toContainEqual({ type: "m.tag", content: { tags: { "m.favourite": { order: 0.5 } } } });
    expect(r.account_data.events).toContainEqual({ type: "org.example.r", content: { a: 1 } });
    expect((await t.req("PUT", `${base}/tags/x`, alice, { order: 7 })).body.errcode).toBe("M_BAD_JSON");
    // A tag named like an Object.prototype member is stored as an own key (found by the robustness fuzzer:
    // `__proto__` was answered 200 and silently dropped).
    for (const tag of ["__proto__", "constructor"]) {
      await t.ok("PUT", `${base}/tags/${tag}`, alice, { order: 0.25 });
      const tags = (await t.ok("GET", `${base}/tags`, alice)).tags as Record<string, unknown>;
      expect(Object.hasOwn(tags, tag) && JSON.stringify(tags[tag])).toBe('{"order":0.25}');
      await t.ok("DELETE", `${base}/tags/${tag}`, alice);
      expect(Object.keys((await t.ok("GET", `${base}/tags`, alice)).tags as object)).toEqual(["m.favourite"]);
    }
  });

  it("errors: other users 403, unknown 404, server-managed types 405, bad JSON 400", async () => {
    expect((await t.req("GET", `${u(alice)}/account_data/x`, bob)).status).toBe(403);
    expect((await t.req("PUT", `${u(alice)}/account_data/x`, bob, {})).body.errcode).toBe("M_FORBIDDEN");
    const missing = await t.req("GET", `${u(alice)}/account_data/x`, alice);
    expect(missing.status).toBe(404);
    expect(missing.body.errcode).toBe("M_NOT_FOUND");
    expect((await t.ok("GET", `${u(alice)}/account_data/m.push_rules`, alice)).global.override[0].rule_id).toBe(".m.rule.master");
    for (const type of ["m.fully_read", "m.push_rules"]) {
      const r = await t.req("PUT", `${u(alice)}/account_data/${type}`, alice, {});
      expect(r.status).toBe(405);
      expect(r.body.errcode).toBe("M_BAD_JSON");
    }
    expect((await t.req("PUT", `${u(alice)}/account_data/x`, alice, "[1]")).body.errcode).toBe("M_BAD_JSON");
    expect((await t.req("PUT", `${u(alice)}/account_data/x`, alice, "{")).body.errcode).toBe("M_NOT_JSON");
    expect((await t.req("PUT", `${u(alice)}/account_data/x`, undefined, {})).body.errcode).toBe("M_MISSING_TOKEN");
    expect((await t.req("GET", `${u(alice)}/rooms/${encodeURIComponent("!x:y")}/tags`, bob)).status).toBe(403);
  });
});

describe("profile", () => {
  it("reads and changes display name and avatar; the member event follows in every joined room", async () => {
    const roomId = await t.createRoom(alice, { preset: "private_chat" });
    await t.invite(alice, roomId, bob.userId);
    await t.join(bob, roomId);
    const s0 = await sync(bob);
    expect(await t.ok("GET", `/profile/${encodeURIComponent(alice.userId)}`, bob)).toEqual({ displayname: "Alice" });
    await t.ok("PUT", `/profile/${encodeURIComponent(alice.userId)}/displayname`, alice, { displayname: "Alice Liddell" });
    await t.ok("PUT", `/profile/${encodeURIComponent(alice.userId)}/avatar_url`, alice, { avatar_url: "mxc://hs.test/abc" });
    expect(await t.ok("GET", `/profile/${encodeURIComponent(alice.userId)}/displayname`, bob)).toEqual({ displayname: "Alice Liddell" });
    expect(await t.ok("GET", `/profile/${encodeURIComponent(alice.userId)}/avatar_url`, bob)).toEqual({ avatar_url: "mxc://hs.test/abc" });
    const member = await t.ok("GET", room(roomId, `/state/m.room.member/${encodeURIComponent(alice.userId)}`), bob);
    expect(member).toMatchObject({ membership: "join", displayname: "Alice Liddell", avatar_url: "mxc://hs.test/abc" });
    const s1 = await sync(bob, { since: s0.next_batch });
    const changes = s1.rooms.join[roomId].timeline.events.filter((e: Sync) => e.type === "m.room.member" && e.state_key === alice.userId);
    expect(changes.map((e: Sync) => e.content.displayname)).toEqual(["Alice Liddell", "Alice Liddell"]);
  });

  it("errors: 403 for another user, 404 for unknown users, bad JSON", async () => {
    const r = await t.req("PUT", `/profile/${encodeURIComponent(alice.userId)}/displayname`, bob, { displayname: "x" });
    expect(r.status).toBe(403);
    expect(r.body.errcode).toBe("M_FORBIDDEN");
    const nobody = await t.req("GET", `/profile/${encodeURIComponent("@nobody:hs.test")}`, alice);
    expect(nobody.status).toBe(404);
    expect(nobody.body.errcode).toBe("M_NOT_FOUND");
    expect((await t.req("GET", `/profile/${encodeURIComponent(bob.userId)}/avatar_url`, alice)).status).toBe(404);
    expect((await t.req("PUT", `/profile/${encodeURIComponent(alice.userId)}/displayname`, alice, { displayname: 5 })).body.errcode).toBe("M_BAD_JSON");
    expect((await t.req("PUT", `/profile/${encodeURIComponent(alice.userId)}/displayname`, undefined, { displayname: "x" })).status).toBe(401);
  });
});

describe("custom profile fields (v1.16)", () => {
  const field = (x: TestUser, k: string): string => `/profile/${encodeURIComponent(x.userId)}/${k}`;
  it("sets, reads, lists and deletes custom fields", async () => {
    await t.ok("PUT", field(alice, "m.tz"), alice, { "m.tz": "Europe/London" });
    await t.ok("PUT", field(alice, "org.example.job"), alice, { "org.example.job": { title: "Queen" } });
    expect(await t.ok("GET", field(alice, "m.tz"), bob)).toEqual({ "m.tz": "Europe/London" });
    expect(await t.ok("GET", `/profile/${encodeURIComponent(alice.userId)}`, bob)).toEqual({ displayname: "Alice", "m.tz": "Europe/London", "org.example.job": { title: "Queen" } });
    await t.ok("DELETE", field(alice, "org.example.job"), alice);
    expect((await t.req("GET", field(alice, "org.example.job"), bob)).status).toBe(404);
    // Deleting what is not there is fine.
    await t.ok("DELETE", field(alice, "org.example.job"), alice);
    const caps = (await t.ok("GET", "/capabilities", alice)).capabilities;
    expect(caps["m.profile_fields"]).toEqual({ enabled: true });
  });

  it("errors: invalid key, missing property, too large, other users", async () => {
    expect((await t.req("PUT", field(alice, "NotNamespaced"), alice, { NotNamespaced: 1 })).body.errcode).toBe("M_INVALID_PARAM");
    expect((await t.req("PUT", field(alice, "org.example.x"), alice, { other: 1 })).body.errcode).toBe("M_MISSING_PARAM");
    expect((await t.req("PUT", field(alice, "org.example." + "a".repeat(260)), alice, {})).body.errcode).toBe("M_KEY_TOO_LARGE");
    expect((await t.req("PUT", field(alice, "org.example.big"), alice, { "org.example.big": "x".repeat(70_000) })).body.errcode).toBe("M_PROFILE_TOO_LARGE");
    expect((await t.req("PUT", field(alice, "org.example.x"), bob, { "org.example.x": 1 })).status).toBe(403);
    expect((await t.req("DELETE", field(alice, "org.example.x"), bob)).status).toBe(403);
    expect((await t.req("PUT", field(alice, "m.tz"), alice, { "m.tz": 3 })).body.errcode).toBe("M_BAD_JSON");
  });
});

describe("presence", () => {
  it("is set, read back, and delivered to users sharing a room", async () => {
    const roomId = await t.createRoom(alice, { preset: "private_chat" });
    await t.invite(alice, roomId, bob.userId);
    await t.join(bob, roomId);
    const s0 = await sync(bob);
    await t.ok("PUT", `/presence/${encodeURIComponent(alice.userId)}/status`, alice, { presence: "unavailable", status_msg: "lunch" });
    const got = await t.ok("GET", `/presence/${encodeURIComponent(alice.userId)}/status`, bob);
    expect(got).toMatchObject({ presence: "unavailable", status_msg: "lunch", currently_active: false });
    const s1 = await sync(bob, { since: s0.next_batch });
    expect(s1.presence.events).toContainEqual(expect.objectContaining({ type: "m.presence", sender: alice.userId, content: expect.objectContaining({ presence: "unavailable" }) }));
    const carol = await t.user("carol");
    expect((await sync(carol)).presence.events.map((e: Sync) => e.sender)).not.toContain(alice.userId);
    expect((await t.req("GET", `/presence/${encodeURIComponent(alice.userId)}/status`, carol)).status).toBe(403);
  });

  it("syncing is activity: a user who set unavailable comes back online; idle users show unavailable", async () => {
    await t.ok("PUT", `/presence/${encodeURIComponent(alice.userId)}/status`, alice, { presence: "unavailable" });
    await t.ok("GET", "/sync?set_presence=online", alice);
    expect((await t.ok("GET", `/presence/${encodeURIComponent(alice.userId)}/status`, alice)).presence).toBe("online");
    const row = { presence: "online", lastActiveTs: 0, streamPos: 1 };
    expect(presenceContent(row, 60_000)).toMatchObject({ presence: "online", currently_active: true, last_active_ago: 60_000 });
    expect(presenceContent(row, 10 * 60_000)).toMatchObject({ presence: "unavailable", currently_active: false });
  });

  it("sync's set_presence marks the user online; errors per spec", async () => {
    await t.ok("GET", "/sync?set_presence=online", alice);
    expect((await t.ok("GET", `/presence/${encodeURIComponent(alice.userId)}/status`, alice)).presence).toBe("online");
    expect((await t.req("PUT", `/presence/${encodeURIComponent(alice.userId)}/status`, bob, { presence: "online" })).status).toBe(403);
    expect((await t.req("PUT", `/presence/${encodeURIComponent(alice.userId)}/status`, alice, { presence: "busy" })).status).toBe(400);
    expect((await t.req("GET", `/presence/${encodeURIComponent("@ghost:hs.test")}/status`, alice)).status).toBe(404);
  });
});

describe("capabilities and turnServer", () => {
  it("advertises every room version as stable and v12 as default", async () => {
    const c = (await t.ok("GET", "/capabilities", alice)).capabilities;
    expect(c["m.room_versions"].default).toBe("12");
    expect(Object.keys(c["m.room_versions"].available).sort((a: string, b: string) => Number(a) - Number(b))).toEqual(["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"]);
    expect(Object.values(c["m.room_versions"].available).every((v) => v === "stable")).toBe(true);
    expect(c["m.3pid_changes"]).toEqual({ enabled: false });
    expect(c["m.change_password"]).toEqual({ enabled: true });
    expect((await t.req("GET", "/capabilities")).body.errcode).toBe("M_MISSING_TOKEN");
    expect(await t.ok("GET", "/voip/turnServer", alice)).toEqual({});
  });

  it("/versions advertises v1.11 or later", async () => {
    const v = await t.ok("GET", "/_matrix/client/versions");
    expect(v.versions).toContain("v1.11");
  });
});
