import { describe, it, expect } from "vitest";
import { testServer } from "./accountHarness.ts";
import type { TestServer } from "./accountHarness.ts";

const LOGIN = "/_matrix/client/v3/login";
const REFRESH = "/_matrix/client/v3/refresh";
const WHOAMI = "/_matrix/client/v3/account/whoami";
const LIFETIME = 60_000;

async function refreshableLogin(s: TestServer, extra: Record<string, unknown> = {}): Promise<{ access: string; refresh: string; deviceId: string }> {
  const r = await s.call("POST", LOGIN, { type: "m.login.password", user: "alice", password: "correct horse", refresh_token: true, ...extra });
  expect(r.status).toBe(200);
  return { access: r.body.access_token, refresh: r.body.refresh_token, deviceId: r.body.device_id };
}

const whoami = async (s: TestServer, token: string) => s.call("GET", WHOAMI, undefined, { token });

describe("refresh tokens (POST /refresh, refresh_token on /login and /register)", () => {
  it("a client that does not ask keeps a non-expiring token", async () => {
    const s = await testServer({ accessTokenLifetimeMs: LIFETIME });
    await s.register("alice");
    const r = await s.call("POST", LOGIN, { type: "m.login.password", user: "alice", password: "correct horse" });
    expect(r.body.refresh_token).toBeUndefined();
    expect(r.body.expires_in_ms).toBeUndefined();
    s.advance(100 * LIFETIME);
    expect((await whoami(s, r.body.access_token)).status).toBe(200);
  });

  it("/login with refresh_token: true returns a refresh token and the configured lifetime", async () => {
    const s = await testServer({ accessTokenLifetimeMs: LIFETIME });
    await s.register("alice");
    const r = await s.call("POST", LOGIN, { type: "m.login.password", user: "alice", password: "correct horse", refresh_token: true });
    expect(r.body).toMatchObject({ refresh_token: expect.stringMatching(/^hyr_/), expires_in_ms: LIFETIME, access_token: expect.any(String) });
  });

  it("the default lifetime is five minutes", async () => {
    const s = await testServer();
    await s.register("alice");
    const { access } = await refreshableLogin(s);
    s.advance(5 * 60_000 - 1);
    expect((await whoami(s, access)).status).toBe(200);
    s.advance(1);
    expect((await whoami(s, access)).body).toMatchObject({ errcode: "M_UNKNOWN_TOKEN", soft_logout: true });
  });

  it("/register with refresh_token: true does the same; inhibit_login returns no tokens", async () => {
    const s = await testServer({ accessTokenLifetimeMs: LIFETIME });
    const r = await s.call("POST", "/_matrix/client/v3/register", { username: "bob", password: "pw", auth: { type: "m.login.dummy" }, refresh_token: true });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ refresh_token: expect.any(String), expires_in_ms: LIFETIME });
    const inhibited = await s.call("POST", "/_matrix/client/v3/register", { username: "carol", auth: { type: "m.login.dummy" }, refresh_token: true, inhibit_login: true });
    expect(inhibited.body).toEqual({ user_id: expect.any(String), home_server: expect.any(String) });
  });

  it("an expired access token is a soft logout; /refresh brings a working one on the same device", async () => {
    const s = await testServer({ accessTokenLifetimeMs: LIFETIME });
    await s.register("alice");
    const { access, refresh, deviceId } = await refreshableLogin(s);
    s.advance(LIFETIME);
    const expired = await whoami(s, access);
    expect(expired.status).toBe(401);
    expect(expired.body).toMatchObject({ errcode: "M_UNKNOWN_TOKEN", soft_logout: true });

    // /refresh needs no valid access token; an expired one sent along is ignored.
    const r = await s.call("POST", REFRESH, { refresh_token: refresh }, { token: access });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ access_token: expect.any(String), refresh_token: expect.any(String), expires_in_ms: LIFETIME });
    expect(r.body.refresh_token).not.toBe(refresh);
    const me = await whoami(s, r.body.access_token);
    expect(me.body).toMatchObject({ user_id: expect.stringMatching(/^@alice:/), device_id: deviceId });
  });

  it("the old refresh token stays valid until the new access token is used, then is revoked", async () => {
    const s = await testServer({ accessTokenLifetimeMs: LIFETIME });
    await s.register("alice");
    const { refresh } = await refreshableLogin(s);
    const first = await s.call("POST", REFRESH, { refresh_token: refresh });
    // The response was "lost": the client repeats the refresh with the old token.
    const again = await s.call("POST", REFRESH, { refresh_token: refresh });
    expect(again.status).toBe(200);
    // Repeating discards the tokens of the lost refresh.
    expect((await whoami(s, first.body.access_token)).body.errcode).toBe("M_UNKNOWN_TOKEN");
    expect((await s.call("POST", REFRESH, { refresh_token: first.body.refresh_token })).status).toBe(401);

    // Using the new access token retires the old refresh token.
    expect((await whoami(s, again.body.access_token)).status).toBe(200);
    const used = await s.call("POST", REFRESH, { refresh_token: refresh });
    expect(used.status).toBe(401);
    expect(used.body.errcode).toBe("M_UNKNOWN_TOKEN");
    // The new refresh token works.
    expect((await s.call("POST", REFRESH, { refresh_token: again.body.refresh_token })).status).toBe(200);
  });

  it("using the new refresh token also retires the old one", async () => {
    const s = await testServer({ accessTokenLifetimeMs: LIFETIME });
    await s.register("alice");
    const { refresh } = await refreshableLogin(s);
    const first = await s.call("POST", REFRESH, { refresh_token: refresh });
    const second = await s.call("POST", REFRESH, { refresh_token: first.body.refresh_token });
    expect(second.status).toBe(200);
    expect((await s.call("POST", REFRESH, { refresh_token: refresh })).body.errcode).toBe("M_UNKNOWN_TOKEN");
    expect((await whoami(s, second.body.access_token)).status).toBe(200);
  });

  it("logout, device deletion and re-login on the device revoke refresh tokens", async () => {
    const s = await testServer({ accessTokenLifetimeMs: LIFETIME });
    await s.register("alice");
    const a = await refreshableLogin(s);
    expect((await s.call("POST", "/_matrix/client/v3/logout", {}, { token: a.access })).status).toBe(200);
    expect((await s.call("POST", REFRESH, { refresh_token: a.refresh })).body.errcode).toBe("M_UNKNOWN_TOKEN");

    const b = await refreshableLogin(s);
    const keep = await refreshableLogin(s);
    const del = await s.call("POST", "/_matrix/client/v3/delete_devices", { devices: [b.deviceId], auth: { type: "m.login.password", identifier: { type: "m.id.user", user: "alice" }, password: "correct horse" } }, { token: keep.access });
    expect(del.status).toBe(200);
    expect((await s.call("POST", REFRESH, { refresh_token: b.refresh })).body.errcode).toBe("M_UNKNOWN_TOKEN");

    // "If the client sets the device_id, the server will invalidate any access and refresh tokens previously assigned to that device."
    const again = await refreshableLogin(s, { device_id: keep.deviceId });
    expect((await s.call("POST", REFRESH, { refresh_token: keep.refresh })).body.errcode).toBe("M_UNKNOWN_TOKEN");
    expect((await s.call("POST", REFRESH, { refresh_token: again.refresh })).status).toBe(200);
  });

  it("a refreshed device's tokens (also rotated ones) go with the device", async () => {
    const s = await testServer({ accessTokenLifetimeMs: LIFETIME });
    await s.register("alice");
    const a = await refreshableLogin(s);
    const r = await s.call("POST", REFRESH, { refresh_token: a.refresh });
    expect((await s.call("POST", "/_matrix/client/v3/logout", {}, { token: r.body.access_token })).status).toBe(200);
    expect((await s.call("POST", REFRESH, { refresh_token: r.body.refresh_token })).body.errcode).toBe("M_UNKNOWN_TOKEN");
    expect((await s.call("POST", REFRESH, { refresh_token: a.refresh })).body.errcode).toBe("M_UNKNOWN_TOKEN");
    expect((await whoami(s, a.access)).body.errcode).toBe("M_UNKNOWN_TOKEN");
  });

  it("answers errors: unknown token, access token as refresh token, bad and missing fields", async () => {
    const s = await testServer({ accessTokenLifetimeMs: LIFETIME });
    await s.register("alice");
    const { access } = await refreshableLogin(s);
    const unknown = await s.call("POST", REFRESH, { refresh_token: "hyr_nope" });
    expect([unknown.status, unknown.body.errcode]).toEqual([401, "M_UNKNOWN_TOKEN"]);
    expect((await s.call("POST", REFRESH, { refresh_token: access })).body.errcode).toBe("M_UNKNOWN_TOKEN");
    expect((await s.call("POST", REFRESH, {})).body.errcode).toBe("M_MISSING_PARAM");
    expect((await s.call("POST", REFRESH, { refresh_token: 5 })).body.errcode).toBe("M_BAD_JSON");
    expect((await s.call("POST", REFRESH, undefined, { rawBody: "{nope" })).body.errcode).toBe("M_NOT_JSON");
    expect((await s.call("POST", LOGIN, { type: "m.login.password", user: "alice", password: "correct horse", refresh_token: "yes" })).body.errcode).toBe("M_BAD_JSON");
  });

  it("a deactivated account cannot refresh", async () => {
    const s = await testServer({ accessTokenLifetimeMs: LIFETIME });
    await s.register("alice");
    const { access, refresh } = await refreshableLogin(s);
    const d = await s.call("POST", "/_matrix/client/v3/account/deactivate", { auth: { type: "m.login.password", identifier: { type: "m.id.user", user: "alice" }, password: "correct horse" } }, { token: access });
    expect(d.status).toBe(200);
    expect((await s.call("POST", REFRESH, { refresh_token: refresh })).body.errcode).toBe("M_UNKNOWN_TOKEN");
  });
});
