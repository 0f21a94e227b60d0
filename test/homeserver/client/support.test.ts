import { describe, it, expect } from "vitest";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { testServer } from "./accountHarness.ts";
import { resolveConfig } from "../../../src/node/config.ts";

const SUPPORT = "/.well-known/matrix/support";
const ADD = "/_matrix/client/v3/account/3pid";

describe("GET /.well-known/matrix/support", () => {
  it("serves the configured contacts and support page", async () => {
    const support = { contacts: [{ role: "m.role.admin", matrix_id: "@admin:example.org", email_address: "admin@example.org" }], support_page: "https://example.org/help" };
    const s = await testServer({ support });
    const r = await s.call("GET", SUPPORT);
    expect(r.status).toBe(200);
    expect(r.body).toEqual(support);
    const pageOnly = await (await testServer({ support: { support_page: "https://x.test/" } })).call("GET", SUPPORT);
    expect(pageOnly.body).toEqual({ support_page: "https://x.test/" });
  });

  it("answers 404 M_NOT_FOUND when nothing is configured", async () => {
    const s = await testServer();
    const r = await s.call("GET", SUPPORT);
    expect([r.status, r.body.errcode]).toEqual([404, "M_NOT_FOUND"]);
  });
});

describe("config keys support and access_token_lifetime_ms", () => {
  it("are read from the config file and checked", async () => {
    const dir = await mkdtemp(join(tmpdir(), "hyphae-config-"));
    const file = join(dir, "hs.json");
    const load = async (o: unknown) => {
      await writeFile(file, JSON.stringify(o));
      return resolveConfig({ configFile: file, overrides: {}, help: false }, () => {});
    };
    try {
      const support = { contacts: [{ role: "m.role.security", email_address: "sec@example.org" }] };
      await expect(load({ support, access_token_lifetime_ms: 60000 })).resolves.toMatchObject({ support, accessTokenLifetimeMs: 60000 });
      await expect(load({ access_token_lifetime_ms: 0 })).rejects.toThrow(/access_token_lifetime_ms/);
      await expect(load({ support: {} })).rejects.toThrow(/support/);
      await expect(load({ support: { contacts: [] } })).rejects.toThrow(/support/);
      await expect(load({ support: { contacts: [{ role: "m.role.admin" }] } })).rejects.toThrow(/matrix_id or email_address/);
      await expect(load({ support: { contacts: [{ email_address: "a@b.c" }] } })).rejects.toThrow(/role/);
      await expect(load({ support: { contacts: [{ role: "m.role.admin", matrix_id: "admin" }] } })).rejects.toThrow(/Matrix user ID/);
      await expect(load({ support: "https://x" })).rejects.toThrow(/support/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("POST /_matrix/client/v3/account/3pid (deprecated)", () => {
  it("refuses like /3pid/add and /3pid/bind: no identity server here", async () => {
    const s = await testServer();
    const alice = await s.register("alice");
    const creds = { client_secret: "s", id_server: "id.example.org", id_access_token: "t", sid: "1" };
    const r = await s.call("POST", ADD, { three_pid_creds: creds }, { token: alice.token });
    expect([r.status, r.body.errcode]).toEqual([403, "M_THREEPID_DENIED"]);
    const add = await s.call("POST", `${ADD}/add`, { client_secret: "s", sid: "1" }, { token: alice.token });
    expect(add.body.errcode).toBe(r.body.errcode);
  });

  it("answers errors: no token, bad token, missing or malformed credentials, bad JSON", async () => {
    const s = await testServer();
    const alice = await s.register("alice");
    expect((await s.call("POST", ADD, { three_pid_creds: {} })).body.errcode).toBe("M_MISSING_TOKEN");
    expect((await s.call("POST", ADD, { three_pid_creds: {} }, { token: "nope" })).body.errcode).toBe("M_UNKNOWN_TOKEN");
    expect((await s.call("POST", ADD, {}, { token: alice.token })).body.errcode).toBe("M_MISSING_PARAM");
    expect((await s.call("POST", ADD, { three_pid_creds: "x" }, { token: alice.token })).body.errcode).toBe("M_BAD_JSON");
    expect((await s.call("POST", ADD, { three_pid_creds: { client_secret: "s" } }, { token: alice.token })).body.errcode).toBe("M_MISSING_PARAM");
    expect((await s.call("POST", ADD, undefined, { token: alice.token, rawBody: "nope" })).body.errcode).toBe("M_NOT_JSON");
  });
});
