/** Application Service API (application-service-api.md) through the core, with a real HTTP service. */
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { createHomeserver } from "../../../src/homeserver/homeserver.ts";
import { createMemoryStore } from "../../../src/storage/memory.ts";
import type { Store } from "../../../src/storage/store.ts";
import { parseRegistration, RegistrationError } from "../../../src/homeserver/appservice/registration.ts";
import type { AppServiceRegistration } from "../../../src/homeserver/appservice/registration.ts";
import { TestServer, SERVER, SEED, room } from "../roomserver/harness.ts";
import type { TestUser } from "../roomserver/harness.ts";
import { FakeAppService } from "./asHarness.ts";

const q = encodeURIComponent;
const AS_TOKEN = "as_secret_token";
const HS_TOKEN = "hs_secret_token";

function registration(url: string | null, extra: Record<string, unknown> = {}): AppServiceRegistration {
  return parseRegistration({
    id: "bridge",
    url,
    as_token: AS_TOKEN,
    hs_token: HS_TOKEN,
    sender_localpart: "_bridge_bot",
    namespaces: {
      users: [{ exclusive: true, regex: "@_bridge_.*" }],
      aliases: [{ exclusive: true, regex: "#_bridge_.*" }],
      rooms: [{ exclusive: false, regex: "!bridged.*" }],
    },
    protocols: ["irc"],
    ...extra,
  });
}

/** A homeserver over `store` with the given services; the store survives `close` (a restart). */
async function startWith(store: Store, regs: AppServiceRegistration[]): Promise<TestServer> {
  const t = new TestServer();
  let now = 1_700_000_000_000;
  const survivor: Store = { ...store, close: async () => {} };
  t.hs = await createHomeserver({ store: survivor, seed: SEED, serverName: SERVER, clock: () => now++, appservices: regs, logger: process.env.AS_DEBUG ? console : undefined, appserviceOptions: { minBackoffMs: 50, maxBackoffMs: 200 } });
  return t;
}

const asUser = (userId?: string, deviceId?: string): string => {
  const params = new URLSearchParams();
  if (userId) params.set("user_id", userId);
  if (deviceId) params.set("device_id", deviceId);
  const s = params.toString();
  return s ? `?${s}` : "";
};

let store: Store;
let fake: FakeAppService;
let t: TestServer;
let alice: TestUser;
beforeEach(async () => {
  store = createMemoryStore();
  fake = await FakeAppService.start();
  t = await startWith(store, [registration(fake.url)]);
  alice = await t.user("alice");
});
afterEach(async () => {
  await t.close();
  await fake.close();
});

describe("registration files", () => {
  const base = { id: "a", url: "http://127.0.0.1:9", as_token: "x", hs_token: "y", sender_localpart: "bot", namespaces: {} };
  it.each([
    ["not a mapping", []],
    ["missing id", { ...base, id: undefined }],
    ["missing url", Object.fromEntries(Object.entries(base).filter(([k]) => k !== "url"))],
    ["bad url", { ...base, url: "ftp://x" }],
    ["bad sender", { ...base, sender_localpart: "Bad Bot" }],
    ["namespace without exclusive", { ...base, namespaces: { users: [{ regex: "@a" }] } }],
    ["bad regex", { ...base, namespaces: { users: [{ exclusive: true, regex: "@(" }] } }],
    ["bad protocols", { ...base, protocols: "irc" }],
    ["bad rate_limited", { ...base, rate_limited: "no" }],
  ])("refuses %s", (_name, doc) => {
    expect(() => parseRegistration(doc)).toThrow(RegistrationError);
  });

  it("accepts url: null and defaults rate_limited to true", () => {
    const r = parseRegistration({ ...base, url: null });
    expect(r.url).toBeNull();
    expect(r.rateLimited).toBe(true);
  });

  it("refuses two services with the same id or as_token", async () => {
    const a = registration(null);
    await expect(createHomeserver({ store: createMemoryStore(), seed: SEED, serverName: SERVER, appservices: [a, { ...a, asToken: "other" }] })).rejects.toThrow(/id/);
    await expect(createHomeserver({ store: createMemoryStore(), seed: SEED, serverName: SERVER, appservices: [a, { ...a, id: "other" }] })).rejects.toThrow(/as_token/);
  });
});

describe("identity assertion", () => {
  it("the as_token acts as the sender by default, marked as the service", async () => {
    expect(await t.ok("GET", "/account/whoami", AS_TOKEN)).toEqual({ user_id: `@_bridge_bot:${SERVER}`, is_guest: false });
  });

  it("user_id masquerades as a registered namespaced user", async () => {
    const reg = await t.ok("POST", "/register", AS_TOKEN, { type: "m.login.application_service", username: "_bridge_alice", inhibit_login: true });
    expect(reg).toEqual({ user_id: `@_bridge_alice:${SERVER}`, home_server: SERVER });
    expect((await t.ok("GET", `/account/whoami${asUser(`@_bridge_alice:${SERVER}`)}`, AS_TOKEN)).user_id).toBe(`@_bridge_alice:${SERVER}`);
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.ok("POST", `/join/${q(roomId)}${asUser(`@_bridge_alice:${SERVER}`)}`, AS_TOKEN, {});
    const sent = await t.ok("PUT", `${room(roomId, "/send/m.room.message/m1")}${asUser(`@_bridge_alice:${SERVER}`)}`, AS_TOKEN, { msgtype: "m.text", body: "from the bridge" });
    const ev = await t.ok("GET", room(roomId, `/event/${q(sent.event_id)}`), alice);
    expect(ev.sender).toBe(`@_bridge_alice:${SERVER}`);
  });

  it("403 M_FORBIDDEN outside the namespace or for a user the service has not registered", async () => {
    const outside = await t.req("GET", `/account/whoami${asUser(alice.userId)}`, AS_TOKEN);
    expect([outside.status, outside.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
    const remote = await t.req("GET", `/account/whoami${asUser("@_bridge_x:elsewhere.test")}`, AS_TOKEN);
    expect([remote.status, remote.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
    const unregistered = await t.req("GET", `/account/whoami${asUser(`@_bridge_nobody:${SERVER}`)}`, AS_TOKEN);
    expect([unregistered.status, unregistered.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
    const junk = await t.req("GET", `/account/whoami${asUser("not-a-user")}`, AS_TOKEN);
    expect([junk.status, junk.body.errcode]).toEqual([400, "M_INVALID_PARAM"]);
  });

  it("device_id masquerades as a device of the user; 400 M_UNKNOWN_DEVICE for another", async () => {
    const reg = await t.ok("POST", "/register", AS_TOKEN, { type: "m.login.application_service", username: "_bridge_dev", device_id: "BRIDGEDEV" });
    expect(reg.device_id).toBe("BRIDGEDEV");
    const me = await t.ok("GET", `/account/whoami${asUser(`@_bridge_dev:${SERVER}`, "BRIDGEDEV")}`, AS_TOKEN);
    expect(me).toMatchObject({ user_id: `@_bridge_dev:${SERVER}`, device_id: "BRIDGEDEV" });
    const bad = await t.req("GET", `/account/whoami${asUser(`@_bridge_dev:${SERVER}`, "NOPE")}`, AS_TOKEN);
    expect([bad.status, bad.body.errcode]).toEqual([400, "M_UNKNOWN_DEVICE"]);
  });

  it("a user token with user_id is not masquerading", async () => {
    expect((await t.ok("GET", `/account/whoami${asUser(`@_bridge_bot:${SERVER}`)}`, alice)).user_id).toBe(alice.userId);
  });
});

describe("registration and exclusive namespaces", () => {
  it("m.login.application_service without a token is 401 M_MISSING_TOKEN, with a wrong one M_UNKNOWN_TOKEN", async () => {
    const none = await t.req("POST", "/register", undefined, { type: "m.login.application_service", username: "_bridge_a" });
    expect([none.status, none.body.errcode]).toEqual([401, "M_MISSING_TOKEN"]);
    const wrong = await t.req("POST", "/register", alice, { type: "m.login.application_service", username: "_bridge_a" });
    expect([wrong.status, wrong.body.errcode]).toEqual([401, "M_UNKNOWN_TOKEN"]);
  });

  it("a service may not register outside its namespace (400 M_EXCLUSIVE), nor twice (M_USER_IN_USE)", async () => {
    const outside = await t.req("POST", "/register", AS_TOKEN, { type: "m.login.application_service", username: "mallory" });
    expect([outside.status, outside.body.errcode]).toEqual([400, "M_EXCLUSIVE"]);
    await t.ok("POST", "/register", AS_TOKEN, { type: "m.login.application_service", username: "_bridge_b", inhibit_login: true });
    const again = await t.req("POST", "/register", AS_TOKEN, { type: "m.login.application_service", username: "_bridge_b" });
    expect([again.status, again.body.errcode]).toEqual([400, "M_USER_IN_USE"]);
  });

  it("logs a namespaced user in with m.login.application_service", async () => {
    expect((await t.ok("GET", "/login")).flows).toContainEqual({ type: "m.login.application_service" });
    await t.ok("POST", "/register", AS_TOKEN, { type: "m.login.application_service", username: "_bridge_login", inhibit_login: true });
    const body = (user: string): Record<string, unknown> => ({ type: "m.login.application_service", identifier: { type: "m.id.user", user } });
    const res = await t.ok("POST", "/login", AS_TOKEN, body("_bridge_login"));
    expect(res.user_id).toBe(`@_bridge_login:${SERVER}`);
    expect((await t.ok("GET", "/account/whoami", res.access_token)).user_id).toBe(`@_bridge_login:${SERVER}`);
    const outside = await t.req("POST", "/login", AS_TOKEN, body("alice"));
    expect([outside.status, outside.body.errcode]).toEqual([400, "M_EXCLUSIVE"]);
    const unknownUser = await t.req("POST", "/login", AS_TOKEN, body("_bridge_nobody"));
    expect([unknownUser.status, unknownUser.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
    const noToken = await t.req("POST", "/login", undefined, body("_bridge_login"));
    expect([noToken.status, noToken.body.errcode]).toEqual([401, "M_MISSING_TOKEN"]);
    const userToken = await t.req("POST", "/login", alice, body("_bridge_login"));
    expect([userToken.status, userToken.body.errcode]).toEqual([401, "M_UNKNOWN_TOKEN"]);
  });

  it("works while open registration is off", async () => {
    const closed = new TestServer();
    closed.hs = await createHomeserver({ store: createMemoryStore(), seed: SEED, serverName: SERVER, config: { enableRegistration: false }, appservices: [registration(null)] });
    try {
      const ordinary = await closed.req("POST", "/register", undefined, { username: "x", password: "p", auth: { type: "m.login.dummy" } });
      expect(ordinary.status).toBe(403);
      const reg = await closed.ok("POST", "/register", AS_TOKEN, { type: "m.login.application_service", username: "_bridge_c" });
      expect(typeof reg.access_token).toBe("string");
      expect((await closed.ok("GET", "/account/whoami", reg.access_token)).user_id).toBe(`@_bridge_c:${SERVER}`);
    } finally {
      await closed.close();
    }
  });

  it("everyone else gets 400 M_EXCLUSIVE for user IDs and aliases in an exclusive namespace", async () => {
    const reg = await t.req("POST", "/register", undefined, { username: "_bridge_human", password: "pw", auth: { type: "m.login.dummy" } });
    expect([reg.status, reg.body.errcode]).toEqual([400, "M_EXCLUSIVE"]);
    const avail = await t.req("GET", "/register/available?username=_bridge_human");
    expect([avail.status, avail.body.errcode]).toEqual([400, "M_EXCLUSIVE"]);
    const roomId = await t.createRoom(alice);
    const put = await t.req("PUT", `/directory/room/${q(`#_bridge_chan:${SERVER}`)}`, alice, { room_id: roomId });
    expect([put.status, put.body.errcode]).toEqual([400, "M_EXCLUSIVE"]);
    const create = await t.req("POST", "/createRoom", alice, { room_alias_name: "_bridge_chan2" });
    expect([create.status, create.body.errcode]).toEqual([400, "M_EXCLUSIVE"]);
    // outside the namespaces nothing changes
    expect((await t.req("GET", "/register/available?username=plainuser")).status).toBe(200);
    await t.ok("PUT", `/directory/room/${q(`#plain:${SERVER}`)}`, alice, { room_id: roomId });
  });

  it("the service itself may create aliases in its namespace, not outside it", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.ok("PUT", `/directory/room/${q(`#_bridge_ok:${SERVER}`)}`, AS_TOKEN, { room_id: roomId });
    const outside = await t.req("PUT", `/directory/room/${q(`#elsewhere:${SERVER}`)}`, AS_TOKEN, { room_id: roomId });
    expect([outside.status, outside.body.errcode]).toEqual([400, "M_EXCLUSIVE"]);
  });
});

describe("transactions", () => {
  it("pushes events of interest with the hs_token, in order, and nothing else", async () => {
    const watched = await t.createRoom(alice, { preset: "public_chat" });
    const other = await t.createRoom(alice);
    await t.ok("POST", `/join/${q(watched)}`, AS_TOKEN, {});
    await t.send(alice, other, "not for the bridge");
    await t.send(alice, watched, "hello bridge");
    const txn = await fake.waitFor((r) => r.method === "PUT" && r.body?.events?.some((e: any) => e.content?.body === "hello bridge"));
    expect(txn.authorization).toBe(`Bearer ${HS_TOKEN}`);
    expect(txn.query.has("access_token")).toBe(false);
    const events = fake.transactionEvents();
    expect(events.some((e) => e.content?.body === "not for the bridge")).toBe(false);
    const join = events.findIndex((e) => e.type === "m.room.member" && e.state_key === `@_bridge_bot:${SERVER}`);
    const msg = events.findIndex((e) => e.content?.body === "hello bridge");
    expect(join).toBeGreaterThanOrEqual(0);
    expect(msg).toBeGreaterThan(join);
    expect(events[msg]).toMatchObject({ room_id: watched, sender: alice.userId, type: "m.room.message" });
  });

  it("rooms namespaces and alias namespaces make a room interesting", async () => {
    const roomId = await t.createRoom(alice, { room_alias_name: "lobby" });
    await t.ok("PUT", `/directory/room/${q(`#_bridge_lobby:${SERVER}`)}`, AS_TOKEN, { room_id: roomId });
    await t.send(alice, roomId, "aliased");
    await fake.waitFor((r) => r.body?.events?.some((e: any) => e.content?.body === "aliased"));
  });

  it("retries a failed transaction with the same ID and events, backing off", async () => {
    let failures = 3;
    fake.handler = (r) => (r.path.startsWith("/_matrix/app/v1/transactions/") && failures-- > 0 ? { status: 503, body: { errcode: "M_UNKNOWN" } } : { status: 200, body: {} });
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.ok("POST", `/join/${q(roomId)}`, AS_TOKEN, {});
    await fake.waitFor((r) => r.path.startsWith("/_matrix/app/v1/transactions/") && failures < 0, 10_000);
    const txns = fake.received.filter((r) => r.path.startsWith("/_matrix/app/v1/transactions/"));
    expect(txns.length).toBeGreaterThanOrEqual(4);
    expect(new Set(txns.slice(0, 4).map((r) => r.path)).size).toBe(1);
    expect(new Set(txns.slice(0, 4).map((r) => JSON.stringify(r.body))).size).toBe(1);
  });

  it("keeps pending transactions across a restart and delivers them afterwards", async () => {
    fake.handler = () => ({ status: 500, body: {} });
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.ok("POST", `/join/${q(roomId)}`, AS_TOKEN, {});
    await t.send(alice, roomId, "while the bridge was down");
    // The first transaction (the join) is refused, so the message waits behind it.
    const first = await fake.waitFor((r) => r.path.startsWith("/_matrix/app/v1/transactions/"));
    await t.close();
    fake.received.length = 0;
    fake.handler = () => ({ status: 200, body: {} });
    t = await startWith(store, [registration(fake.url)]);
    const again = await fake.waitFor((r) => r.body?.events?.some((e: any) => e.content?.body === "while the bridge was down"));
    // The refused transaction is delivered unchanged, under its ID, before the later one.
    const delivered = fake.received.filter((r) => r.path.startsWith("/_matrix/app/v1/transactions/"));
    expect(delivered[0]!.path).toBe(first.path);
    expect(delivered[0]!.body).toEqual(first.body);
    expect(delivered.indexOf(again)).toBeGreaterThan(0);
    expect(again.authorization).toBe(`Bearer ${HS_TOKEN}`);
    // (a new transaction ID: the restarted harness counts from 1 again, and a repeated one is idempotent)
    await t.ok("PUT", room(roomId, "/send/m.room.message/after-restart"), alice, { msgtype: "m.text", body: "after the restart" });
    await fake.waitFor((r) => r.body?.events?.some((e: any) => e.content?.body === "after the restart"));
  });
});

describe("queries", () => {
  it("asks the service about an unknown alias in its namespace, then resolves it", async () => {
    fake.handler = async (r) => {
      if (r.path === `/_matrix/app/v1/rooms/#_bridge_new:${SERVER}`) {
        // The service creates the room with the alias through the Client-Server API, then answers.
        await t.ok("POST", "/createRoom", AS_TOKEN, { room_alias_name: "_bridge_new", preset: "public_chat" });
        return { status: 200, body: {} };
      }
      return { status: r.path.startsWith("/_matrix/app/v1/rooms/") ? 404 : 200, body: {} };
    };
    const res = await t.ok("GET", `/directory/room/${q(`#_bridge_new:${SERVER}`)}`, alice);
    expect(res.room_id).toMatch(/^!/);
    const query = fake.received.find((r) => r.path.startsWith("/_matrix/app/v1/rooms/"))!;
    expect(query.authorization).toBe(`Bearer ${HS_TOKEN}`);
    // a declined alias stays unknown; an alias outside the namespace is never asked about
    const declined = await t.req("GET", `/directory/room/${q(`#_bridge_nothing:${SERVER}`)}`, alice);
    expect([declined.status, declined.body.errcode]).toEqual([404, "M_NOT_FOUND"]);
    const before = fake.received.length;
    expect((await t.req("GET", `/directory/room/${q(`#unrelated:${SERVER}`)}`, alice)).status).toBe(404);
    expect(fake.received.length).toBe(before);
  });

  it("asks the service about an unknown namespaced user on a profile lookup", async () => {
    fake.handler = async (r) => {
      if (r.path === `/_matrix/app/v1/users/@_bridge_carol:${SERVER}`) {
        await t.ok("POST", "/register", AS_TOKEN, { type: "m.login.application_service", username: "_bridge_carol", inhibit_login: true });
        return { status: 200, body: {} };
      }
      return { status: 404, body: {} };
    };
    expect(await t.ok("GET", `/profile/${q(`@_bridge_carol:${SERVER}`)}`, alice)).toEqual({ displayname: "_bridge_carol" });
    expect((await t.req("GET", `/profile/${q(`@_bridge_dave:${SERVER}`)}`, alice)).status).toBe(404);
  });

  it("proxies the third-party lookups to the service that bridges the protocol", async () => {
    fake.handler = (r) => {
      if (r.path === "/_matrix/app/v1/thirdparty/protocol/irc") {
        return { status: 200, body: { user_fields: ["network", "nickname"], location_fields: ["network", "channel"], icon: "mxc://x/y", field_types: {}, instances: [{ desc: "Libera", network_id: "libera", fields: {} }] } };
      }
      if (r.path === "/_matrix/app/v1/thirdparty/location/irc") return { status: 200, body: [{ alias: `#_bridge_irc:${SERVER}`, protocol: "irc", fields: { channel: r.query.get("channel") } }] };
      if (r.path === "/_matrix/app/v1/thirdparty/user") return { status: 200, body: [{ userid: r.query.get("userid"), protocol: "irc", fields: {} }] };
      return { status: 404, body: {} };
    };
    const protocols = await t.ok("GET", "/thirdparty/protocols", alice);
    expect(protocols.irc.instances).toEqual([{ desc: "Libera", network_id: "libera", fields: {}, instance_id: "bridge|libera" }]);
    expect((await t.ok("GET", "/thirdparty/protocol/irc", alice)).user_fields).toEqual(["network", "nickname"]);
    const loc = await t.req("GET", "/thirdparty/location/irc?channel=%23matrix", alice);
    expect(loc.body).toEqual([{ alias: `#_bridge_irc:${SERVER}`, protocol: "irc", fields: { channel: "#matrix" } }]);
    const forwarded = fake.received.find((r) => r.path === "/_matrix/app/v1/thirdparty/location/irc")!;
    expect(forwarded.query.get("access_token")).toBeNull();
    expect((await t.req("GET", "/thirdparty/user/irc?nickname=x", alice)).status).toBe(404);
    expect((await t.req("GET", "/thirdparty/protocol/xmpp", alice)).status).toBe(404);
    const users = await t.ok("GET", `/thirdparty/user?userid=${q(`@_bridge_bot:${SERVER}`)}`, alice);
    expect(users).toEqual([{ userid: `@_bridge_bot:${SERVER}`, protocol: "irc", fields: {} }]);
  });
});

describe("POST /_matrix/client/v1/appservice/{appserviceId}/ping", () => {
  const ping = "/_matrix/client/v1/appservice/bridge/ping";

  it("pings the service with the transaction ID and reports the duration", async () => {
    const res = await t.ok("POST", ping, AS_TOKEN, { transaction_id: "meow" });
    expect(typeof res.duration_ms).toBe("number");
    const got = await fake.waitFor((r) => r.path === "/_matrix/app/v1/ping");
    expect(got).toMatchObject({ method: "POST", authorization: `Bearer ${HS_TOKEN}`, body: { transaction_id: "meow" } });
  });

  it("403 M_FORBIDDEN for a user token or another service's ID; 401 without a token", async () => {
    const user = await t.req("POST", ping, alice, {});
    expect([user.status, user.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
    const other = await t.req("POST", "/_matrix/client/v1/appservice/other/ping", AS_TOKEN, {});
    expect([other.status, other.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
    expect((await t.req("POST", ping, undefined, {})).status).toBe(401);
  });

  it("502 M_BAD_STATUS with the service's status and body", async () => {
    fake.handler = () => ({ status: 403, body: { errcode: "M_FORBIDDEN" } });
    const res = await t.req("POST", ping, AS_TOKEN, {});
    expect(res).toEqual({ status: 502, body: { errcode: "M_BAD_STATUS", error: "Ping returned status 403", status: 403, body: JSON.stringify({ errcode: "M_FORBIDDEN" }) } });
  });

  it("502 M_CONNECTION_FAILED when the service is unreachable; 400 M_URL_NOT_SET without a url", async () => {
    await fake.close();
    const down = await t.req("POST", ping, AS_TOKEN, {});
    expect([down.status, down.body.errcode]).toEqual([502, "M_CONNECTION_FAILED"]);
    fake = await FakeAppService.start();
    const nourl = new TestServer();
    nourl.hs = await createHomeserver({ store: createMemoryStore(), seed: SEED, serverName: SERVER, appservices: [registration(null)] });
    try {
      const res = await nourl.req("POST", ping, AS_TOKEN, {});
      expect([res.status, res.body.errcode]).toEqual([400, "M_URL_NOT_SET"]);
    } finally {
      await nourl.close();
    }
  });
});
