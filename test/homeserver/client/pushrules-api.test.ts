/**
 * Issue 12, "Push rules API": rule IDs with `#`, `:` and `/` percent-encoded, the trailing-slash
 * listings, 400 for a bad scope, kind or attribute and 404 for a missing rule (pushrules.yaml).
 */
import { describe, it, expect } from "vitest";
import { TestServer } from "../roomserver/harness.ts";

const enc = encodeURIComponent;

describe("push rules API paths", () => {
  it("room and sender rules whose IDs hold '#', ':' or '/' work percent-encoded: PUT, GET, attributes, DELETE", async () => {
    const t = await TestServer.start();
    const a = await t.user("alice");
    for (const [kind, id] of [["room", "!a#b/c:hs.test"], ["sender", "@x/y#z:hs.test"], ["room", "!plain:hs.test"]] as const) {
      const base = `/pushrules/global/${kind}/${enc(id)}`;
      expect((await t.req("PUT", base, a, { actions: ["dont_notify"] })).status).toBe(200);
      expect(await t.ok("GET", base, a)).toMatchObject({ rule_id: id, enabled: true, actions: ["dont_notify"] });
      await t.ok("PUT", `${base}/enabled`, a, { enabled: false });
      expect(await t.ok("GET", `${base}/enabled`, a)).toEqual({ enabled: false });
      await t.ok("PUT", `${base}/actions`, a, { actions: ["notify"] });
      expect(await t.ok("GET", `${base}/actions`, a)).toEqual({ actions: ["notify"] });
      const listed = (await t.ok("GET", "/pushrules/", a)).global[kind] as { rule_id: string }[];
      expect(listed.map((r) => r.rule_id)).toContain(id);
      await t.ok("DELETE", base, a);
      expect((await t.req("GET", base, a)).status).toBe(404);
    }
    // Other kinds keep the spec's rule: no slashes or backslashes.
    expect((await t.req("PUT", `/pushrules/global/content/${enc("a/b")}`, a, { actions: ["notify"], pattern: "x" })).status).toBe(400);
    expect((await t.req("PUT", `/pushrules/global/override/${enc("a\\b")}`, a, { actions: ["notify"] })).status).toBe(400);
    // '#' and ':' are fine in any kind.
    await t.ok("PUT", `/pushrules/global/content/${enc("#tag:x")}`, a, { actions: ["notify"], pattern: "tag" });
    expect((await t.ok("GET", `/pushrules/global/content/${enc("#tag:x")}`, a)).pattern).toBe("tag");
  });

  it("GET /pushrules/global/ and the per-kind listings with trailing slashes", async () => {
    const t = await TestServer.start();
    const a = await t.user("alice");
    await t.ok("PUT", `/pushrules/global/room/${enc("!r:hs.test")}`, a, { actions: ["dont_notify"] });
    const global = await t.ok("GET", "/pushrules/global/", a);
    expect(Object.keys(global).sort()).toEqual(["content", "override", "room", "sender", "underride"]);
    const res = await t.hs.handle(new Request("http://localhost/_matrix/client/v3/pushrules/global/room/", { headers: { Authorization: `Bearer ${a.token}` } }));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual([{ rule_id: "!r:hs.test", default: false, enabled: true, actions: ["dont_notify"] }]);
    const underride = (await (await t.hs.handle(new Request("http://localhost/_matrix/client/v3/pushrules/global/underride/", { headers: { Authorization: `Bearer ${a.token}` } }))).json()) as { rule_id: string }[];
    expect(underride.map((r) => r.rule_id)).toContain(".m.rule.message");
    expect((await t.req("GET", "/pushrules/global/room/")).status).toBe(401);
  });

  it.each([
    ["GET", "/pushrules/device/"],
    ["GET", "/pushrules/device/room/"],
    ["GET", "/pushrules/global/bogus/"],
    ["GET", "/pushrules/device/room/x"],
    ["GET", "/pushrules/global/bogus/x"],
    ["PUT", "/pushrules/global/bogus/x"],
    ["GET", "/pushrules/global/override/.m.rule.master/foo"],
    ["PUT", "/pushrules/global/override/.m.rule.master/foo"],
    ["GET", "/pushrules/global/override/nope/foo"],
    ["GET", "/pushrules/global/bogus/x/enabled"],
  ])("%s %s is 400", async (method, path) => {
    const t = await TestServer.start();
    const a = await t.user("alice");
    const r = await t.req(method, path, a, method === "PUT" ? { actions: ["notify"], enabled: true } : undefined);
    expect(r.status).toBe(400);
    expect(typeof r.body.errcode).toBe("string");
  });

  it.each([
    ["GET", "/pushrules/global/override/nope"],
    ["DELETE", "/pushrules/global/override/nope"],
    ["GET", "/pushrules/global/override/nope/enabled"],
    ["PUT", "/pushrules/global/override/nope/enabled"],
    ["GET", "/pushrules/global/room/nope/actions"],
    ["PUT", "/pushrules/global/room/nope/actions"],
    ["GET", "/pushrules/global/underride/.m.rule.nope"],
  ])("%s %s for a missing rule is 404 M_NOT_FOUND", async (method, path) => {
    const t = await TestServer.start();
    const a = await t.user("alice");
    const r = await t.req(method, path, a, method === "PUT" ? { actions: ["notify"], enabled: true } : undefined);
    expect([r.status, r.body.errcode]).toEqual([404, "M_NOT_FOUND"]);
  });
});
