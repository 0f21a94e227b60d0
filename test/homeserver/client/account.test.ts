import { describe, it, expect } from "vitest";
import { SERVER, testServer } from "./accountHarness.ts";
import { DEFAULT_RATE_LIMITS } from "../../../src/homeserver/auth/rateLimit.ts";

const REGISTER = "/_matrix/client/v3/register";

describe("POST /register", () => {
  it("answers 401 with a session and the dummy flow first, then registers with that session", async () => {
    const { call } = await testServer();
    const first = await call("POST", REGISTER, { username: "alice", password: "pw" });
    expect(first.status).toBe(401);
    expect(first.body.flows).toEqual([{ stages: ["m.login.dummy"] }]);
    expect(first.body.params).toEqual({});
    expect(typeof first.body.session).toBe("string");
    expect(first.body.errcode).toBeUndefined();

    const done = await call("POST", REGISTER, { username: "alice", password: "pw", auth: { type: "m.login.dummy", session: first.body.session } });
    expect(done.status).toBe(200);
    expect(done.body.user_id).toBe(`@alice:${SERVER}`);
    expect(done.body.access_token).toMatch(/^hyt_/);
    expect(done.body.device_id).toMatch(/^[A-Z]{10}$/);

    const who = await call("GET", "/_matrix/client/v3/account/whoami", undefined, { token: done.body.access_token });
    expect(who.body).toEqual({ user_id: `@alice:${SERVER}`, device_id: done.body.device_id, is_guest: false });

    // A completed session registers nobody else: a retry answers with the same account.
    const again = await call("POST", REGISTER, { username: "alice2", password: "pw", auth: { type: "m.login.dummy", session: first.body.session } });
    expect([again.status, again.body.user_id]).toEqual([200, `@alice:${SERVER}`]);
    expect((await call("GET", "/_matrix/client/v3/register/available?username=alice2")).body).toEqual({ available: true });
  });

  it("refuses a session started for another operation", async () => {
    const { call, register } = await testServer();
    const alice = await register("alice");
    const probe = await call("POST", "/_matrix/client/v3/delete_devices", { devices: [] }, { token: alice.token });
    expect(probe.status).toBe(401);
    const r = await call("POST", REGISTER, { username: "bob", password: "pw", auth: { type: "m.login.dummy", session: probe.body.session } });
    expect(r.status).toBe(403);
    expect(r.body.errcode).toBe("M_FORBIDDEN");
  });

  it("honours device_id, initial_device_display_name and inhibit_login", async () => {
    const { call, register } = await testServer();
    const a = await register("alice", "pw", { device_id: "MYDEVICE", initial_device_display_name: "Laptop" });
    expect(a.deviceId).toBe("MYDEVICE");
    const devices = await call("GET", "/_matrix/client/v3/devices", undefined, { token: a.token });
    expect(devices.body.devices).toEqual([expect.objectContaining({ device_id: "MYDEVICE", display_name: "Laptop" })]);

    const inhibited = await call("POST", REGISTER, { username: "bob", password: "pw", inhibit_login: true, auth: { type: "m.login.dummy" } });
    expect(inhibited.status).toBe(200);
    expect(inhibited.body.user_id).toBe(`@bob:${SERVER}`);
    expect(inhibited.body.access_token).toBeUndefined();
    expect(inhibited.body.device_id).toBeUndefined();
  });

  it.each([
    ["Alice", 200, `@alice:${SERVER}`], // lower-cased, as Synapse does
    ["al ice", 400, "M_INVALID_USERNAME"],
    ["al:ice", 400, "M_INVALID_USERNAME"],
    ["", 400, "M_INVALID_USERNAME"],
    ["x".repeat(250), 400, "M_INVALID_USERNAME"],
    ["a.b_c=d-e/f+g", 200, `@a.b_c=d-e/f+g:${SERVER}`],
  ])("username %j → %i %s", async (username, status, what) => {
    const { call } = await testServer();
    const r = await call("POST", REGISTER, { username, password: "pw", auth: { type: "m.login.dummy" } });
    expect(r.status).toBe(status);
    expect(status === 200 ? r.body.user_id : r.body.errcode).toBe(what);
  });

  it("answers M_USER_IN_USE before authentication and for a deactivated user", async () => {
    const { call, register } = await testServer();
    const a = await register("alice");
    const taken = await call("POST", REGISTER, { username: "alice", password: "pw" });
    expect([taken.status, taken.body.errcode]).toEqual([400, "M_USER_IN_USE"]);
    const d = await call("POST", "/_matrix/client/v3/account/deactivate", { auth: { type: "m.login.password", identifier: { type: "m.id.user", user: "alice" }, password: "correct horse" } }, { token: a.token });
    expect(d.status).toBe(200);
    const reuse = await call("POST", REGISTER, { username: "alice", password: "pw", auth: { type: "m.login.dummy" } });
    expect(reuse.body.errcode).toBe("M_USER_IN_USE");
  });

  it("generates a username when none is given", async () => {
    const { call } = await testServer();
    const r = await call("POST", REGISTER, { password: "pw", auth: { type: "m.login.dummy" } });
    expect(r.status).toBe(200);
    expect(r.body.user_id).toMatch(new RegExp(`^@[a-z0-9]{12}:${SERVER.replace(".", "\\.")}$`));
  });

  it("refuses guests honestly, and registration when disabled", async () => {
    const { call } = await testServer();
    const guest = await call("POST", `${REGISTER}?kind=guest`, {});
    expect([guest.status, guest.body.errcode]).toEqual([403, "M_GUEST_ACCESS_FORBIDDEN"]);
    const closed = await testServer({ enableRegistration: false });
    const r = await closed.call("POST", REGISTER, { username: "a", password: "pw", auth: { type: "m.login.dummy" } });
    expect([r.status, r.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
    const v = await closed.call("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=abc");
    expect([v.status, v.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
  });

  it("rejects wrong shapes with M_BAD_JSON and unknown stages with a 401 error", async () => {
    const { call } = await testServer();
    expect((await call("POST", REGISTER, { username: 5 })).body.errcode).toBe("M_BAD_JSON");
    expect((await call("POST", REGISTER, { username: "a", password: ["x"] })).body.errcode).toBe("M_BAD_JSON");
    expect((await call("POST", REGISTER, { username: "a", inhibit_login: "yes" })).body.errcode).toBe("M_BAD_JSON");
    const r = await call("POST", REGISTER, { username: "a", password: "pw", auth: { type: "m.login.recaptcha" } });
    expect(r.status).toBe(401);
    expect(r.body.errcode).toBe("M_FORBIDDEN");
    expect(r.body.flows).toEqual([{ stages: ["m.login.dummy"] }]);
  });

  it("stores passwords as PBKDF2-SHA512 hashes, never in clear", async () => {
    const { hs, register } = await testServer({ passwordIterations: 1234 });
    await register("alice", "s3cret-password");
    const account = await hs.services.store.read((tx) => tx.get<Record<string, unknown>>("accounts", `@alice:${SERVER}`));
    expect(account!.passwordHash).toMatch(/^pbkdf2-sha512\$1234\$/);
    expect(JSON.stringify(account)).not.toContain("s3cret-password");
  });
});

describe("GET /register/available and the registration token validity", () => {
  it("reports availability, taken and invalid names", async () => {
    const { call, register } = await testServer();
    await register("alice");
    expect((await call("GET", "/_matrix/client/v3/register/available?username=bob")).body).toEqual({ available: true });
    const taken = await call("GET", "/_matrix/client/v3/register/available?username=alice");
    expect([taken.status, taken.body.errcode]).toEqual([400, "M_USER_IN_USE"]);
    const bad = await call("GET", "/_matrix/client/r0/register/available?username=a%20b");
    expect(bad.body.errcode).toBe("M_INVALID_USERNAME");
    expect((await call("GET", "/_matrix/client/v3/register/available")).body.errcode).toBe("M_MISSING_PARAM");
  });

  it("says no registration token is valid (this server uses none)", async () => {
    const { call } = await testServer();
    const r = await call("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=fBVFdqVE");
    expect(r).toMatchObject({ status: 200, body: { valid: false } });
  });
});

describe("login", () => {
  it("offers password and token flows", async () => {
    const { call } = await testServer();
    const r = await call("GET", "/_matrix/client/v3/login");
    expect(r.body.flows).toEqual([{ type: "m.login.password" }, { type: "m.login.token", get_login_token: true }]);
  });

  it.each([
    ["identifier with localpart", { identifier: { type: "m.id.user", user: "alice" } }],
    ["identifier with user ID", { identifier: { type: "m.id.user", user: `@alice:${SERVER}` } }],
    ["identifier, other case", { identifier: { type: "m.id.user", user: "ALICE" } }],
    ["legacy user field", { user: "alice" }],
  ])("logs in with m.login.password (%s)", async (_name, who) => {
    const { call, register } = await testServer();
    await register("alice", "pw1");
    const r = await call("POST", "/_matrix/client/v3/login", { type: "m.login.password", password: "pw1", ...who, initial_device_display_name: "Phone" });
    expect(r.status).toBe(200);
    expect(r.body.user_id).toBe(`@alice:${SERVER}`);
    const who2 = await call("GET", "/_matrix/client/v3/account/whoami", undefined, { token: r.body.access_token });
    expect(who2.body.device_id).toBe(r.body.device_id);
    const dev = await call("GET", `/_matrix/client/v3/devices/${r.body.device_id}`, undefined, { token: r.body.access_token });
    expect(dev.body.display_name).toBe("Phone");
  });

  it.each([
    ["wrong password", { type: "m.login.password", identifier: { type: "m.id.user", user: "alice" }, password: "nope" }, 403, "M_FORBIDDEN"],
    ["unknown user", { type: "m.login.password", identifier: { type: "m.id.user", user: "zed" }, password: "pw1" }, 403, "M_FORBIDDEN"],
    ["other server", { type: "m.login.password", identifier: { type: "m.id.user", user: "@alice:elsewhere" }, password: "pw1" }, 403, "M_FORBIDDEN"],
    ["third-party id", { type: "m.login.password", identifier: { type: "m.id.thirdparty", medium: "email", address: "a@b.c" }, password: "pw1" }, 403, "M_FORBIDDEN"],
    ["unknown identifier type", { type: "m.login.password", identifier: { type: "m.id.carrier-pigeon" }, password: "pw1" }, 400, "M_UNKNOWN"],
    ["unknown login type", { type: "m.login.fingerprint" }, 400, "M_UNKNOWN"],
    ["no type", { password: "pw1" }, 400, "M_BAD_JSON"],
    ["bad login token", { type: "m.login.token", token: "hyl_nothing" }, 403, "M_FORBIDDEN"],
  ])("refuses: %s", async (_name, body, status, errcode) => {
    const { call, register } = await testServer();
    await register("alice", "pw1");
    const r = await call("POST", "/_matrix/client/v3/login", body);
    expect([r.status, r.body.errcode]).toEqual([status, errcode]);
  });

  it("reusing a device ID revokes that device's previous token", async () => {
    const { call, register } = await testServer();
    const a = await register("alice", "pw", { device_id: "DEV" });
    const r = await call("POST", "/_matrix/client/v3/login", { type: "m.login.password", user: "alice", password: "pw", device_id: "DEV" });
    expect(r.body.device_id).toBe("DEV");
    expect((await call("GET", "/_matrix/client/v3/account/whoami", undefined, { token: a.token })).body.errcode).toBe("M_UNKNOWN_TOKEN");
    expect((await call("GET", "/_matrix/client/v3/account/whoami", undefined, { token: r.body.access_token })).status).toBe(200);
    expect((await call("GET", "/_matrix/client/v3/devices", undefined, { token: r.body.access_token })).body.devices).toHaveLength(1);
  });

  it("mints single-use, expiring login tokens behind UIA", async () => {
    const { call, register, advance } = await testServer();
    const a = await register("alice", "pw");
    const probe = await call("POST", "/_matrix/client/v1/login/get_token", {}, { token: a.token });
    expect(probe.status).toBe(401);
    expect(probe.body.flows).toEqual([{ stages: ["m.login.password"] }]);
    const auth = { type: "m.login.password", identifier: { type: "m.id.user", user: "alice" }, password: "pw", session: probe.body.session };
    const got = await call("POST", "/_matrix/client/v1/login/get_token", { auth }, { token: a.token });
    expect(got.status).toBe(200);
    expect(got.body.expires_in_ms).toBe(120_000);

    const login = await call("POST", "/_matrix/client/v3/login", { type: "m.login.token", token: got.body.login_token });
    expect([login.status, login.body.user_id]).toEqual([200, a.userId]);
    const reuse = await call("POST", "/_matrix/client/v3/login", { type: "m.login.token", token: got.body.login_token });
    expect([reuse.status, reuse.body.errcode]).toEqual([403, "M_FORBIDDEN"]);

    const second = await call("POST", "/_matrix/client/v1/login/get_token", { auth: { ...auth, session: undefined } }, { token: a.token });
    expect(second.status).toBe(200);
    advance(120_001);
    const late = await call("POST", "/_matrix/client/v3/login", { type: "m.login.token", token: second.body.login_token });
    expect([late.status, late.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
  });

  it("logout deletes the device; logout/all deletes every device", async () => {
    const { call, register } = await testServer();
    const a = await register("alice", "pw");
    const b = await call("POST", "/_matrix/client/v3/login", { type: "m.login.password", user: "alice", password: "pw" });
    const c = await call("POST", "/_matrix/client/v3/login", { type: "m.login.password", user: "alice", password: "pw" });
    expect((await call("POST", "/_matrix/client/v3/logout", {}, { token: a.token })).status).toBe(200);
    expect((await call("GET", "/_matrix/client/v3/account/whoami", undefined, { token: a.token })).body.errcode).toBe("M_UNKNOWN_TOKEN");
    const list = await call("GET", "/_matrix/client/v3/devices", undefined, { token: b.body.access_token });
    expect(list.body.devices.map((d: { device_id: string }) => d.device_id).sort()).toEqual([b.body.device_id, c.body.device_id].sort());
    expect((await call("POST", "/_matrix/client/v3/logout/all", {}, { token: b.body.access_token })).status).toBe(200);
    for (const t of [b.body.access_token, c.body.access_token]) {
      expect((await call("GET", "/_matrix/client/v3/account/whoami", undefined, { token: t })).status).toBe(401);
    }
  });
});

describe("rate limiting", () => {
  it("rc_login.failed_attempts: the 4th wrong password for one user is 429 (right password too), and recovers", async () => {
    const { call, register, advance } = await testServer();
    await register("alice", "pw");
    const bad = { type: "m.login.password", user: "alice", password: "wrong" };
    for (let i = 0; i < 3; i++) expect((await call("POST", "/_matrix/client/v3/login", bad, { from: "10.0.0.1" })).status).toBe(403);
    const limited = await call("POST", "/_matrix/client/v3/login", { ...bad, password: "pw" }, { from: "10.0.0.2" });
    expect(limited.status).toBe(429);
    expect(limited.body.errcode).toBe("M_LIMIT_EXCEEDED");
    // Synapse's default: 0.17 per second, so one more attempt after ~5.9 s.
    expect(limited.body.retry_after_ms).toBe(Math.ceil(1000 / 0.17));
    expect(limited.headers.get("Retry-After")).toBe(String(Math.ceil(1 / 0.17)));
    advance(limited.body.retry_after_ms as number);
    expect((await call("POST", "/_matrix/client/v3/login", { ...bad, password: "pw" }, { from: "10.0.0.2" })).status).toBe(200);
  });

  it("rc_login.address: every login from one address counts; another address is not affected", async () => {
    const { call, register } = await testServer();
    await register("alice", "pw");
    const good = { type: "m.login.password", user: "alice", password: "pw" };
    for (let i = 0; i < 5; i++) expect((await call("POST", "/_matrix/client/v3/login", good, { from: i < 4 ? "10.0.0.3" : "10.0.0.5" })).status).toBe(200);
    // alice's 6th login is over rc_login.account (5); bob's first from the same address is fine.
    expect((await call("POST", "/_matrix/client/v3/login", good, { from: "10.0.0.6" })).status).toBe(429);
    await register("bob", "pw");
    expect((await call("POST", "/_matrix/client/v3/login", { ...good, user: "bob" }, { from: "10.0.0.3" })).status).toBe(200);
    const overAddress = await call("POST", "/_matrix/client/v3/login", { ...good, user: "bob" }, { from: "10.0.0.3" });
    expect(overAddress.status).toBe(429);
    expect((await call("POST", "/_matrix/client/v3/login", { ...good, user: "bob" }, { from: "10.0.0.4" })).status).toBe(200);
  });

  it("rc_registration: 30 registrations per address at once, then one per ~5.9 s", async () => {
    const { call, advance } = await testServer();
    const reg = (u: string, from = "10.0.0.9") => call("POST", REGISTER, { username: u, password: "pw", auth: { type: "m.login.dummy" } }, { from });
    for (let i = 0; i < 30; i++) expect((await reg(`u${i}`)).status).toBe(200);
    const limited = await reg("u30");
    expect(limited.status).toBe(429);
    expect(limited.body.errcode).toBe("M_LIMIT_EXCEEDED");
    expect(limited.body.retry_after_ms).toBeGreaterThan(5000);
    // The 401 probe that starts the exchange costs nothing, but is refused while limited too.
    expect((await call("POST", REGISTER, { username: "u30" }, { from: "10.0.0.9" })).status).toBe(429);
    expect((await reg("other", "10.0.0.10")).status).toBe(200);
    advance(limited.body.retry_after_ms as number);
    expect((await reg("u30")).status).toBe(200);
    expect((await reg("u31")).status).toBe(429);
  });

  it("raised limits let a provisioning script register 100 users", async () => {
    const { call } = await testServer({ rateLimits: { ...DEFAULT_RATE_LIMITS, rc_registration: { perSecond: 10, burstCount: 100 } } });
    for (let i = 0; i < 100; i++) {
      expect((await call("POST", REGISTER, { username: `p${i}`, password: "pw", auth: { type: "m.login.dummy" } }, { from: "10.0.0.9" })).status).toBe(200);
    }
  });
});
