/**
 * Token-authenticated registration (the m.login.registration_token stage and its validity
 * endpoint) and Synapse's admin API for the tokens.
 */
import { describe, it, expect } from "vitest";
import { testServer } from "../client/accountHarness.ts";
import type { TestServer } from "../client/accountHarness.ts";

const REGISTER = "/_matrix/client/v3/register";
const ADMIN = "/_synapse/admin/v1/registration_tokens";
const VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity";

async function withAdmin(t: TestServer): Promise<string> {
  const a = await t.register("root");
  await t.hs.services.store.write(async (tx) => tx.put("accounts", a.userId, { ...(await tx.get<object>("accounts", a.userId)), admin: true }));
  return a.token;
}

/** Registers `username` through the token stage; returns the final response. */
async function registerWithToken(t: TestServer, username: string, token: string) {
  const probe = await t.call("POST", REGISTER, { username, password: "pw" });
  expect(probe.status).toBe(401);
  expect(probe.body.flows).toEqual([{ stages: ["m.login.registration_token", "m.login.dummy"] }]);
  const staged = await t.call("POST", REGISTER, { username, password: "pw", auth: { type: "m.login.registration_token", token, session: probe.body.session } });
  if (staged.status !== 401 || staged.body.errcode !== undefined) return staged;
  expect(staged.body.completed).toEqual(["m.login.registration_token"]);
  return t.call("POST", REGISTER, { username, password: "pw", auth: { type: "m.login.dummy", session: probe.body.session } });
}

describe("registration_requires_token", () => {
  it("registers with a token from the admin API; uses_allowed runs out; a wrong token is a failed stage", async () => {
    // The admin registers before tokens are required.
    const t = await testServer();
    const admin = await withAdmin(t);
    t.hs.services.config.registrationRequiresToken = true;
    const created = await t.call("POST", `${ADMIN}/new`, { token: "abc_123", uses_allowed: 1 }, { token: admin });
    expect(created.status).toBe(200);
    expect(created.body).toEqual({ token: "abc_123", uses_allowed: 1, pending: 0, completed: 0, expiry_time: null });

    expect((await t.call("GET", `${VALIDITY}?token=abc_123`)).body).toEqual({ valid: true });
    expect((await t.call("GET", `${VALIDITY}?token=nope`)).body).toEqual({ valid: false });
    const dummy = await t.call("POST", REGISTER, { username: "x", password: "pw", auth: { type: "m.login.dummy" } });
    expect(dummy.status).toBe(401);
    expect(dummy.body.errcode).toBe("M_FORBIDDEN");

    const wrong = await registerWithToken(t, "eve", "nope");
    expect(wrong.status).toBe(401);
    expect(wrong.body.errcode).toBe("M_FORBIDDEN");

    const ok = await registerWithToken(t, "alice", "abc_123");
    expect(ok.status).toBe(200);
    expect(ok.body.user_id).toBe("@alice:hs.test");
    expect((await t.call("GET", `${ADMIN}/abc_123`, undefined, { token: admin })).body).toMatchObject({ completed: 1, pending: 0 });
    expect((await t.call("GET", `${VALIDITY}?token=abc_123`)).body).toEqual({ valid: false });
    expect((await registerWithToken(t, "bob", "abc_123")).status).toBe(401);
  });

  it("a pending use holds the token until the registration completes", async () => {
    const t = await testServer();
    const admin = await withAdmin(t);
    t.hs.services.config.registrationRequiresToken = true;
    await t.call("POST", `${ADMIN}/new`, { token: "one", uses_allowed: 1 }, { token: admin });
    // The first session passes the token stage; until it completes, the token's only use is pending.
    const probe = await t.call("POST", REGISTER, { password: "pw" });
    const staged = await t.call("POST", REGISTER, { password: "pw", auth: { type: "m.login.registration_token", token: "one", session: probe.body.session } });
    expect(staged.status).toBe(401);
    expect((await t.call("GET", `${ADMIN}/one`, undefined, { token: admin })).body).toMatchObject({ completed: 0, pending: 1 });
    expect((await t.call("GET", `${VALIDITY}?token=one`)).body).toEqual({ valid: false });
    expect((await registerWithToken(t, "second", "one")).body.errcode).toBe("M_FORBIDDEN");
    const done = await t.call("POST", REGISTER, { password: "pw", auth: { type: "m.login.dummy", session: probe.body.session } });
    expect(done.status).toBe(200);
    expect((await t.call("GET", `${ADMIN}/one`, undefined, { token: admin })).body).toMatchObject({ completed: 1, pending: 0 });
  });

  it("expired tokens are invalid", async () => {
    const t = await testServer();
    const admin = await withAdmin(t);
    t.hs.services.config.registrationRequiresToken = true;
    const created = await t.call("POST", `${ADMIN}/new`, { expiry_time: 1_800_000_000_000 + 1000 }, { token: admin });
    expect(created.status).toBe(200);
    const token = created.body.token as string;
    expect(token).toMatch(/^[A-Za-z0-9._~-]{16}$/);
    expect((await t.call("GET", `${VALIDITY}?token=${token}`)).body).toEqual({ valid: true });
    t.advance(2000);
    expect((await t.call("GET", `${VALIDITY}?token=${token}`)).body).toEqual({ valid: false });
    expect((await t.call("GET", `${ADMIN}?valid=false`, undefined, { token: admin })).body.registration_tokens).toHaveLength(1);
    expect((await t.call("GET", `${ADMIN}?valid=true`, undefined, { token: admin })).body.registration_tokens).toHaveLength(0);
  });
});

describe("admin API /_synapse/admin/v1/registration_tokens", () => {
  it("list, create, get, update, delete", async () => {
    const t = await testServer();
    const admin = await withAdmin(t);
    expect((await t.call("GET", ADMIN, undefined, { token: admin })).body).toEqual({ registration_tokens: [] });
    await t.call("POST", `${ADMIN}/new`, { token: "t1" }, { token: admin });
    await t.call("POST", `${ADMIN}/new`, { length: 8, uses_allowed: 3 }, { token: admin });
    const list = (await t.call("GET", ADMIN, undefined, { token: admin })).body.registration_tokens as { token: string }[];
    expect(list).toHaveLength(2);
    const updated = await t.call("PUT", `${ADMIN}/t1`, { uses_allowed: 5, expiry_time: null }, { token: admin });
    expect(updated.body).toEqual({ token: "t1", uses_allowed: 5, pending: 0, completed: 0, expiry_time: null });
    expect((await t.call("DELETE", `${ADMIN}/t1`, undefined, { token: admin })).body).toEqual({});
    expect((await t.call("GET", `${ADMIN}/t1`, undefined, { token: admin })).status).toBe(404);
    expect((await t.call("DELETE", `${ADMIN}/t1`, undefined, { token: admin })).status).toBe(404);
    expect((await t.call("PUT", `${ADMIN}/t1`, {}, { token: admin })).status).toBe(404);
  });

  it.each([
    [{ token: "has space" }],
    [{ token: "x".repeat(65) }],
    [{ uses_allowed: -1 }],
    [{ uses_allowed: 1.5 }],
    [{ expiry_time: 5 }],
    [{ length: 0 }],
    [{ length: 65 }],
    [{ token: "a", length: 4 }],
  ])("refuses %j with 400 M_INVALID_PARAM", async (body) => {
    const t = await testServer();
    const admin = await withAdmin(t);
    const r = await t.call("POST", `${ADMIN}/new`, body, { token: admin });
    expect(r.status).toBe(400);
    expect(r.body.errcode).toBe("M_INVALID_PARAM");
  });

  it("refuses a duplicate token, and non-admins", async () => {
    const t = await testServer();
    const admin = await withAdmin(t);
    expect((await t.call("POST", `${ADMIN}/new`, { token: "dup" }, { token: admin })).status).toBe(200);
    expect((await t.call("POST", `${ADMIN}/new`, { token: "dup" }, { token: admin })).body.errcode).toBe("M_INVALID_PARAM");
    const user = await t.register("user");
    for (const [m, p] of [["GET", ADMIN], ["POST", `${ADMIN}/new`], ["GET", `${ADMIN}/dup`], ["PUT", `${ADMIN}/dup`], ["DELETE", `${ADMIN}/dup`]] as const) {
      const r = await t.call(m, p, m === "GET" || m === "DELETE" ? undefined : {}, { token: user.token });
      expect(r.status, `${m} ${p}`).toBe(403);
      expect(r.body.errcode).toBe("M_FORBIDDEN");
    }
    expect((await t.call("GET", ADMIN)).status).toBe(401);
  });
});

describe("registration details", () => {
  it("refuses an empty password with 400 M_WEAK_PASSWORD", async () => {
    const t = await testServer();
    const r = await t.call("POST", REGISTER, { username: "a", password: "", auth: { type: "m.login.dummy" } });
    expect(r.status).toBe(400);
    expect(r.body.errcode).toBe("M_WEAK_PASSWORD");
    const u = await t.register("b", "pw");
    const change = await t.call("POST", "/_matrix/client/v3/account/password", { new_password: "", auth: { type: "m.login.password", identifier: { type: "m.id.user", user: "b" }, password: "pw" } }, { token: u.token });
    expect(change.status).toBe(400);
    expect(change.body.errcode).toBe("M_WEAK_PASSWORD");
  });

  it("the validity endpoint answers 403 when registration is off", async () => {
    const t = await testServer({ enableRegistration: false });
    const r = await t.call("GET", `${VALIDITY}?token=x`);
    expect(r.status).toBe(403);
    expect(r.body.errcode).toBe("M_FORBIDDEN");
  });
});
