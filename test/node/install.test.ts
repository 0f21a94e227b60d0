/**
 * A production install as docs/OPERATING.md describes it: a fresh `git clone` of this repository's
 * HEAD (the committed state), `npm ci --omit=dev` (no typescript, no vitest, no dev loader), then each
 * documented way of starting the server as a child process: `npm run serve` and the
 * direct `node_modules/.bin/node src/node/main.ts`. Each serves `/versions`; SIGTERM to the started
 * process (what Docker and systemd send) lets an in-flight request finish, exits 0, leaves no process
 * of its group behind and frees the port. Every start-up failure of issue 11 item 8 is one line and
 * status 1 there too.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import type { Server } from "node:net";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join, resolve } from "node:path";
import { promisify } from "node:util";
import { freePort } from "../e2e/serve.ts";
import { call, login, register, within } from "../e2e/http.ts";
import { REPO, runServe } from "./spawnServe.ts";
import { snapshot, startupCases } from "./startupCases.ts";

const run = promisify(execFile);

let dir: string;
let clone: string;

/**
 * The environment of an operator's shell, not of the `npm test` around this file: no npm_* variables
 * (npm reads npm_config_* as its own settings) and no node_modules/.bin on the PATH, so the clone's
 * scripts can only find Node 22 in the clone's own node_modules.
 */
function operatorEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  env["PATH"] = (process.env["PATH"] ?? "").split(delimiter).filter((p) => !p.includes("node_modules")).join(delimiter);
  return env;
}

const started = new Set<ChildProcess>();

/** A started server: its process, its output so far, its exit. */
interface Started {
  child: ChildProcess;
  url: string;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `cmd args` in the clone, in its own process group, and waits for the "listening" line. */
function startIn(cmd: string, args: string[]): Promise<Started> {
  const child = spawn(cmd, args, { cwd: clone, env: operatorEnv(), stdio: ["ignore", "pipe", "pipe"], detached: true });
  started.add(child);
  let out = "";
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once("exit", (code, signal) => r({ code, signal })),
  );
  return within(
    new Promise<Started>((resolveStart, reject) => {
      const onData = (chunk: Buffer): void => {
        out += chunk.toString("utf8");
        const m = /Hyphae listening on (http:\S+)/.exec(out);
        if (m) resolveStart({ child, url: m[1]!, output: () => out, exited });
      };
      child.stdout!.on("data", onData);
      child.stderr!.on("data", onData);
      void exited.then((s) => reject(new Error(`exited ${JSON.stringify(s)} before ready:\n${out}`)));
    }),
    90_000,
    `the ready line of ${cmd} ${args.join(" ")}`,
  );
}

/** Whether any process of the group `pgid` is still alive. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Whether `port` on 127.0.0.1 can be bound (nobody holds it). */
function portFree(port: number): Promise<boolean> {
  return new Promise((r) => {
    const s = createServer();
    s.once("error", () => r(false));
    s.listen(port, "127.0.0.1", () => s.close(() => r(true)));
  });
}

/**
 * Serves /versions, has a long-polling /sync in flight when `signal` is sent (to the started
 * process, or to its whole process group as a terminal's Ctrl-C and systemd do), and then checks
 * that the /sync was answered, the exit status is 0, nothing of the group is left, the port is free.
 */
async function serveAndStop(cmd: string, args: string[], port: number, signal: NodeJS.Signals, group: boolean): Promise<Started> {
  const s = await startIn(cmd, args);
  expect(s.url).toBe(`http://127.0.0.1:${port}`);
  const versions = await call(s.url, "GET", "/_matrix/client/versions");
  expect(versions.status).toBe(200);
  expect(versions.body["versions"]).toContain("v1.11");

  const alice = await register(s.url, "alice");
  const first = await call(s.url, "GET", "/_matrix/client/v3/sync?timeout=0", undefined, alice.access_token);
  const since = encodeURIComponent(first.body["next_batch"] as string);
  const inFlight = call(s.url, "GET", `/_matrix/client/v3/sync?since=${since}&timeout=60000`, undefined, alice.access_token);
  // The long poll has reached the server (it is waiting) before the signal goes out.
  await new Promise((r) => setTimeout(r, 500));

  const pgid = s.child.pid!;
  if (group) process.kill(-pgid, signal);
  else s.child.kill(signal);
  // Well inside both the long poll's 60 s and the server's 10 s shutdown grace.
  expect((await within(inFlight, 15_000, "the in-flight /sync")).status).toBe(200);
  expect(await within(s.exited, 15_000, "the exit")).toEqual({ code: 0, signal: null });
  expect(s.output()).toMatch(new RegExp(`${signal}: stopping`));
  expect(s.output()).not.toMatch(/again: exiting without waiting/);
  // Nothing orphaned: npm's shell and the server were in the started process's group.
  await within(
    (async () => {
      while (groupAlive(pgid)) await new Promise((r) => setTimeout(r, 50));
    })(),
    5_000,
    "the process group to be empty",
  );
  expect(await portFree(port)).toBe(true);
  return s;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "hyphae-install-"));
  clone = join(dir, "hyphae");
  await run("git", ["clone", "--quiet", REPO, clone], { env: operatorEnv() });
  await run("npm", ["ci", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: clone, env: operatorEnv(), timeout: 240_000 });
}, 300_000);

afterAll(async () => {
  for (const c of started) if (c.pid && c.exitCode === null && c.signalCode === null) try { process.kill(-c.pid, "SIGKILL"); } catch { /* gone */ }
  await rm(dir, { recursive: true, force: true });
});

describe("a production install (npm ci --omit=dev in a fresh clone)", () => {
  it("has Node 22 from npm and no dev tool", () => {
    expect(existsSync(join(clone, "node_modules/.bin/node"))).toBe(true);
    for (const dev of ["typescript", "vitest", "tsx", "eslint"]) expect(existsSync(join(clone, "node_modules", dev)), dev).toBe(false);
  });

  it("`npm run serve -- --port P --data DIR`: SIGTERM to npm finishes the in-flight request and exits 0", async () => {
    const port = await freePort();
    await serveAndStop("npm", ["run", "serve", "--", "--port", String(port), "--data", join(dir, "serve")], port, "SIGTERM", false);
  }, 120_000);

  it("`npm run serve`: SIGTERM to the whole group (systemd's KillMode=control-group) and Ctrl-C also exit 0", async () => {
    const port = await freePort();
    await serveAndStop("npm", ["run", "serve", "--", "--port", String(port), "--data", join(dir, "group")], port, "SIGTERM", true);
    await serveAndStop("npm", ["run", "serve", "--", "--port", String(port), "--data", join(dir, "ctrl-c")], port, "SIGINT", true);
  }, 180_000);

  it("`node_modules/.bin/node src/node/main.ts --port P --data DIR`: SIGTERM exits 0", async () => {
    const port = await freePort();
    await serveAndStop(resolve(clone, "node_modules/.bin/node"), ["src/node/main.ts", "--port", String(port), "--data", join(dir, "direct")], port, "SIGTERM", false);
  }, 120_000);

  it("the online backup docs/OPERATING.md gives, taken from a running server, restores its accounts", async () => {
    const data = join(dir, "live");
    const backup = join(dir, "backup");
    await mkdir(backup);
    const node = resolve(clone, "node_modules/.bin/node");
    const s = await startIn(node, ["src/node/main.ts", "--port", "0", "--data", data]);
    await register(s.url, "kept", "kept-password");
    // The command of "Backups" → "Running server", while the server runs and holds its -wal file.
    const script = `const { DatabaseSync, backup } = require("node:sqlite");
      const db = new DatabaseSync(process.argv[1]);
      backup(db, process.argv[2]).then(() => db.close());`;
    await run(node, ["--no-warnings", "-e", script, join(data, "homeserver.sqlite"), join(backup, "homeserver.sqlite")], { cwd: clone, env: operatorEnv() });
    await copyFile(join(data, "identity.seed"), join(backup, "identity.seed"));
    s.child.kill("SIGTERM");
    expect(await within(s.exited, 15_000, "the exit")).toEqual({ code: 0, signal: null });

    const restored = await startIn(node, ["src/node/main.ts", "--port", "0", "--data", backup]);
    expect((await login(restored.url, "kept", "kept-password")).user_id).toMatch(/^@kept:/);
    restored.child.kill("SIGTERM");
    expect(await within(restored.exited, 15_000, "the exit")).toEqual({ code: 0, signal: null });
  }, 120_000);

  it("each start-up failure through `npm run serve` is one line on stderr, status 1, nothing created", async () => {
    const busy: Server = createServer();
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
    try {
      const busyPort = (busy.address() as { port: number }).port;
      // Side by side: each `npm run` costs seconds on a shared machine.
      const results = await Promise.all(
        startupCases(busyPort).map(async (c, i) => {
          const base = join(dir, `bad${i}`);
          await mkdir(base);
          const data = join(base, "data");
          const args = await c.prepare(data, base);
          const before = await snapshot(data);
          const run = await runServe(args, "npm", { cwd: clone, env: operatorEnv() });
          return { c, run, before, after: await snapshot(data) };
        }),
      );
      for (const { c, run, before, after } of results) {
        expect(run.code, `${c.name}: ${run.output}`).toBe(1);
        const lines = run.stderr.split("\n").filter((l) => l !== "");
        expect(lines, c.name).toEqual([expect.stringMatching(/^hyphae: /)]);
        expect(lines[0], c.name).toMatch(c.says);
        expect(after, `${c.name} left the data directory as it was`).toEqual(before);
      }
    } finally {
      await new Promise<void>((r) => busy.close(() => r()));
    }
  }, 240_000);

  it("`npm run rendezvous` runs from the production install: prints its multiaddr, stops cleanly on SIGTERM", async () => {
    const child: ChildProcess = spawn("npm", ["run", "--silent", "rendezvous", "--", "--port", "0", "--key", join(dir, "rendezvous.key")], { cwd: clone, env: operatorEnv(), stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout!.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr!.on("data", (c: Buffer) => (output += c.toString()));
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    try {
      const deadline = Date.now() + 60_000;
      while (!/rendezvous listening on \/ip4\/127\.0\.0\.1\/tcp\/\d+\/ws\/p2p\/\w+/.test(output)) {
        if (child.exitCode !== null) throw new Error(`rendezvous exited: ${output}`);
        if (Date.now() > deadline) throw new Error(`no listening line after 60 s: ${output}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      child.kill("SIGTERM");
    }
    expect(await exited, output).toBe(0);
  }, 120_000);
});
