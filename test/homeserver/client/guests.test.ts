/**
 * Guest access (client-server API "Guest access"): guest registration, the endpoints guests may and
 * may not call, joining only `can_join` rooms, reading `world_readable` rooms without joining, and
 * upgrading a guest to a full account.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TestServer, SERVER, room } from "../roomserver/harness.ts";
import type { TestUser } from "../roomserver/harness.ts";
import { testServer } from "./accountHarness.ts";

let t: TestServer;
let alice: TestUser;

beforeEach(async () => {
  t = await TestServer.start();
  alice = await t.user("alice");
});
afterEach(async () => {
  await t.close();
});

/** Registers a guest through the API; returns its session. */
async function registerGuest(body: unknown = {}): Promise<{ userId: string; deviceId: string; token: string; body: Record<string, unknown> }> {
  const r = await t.ok("POST", "/register?kind=guest", undefined, body);
  return { userId: r.user_id as string, deviceId: r.device_id as string, token: r.access_token as string, body: r };
}

const localpartOf = (userId: string): string => userId.slice(1, userId.indexOf(":"));

describe("guest registration", () => {
  it("is refused with 403 M_GUEST_ACCESS_FORBIDDEN while allow_guest_access is off (the default)", async () => {
    const off = await testServer();
    const r = await off.call("POST", "/_matrix/client/v3/register?kind=guest", {});
    expect([r.status, r.body.errcode]).toEqual([403, "M_GUEST_ACCESS_FORBIDDEN"]);
  });

  it("creates a passwordless guest with a server-chosen device, ignoring every body field but the device name", async () => {
    const g = await registerGuest({ username: "wanted", password: "pw", device_id: "MINE", inhibit_login: true, refresh_token: true, initial_device_display_name: "Guest phone" });
    expect(g.userId).toMatch(new RegExp(`^@[a-z0-9]+:${SERVER.replace(".", "\\.")}$`));
    expect(g.userId).not.toBe(`@wanted:${SERVER}`);
    expect(g.deviceId).not.toBe("MINE");
    expect(g.token).toEqual(expect.any(String));
    expect(g.body).not.toHaveProperty("refresh_token");
    expect(g.body).not.toHaveProperty("expires_in_ms");
    expect(g.body.home_server).toBe(SERVER);
    expect(await t.ok("GET", "/account/whoami", g.token)).toEqual({ user_id: g.userId, device_id: g.deviceId, is_guest: true });
    expect((await t.ok("GET", `/devices/${g.deviceId}`, g.token)).display_name).toBe("Guest phone");
    // No password was set, so no password logs in.
    const login = await t.req("POST", "/login", undefined, { type: "m.login.password", identifier: { type: "m.id.user", user: localpartOf(g.userId) }, password: "pw" });
    expect([login.status, login.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
  });

  it("accepts an empty body, gives every guest its own account, and refuses a malformed device name", async () => {
    const res = await t.hs.handle(new Request("http://localhost/_matrix/client/v3/register?kind=guest", { method: "POST" }));
    expect(res.status).toBe(200);
    const a = await registerGuest();
    const b = await registerGuest();
    expect(a.userId).not.toBe(b.userId);
    const bad = await t.req("POST", "/register?kind=guest", undefined, { initial_device_display_name: 7 });
    expect([bad.status, bad.body.errcode]).toEqual([400, "M_BAD_JSON"]);
    const kind = await t.req("POST", "/register?kind=robot", undefined, {});
    expect([kind.status, kind.body.errcode]).toEqual([400, "M_INVALID_PARAM"]);
  });
});

describe("the endpoints guests may use", () => {
  /** Concrete requests for every endpoint of the module's list (plus `/join/{roomIdOrAlias}`). */
  const allowed = (roomId: string, eventId: string, g: { userId: string; deviceId: string }): [string, string, unknown?][] => [
    ["GET", room(roomId, "/state")],
    ["GET", room(roomId, `/context/${encodeURIComponent(eventId)}`)],
    ["GET", room(roomId, `/event/${encodeURIComponent(eventId)}`)],
    ["GET", room(roomId, "/state/m.room.create/")],
    ["GET", room(roomId, "/state/m.room.create")],
    ["GET", room(roomId, "/messages?dir=b")],
    ["GET", room(roomId, "/members")],
    ["GET", room(roomId, "/initialSync")],
    ["GET", "/sync?timeout=0"],
    ["GET", `/events?room_id=${encodeURIComponent(roomId)}&timeout=0`],
    ["GET", "/_matrix/client/v1/media/download/hs.test/nothing"],
    ["GET", "/_matrix/client/v1/media/download/hs.test/nothing/name.png"],
    ["GET", "/_matrix/client/v1/media/thumbnail/hs.test/nothing?width=8&height=8"],
    ["POST", room(roomId, "/join"), {}],
    ["POST", `/join/${encodeURIComponent(roomId)}`, {}],
    ["PUT", room(roomId, "/send/m.room.message/g1"), { msgtype: "m.text", body: "from a guest" }],
    ["PUT", room(roomId, "/send/org.example.custom/g2"), { any: "type" }],
    ["PUT", room(roomId, `/state/org.example.guest/${encodeURIComponent(g.userId)}`), { mine: true }],
    ["PUT", "/sendToDevice/m.test/g3", { messages: {} }],
    ["PUT", `/profile/${encodeURIComponent(g.userId)}/displayname`, { displayname: "Visitor" }],
    ["DELETE", `/profile/${encodeURIComponent(g.userId)}/displayname`],
    ["GET", "/devices"],
    ["GET", `/devices/${g.deviceId}`],
    ["PUT", `/devices/${g.deviceId}`, { display_name: "renamed" }],
    ["GET", "/account/whoami"],
    ["POST", "/keys/upload", {}],
    ["POST", "/keys/query", { device_keys: { [alice.userId]: [] } }],
    ["POST", "/keys/claim", { one_time_keys: {} }],
    ["POST", room(roomId, "/leave"), {}],
  ];

  it("answers every listed endpoint (also under r0) and refuses nothing of it as guest access", async () => {
    const roomId = await t.createRoom(alice, {
      preset: "public_chat",
      initial_state: [
        { type: "m.room.guest_access", content: { guest_access: "can_join" } },
        { type: "m.room.history_visibility", content: { history_visibility: "world_readable" } },
      ],
      // Any member may set state, so the guest's PUT state succeeds rather than hitting power levels.
      power_level_content_override: { state_default: 0 },
    });
    const eventId = await t.send(alice, roomId, "hello");
    const g = await registerGuest();
    for (const [method, path, body] of allowed(roomId, eventId, g)) {
      const r = await t.req(method, path, g.token, body);
      expect(r.body.errcode, `${method} ${path}: ${JSON.stringify(r.body)}`).not.toBe("M_GUEST_ACCESS_FORBIDDEN");
      if (!path.includes("/media/")) expect(r.status, `${method} ${path}: ${JSON.stringify(r.body)}`).toBe(200);
    }
    const r0 = await t.req("GET", "/_matrix/client/r0/account/whoami", g.token);
    expect(r0.body.is_guest).toBe(true);
  });

  /** The module's list as route templates (as routes.ts spells them), `/_matrix/client/v3` left off. */
  const GUEST_TEMPLATES = new Set([
    "GET /rooms/{roomId}/state", "GET /rooms/{roomId}/context/{eventId}", "GET /rooms/{roomId}/event/{eventId}",
    "GET /rooms/{roomId}/state/{eventType}/{stateKey?}", "GET /rooms/{roomId}/messages", "GET /rooms/{roomId}/members",
    "GET /rooms/{roomId}/initialSync", "GET /sync", "GET /events",
    "GET /_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName?}", "GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}",
    "POST /rooms/{roomId}/join", "POST /join/{roomIdOrAlias}", "POST /rooms/{roomId}/leave",
    "PUT /rooms/{roomId}/send/{eventType}/{txnId}", "PUT /rooms/{roomId}/state/{eventType}/{stateKey?}", "PUT /sendToDevice/{eventType}/{txnId}",
    "PUT /profile/{userId}/{keyName}", "DELETE /profile/{userId}/{keyName}",
    "GET /devices", "GET /devices/{deviceId}", "PUT /devices/{deviceId}", "GET /account/whoami",
    "POST /keys/upload", "POST /keys/query", "POST /keys/claim",
  ]);

  it("refuses guests with 403 M_GUEST_ACCESS_FORBIDDEN on every other endpoint that takes an access token", async () => {
    const g = await registerGuest();
    let refused = 0;
    for (const { method, path } of t.hs.routes()) {
      if (GUEST_TEMPLATES.has(`${method} ${path.replace(/^\/_matrix\/client\/(v3|r0)/, "")}`)) continue; // checked above
      // A concrete path for the template; the values only need to get the request to the token check.
      const concrete = path
        .replace("{userId}", encodeURIComponent(g.userId))
        .replace(/\{[a-zA-Z]+\?\}/g, "x")
        .replace(/\{([a-zA-Z]+)\}/g, (_m, name: string) => (name === "roomId" ? "!r:x" : name === "roomAlias" ? "#a:x" : `${name}1`));
      const body = method === "GET" || method === "DELETE" ? undefined : {};
      // Only endpoints that demand a token: without one they answer 401 M_MISSING_TOKEN.
      if ((await t.req(method, concrete, undefined, body)).body.errcode !== "M_MISSING_TOKEN") continue;
      const r = await t.req(method, concrete, g.token, body);
      expect([method, concrete, r.status, r.body.errcode]).toEqual([method, concrete, 403, "M_GUEST_ACCESS_FORBIDDEN"]);
      refused++;
    }
    // The route table holds well over a hundred token-taking endpoints outside the guest list.
    expect(refused).toBeGreaterThan(100);
  });

  it("lets a guest change only its display name, and peek at /events only for one room", async () => {
    const g = await registerGuest();
    const me = encodeURIComponent(g.userId);
    await t.ok("PUT", `/profile/${me}/displayname`, g.token, { displayname: "Visitor" });
    const avatar = await t.req("PUT", `/profile/${me}/avatar_url`, g.token, { avatar_url: "mxc://hs.test/a" });
    expect([avatar.status, avatar.body.errcode]).toEqual([403, "M_GUEST_ACCESS_FORBIDDEN"]);
    const everything = await t.req("GET", "/events?timeout=0", g.token);
    expect([everything.status, everything.body.errcode]).toEqual([403, "M_GUEST_ACCESS_FORBIDDEN"]);
  });

  it("refuses existing guests everywhere once the operator turns guest access off", async () => {
    const g = await registerGuest();
    t.hs.services.config.allowGuestAccess = false;
    for (const path of ["/account/whoami", "/sync?timeout=0"]) {
      const r = await t.req("GET", path, g.token);
      expect([path, r.status, r.body.errcode]).toEqual([path, 403, "M_GUEST_ACCESS_FORBIDDEN"]);
    }
    // A bad token is still a bad token.
    expect((await t.req("GET", "/account/whoami", "nope")).body.errcode).toBe("M_UNKNOWN_TOKEN");
    // The guest can still become a full account, and then its token works again.
    const up = await t.req("POST", "/register", undefined, { username: localpartOf(g.userId), password: "pw", guest_access_token: g.token, auth: { type: "m.login.dummy" } });
    expect(up.status, JSON.stringify(up.body)).toBe(200);
    expect((await t.ok("GET", "/account/whoami", g.token)).is_guest).toBe(false);
  });
});

describe("rooms and guests", () => {
  it("reads a world_readable room without joining, but not a room that is not", async () => {
    const open = await t.createRoom(alice, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "world_readable" } }] });
    const closed = await t.createRoom(alice, { preset: "public_chat" });
    const e1 = await t.send(alice, open, "readable");
    await t.send(alice, closed, "private");
    const g = await registerGuest();

    const messages = await t.ok("GET", room(open, "/messages?dir=b"), g.token);
    expect(messages.chunk.map((e: any) => e.content.body)).toContain("readable");
    const state = await t.ok("GET", room(open, "/state"), g.token);
    expect(state.map((e: any) => e.type)).toContain("m.room.create");
    const initial = await t.ok("GET", room(open, "/initialSync"), g.token);
    expect(initial.messages.chunk.map((e: any) => e.content.body)).toContain("readable");
    expect((await t.ok("GET", room(open, `/event/${encodeURIComponent(e1)}`), g.token)).content.body).toBe("readable");
    const members = await t.ok("GET", room(open, "/members"), g.token);
    expect(members.chunk.map((e: any) => e.state_key)).toEqual([alice.userId]);

    // Peeking with /events?room_id: new events arrive without joining.
    const from = initial.messages.end as string;
    await t.send(alice, open, "live");
    const peek = await t.ok("GET", `/events?room_id=${encodeURIComponent(open)}&from=${from}&timeout=0`, g.token);
    expect(peek.chunk.map((e: any) => e.content?.body)).toContain("live");

    // Without `from` (matrix-js-sdk's first peek poll) the long-poll starts at "now" and returns the
    // event that wakes it.
    const waiting = t.ok("GET", `/events?room_id=${encodeURIComponent(open)}&timeout=10000`, g.token);
    await new Promise((r) => setTimeout(r, 50));
    await t.send(alice, open, "woke the poll");
    expect((await waiting).chunk.map((e: any) => e.content?.body)).toEqual(["woke the poll"]);

    for (const path of [room(closed, "/messages?dir=b"), room(closed, "/state"), room(closed, "/initialSync")]) {
      const r = await t.req("GET", path, g.token);
      expect([path, r.status, r.body.errcode]).toEqual([path, 403, "M_FORBIDDEN"]);
    }
  });

  it("joins only rooms whose m.room.guest_access is can_join, and is made to leave when that ends", async () => {
    const forbiddenRoom = await t.createRoom(alice, { preset: "public_chat" });
    const noEvent = await t.createRoom(alice, { preset: "public_chat" });
    await t.state(alice, noEvent, "m.room.guest_access", {});
    const open = await t.createRoom(alice, { preset: "public_chat", initial_state: [{ type: "m.room.guest_access", content: { guest_access: "can_join" } }] });
    const g = await registerGuest();
    for (const roomId of [forbiddenRoom, noEvent]) {
      for (const path of [room(roomId, "/join"), `/join/${encodeURIComponent(roomId)}`]) {
        const r = await t.req("POST", path, g.token, {});
        expect([path, r.status, r.body.errcode]).toEqual([path, 403, "M_GUEST_ACCESS_FORBIDDEN"]);
      }
    }
    // The state API is no way around it, nor a way to change others' membership.
    const me = encodeURIComponent(g.userId);
    for (const [roomId, target, membership] of [
      [forbiddenRoom, me, "join"], [noEvent, me, "join"], [open, me, "knock"], [open, me, "invite"], [open, encodeURIComponent(alice.userId), "leave"],
    ] as const) {
      const r = await t.req("PUT", room(roomId, `/state/m.room.member/${target}`), g.token, { membership });
      expect([membership, r.status, r.body.errcode]).toEqual([membership, 403, "M_GUEST_ACCESS_FORBIDDEN"]);
    }
    await t.ok("PUT", room(open, `/state/m.room.member/${me}`), g.token, { membership: "join" });
    await t.ok("PUT", room(open, `/state/m.room.member/${me}`), g.token, { membership: "leave" });
    await t.ok("POST", room(open, "/join"), g.token, {});
    const member = await t.ok("GET", room(open, `/state/m.room.member/${encodeURIComponent(g.userId)}`), alice);
    expect(member).toMatchObject({ membership: "join", kind: "guest" });
    await t.ok("PUT", room(open, "/send/m.room.message/t1"), g.token, { msgtype: "m.text", body: "hi, I'm a guest" });
    await t.state(alice, open, "m.room.guest_access", { guest_access: "forbidden" });
    expect((await t.ok("GET", room(open, `/state/m.room.member/${encodeURIComponent(g.userId)}`), alice)).membership).toBe("leave");
    const again = await t.req("POST", room(open, "/join"), g.token, {});
    expect([again.status, again.body.errcode]).toEqual([403, "M_GUEST_ACCESS_FORBIDDEN"]);
  });
});

describe("upgrading a guest to a full account", () => {
  /** The second, authenticated step of a `/register` upgrade (the first answers 401 with the flows). */
  const upgrade = (extra: Record<string, unknown>): Promise<{ status: number; body: Record<string, any> }> =>
    t.req("POST", "/register", undefined, { password: "a new password", auth: { type: "m.login.dummy" }, ...extra });

  it("keeps the user ID and rooms, sets the password, and lifts the guest limits", async () => {
    const open = await t.createRoom(alice, { preset: "public_chat", initial_state: [{ type: "m.room.guest_access", content: { guest_access: "can_join" } }] });
    const g = await registerGuest();
    await t.ok("POST", room(open, "/join"), g.token, {});
    const localpart = localpartOf(g.userId);

    // User-Interactive Authentication as for any registration.
    const first = await t.req("POST", "/register", undefined, { username: localpart, password: "a new password", guest_access_token: g.token });
    expect(first.status).toBe(401);
    expect(first.body.flows).toEqual(expect.arrayContaining([{ stages: ["m.login.dummy"] }]));

    const done = await upgrade({ username: localpart, guest_access_token: g.token, session: first.body.session, initial_device_display_name: "Laptop" });
    expect(done.status, JSON.stringify(done.body)).toBe(200);
    expect(done.body.user_id).toBe(g.userId);
    expect(done.body.device_id).not.toBe(g.deviceId);
    const token = done.body.access_token as string;
    expect(await t.ok("GET", "/account/whoami", token)).toEqual({ user_id: g.userId, device_id: done.body.device_id, is_guest: false });
    // The guest's own token now belongs to a full account too.
    expect((await t.ok("GET", "/account/whoami", g.token)).is_guest).toBe(false);
    expect((await t.ok("GET", "/joined_rooms", token)).joined_rooms).toEqual([open]);
    await t.ok("POST", "/createRoom", token, {});
    const login = await t.ok("POST", "/login", undefined, { type: "m.login.password", identifier: { type: "m.id.user", user: localpart }, password: "a new password" });
    expect(login.user_id).toBe(g.userId);

    // A full account is not a guest any more: its token upgrades nothing.
    const twice = await upgrade({ username: localpart, guest_access_token: g.token });
    expect([twice.status, twice.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
  });

  it("refuses a wrong username, a missing username, a token that is not a guest's, and a malformed token", async () => {
    const g = await registerGuest();
    const other = await registerGuest();
    const cases: [Record<string, unknown>, number, string][] = [
      [{ username: localpartOf(other.userId), guest_access_token: g.token }, 403, "M_FORBIDDEN"],
      [{ username: "alice", guest_access_token: g.token }, 403, "M_FORBIDDEN"],
      [{ guest_access_token: g.token }, 400, "M_MISSING_PARAM"],
      [{ username: "alice", guest_access_token: alice.token }, 403, "M_FORBIDDEN"],
      [{ username: localpartOf(g.userId), guest_access_token: "not a token" }, 403, "M_FORBIDDEN"],
      [{ username: localpartOf(g.userId), guest_access_token: 42 }, 400, "M_BAD_JSON"],
    ];
    for (const [body, status, errcode] of cases) {
      const r = await upgrade(body);
      expect([JSON.stringify(body), r.status, r.body.errcode]).toEqual([JSON.stringify(body), status, errcode]);
    }
    expect((await t.ok("GET", "/account/whoami", g.token)).is_guest).toBe(true);
  });

  it("with inhibit_login upgrades without a new session", async () => {
    const g = await registerGuest();
    const r = await upgrade({ username: localpartOf(g.userId), guest_access_token: g.token, inhibit_login: true });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ user_id: g.userId, home_server: SERVER });
    expect((await t.ok("GET", "/devices", g.token)).devices).toHaveLength(1);
  });
});
