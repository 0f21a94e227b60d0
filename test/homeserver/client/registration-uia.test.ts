/**
 * Issue 12, "Registration and UIA": idempotent registration per UIA session, remembered request
 * parameters, `inhibit_login`, `completed` in every UIA 401, and a 403 when the UIA user is not
 * the device owner (client-server API "User-Interactive Authentication API", "POST /register").
 */
import { describe, it, expect } from "vitest";
import { SERVER, testServer } from "./accountHarness.ts";

const REGISTER = "/_matrix/client/v3/register";

const pw = (user: string, password: string, session?: string) => ({
  type: "m.login.password",
  identifier: { type: "m.id.user", user },
  password,
  ...(session ? { session } : {}),
});

describe("registration across UIA stages", () => {
  it("a retry of a completed session answers with the same user (logged in anew), not a second account", async () => {
    const { call } = await testServer();
    const probe = await call("POST", REGISTER, { password: "s3kr1t" });
    expect(probe.status).toBe(401);
    const session = probe.body.session as string;
    const first = await call("POST", REGISTER, { password: "s3kr1t", auth: { type: "m.login.dummy", session } });
    expect(first.status).toBe(200);
    // The same session again, e.g. after the response was lost: the same user, a working token.
    const again = await call("POST", REGISTER, { password: "s3kr1t", auth: { type: "m.login.dummy", session } });
    expect(again.status).toBe(200);
    expect(again.body.user_id).toBe(first.body.user_id);
    expect(again.body.access_token).not.toBe(first.body.access_token);
    const who = await call("GET", "/_matrix/client/v3/account/whoami", undefined, { token: again.body.access_token });
    expect(who.body.user_id).toBe(first.body.user_id);
  });

  it("with a username, the retry is not refused as M_USER_IN_USE", async () => {
    const { call } = await testServer();
    const probe = await call("POST", REGISTER, { username: "alice", password: "pw" });
    const body = { username: "alice", password: "pw", auth: { type: "m.login.dummy", session: probe.body.session } };
    expect((await call("POST", REGISTER, body)).body.user_id).toBe(`@alice:${SERVER}`);
    const again = await call("POST", REGISTER, body);
    expect([again.status, again.body.user_id]).toEqual([200, `@alice:${SERVER}`]);
    // Another session for the same name is still refused.
    const other = await call("POST", REGISTER, { username: "alice", password: "pw", auth: { type: "m.login.dummy" } });
    expect([other.status, other.body.errcode]).toEqual([400, "M_USER_IN_USE"]);
  });

  it("remembers the parameters of the first request when a later one sends only auth", async () => {
    const { call } = await testServer();
    const probe = await call("POST", REGISTER, { username: "bob", password: "s3kr1t", device_id: "xyzzy", initial_device_display_name: "display_name" });
    expect(probe.status).toBe(401);
    const done = await call("POST", REGISTER, { auth: { type: "m.login.dummy", session: probe.body.session } });
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({ user_id: `@bob:${SERVER}`, device_id: "xyzzy" });
    const device = await call("GET", "/_matrix/client/v3/devices/xyzzy", undefined, { token: done.body.access_token });
    expect(device.body.display_name).toBe("display_name");
    // The remembered password is the account's password.
    const login = await call("POST", "/_matrix/client/v3/login", { type: "m.login.password", identifier: { type: "m.id.user", user: "bob" }, password: "s3kr1t" });
    expect(login.status).toBe(200);
  });

  it("a retry after the account was deactivated logs nobody in", async () => {
    const { call } = await testServer();
    const probe = await call("POST", REGISTER, { username: "ivy", password: "pw" });
    const body = { username: "ivy", password: "pw", auth: { type: "m.login.dummy", session: probe.body.session } };
    const first = await call("POST", REGISTER, body);
    const auth = { type: "m.login.password", identifier: { type: "m.id.user", user: "ivy" }, password: "pw" };
    expect((await call("POST", "/_matrix/client/v3/account/deactivate", { auth }, { token: first.body.access_token })).status).toBe(200);
    const again = await call("POST", REGISTER, body);
    expect([again.status, again.body.errcode]).toEqual([403, "M_USER_DEACTIVATED"]);
  });

  it("a completed session is not a lasting credential: retries stop after the retry window", async () => {
    const { call, advance } = await testServer();
    const probe = await call("POST", REGISTER, { username: "carol", password: "pw" });
    const body = { username: "carol", password: "pw", auth: { type: "m.login.dummy", session: probe.body.session } };
    expect((await call("POST", REGISTER, body)).status).toBe(200);
    advance(6 * 60_000);
    const late = await call("POST", REGISTER, { auth: body.auth });
    expect([late.status, late.body.errcode]).toEqual([400, "M_UNKNOWN"]);
  });

  it("inhibit_login returns the user ID only: no access_token, no device_id, no refresh token", async () => {
    const { call } = await testServer();
    const r = await call("POST", REGISTER, { username: "dave", password: "pw", inhibit_login: true, refresh_token: true, auth: { type: "m.login.dummy" } });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ user_id: `@dave:${SERVER}`, home_server: SERVER });
    // A retry of that session stays without a login.
    const probe = await call("POST", REGISTER, { username: "erin", password: "pw", inhibit_login: true });
    const s = probe.body.session as string;
    await call("POST", REGISTER, { auth: { type: "m.login.dummy", session: s } });
    expect((await call("POST", REGISTER, { auth: { type: "m.login.dummy", session: s } })).body).toEqual({ user_id: `@erin:${SERVER}`, home_server: SERVER });
  });
});

describe("UIA 401 bodies", () => {
  it("every 401 carries completed: [] at first, the done stages later, also with an error", async () => {
    const { call } = await testServer({ registrationRequiresToken: true });
    const first = await call("POST", REGISTER, { username: "frank", password: "pw" });
    expect(first.status).toBe(401);
    expect(first.body.completed).toEqual([]);
    const wrongStage = await call("POST", REGISTER, { username: "frank", password: "pw", auth: { type: "m.login.dummy", session: first.body.session } });
    expect(wrongStage.status).toBe(401);
    expect(wrongStage.body).toMatchObject({ errcode: "M_FORBIDDEN", completed: [], session: first.body.session });
  });

  it("a wrong password keeps completed in the 401 of an identity check", async () => {
    const { call, register } = await testServer();
    const a = await register("gina", "pw", { device_id: "ONE" });
    const probe = await call("POST", "/_matrix/client/v3/delete_devices", { devices: ["ONE"] }, { token: a.token });
    expect(probe.body.completed).toEqual([]);
    const wrong = await call("POST", "/_matrix/client/v3/delete_devices", { devices: ["ONE"], auth: pw("gina", "nope", probe.body.session) }, { token: a.token });
    expect(wrong.status).toBe(401);
    expect(wrong.body).toMatchObject({ errcode: "M_FORBIDDEN", completed: [] });
  });
});

describe("DELETE /devices/{deviceId} with another user's credentials", () => {
  it("answers 403 when the UIA user differs from the device owner, and the device stays", async () => {
    const { call, register } = await testServer();
    const alice = await register("alice", "alicepw", { device_id: "LOGIN_DEVICE" });
    await register("bob", "bobpw");
    const probe = await call("DELETE", "/_matrix/client/v3/devices/LOGIN_DEVICE", {}, { token: alice.token });
    expect(probe.status).toBe(401);
    const r = await call("DELETE", "/_matrix/client/v3/devices/LOGIN_DEVICE", { auth: pw(`@bob:${SERVER}`, "bobpw", probe.body.session) }, { token: alice.token });
    expect([r.status, r.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
    expect(r.body.flows).toBeUndefined();
    expect((await call("GET", "/_matrix/client/v3/devices/LOGIN_DEVICE", undefined, { token: alice.token })).status).toBe(200);
    // Bob's name with a wrong password is an ordinary failed stage (401), not a 403.
    const wrong = await call("DELETE", "/_matrix/client/v3/devices/LOGIN_DEVICE", { auth: pw(`@bob:${SERVER}`, "nope", probe.body.session) }, { token: alice.token });
    expect([wrong.status, wrong.body.errcode]).toEqual([401, "M_FORBIDDEN"]);
    // The owner's own password still works on the same session.
    const ok = await call("DELETE", "/_matrix/client/v3/devices/LOGIN_DEVICE", { auth: pw("alice", "alicepw", probe.body.session) }, { token: alice.token });
    expect(ok.status).toBe(200);
  });

  it("a completed identity check answers a retry of the same request with its result", async () => {
    const { call, register } = await testServer();
    const a = await register("hank", "pw", { device_id: "KEEP" });
    await call("POST", "/_matrix/client/v3/login", { type: "m.login.password", user: "hank", password: "pw", device_id: "GONE" });
    const probe = await call("POST", "/_matrix/client/v3/delete_devices", { devices: ["GONE"] }, { token: a.token });
    const body = { devices: ["GONE"], auth: pw("hank", "pw", probe.body.session) };
    expect((await call("POST", "/_matrix/client/v3/delete_devices", body, { token: a.token })).status).toBe(200);
    expect((await call("POST", "/_matrix/client/v3/delete_devices", body, { token: a.token })).status).toBe(200);
  });
});
