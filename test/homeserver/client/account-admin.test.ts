import { describe, it, expect } from "vitest";
import { createHmac } from "node:crypto";
import { SERVER, testServer } from "./accountHarness.ts";
import { registrationMac } from "../../../src/homeserver/admin/register.ts";

const PATH = "/_synapse/admin/v1/register";
const SECRET = "shared-secret";

/** The MAC as Synapse's own client (`register_new_matrix_user`) computes it, with node:crypto. */
function synapseMac(nonce: string, user: string, password: string, admin: boolean, userType?: string): string {
  const mac = createHmac("sha1", SECRET);
  mac.update(nonce).update("\x00").update(user).update("\x00").update(password).update("\x00").update(admin ? "admin" : "notadmin");
  if (userType) mac.update("\x00").update(userType);
  return mac.digest("hex");
}

describe("shared-secret registration (/_synapse/admin/v1/register)", () => {
  it("computes the same MAC as Synapse", async () => {
    expect(await registrationMac(SECRET, "abc", "bob", "pw", true)).toBe(synapseMac("abc", "bob", "pw", true));
    expect(await registrationMac(SECRET, "abc", "bob", "pw", false, "bot")).toBe(synapseMac("abc", "bob", "pw", false, "bot"));
  });

  it("registers with a valid MAC and logs the user in", async () => {
    const { hs, call } = await testServer({ registrationSharedSecret: SECRET });
    const { body } = await call("GET", PATH);
    expect(body.nonce).toMatch(/^[0-9a-f]{128}$/);
    const r = await call("POST", PATH, { nonce: body.nonce, username: "Admin", password: "pw", admin: true, displayname: "The Admin", mac: synapseMac(body.nonce, "Admin", "pw", true) });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ user_id: `@admin:${SERVER}`, home_server: SERVER, access_token: expect.any(String), device_id: expect.any(String) });
    const who = await call("GET", "/_matrix/client/v3/account/whoami", undefined, { token: r.body.access_token });
    expect(who.body.user_id).toBe(`@admin:${SERVER}`);
    const account = await hs.services.store.read((tx) => tx.get<Record<string, unknown>>("accounts", `@admin:${SERVER}`));
    expect(account).toMatchObject({ admin: true, displayname: "The Admin" });
    expect((await call("POST", "/_matrix/client/v3/login", { type: "m.login.password", user: "admin", password: "pw" })).status).toBe(200);
  });

  it("answers like Synapse on every error", async () => {
    const { call } = await testServer({ registrationSharedSecret: SECRET });
    const nonce = async () => (await call("GET", PATH)).body.nonce as string;
    const post = (b: Record<string, unknown>) => call("POST", PATH, b);

    expect((await post({ username: "a", password: "p", mac: "x" })).body).toEqual({ errcode: "M_BAD_JSON", error: "nonce must be specified" });
    expect((await post({ nonce: "nope", username: "a", password: "p", mac: "x" })).body).toEqual({ errcode: "M_UNKNOWN", error: "unrecognised nonce" });
    expect((await post({ nonce: await nonce(), password: "p", mac: "x" })).body).toEqual({ errcode: "M_BAD_JSON", error: "username must be specified" });
    expect((await post({ nonce: await nonce(), username: "a\u0000b", password: "p", mac: "x" })).body.error).toBe("Invalid username");
    expect((await post({ nonce: await nonce(), username: "a", mac: "x" })).body).toEqual({ errcode: "M_BAD_JSON", error: "password must be specified" });
    expect((await post({ nonce: await nonce(), username: "a", password: 5, mac: "x" })).body.error).toBe("Invalid password");
    expect((await post({ nonce: await nonce(), username: "a", password: "p", user_type: "wizard", mac: "x" })).body.error).toBe("Invalid user type");
    expect((await post({ nonce: await nonce(), username: "a", password: "p" })).body).toEqual({ errcode: "M_BAD_JSON", error: "mac must be specified" });

    const n = await nonce();
    const wrong = await post({ nonce: n, username: "a", password: "p", mac: synapseMac(n, "a", "p", true) });
    expect([wrong.status, wrong.body.error]).toEqual([403, "HMAC incorrect"]);
    // The nonce was consumed by the failed attempt.
    const reuse = await post({ nonce: n, username: "a", password: "p", mac: synapseMac(n, "a", "p", false) });
    expect([reuse.status, reuse.body.error]).toEqual([400, "unrecognised nonce"]);

    const n2 = await nonce();
    expect((await post({ nonce: n2, username: "a b", password: "p", mac: synapseMac(n2, "a b", "p", false) })).body.errcode).toBe("M_INVALID_USERNAME");
    const n3 = await nonce();
    expect((await post({ nonce: n3, username: "a", password: "p", mac: synapseMac(n3, "a", "p", false) })).status).toBe(200);
    const n4 = await nonce();
    expect((await post({ nonce: n4, username: "a", password: "p", mac: synapseMac(n4, "a", "p", false) })).body.errcode).toBe("M_USER_IN_USE");
  });

  it("expires nonces after a minute", async () => {
    const { call, advance } = await testServer({ registrationSharedSecret: SECRET });
    const n = (await call("GET", PATH)).body.nonce as string;
    advance(61_000);
    const r = await call("POST", PATH, { nonce: n, username: "a", password: "p", mac: synapseMac(n, "a", "p", false) });
    expect([r.status, r.body.error]).toEqual([400, "unrecognised nonce"]);
  });

  it("is off without a shared secret", async () => {
    const { call } = await testServer();
    const n = (await call("GET", PATH)).body.nonce as string;
    const r = await call("POST", PATH, { nonce: n, username: "a", password: "p", mac: "00" });
    expect(r.status).toBe(400);
    expect(r.body).toEqual({ errcode: "M_UNKNOWN", error: "Shared secret registration is not enabled" });
  });
});
