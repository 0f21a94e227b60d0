/** `/_matrix/client/v3/thirdparty/*` (third_party_lookup.yaml) on a server without bridges. */
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { TestServer, SERVER } from "../roomserver/harness.ts";
import type { TestUser } from "../roomserver/harness.ts";

let t: TestServer;
let alice: TestUser;
beforeEach(async () => {
  t = await TestServer.start();
  alice = await t.user("alice");
});
afterEach(async () => t.close());

const q = encodeURIComponent;

describe("third-party lookups without application services", () => {
  it("knows no protocols", async () => {
    expect(await t.ok("GET", "/thirdparty/protocols", alice)).toEqual({});
    expect(await t.ok("GET", "/_matrix/client/r0/thirdparty/protocols", alice)).toEqual({});
  });

  it("404 M_NOT_FOUND for any protocol's metadata, locations and users", async () => {
    for (const path of ["/thirdparty/protocol/irc", "/thirdparty/location/irc?searchFields=x", "/thirdparty/user/gitter", "/thirdparty/protocol/toString", "/thirdparty/user/__proto__"]) {
      const r = await t.req("GET", path, alice);
      expect({ path, status: r.status, errcode: r.body.errcode }).toEqual({ path, status: 404, errcode: "M_NOT_FOUND" });
    }
  });

  it("reverse lookups answer no third-party locations or users", async () => {
    await t.createRoom(alice, { room_alias_name: "matrix" });
    const loc = await t.req("GET", `/thirdparty/location?alias=${q(`#matrix:${SERVER}`)}`, alice);
    expect(loc).toEqual({ status: 200, body: [] });
    // remote aliases and users cannot be checked without federation; there are no locations for them either
    expect((await t.req("GET", `/thirdparty/location?alias=${q("#matrix:matrix.org")}`, alice)).body).toEqual([]);
    expect((await t.req("GET", `/thirdparty/user?userid=${q(alice.userId)}`, alice)).body).toEqual([]);
    expect((await t.req("GET", `/thirdparty/user?userid=${q("@bob:matrix.org")}`, alice)).body).toEqual([]);
  });

  describe("errors", () => {
    const all = ["/thirdparty/protocols", "/thirdparty/protocol/irc", "/thirdparty/location/irc", "/thirdparty/user/irc", `/thirdparty/location?alias=${q("#a:b")}`, `/thirdparty/user?userid=${q("@a:b")}`];

    it("401 M_MISSING_TOKEN without a token, M_UNKNOWN_TOKEN with a bad one", async () => {
      for (const path of all) {
        const none = await t.req("GET", path);
        expect({ path, status: none.status, errcode: none.body.errcode }).toEqual({ path, status: 401, errcode: "M_MISSING_TOKEN" });
        const bad = await t.req("GET", path, "bogus");
        expect({ path, status: bad.status, errcode: bad.body.errcode }).toEqual({ path, status: 401, errcode: "M_UNKNOWN_TOKEN" });
      }
    });

    it("400 without the required query parameter or with a malformed one", async () => {
      const cases: [string, string][] = [
        ["/thirdparty/location", "M_MISSING_PARAM"],
        ["/thirdparty/user", "M_MISSING_PARAM"],
        ["/thirdparty/location?alias=matrix", "M_INVALID_PARAM"],
        [`/thirdparty/user?userid=${q("bob")}`, "M_INVALID_PARAM"],
      ];
      for (const [path, errcode] of cases) {
        const r = await t.req("GET", path, alice);
        expect({ path, status: r.status, errcode: r.body.errcode }).toEqual({ path, status: 400, errcode });
      }
    });

    it("404 M_NOT_FOUND for an alias or user this server does not have", async () => {
      for (const path of [`/thirdparty/location?alias=${q(`#nope:${SERVER}`)}`, `/thirdparty/user?userid=${q(`@nobody:${SERVER}`)}`]) {
        const r = await t.req("GET", path, alice);
        expect({ path, status: r.status, errcode: r.body.errcode }).toEqual({ path, status: 404, errcode: "M_NOT_FOUND" });
      }
    });
  });
});
