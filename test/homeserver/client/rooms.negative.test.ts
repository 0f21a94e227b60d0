/** Error paths across every endpoint family of the room area (table-driven). */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { TestServer, room } from "../roomserver/harness.ts";
import type { TestUser } from "../roomserver/harness.ts";

let t: TestServer;
let alice: TestUser;
let bob: TestUser;
let guest: TestUser;
let roomId: string;
let eventId: string;
beforeAll(async () => {
  t = await TestServer.start();
  alice = await t.user("alice");
  bob = await t.user("bob");
  guest = await t.user("guest1", { guest: true });
  roomId = await t.createRoom(alice, { preset: "private_chat", room_alias_name: "neg" });
  eventId = await t.send(alice, roomId, "hello");
});
afterAll(async () => t.close());

const v1 = (rest: string): string => `/_matrix/client/v1/rooms/${encodeURIComponent(roomId)}${rest}`;
const e = (): string => encodeURIComponent(eventId);

/** [method, path, body] for every authenticated endpoint of the area. */
const endpoints = (): [string, string, unknown?][] => [
  ["POST", "/createRoom", {}],
  ["PUT", room(roomId, "/send/m.room.message/n1"), { body: "x" }],
  ["PUT", room(roomId, "/state/m.room.topic/"), { topic: "x" }],
  ["GET", room(roomId, "/state/m.room.topic/")],
  ["GET", room(roomId, "/state")],
  ["PUT", room(roomId, `/redact/${e()}/n2`), {}],
  ["GET", room(roomId, `/event/${e()}`)],
  ["POST", `/join/${encodeURIComponent(roomId)}`, {}],
  ["POST", room(roomId, "/join"), {}],
  ["POST", `/knock/${encodeURIComponent(roomId)}`, {}],
  ["POST", room(roomId, "/invite"), { user_id: "@x:hs.test" }],
  ["POST", room(roomId, "/leave"), {}],
  ["POST", room(roomId, "/forget"), {}],
  ["POST", room(roomId, "/kick"), { user_id: "@x:hs.test" }],
  ["POST", room(roomId, "/ban"), { user_id: "@x:hs.test" }],
  ["POST", room(roomId, "/unban"), { user_id: "@x:hs.test" }],
  ["GET", "/joined_rooms"],
  ["GET", room(roomId, "/members")],
  ["GET", room(roomId, "/joined_members")],
  ["GET", room(roomId, "/messages?dir=b")],
  ["GET", room(roomId, `/context/${e()}`)],
  ["GET", v1("/timestamp_to_event?ts=1&dir=f")],
  ["GET", v1(`/relations/${e()}`)],
  ["GET", v1("/threads")],
  ["GET", v1("/hierarchy")],
  ["POST", room(roomId, "/upgrade"), { new_version: "12" }],
  ["POST", "/search", { search_categories: { room_events: { search_term: "x" } } }],
  ["POST", room(roomId, `/report/${e()}`), {}],
  ["POST", room(roomId, "/report"), {}],
  ["PUT", "/directory/room/%23zz:hs.test", { room_id: roomId }],
  ["DELETE", "/directory/room/%23neg:hs.test"],
  ["GET", room(roomId, "/aliases")],
  ["PUT", `/directory/list/room/${encodeURIComponent(roomId)}`, { visibility: "public" }],
  ["POST", "/publicRooms", {}],
  ["POST", "/user_directory/search", { search_term: "a" }],
];

describe("authentication", () => {
  it("every endpoint answers 401 M_MISSING_TOKEN without a token and 401 M_UNKNOWN_TOKEN with a bad one", async () => {
    for (const [m, p, b] of endpoints()) {
      const none = await t.req(m, p, undefined, b);
      expect([m, p, none.status, none.body.errcode]).toEqual([m, p, 401, "M_MISSING_TOKEN"]);
      const bad = await t.req(m, p, "not-a-token", b);
      expect([m, p, bad.status, bad.body.errcode]).toEqual([m, p, 401, "M_UNKNOWN_TOKEN"]);
    }
  });
});

describe("not a member", () => {
  it.each([
    ["PUT", () => room(roomId, "/send/m.room.message/nm1"), { body: "x" }],
    ["PUT", () => room(roomId, "/state/m.room.topic/"), { topic: "x" }],
    ["GET", () => room(roomId, "/state"), undefined],
    ["GET", () => room(roomId, "/state/m.room.name/"), undefined],
    ["GET", () => room(roomId, "/members"), undefined],
    ["GET", () => room(roomId, "/joined_members"), undefined],
    ["GET", () => room(roomId, "/messages?dir=b"), undefined],
    ["GET", () => v1("/threads"), undefined],
    ["GET", () => v1("/timestamp_to_event?ts=1&dir=f"), undefined],
    ["GET", () => v1("/hierarchy"), undefined],
    ["POST", () => room(roomId, "/invite"), { user_id: "@x:hs.test" }],
    ["POST", () => room(roomId, "/kick"), { user_id: "@alice:hs.test" }],
    ["POST", () => room(roomId, "/upgrade"), { new_version: "12" }],
    ["GET", () => room(roomId, "/aliases"), undefined],
  ] as [string, () => string, unknown][])("%s %s → 403 M_FORBIDDEN", async (m, p, b) => {
    const r = await t.req(m, p(), bob, b);
    expect([r.status, r.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
  });

  it.each([
    ["GET", () => room(roomId, `/event/${e()}`)],
    ["GET", () => room(roomId, `/context/${e()}`)],
    ["GET", () => v1(`/relations/${e()}`)],
    ["POST", () => room(roomId, `/report/${e()}`)],
  ] as [string, () => string][])("%s %s → 404 M_NOT_FOUND (events are not disclosed)", async (m, p) => {
    const r = await t.req(m, p(), bob, m === "POST" ? {} : undefined);
    expect([r.status, r.body.errcode]).toEqual([404, "M_NOT_FOUND"]);
  });
});

describe("unknown room", () => {
  const unknown = "!doesnotexist:hs.test";
  it.each([
    ["PUT", room(unknown, "/send/m.room.message/u1"), { body: "x" }],
    ["PUT", room(unknown, "/state/m.room.topic/"), { topic: "x" }],
    ["GET", room(unknown, "/state")],
    ["GET", room(unknown, "/state/m.room.name/")],
    ["GET", room(unknown, "/event/$x")],
    ["GET", room(unknown, "/members")],
    ["GET", room(unknown, "/joined_members")],
    ["GET", room(unknown, "/messages?dir=b")],
    ["GET", room(unknown, "/context/$x")],
    ["POST", room(unknown, "/join"), {}],
    ["POST", room(unknown, "/invite"), { user_id: "@x:hs.test" }],
    ["POST", room(unknown, "/leave"), {}],
    ["POST", room(unknown, "/forget"), {}],
    ["POST", room(unknown, "/kick"), { user_id: "@x:hs.test" }],
    ["POST", room(unknown, "/upgrade"), { new_version: "12" }],
    ["POST", room(unknown, "/report"), {}],
    ["GET", room(unknown, "/aliases")],
    ["GET", `/directory/list/room/${encodeURIComponent(unknown)}`],
    ["GET", `/_matrix/client/v1/rooms/${encodeURIComponent(unknown)}/relations/$x`],
    ["GET", `/_matrix/client/v1/rooms/${encodeURIComponent(unknown)}/threads`],
    ["GET", `/_matrix/client/v1/rooms/${encodeURIComponent(unknown)}/timestamp_to_event?ts=1&dir=f`],
  ] as [string, string, unknown?][])("%s %s → 404 M_NOT_FOUND", async (m, p, b) => {
    const r = await t.req(m, p, alice, b);
    expect([r.status, r.body.errcode]).toEqual([404, "M_NOT_FOUND"]);
  });

  it("hierarchy of an unknown room is 403 (the user cannot view it)", async () => {
    const r = await t.req("GET", `/_matrix/client/v1/rooms/${encodeURIComponent(unknown)}/hierarchy`, alice);
    expect([r.status, r.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
  });
});

describe("bad JSON", () => {
  it.each([
    ["POST", "/createRoom"],
    ["PUT", "/rooms/ROOM/send/m.room.message/bj1"],
    ["PUT", "/rooms/ROOM/state/m.room.topic/"],
    ["POST", "/rooms/ROOM/invite"],
    ["POST", "/rooms/ROOM/kick"],
    ["POST", "/rooms/ROOM/upgrade"],
    ["POST", "/search"],
    ["PUT", "/directory/room/%23bj:hs.test"],
    ["POST", "/user_directory/search"],
  ])("%s %s: non-JSON → M_NOT_JSON, non-object → M_BAD_JSON", async (m, p) => {
    const path = p.replace("ROOM", encodeURIComponent(roomId));
    const notJson = await t.req(m, path, alice, "{{");
    expect([notJson.status, notJson.body.errcode]).toEqual([400, "M_NOT_JSON"]);
    const array = await t.req(m, path, alice, "[1,2]");
    expect([array.status, array.body.errcode]).toEqual([400, "M_BAD_JSON"]);
  });
});

describe("power levels", () => {
  it("members without power cannot change state, redact others, kick, ban, upgrade or publish", async () => {
    const r2 = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, r2);
    const mine = await t.send(alice, r2, "alice's");
    const cases: [string, string, unknown][] = [
      ["PUT", room(r2, "/state/m.room.name/"), { name: "x" }],
      ["PUT", room(r2, "/state/m.room.power_levels/"), { users: { [bob.userId]: 100 } }],
      ["PUT", room(r2, `/redact/${encodeURIComponent(mine)}/p1`), {}],
      ["POST", room(r2, "/kick"), { user_id: alice.userId }],
      ["POST", room(r2, "/ban"), { user_id: alice.userId }],
      ["POST", room(r2, "/upgrade"), { new_version: "12" }],
      ["PUT", `/directory/list/room/${encodeURIComponent(r2)}`, { visibility: "public" }],
    ];
    for (const [m, p, b] of cases) {
      const r = await t.req(m, p, bob, b);
      expect([p, r.status, r.body.errcode]).toEqual([p, 403, "M_FORBIDDEN"]);
    }
    // raising events_default shuts ordinary members up
    await t.state(alice, r2, "m.room.power_levels", { ...(await t.ok("GET", room(r2, "/state/m.room.power_levels"), alice)), events_default: 10 });
    const r = await t.req("PUT", room(r2, "/send/m.room.message/p2"), bob, { body: "x" });
    expect([r.status, r.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
  });
});

describe("guests", () => {
  it("may join can_join rooms, send and read; may not create, invite or report; are removed when guest access ends", async () => {
    const open = await t.createRoom(alice, { preset: "public_chat", initial_state: [{ type: "m.room.guest_access", content: { guest_access: "can_join" } }] });
    const closed = await t.createRoom(alice, { preset: "public_chat" });
    const denied = await t.req("POST", room(closed, "/join"), guest, {});
    expect([denied.status, denied.body.errcode]).toEqual([403, "M_GUEST_ACCESS_FORBIDDEN"]);
    await t.join(guest, open);
    expect((await t.ok("GET", room(open, `/state/m.room.member/${guest.userId}`), alice)).kind).toBe("guest");
    await t.send(guest, open, "hi from a guest");
    await t.ok("GET", room(open, "/messages?dir=b"), guest);
    for (const [m, p, b] of [
      ["POST", "/createRoom", {}],
      ["POST", room(open, "/invite"), { user_id: bob.userId }],
      ["POST", room(open, "/report"), {}],
    ] as [string, string, unknown][]) {
      const r = await t.req(m, p, guest, b);
      expect([p, r.status, r.body.errcode]).toEqual([p, 403, "M_GUEST_ACCESS_FORBIDDEN"]);
    }
    await t.state(alice, open, "m.room.guest_access", { guest_access: "forbidden" });
    expect((await t.ok("GET", room(open, `/state/m.room.member/${guest.userId}`), alice)).membership).toBe("leave");
  });
});

describe("content the server cannot hash, and event types named like Object.prototype members", () => {
  // Found by test/homeserver/robustness.test.ts: both used to answer 500 M_UNKNOWN.
  it.each(["1", "5", "12"])("refuses floats and out-of-range integers with 400 M_BAD_JSON in a v%s room", async (version) => {
    const r = await t.createRoom(alice, { room_version: version });
    await t.state(alice, r, "m.room.topic", { topic: "set" });
    const cases: [string, string, unknown][] = [
      ["PUT", room(r, "/send/m.room.message/f1"), { msgtype: "m.text", body: "x", n: 1.5 }],
      ["PUT", room(r, "/send/m.room.message/f2"), { msgtype: "m.text", body: "x", n: 1e300 }],
      ["PUT", room(r, "/state/m.room.topic/"), { topic: 0.5 }],
      ["PUT", room(r, "/state/m.room.topic/"), { topic: "set", n: 2 ** 60 }],
      ["POST", "/createRoom", { room_version: version, creation_content: { x: 0.5 } }],
      ["POST", "/createRoom", { room_version: version, initial_state: [{ type: "m.room.topic", state_key: "", content: { topic: 1.25 } }] }],
    ];
    for (const [method, path, body] of cases) {
      const res = await t.req(method, path, alice, body);
      expect([method, path, res.status, res.body.errcode]).toEqual([method, path, 400, "M_BAD_JSON"]);
    }
  });

  it.each(["constructor", "toString", "__proto__", "hasOwnProperty", "nope"])("refuses preset %s with 400 M_BAD_JSON", async (preset) => {
    // "constructor" used to find Object.prototype.constructor and create a room without a join rule.
    const res = await t.req("POST", "/createRoom", alice, { preset });
    expect([res.status, res.body.errcode]).toEqual([400, "M_BAD_JSON"]);
  });

  it.each(["__proto__", "constructor", "toString", "hasOwnProperty"])("sends and reads back events of type %s", async (type) => {
    const sent = await t.ok("PUT", room(roomId, `/send/${type}/proto-${type}`), alice, { x: 1 });
    const ev = await t.ok("GET", room(roomId, `/event/${encodeURIComponent(sent.event_id as string)}`), alice);
    expect([ev.type, ev.content]).toEqual([type, { x: 1 }]);
    await t.state(alice, roomId, type, { y: 2 });
    expect(await t.ok("GET", room(roomId, `/state/${type}/`), alice)).toEqual({ y: 2 });
  });
});

describe("limit query parameters (validate.ts limitParam, one reader for every endpoint)", () => {
  const withLimit = (): string[] => [
    room(roomId, "/messages?dir=b&"),
    room(roomId, `/context/${e()}?`),
    v1(`/relations/${e()}?`),
    v1("/threads?"),
    v1("/hierarchy?"),
    "/publicRooms?",
    "/initialSync?",
    "/notifications?",
  ];
  it.each(["-1", "abc", "1.5", "1e3", " 5", "", "0x10", "NaN"])("refuses limit=%j with 400 M_INVALID_PARAM", async (limit) => {
    for (const path of withLimit()) {
      const res = await t.req("GET", `${path}limit=${encodeURIComponent(limit)}`, alice);
      expect([path, res.status, res.body.errcode]).toEqual([path, 400, "M_INVALID_PARAM"]);
    }
  });

  it("accepts 0, a small limit and a huge one (capped)", async () => {
    for (const limit of ["0", "3", "99999999999999999999"]) {
      for (const path of withLimit()) {
        const res = await t.req("GET", `${path}limit=${limit}`, alice);
        expect([path, limit, res.status]).toEqual([path, limit, 200]);
      }
    }
  });
});
