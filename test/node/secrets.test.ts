/**
 * `npm run serve` keeps its secrets to itself (issue 12, "Secrets at rest"): every file it
 * creates is 0600 (directories 0700), the database holds token hashes rather than tokens, an
 * empty `identity.seed` left by a crash does not block start-up, and no access token passed in a
 * query string shows up in its log. Oversized request bodies are refused by the real listener.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, readdir, readFile, rm, stat, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnServe } from "./spawnServe.ts";
import type { Spawned } from "./spawnServe.ts";

let dir: string;
const running: Spawned[] = [];
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "hyphae-secrets-"));
});
afterAll(async () => {
  for (const s of running) await s.stop("SIGKILL", true);
  await rm(dir, { recursive: true, force: true });
});

/** Every path under `root` with its mode bits. */
async function modes(root: string): Promise<[string, number, boolean][]> {
  const out: [string, number, boolean][] = [];
  for (const name of await readdir(root, { recursive: true })) {
    const s = await stat(join(root, name));
    out.push([name, s.mode & 0o777, s.isDirectory()]);
  }
  return out;
}

describe("secrets at rest (npm run serve)", () => {
  it("creates 0600 files, stores no token, starts over an empty seed, logs no query token", async () => {
    const data = join(dir, "data");
    // What the previous release left when killed between creating the seed file and writing it.
    await mkdir(data, { recursive: true });
    await writeFile(join(data, "identity.seed"), new Uint8Array(0));
    const s = await spawnServe(["--port", "0", "--data", data, "--config", await debugConfig()]);
    running.push(s);
    const reg = await fetch(`${s.url}/_matrix/client/v3/register`, {
      method: "POST",
      body: JSON.stringify({ username: "alice", password: "correct horse", auth: { type: "m.login.dummy" } }),
    });
    const { access_token: token } = (await reg.json()) as { access_token: string };
    expect(token).toBeTypeOf("string");
    // A query-string token (deprecated, still accepted) on a few requests, good and bad.
    expect((await fetch(`${s.url}/_matrix/client/v3/account/whoami?access_token=${token}`)).status).toBe(200);
    await fetch(`${s.url}/_matrix/client/v3/nope?access_token=${token}`);
    await fetch(`${s.url}/_matrix/media/v3/upload?access_token=${token}`, { method: "POST", body: new Uint8Array(10) });
    const upload = await fetch(`${s.url}/_matrix/media/v3/upload?access_token=${token}`, { method: "POST", body: "hello", headers: { "Content-Type": "text/plain" } });
    expect(upload.status).toBe(200);
    expect((await s.stop("SIGTERM")).code).toBe(0);
    expect(s.output()).not.toContain(token);

    expect((await readFile(join(data, "identity.seed"))).length).toBe(32);
    const all = await modes(data);
    expect(all.length).toBeGreaterThan(2);
    for (const [name, mode, isDir] of all) expect([name, mode.toString(8)]).toEqual([name, isDir ? "700" : "600"]);
    for (const [name, , isDir] of all) {
      if (!isDir) expect((await readFile(join(data, name))).includes(token), name).toBe(false);
    }
  });

  it("refuses oversized JSON bodies at the listener (413) and stays healthy", async () => {
    const s = await spawnServe(["--port", "0", "--data", join(dir, "big")]);
    running.push(s);
    const reg = await fetch(`${s.url}/_matrix/client/v3/register`, {
      method: "POST",
      body: JSON.stringify({ username: "bob", password: "correct horse", auth: { type: "m.login.dummy" } }),
    });
    const { access_token: token, user_id: userId } = (await reg.json()) as { access_token: string; user_id: string };
    const auth = { Authorization: `Bearer ${token}` };
    const put = (size: number): Promise<Response> =>
      fetch(`${s.url}/_matrix/client/v3/user/${encodeURIComponent(userId)}/account_data/org.example.x`, { method: "PUT", headers: auth, body: JSON.stringify({ x: "a".repeat(size) }) });
    expect((await put(1000)).status).toBe(200);
    const r = await put(70 * 1024);
    expect(r.status).toBe(413);
    expect(((await r.json()) as { errcode: string }).errcode).toBe("M_TOO_LARGE");
    // 20 MiB to a JSON endpoint is cut off at the listener (the old limit was the 50 MiB upload limit).
    const huge = await fetch(`${s.url}/_matrix/client/v3/login`, { method: "POST", body: new Uint8Array(20 * 1024 * 1024) }).catch(() => undefined);
    if (huge) expect(huge.status).toBe(413);
    // Media uploads still take large bodies.
    const media = await fetch(`${s.url}/_matrix/media/v3/upload`, { method: "POST", headers: { ...auth, "Content-Type": "application/octet-stream" }, body: new Uint8Array(3 * 1024 * 1024) });
    expect(media.status).toBe(200);
    expect((await fetch(`${s.url}/_matrix/client/v3/account/whoami`, { headers: auth })).status).toBe(200);
    expect((await s.stop("SIGTERM")).code).toBe(0);
  });
});

/** A config file at log level debug, so that every log line the server has is printed. */
async function debugConfig(): Promise<string> {
  const path = join(dir, "debug.json");
  await writeFile(path, JSON.stringify({ log_level: "debug" }));
  return path;
}
