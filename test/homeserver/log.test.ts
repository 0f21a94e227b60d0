/**
 * The request log and the account log lines, through the handler with a capturing logger: one
 * structured line per request, login / registration / rate-limit lines, and never a token or a
 * password in any line. Also `GET /health`.
 */
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { createHomeserver } from "../../src/homeserver/homeserver.ts";
import type { Homeserver } from "../../src/homeserver/homeserver.ts";
import type { Logger } from "../../src/homeserver/context.ts";
import { CLIENT_ADDRESS_HEADER } from "../../src/homeserver/auth/rateLimit.ts";
import { logLine, loggablePath } from "../../src/homeserver/log.ts";
import { createMemoryStore } from "../../src/storage/memory.ts";
import type { Store } from "../../src/storage/store.ts";

/** Parses `event k=v k="quoted v"` back into fields. */
function parse(line: string): { event: string; fields: Record<string, string> } {
  const [event, ...rest] = line.split(" ");
  const fields: Record<string, string> = {};
  const text = rest.join(" ");
  for (const m of text.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S+)/g)) fields[m[1]!] = m[2]!.startsWith('"') ? (JSON.parse(m[2]!) as string) : m[2]!;
  return { event: event!, fields };
}

describe("logLine and loggablePath", () => {
  it("writes key=value fields, quoting what needs it and leaving out undefined ones", () => {
    expect(logLine("request", { method: "GET", status: 200, user: undefined, path: "/a b", ok: true })).toBe('request method=GET status=200 path="/a b" ok=true');
    expect(parse(logLine("x", { v: 'say "hi"=1' })).fields.v).toBe('say "hi"=1');
  });

  it("redacts secret query parameters and keeps the others", () => {
    const url = new URL("http://h/_matrix/client/v3/sync?timeout=30000&access_token=syt_secret&since=s1&access_token=again");
    expect(loggablePath(url)).toBe("/_matrix/client/v3/sync?timeout=30000&access_token=<redacted>&since=s1&access_token=<redacted>");
    expect(loggablePath(new URL("http://h/_matrix/client/v1/register/m.login.registration_token/validity?token=abc"))).not.toContain("abc");
  });
});

describe("request and account log lines", () => {
  let lines: string[];
  let hs: Homeserver;
  let store: Store;
  const capture = (level: string) => (...args: unknown[]): void => void lines.push(`${level} ${args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" ")}`);

  beforeEach(async () => {
    lines = [];
    store = createMemoryStore();
    const logger: Logger = { debug: capture("debug"), info: capture("info"), warn: capture("warn"), error: capture("error") };
    hs = await createHomeserver({ store, seed: new Uint8Array(32).fill(5), serverName: "log.test", logger, config: { passwordIterations: 1000 } });
  });
  afterEach(async () => {
    await hs.close();
  });

  const call = async (method: string, path: string, init: { token?: string; body?: unknown; client?: string } = {}): Promise<{ status: number; body: any }> => {
    const headers: Record<string, string> = { "Content-Type": "application/json" };
    if (init.token) headers.Authorization = `Bearer ${init.token}`;
    if (init.client) headers[CLIENT_ADDRESS_HEADER] = init.client;
    const res = await hs.handle(new Request(`http://localhost${path}`, { method, headers, ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}) }));
    const text = await res.text();
    return { status: res.status, body: text.startsWith("{") ? JSON.parse(text) : text };
  };
  const events = (name: string): Record<string, string>[] => lines.map((l) => parse(l.slice(l.indexOf(" ") + 1))).filter((p) => p.event === name).map((p) => p.fields);

  it("logs one line per request, logins and registrations, and never a token or password", async () => {
    const password = "correct horse battery staple";
    const probe = await call("POST", "/_matrix/client/v3/register", { body: { username: "alice", password } });
    const reg = await call("POST", "/_matrix/client/v3/register", { body: { username: "alice", password, auth: { type: "m.login.dummy", session: probe.body.session } } });
    expect(reg.status).toBe(200);
    const login = await call("POST", "/_matrix/client/v3/login", { body: { type: "m.login.password", identifier: { type: "m.id.user", user: "alice" }, password }, client: "203.0.113.7" });
    expect(login.status).toBe(200);
    const bad = await call("POST", "/_matrix/client/v3/login", { body: { type: "m.login.password", identifier: { type: "m.id.user", user: "alice" }, password: "wrong password" } });
    expect(bad.status).toBe(403);
    const token = login.body.access_token as string;
    // The deprecated query-string token: served, but not logged.
    expect((await call("GET", `/_matrix/client/v3/account/whoami?access_token=${token}`)).status).toBe(200);
    expect((await call("GET", "/_matrix/client/v3/rooms/!nope:log.test/state", { token })).status).toBe(404);
    expect((await call("GET", "/_matrix/client/v3/no/such/endpoint")).status).toBe(404);

    const requests = events("request");
    expect(requests).toHaveLength(7);
    const whoami = requests.find((r) => r.route === "/_matrix/client/v3/account/whoami")!;
    expect(whoami).toMatchObject({ method: "GET", path: "/_matrix/client/v3/account/whoami?access_token=<redacted>", status: "200", user: "@alice:log.test" });
    expect(Number(whoami.duration_ms)).toBeGreaterThanOrEqual(0);
    // The route template, not the raw path (metrics and logs group by endpoint).
    expect(requests.find((r) => r.status === "404" && r.user !== undefined)).toMatchObject({ route: "/_matrix/client/v3/rooms/{roomId}/state", path: "/_matrix/client/v3/rooms/!nope:log.test/state", user: "@alice:log.test" });
    expect(requests.find((r) => r.path === "/_matrix/client/v3/no/such/endpoint")).toMatchObject({ route: "unmatched" });
    expect(requests.find((r) => r.route === "/_matrix/client/v3/login" && r.status === "200")).toMatchObject({ client: "203.0.113.7" });

    expect(events("registered")).toEqual([{ user: "@alice:log.test", device: reg.body.device_id }]);
    expect(events("login")).toEqual([{ user: "@alice:log.test", device: login.body.device_id, type: "m.login.password", client: "203.0.113.7" }]);
    expect(events("login_failed")).toEqual([{ type: "m.login.password", user: "@alice:log.test" }]);

    const all = lines.join("\n");
    for (const secret of [token, reg.body.access_token as string, password, "wrong password"]) expect(all).not.toContain(secret);
  });

  it("logs a warning for each rate-limit refusal", async () => {
    const attempt = () => call("POST", "/_matrix/client/v3/login", { body: { type: "m.login.password", identifier: { type: "m.id.user", user: "nobody" }, password: "x" }, client: "198.51.100.9" });
    let last = await attempt();
    for (let i = 0; i < 10 && last.status !== 429; i++) last = await attempt();
    expect(last.status).toBe(429);
    const warnings = lines.filter((l) => l.startsWith("warn rate_limited"));
    expect(warnings).toHaveLength(1);
    expect(parse(warnings[0]!.slice(5)).fields).toMatchObject({ method: "POST", route: "/_matrix/client/v3/login", client: "198.51.100.9" });
  });

  it("answers GET /health with 200 OK in plain text, and 503 when the store cannot be read", async () => {
    const res = await hs.handle(new Request("http://localhost/health"));
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toMatch(/^text\/plain/);
    expect(await res.text()).toBe("OK");
    await store.close();
    const down = await hs.handle(new Request("http://localhost/health"));
    expect(down.status).toBe(503);
  });
});
