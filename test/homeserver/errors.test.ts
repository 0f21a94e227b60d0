/**
 * Every error class of the router, observed over real HTTP through the Node listener
 * (src/node/runner.ts), with a memory store that can be made to fail.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startNode } from "../../src/node/runner.ts";
import type { RunningNode } from "../../src/node/runner.ts";
import { DEFAULTS } from "../../src/node/config.ts";
import { createMemoryStore } from "../../src/storage/memory.ts";
import type { Store } from "../../src/storage/store.ts";
import type { Logger } from "../../src/homeserver/context.ts";

const SECRET_DETAIL = "disk /var/lib/hyphae/secret.db is on fire";

/** A memory store whose reads and writes throw once `failing` is set. */
function failableStore(): { store: Store; fail(on: boolean): void } {
  const inner = createMemoryStore();
  let failing = false;
  const store: Store = {
    kind: "failable",
    read: (fn) => (failing ? Promise.reject(new Error(SECRET_DETAIL)) : inner.read(fn)),
    write: (fn) => (failing ? Promise.reject(new Error(SECRET_DETAIL)) : inner.write(fn)),
    schemaVersion: () => inner.schemaVersion(),
    close: () => inner.close(),
  };
  return { store, fail: (on) => (failing = on) };
}

let node: RunningNode;
let base: string;
let dataDir: string;
const failable = failableStore();
const logged: string[] = [];
const logger: Logger = {
  debug() {},
  info() {},
  warn: (...a) => logged.push(a.map(String).join(" ")),
  error: (...a) => logged.push(a.map(String).join(" ")),
};

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "hyphae-errors-"));
  node = await startNode(
    { ...DEFAULTS, httpPort: 0, dataDir, maxUploadBytes: 1024, passwordIterations: 10 },
    { logger, openStore: async () => failable.store },
  );
  base = node.httpUrl;
});

afterAll(async () => {
  await node.close();
  await rm(dataDir, { recursive: true, force: true });
});

async function call(method: string, path: string, init: { body?: string; token?: string; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...init.headers };
  if (init.token) headers.Authorization = `Bearer ${init.token}`;
  const res = await fetch(base + path, { method, headers, body: init.body });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, body: text ? (JSON.parse(text) as Record<string, any>) : undefined };
}

describe("router errors over HTTP", () => {
  it("unknown endpoint → 404 M_UNRECOGNIZED", async () => {
    for (const path of ["/_matrix/client/v3/no_such_thing", "/_matrix/client/v3/login/extra/segments", "/elsewhere"]) {
      const r = await call("GET", path);
      expect([r.status, r.body?.errcode]).toEqual([404, "M_UNRECOGNIZED"]);
    }
  });

  it("known path, wrong method → 405 M_UNRECOGNIZED", async () => {
    const r = await call("PUT", "/_matrix/client/v3/login", { body: "{}" });
    expect([r.status, r.body?.errcode]).toEqual([405, "M_UNRECOGNIZED"]);
    const d = await call("DELETE", "/_matrix/client/v3/account/whoami");
    expect([d.status, d.body?.errcode]).toEqual([405, "M_UNRECOGNIZED"]);
  });

  it("unparsable body → 400 M_NOT_JSON; wrong shape → 400 M_BAD_JSON", async () => {
    for (const body of ["{not json", "", "\u0000"]) {
      const r = await call("POST", "/_matrix/client/v3/login", { body, headers: { "Content-Type": "application/json" } });
      expect([r.status, r.body?.errcode]).toEqual([400, "M_NOT_JSON"]);
    }
    for (const body of ["[1,2]", "42", "null", JSON.stringify({ type: 5 }), JSON.stringify({ type: "m.login.password", identifier: "alice", password: "x" })]) {
      const r = await call("POST", "/_matrix/client/v3/login", { body });
      expect([r.status, r.body?.errcode]).toEqual([400, "M_BAD_JSON"]);
    }
  });

  it("missing token → 401 M_MISSING_TOKEN; bad token → 401 M_UNKNOWN_TOKEN", async () => {
    const missing = await call("GET", "/_matrix/client/v3/account/whoami");
    expect([missing.status, missing.body?.errcode]).toEqual([401, "M_MISSING_TOKEN"]);
    const bad = await call("GET", "/_matrix/client/v3/account/whoami", { token: "hyt_not_a_token" });
    expect([bad.status, bad.body?.errcode, bad.body?.soft_logout]).toEqual([401, "M_UNKNOWN_TOKEN", false]);
    const badQuery = await call("GET", "/_matrix/client/v3/account/whoami?access_token=nope");
    expect(badQuery.body?.errcode).toBe("M_UNKNOWN_TOKEN");
  });

  it("serves r0 and v3 alike, /versions and /.well-known/matrix/client", async () => {
    const v3 = await call("GET", "/_matrix/client/v3/login");
    const r0 = await call("GET", "/_matrix/client/r0/login");
    expect(v3.status).toBe(200);
    expect(r0.body).toEqual(v3.body);
    const versions = await call("GET", "/_matrix/client/versions");
    expect(versions.body?.versions).toContain("v1.11");
    const wk = await call("GET", "/.well-known/matrix/client");
    expect(wk.body).toEqual({ "m.homeserver": { base_url: base } });
  });

  it("CORS headers on answers and errors; OPTIONS preflight → 204", async () => {
    for (const r of [await call("GET", "/_matrix/client/versions"), await call("GET", "/_matrix/client/v3/nope")]) {
      expect(r.headers.get("access-control-allow-origin")).toBe("*");
      expect(r.headers.get("access-control-allow-headers")).toMatch(/Authorization/);
      expect(r.headers.get("content-type")).toMatch(/application\/json/);
    }
    const pre = await call("OPTIONS", "/_matrix/client/v3/account/whoami", {
      headers: { Origin: "https://app.example", "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization" },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-methods")).toMatch(/PUT/);
    expect(pre.headers.get("access-control-allow-origin")).toBe("*");
  });

  it("a body over the configured limit → 413 M_TOO_LARGE from the listener", async () => {
    const r = await call("POST", "/_matrix/client/v3/login", { body: JSON.stringify({ type: "m.login.password", padding: "x".repeat(200_000) }) });
    expect([r.status, r.body?.errcode]).toEqual([413, "M_TOO_LARGE"]);
  });

  it("HEAD answers like GET without a body", async () => {
    const res = await fetch(base + "/_matrix/client/versions", { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("");
  });

  it("an unexpected exception → 500 M_UNKNOWN, internals logged but not sent", async () => {
    // Register first, so the failing read happens inside an ordinary authenticated request.
    const reg = await call("POST", "/_matrix/client/v3/register", { body: JSON.stringify({ username: "eve", password: "pw", auth: { type: "m.login.dummy" } }) });
    expect(reg.status).toBe(200);
    failable.fail(true);
    try {
      const r = await call("GET", "/_matrix/client/v3/account/whoami", { token: reg.body!.access_token as string });
      expect(r.status).toBe(500);
      expect(r.body).toEqual({ errcode: "M_UNKNOWN", error: "Internal server error" });
      expect(r.text).not.toContain("fire");
      expect(r.headers.get("access-control-allow-origin")).toBe("*");
      expect(logged.join("\n")).toContain(SECRET_DETAIL);
    } finally {
      failable.fail(false);
    }
    expect((await call("GET", "/_matrix/client/v3/account/whoami", { token: reg.body!.access_token as string })).status).toBe(200);
  });
});
