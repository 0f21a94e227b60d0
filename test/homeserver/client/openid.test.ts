import { describe, it, expect } from "vitest";
import { SERVER, testServer } from "./accountHarness.ts";

const enc = encodeURIComponent;
const requestToken = (userId: string) => `/_matrix/client/v3/user/${enc(userId)}/openid/request_token`;
const USERINFO = "/_matrix/federation/v1/openid/userinfo";

describe("OpenID (POST /user/{userId}/openid/request_token, GET /_matrix/federation/v1/openid/userinfo)", () => {
  it("issues a token that the federation endpoint exchanges for the user ID", async () => {
    const s = await testServer();
    const alice = await s.register("alice");
    const r = await s.call("POST", requestToken(alice.userId), {}, { token: alice.token });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ access_token: expect.any(String), token_type: "Bearer", matrix_server_name: SERVER, expires_in: 3600 });
    const info = await s.call("GET", `${USERINFO}?access_token=${enc(r.body.access_token)}`);
    expect(info.status).toBe(200);
    expect(info.body).toEqual({ sub: alice.userId });
  });

  it("the token expires after expires_in seconds", async () => {
    const s = await testServer();
    const alice = await s.register("alice");
    const { body } = await s.call("POST", requestToken(alice.userId), {}, { token: alice.token });
    s.advance(3600 * 1000 - 1);
    expect((await s.call("GET", `${USERINFO}?access_token=${enc(body.access_token)}`)).status).toBe(200);
    s.advance(1);
    const expired = await s.call("GET", `${USERINFO}?access_token=${enc(body.access_token)}`);
    expect([expired.status, expired.body.errcode]).toEqual([401, "M_UNKNOWN_TOKEN"]);
  });

  it("an OpenID token is no access token, and an access token is no OpenID token", async () => {
    const s = await testServer();
    const alice = await s.register("alice");
    const { body } = await s.call("POST", requestToken(alice.userId), {}, { token: alice.token });
    expect((await s.call("GET", "/_matrix/client/v3/account/whoami", undefined, { token: body.access_token })).body.errcode).toBe("M_UNKNOWN_TOKEN");
    expect((await s.call("POST", requestToken(alice.userId), {}, { token: body.access_token })).body.errcode).toBe("M_UNKNOWN_TOKEN");
    expect((await s.call("GET", `${USERINFO}?access_token=${enc(alice.token)}`)).body.errcode).toBe("M_UNKNOWN_TOKEN");
  });

  it("answers errors: other user, no token, bad token, bad JSON; unknown or missing userinfo token", async () => {
    const s = await testServer();
    const alice = await s.register("alice");
    const bob = await s.register("bob");
    const other = await s.call("POST", requestToken(bob.userId), {}, { token: alice.token });
    expect([other.status, other.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
    expect((await s.call("POST", requestToken(alice.userId), {})).body.errcode).toBe("M_MISSING_TOKEN");
    expect((await s.call("POST", requestToken(alice.userId), {}, { token: "nope" })).body.errcode).toBe("M_UNKNOWN_TOKEN");
    expect((await s.call("POST", requestToken(alice.userId), undefined, { token: alice.token, rawBody: "[1" })).body.errcode).toBe("M_NOT_JSON");
    expect((await s.call("POST", requestToken(alice.userId), [], { token: alice.token })).status).toBe(400);
    const unknown = await s.call("GET", `${USERINFO}?access_token=hyo_nope`);
    expect([unknown.status, unknown.body.errcode]).toEqual([401, "M_UNKNOWN_TOKEN"]);
    const missing = await s.call("GET", USERINFO);
    expect([missing.status, missing.body.errcode]).toEqual([400, "M_MISSING_PARAM"]);
  });
});
