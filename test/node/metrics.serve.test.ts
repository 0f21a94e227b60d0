/**
 * Operators' view of `npm run serve`: `GET /health`, the request log on stderr (with no token or
 * password in it), and the Prometheus metrics listener that `metrics_port` enables (off by
 * default), scraped as Prometheus would.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnServe } from "./spawnServe.ts";
import type { Spawned } from "./spawnServe.ts";

let dir: string;
const running: Spawned[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "hyphae-metrics-test-"));
});
afterAll(async () => {
  for (const s of running) await s.stop("SIGKILL", true);
  await rm(dir, { recursive: true, force: true });
});

/** The value of one sample line (`name{labels} value`), or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

describe("health, request log and metrics through npm run serve", () => {
  it("serves /health, logs requests without secrets, and exposes Prometheus metrics on metrics_port", async () => {
    const cfg = join(dir, "metrics.json");
    await writeFile(cfg, JSON.stringify({ http_port: 0, data_dir: "node", metrics_port: 0, password_pbkdf2_iterations: 1000 }));
    const s = await spawnServe(["--config", cfg], "npm", /Hyphae metrics on (\S+)/);
    running.push(s);
    const metricsUrl = s.url;
    expect(metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const base = /Hyphae listening on (\S+)/.exec(s.output())![1]!;

    const health = await fetch(`${base}/health`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe("OK");

    const password = "metrics-test-password";
    const probe = (await (await fetch(`${base}/_matrix/client/v3/register`, { method: "POST", body: JSON.stringify({ username: "op", password }) })).json()) as { session: string };
    const reg = (await (await fetch(`${base}/_matrix/client/v3/register`, {
      method: "POST",
      body: JSON.stringify({ username: "op", password, auth: { type: "m.login.dummy", session: probe.session } }),
    })).json()) as { access_token: string };
    const token = reg.access_token;
    expect(token).toBeTypeOf("string");
    for (let i = 0; i < 3; i++) expect((await fetch(`${base}/_matrix/client/versions`)).status).toBe(200);
    expect((await fetch(`${base}/_matrix/client/v3/account/whoami?access_token=${token}`)).status).toBe(200);

    // A long-polling /sync is a waiter while it waits.
    const { next_batch } = (await (await fetch(`${base}/_matrix/client/v3/sync`, { headers: { Authorization: `Bearer ${token}` } })).json()) as { next_batch: string };
    const controller = new AbortController();
    const poll = fetch(`${base}/_matrix/client/v3/sync?since=${next_batch}&timeout=20000`, { headers: { Authorization: `Bearer ${token}` }, signal: controller.signal }).catch(() => undefined);
    let waiting: number | undefined;
    for (let i = 0; i < 100 && waiting !== 1; i++) {
      waiting = sample(await (await fetch(metricsUrl)).text(), "hyphae_sync_waiters");
      if (waiting !== 1) await new Promise((r) => setTimeout(r, 50));
    }
    expect(waiting).toBe(1);
    controller.abort();
    await poll;

    const scrape = await fetch(metricsUrl);
    expect(scrape.status).toBe(200);
    expect(scrape.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await scrape.text();
    // Counted by route template and status; latencies as a histogram per route.
    expect(sample(text, "hyphae_http_requests_total", { method: "GET", route: "/_matrix/client/versions", status: "200" })).toBe(3);
    expect(sample(text, "hyphae_http_requests_total", { method: "GET", route: "/health", status: "200" })).toBe(1);
    expect(sample(text, "hyphae_http_request_duration_seconds_count", { method: "GET", route: "/_matrix/client/versions" })).toBe(3);
    expect(sample(text, "hyphae_http_request_duration_seconds_bucket", { method: "GET", route: "/_matrix/client/versions", le: "+Inf" })).toBe(3);
    expect(text).not.toContain("access_token");
    expect(sample(text, "hyphae_store_transaction_duration_seconds_count", { kind: "write" })).toBeGreaterThan(0);
    expect(sample(text, "hyphae_store_transaction_duration_seconds_count", { kind: "read" })).toBeGreaterThan(0);
    expect(text).toMatch(/^# TYPE hyphae_federation_queue_depth gauge$/m);
    expect(sample(text, "hyphae_push_queue_depth")).toBe(0);
    expect(sample(text, "process_cpu_user_seconds_total")).toBeGreaterThan(0);
    expect((await fetch(metricsUrl.replace(/\/metrics$/, "/_synapse/metrics"))).status).toBe(200);
    expect((await fetch(metricsUrl.replace(/\/metrics$/, "/elsewhere"))).status).toBe(404);
    // The metrics are not on the client API listener.
    expect((await fetch(`${base}/metrics`)).status).toBe(404);

    // One structured line per request on stderr, none with the token or the password.
    const out = s.output();
    expect(out).toMatch(/\[info\] request method=GET path=\/health route=\/health status=200 duration_ms=[\d.]+ client=127\.0\.0\.1/);
    expect(out).toMatch(/\[info\] request method=GET path="\/_matrix\/client\/v3\/account\/whoami\?access_token=<redacted>" route=\S+ status=200 duration_ms=[\d.]+ user=@op:\S+ client=127\.0\.0\.1/);
    expect(out).toMatch(/\[info\] registered user=@op:/);
    expect(out).not.toContain(token);
    expect(out).not.toContain(password);
    await s.stop("SIGTERM", true);
  }, 60_000);

  it("has no metrics listener unless metrics_port is set", async () => {
    const s = await spawnServe(["--port", "0", "--data", join(dir, "plain")], "node");
    running.push(s);
    expect(s.output()).not.toContain("Hyphae metrics on");
    expect((await fetch(`${s.url}/metrics`)).status).toBe(404);
    expect((await fetch(`${s.url}/health`)).status).toBe(200);
    await s.stop("SIGTERM");
  }, 60_000);
});
