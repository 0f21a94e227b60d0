/**
 * Rate limits (`rc_*`, `x_forwarded`) and the registration policy, through `npm run serve` as a
 * child process configured the way an operator would.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHmac } from "node:crypto";
import { runServe, spawnServe } from "./spawnServe.ts";
import type { Spawned } from "./spawnServe.ts";

let dir: string;
const running: Spawned[] = [];
const servers: Record<string, string> = {};

interface Reply {
  status: number;
  body: Record<string, any>;
  headers: Headers;
}

async function call(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await fetch(`${base}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : {}, headers: res.headers };
}

const REGISTER = "/_matrix/client/v3/register";
/** A one-request registration (the dummy stage without the probe), optionally "from" an address behind a proxy. */
const register = (base: string, username: string, from?: string, password?: string): Promise<Reply> =>
  call(base, "POST", REGISTER, { username, ...(password ? { password } : {}), auth: { type: "m.login.dummy" } }, from ? { "X-Forwarded-For": from } : {});

/** Starts `npm run serve` with `config` (a fresh data dir each); bound to 0.0.0.0, the URL still uses 127.0.0.1. */
async function serve(name: string, config: Record<string, unknown>, host = "127.0.0.1"): Promise<void> {
  const file = join(dir, `${name}.json`);
  await writeFile(file, JSON.stringify({ http_port: 0, data_dir: name, password_pbkdf2_iterations: 1000, ...config }));
  const s = await spawnServe(["--config", file, "--host", host], "npm");
  running.push(s);
  servers[name] = s.url.replace("//0.0.0.0:", "//127.0.0.1:");
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "hyphae-limits-"));
  const small = (burst: number) => ({ per_second: 0.001, burst_count: burst });
  // Every server starts at once: each `npm run` takes seconds on a shared machine.
  await Promise.all([
    serve("defaults", {}),
    serve("raised", { rc_registration: { per_second: 0.01, burst_count: 100 } }),
    serve("proxied", { x_forwarded: true, rc_registration: small(3) }),
    serve("each", {
      x_forwarded: true,
      rc_registration: small(10),
      rc_message: small(2),
      rc_room_creation: small(2),
      rc_joins: { local: small(1), remote: small(1) },
      rc_invites: { per_room: small(1), per_user: small(1), per_issuer: small(1) },
      rc_presence: { per_user: small(1) },
      rc_login: { address: small(3), account: small(2), failed_attempts: small(1) },
    }),
    serve("public-closed", {}, "0.0.0.0"),
    serve("public-token", { enable_registration: true, registration_requires_token: true, registration_shared_secret: "s3cret" }, "0.0.0.0"),
    serve("public-open", { enable_registration: true, enable_registration_without_verification: true }, "0.0.0.0"),
  ]);
}, 240_000);

afterAll(async () => {
  for (const s of running) await s.stop("SIGINT", true);
  await rm(dir, { recursive: true, force: true });
});

describe("rc_registration", () => {
  it("defaults: 30 registrations from one address within a minute succeed, the 31st is 429 M_LIMIT_EXCEEDED with retry_after_ms", async () => {
    const base = servers.defaults!;
    const started = Date.now();
    // A client cannot pick its own key without x_forwarded: the header is ignored, all count for 127.0.0.1.
    const first30 = await Promise.all(Array.from({ length: 30 }, (_, i) => register(base, `user${i + 1}`, `198.51.100.${i + 1}`)));
    expect(first30.map((r) => r.status)).toEqual(Array(30).fill(200));
    const extra: Reply[] = [];
    let refused: Reply | undefined;
    while (!refused && extra.length < 20) {
      const r = await register(base, `extra${extra.length + 1}`, "198.51.100.31");
      if (r.status === 429) refused = r;
      else extra.push(r);
    }
    const elapsedS = (Date.now() - started) / 1000;
    expect(elapsedS).toBeLessThan(60);
    // The bucket refills 0.17 per second: on a slow machine one more may fit after ~5.9 s, never more.
    expect(extra.length).toBeLessThanOrEqual(Math.floor(elapsedS * 0.17));
    if (elapsedS < 1 / 0.17) expect(extra).toEqual([]);
    expect(refused!.status).toBe(429);
    expect(refused!.body.errcode).toBe("M_LIMIT_EXCEEDED");
    // The next one fits when the bucket has refilled by one: within about 1/0.17 s.
    expect(refused!.body.retry_after_ms).toBeGreaterThan(0);
    expect(refused!.body.retry_after_ms).toBeLessThanOrEqual(Math.ceil(1000 / 0.17));
    expect(refused!.headers.get("Retry-After")).toMatch(/^[1-6]$/);
  });

  it("raised: 100 registrations in a minute succeed, the 101st does not", async () => {
    const base = servers.raised!;
    const started = Date.now();
    for (let i = 0; i < 100; i++) expect((await register(base, `bulk${i}`)).status, `registration ${i + 1}`).toBe(200);
    expect(Date.now() - started).toBeLessThan(60_000);
    const over = await register(base, "bulk100");
    expect(over.status).toBe(429);
    expect(over.body.retry_after_ms).toBeGreaterThan(0);
  });
});

describe("x_forwarded", () => {
  it("keys limits on the address the proxy appended to X-Forwarded-For", async () => {
    const base = servers.proxied!;
    for (let i = 0; i < 3; i++) expect((await register(base, `a${i}`, "203.0.113.1")).status).toBe(200);
    expect((await register(base, "a3", "203.0.113.1")).status).toBe(429);
    // Another client behind the same proxy is not locked out.
    expect((await register(base, "b0", "203.0.113.2")).status).toBe(200);
    // What the client itself put before the proxy's entry does not change its key.
    expect((await register(base, "a4", "192.0.2.99, 203.0.113.1")).status).toBe(429);
  });
});

describe("each rc_* key through npm run serve", () => {
  it("refuses the action past its burst with 429 M_LIMIT_EXCEEDED", async () => {
    const base = servers.each!;
    const users: Record<string, { token: string; userId: string }> = {};
    for (const name of ["alice", "bob", "carol", "dave", "erin"]) {
      const r = await register(base, name, "10.9.9.9", `pw-${name}`);
      expect(r.status).toBe(200);
      users[name] = { token: r.body.access_token as string, userId: r.body.user_id as string };
    }
    const as = (name: string, from = "10.0.0.1") => ({ Authorization: `Bearer ${users[name]!.token}`, "X-Forwarded-For": from });
    const limited = (r: Reply, what: string) => {
      expect(r.status, what).toBe(429);
      expect(r.body.errcode, what).toBe("M_LIMIT_EXCEEDED");
      expect(r.body.retry_after_ms, what).toBeGreaterThan(0);
    };

    // rc_room_creation (burst 2)
    const room1 = (await call(base, "POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, as("alice"))).body.room_id as string;
    const room2 = (await call(base, "POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, as("alice"))).body.room_id as string;
    expect(room1).toMatch(/^!/);
    expect(room2).toMatch(/^!/);
    limited(await call(base, "POST", "/_matrix/client/v3/createRoom", {}, as("alice")), "rc_room_creation");

    // rc_message (burst 2)
    for (let i = 0; i < 2; i++) expect((await call(base, "PUT", `/_matrix/client/v3/rooms/${room1}/send/m.room.message/m${i}`, { msgtype: "m.text", body: "hi" }, as("alice"))).status).toBe(200);
    limited(await call(base, "PUT", `/_matrix/client/v3/rooms/${room1}/send/m.room.message/m2`, { msgtype: "m.text", body: "hi" }, as("alice")), "rc_message");

    // rc_joins.local (burst 1)
    expect((await call(base, "POST", `/_matrix/client/v3/join/${room1}`, {}, as("bob"))).status).toBe(200);
    limited(await call(base, "POST", `/_matrix/client/v3/join/${room2}`, {}, as("bob")), "rc_joins.local");

    // rc_invites (each burst 1): per issuer, per room, per invitee.
    const invite = (who: string, room: string, target: string) => call(base, "POST", `/_matrix/client/v3/rooms/${room}/invite`, { user_id: users[target]!.userId }, as(who));
    expect((await invite("alice", room1, "carol")).status).toBe(200);
    limited(await invite("alice", room2, "dave"), "rc_invites.per_issuer");
    limited(await invite("bob", room1, "dave"), "rc_invites.per_room");
    const roomB = (await call(base, "POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, as("bob"))).body.room_id as string;
    limited(await invite("bob", roomB, "carol"), "rc_invites.per_user");
    expect((await invite("bob", roomB, "dave")).status).toBe(200);

    // rc_presence.per_user (burst 1)
    const presence = () => call(base, "PUT", `/_matrix/client/v3/presence/${encodeURIComponent(users.alice!.userId)}/status`, { presence: "online" }, as("alice"));
    expect((await presence()).status).toBe(200);
    limited(await presence(), "rc_presence.per_user");

    // rc_login: failed_attempts (burst 1, per user), account (burst 2), address (burst 3).
    const login = (user: string, password: string, from: string) =>
      call(base, "POST", "/_matrix/client/v3/login", { type: "m.login.password", identifier: { type: "m.id.user", user }, password }, { "X-Forwarded-For": from });
    expect((await login("dave", "wrong", "10.1.0.1")).status).toBe(403);
    limited(await login("dave", "pw-dave", "10.1.0.2"), "rc_login.failed_attempts");
    expect((await login("carol", "pw-carol", "10.2.0.1")).status).toBe(200);
    expect((await login("carol", "pw-carol", "10.2.0.2")).status).toBe(200);
    limited(await login("carol", "pw-carol", "10.2.0.3"), "rc_login.account");
    for (const u of ["alice", "bob", "erin"]) expect((await login(u, `pw-${u}`, "10.3.0.1")).status).toBe(200);
    limited(await login("alice", "pw-alice", "10.3.0.1"), "rc_login.address");
    expect((await login("alice", "pw-alice", "10.3.0.2")).status).toBe(200);
  });
});

describe("registration policy on a non-loopback bind (0.0.0.0)", () => {
  it("refuses to start with open registration and no verification, in one line", async () => {
    const file = join(dir, "open.json");
    await writeFile(file, JSON.stringify({ http_port: 0, data_dir: "open", enable_registration: true }));
    const run = await runServe(["--config", file, "--host", "0.0.0.0"], "npm");
    expect(run.code).toBe(1);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).toMatch(/open registration on 0\.0\.0\.0 .*registration_requires_token: true.*enable_registration_without_verification: true/);
  }, 120_000);

  it("starts with registration closed by default", async () => {
    const r = await register(servers["public-closed"]!, "nobody");
    expect(r.status).toBe(403);
    expect(r.body.errcode).toBe("M_FORBIDDEN");
  });

  it("registration_requires_token: a token from the admin API admits one registration", async () => {
    const base = servers["public-token"]!;
    expect((await register(base, "eve")).body.errcode).toBe("M_FORBIDDEN");
    const probe = await call(base, "POST", REGISTER, { username: "alice", password: "pw" });
    expect(probe.body.flows).toEqual([{ stages: ["m.login.registration_token", "m.login.dummy"] }]);

    const { nonce } = (await call(base, "GET", "/_synapse/admin/v1/register")).body as { nonce: string };
    const mac = createHmac("sha1", "s3cret").update(`${nonce}\0root\0rootpw\0admin`).digest("hex");
    const root = await call(base, "POST", "/_synapse/admin/v1/register", { nonce, username: "root", password: "rootpw", admin: true, mac });
    expect(root.status).toBe(200);
    const admin = { Authorization: `Bearer ${root.body.access_token as string}` };
    const created = await call(base, "POST", "/_synapse/admin/v1/registration_tokens/new", { uses_allowed: 1 }, admin);
    expect(created.status).toBe(200);
    const token = created.body.token as string;
    expect((await call(base, "GET", `/_matrix/client/v1/register/m.login.registration_token/validity?token=${token}`)).body).toEqual({ valid: true });

    const session = probe.body.session as string;
    expect((await call(base, "POST", REGISTER, { username: "alice", password: "pw", auth: { type: "m.login.registration_token", token, session } })).status).toBe(401);
    const done = await call(base, "POST", REGISTER, { username: "alice", password: "pw", auth: { type: "m.login.dummy", session } });
    expect(done.status).toBe(200);
    expect(done.body.user_id).toMatch(/^@alice:/);
    expect((await call(base, "GET", `/_synapse/admin/v1/registration_tokens/${token}`, undefined, admin)).body).toMatchObject({ uses_allowed: 1, completed: 1, pending: 0 });
    expect((await call(base, "GET", `/_matrix/client/v1/register/m.login.registration_token/validity?token=${token}`)).body).toEqual({ valid: false });
  });

  it("enable_registration_without_verification: open registration as asked", async () => {
    expect((await register(servers["public-open"]!, "anyone")).status).toBe(200);
  });
});
