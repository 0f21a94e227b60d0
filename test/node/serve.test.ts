/**
 * `npm run serve` as users run it: a child process on a free port with a temporary data dir,
 * driven by matrix-js-sdk; restarts on the same data dir; config files; TLS; SIGTERM.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHmac } from "node:crypto";
import { createClient } from "matrix-js-sdk";
import type { ICreateClientOpts, MatrixClient, MatrixError as SdkError } from "matrix-js-sdk";
import { runServe, spawnServe } from "./spawnServe.ts";
import type { Spawned } from "./spawnServe.ts";

let dir: string;
const running: Spawned[] = [];
const start = async (...a: Parameters<typeof spawnServe>): Promise<Spawned> => {
  const s = await spawnServe(...a);
  running.push(s);
  return s;
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "hyphae-serve-test-"));
});
afterAll(async () => {
  for (const s of running) await s.stop("SIGKILL", true);
  await rm(dir, { recursive: true, force: true });
});

/** matrix-js-sdk logs every request; keep the test output readable. */
const quiet: NonNullable<ICreateClientOpts["logger"]> = {
  trace() {}, debug() {}, info() {}, warn() {}, error() {},
  getChild: () => quiet,
};
const sdk = (opts: ICreateClientOpts): MatrixClient => createClient({ logger: quiet, ...opts });

/** Registers through matrix-js-sdk: the 401 UIA probe, then the dummy stage with its session. */
async function registerWithSdk(baseUrl: string, username: string, password: string) {
  const client = sdk({ baseUrl });
  let session: string | undefined;
  try {
    await client.registerRequest({ username, password });
    throw new Error("registration without auth must answer 401");
  } catch (err) {
    const e = err as SdkError;
    expect(e.httpStatus).toBe(401);
    session = (e.data as { session?: string }).session;
  }
  expect(session).toBeTypeOf("string");
  return client.registerRequest({ username, password, auth: { type: "m.login.dummy", session } });
}

const serverNameOf = (line: string): string => /\(server name ([0-9a-z.:-]+)\)/.exec(line)![1]!;

describe("npm run serve", () => {
  it("serves matrix-js-sdk, keeps accounts and identity across a restart, exits 0 on SIGTERM", async () => {
    const data = join(dir, "node1");
    const first = await start(["--port", "0", "--data", data, "--rendezvous", "/ip4/127.0.0.1/tcp/4001/ws"]);
    expect(first.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const name = serverNameOf(first.output());
    expect(name).toMatch(/^[0-9a-f]{64}$/);
    // P2P mode: the libp2p node listens on its own websocket port (the rendezvous given is not running: redialled in the background).
    expect(first.output()).toMatch(/Hyphae P2P listening on \/ip4\/127\.0\.0\.1\/tcp\/\d+\/ws\/p2p\/12D3KooW/);
    expect(first.output()).toMatch(/no rendezvous reachable yet/);

    const reg = await registerWithSdk(first.url, "alice", "wonderland");
    expect(reg.user_id).toBe(`@alice:${name}`);
    const client = sdk({ baseUrl: first.url, accessToken: reg.access_token, userId: reg.user_id });
    const who = await client.whoami();
    expect(who.user_id).toBe(`@alice:${name}`);
    expect(who.device_id).toBe(reg.device_id);

    // The seed is private to its owner.
    expect((await stat(join(data, "identity.seed"))).mode & 0o777).toBe(0o600);
    expect((await stat(join(data, "homeserver.sqlite"))).size).toBeGreaterThan(0);

    expect(await first.stop("SIGTERM")).toEqual({ code: 0, signal: null });

    const second = await start(["--port", "0", "--data", data]);
    expect(serverNameOf(second.output())).toBe(name);
    const fresh = sdk({ baseUrl: second.url });
    const login = await fresh.loginWithPassword("alice", "wonderland");
    expect(login.user_id).toBe(`@alice:${name}`);
    const again = sdk({ baseUrl: second.url, accessToken: login.access_token, userId: login.user_id });
    expect((await again.whoami()).user_id).toBe(`@alice:${name}`);
    // The token from before the restart is still valid: tokens are stored, not in memory.
    const oldToken = sdk({ baseUrl: second.url, accessToken: reg.access_token, userId: reg.user_id });
    expect((await oldToken.whoami()).device_id).toBe(reg.device_id);
    const devices = await again.getDevices();
    expect(devices.devices.map((d) => d.device_id).sort()).toEqual([reg.device_id, login.device_id].sort());
    expect(await second.stop("SIGINT")).toEqual({ code: 0, signal: null });
  });

  it("starts from a config file, warns about unknown keys, and enables shared-secret registration", async () => {
    const cfg = join(dir, "config.json");
    await writeFile(
      cfg,
      JSON.stringify({
        server_name: "hyphae.test",
        bind_host: "127.0.0.1",
        http_port: 0,
        data_dir: "node2",
        registration_shared_secret: "s3cret",
        enable_registration: false,
        password_pbkdf2_iterations: 1000,
        some_other_tools_key: { x: 1 },
      }),
    );
    const s = await start(["--config", cfg]);
    expect(s.output()).toMatch(/ignoring unknown key "some_other_tools_key"/);
    expect(serverNameOf(s.output())).toBe("hyphae.test");
    // data_dir is relative to the config file.
    expect((await stat(join(dir, "node2", "identity.seed"))).isFile()).toBe(true);

    const closed = await fetch(`${s.url}/_matrix/client/v3/register`, { method: "POST", body: JSON.stringify({ username: "x", auth: { type: "m.login.dummy" } }) });
    expect(closed.status).toBe(403);

    const { nonce } = (await (await fetch(`${s.url}/_synapse/admin/v1/register`)).json()) as { nonce: string };
    const mac = createHmac("sha1", "s3cret").update(`${nonce}\0bot\0pw\0notadmin`).digest("hex");
    const res = await fetch(`${s.url}/_synapse/admin/v1/register`, { method: "POST", body: JSON.stringify({ nonce, username: "bot", password: "pw", mac }) });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { user_id: string }).user_id).toBe("@bot:hyphae.test");
    expect(await s.stop()).toEqual({ code: 0, signal: null });
  });

  it("refuses a data dir that belongs to another server name, and bad configs, with exit code 1", async () => {
    const data = join(dir, "node3");
    const s = await start(["--port", "0", "--data", data]);
    await s.stop();
    const cfg = join(dir, "other-name.json");
    await writeFile(cfg, JSON.stringify({ server_name: "other.test", data_dir: data, http_port: 0 }));
    const renamed = await runServe(["--config", cfg]);
    expect(renamed.code).toBe(1);
    expect(renamed.output).toMatch(/belongs to server/);

    const noTls = join(dir, "no-tls.json");
    await writeFile(noTls, JSON.stringify({ https_port: 0, data_dir: data }));
    const bad = await runServe(["--config", noTls]);
    expect(bad.code).toBe(1);
    expect(bad.output).toMatch(/https_port needs tls_cert and tls_key/);

    const unknownFlag = await runServe(["--prot", "1"]);
    expect(unknownFlag.code).toBe(1);
    expect(unknownFlag.output).toMatch(/unknown argument --prot/);
  });

  it("runs through `npm run serve --` itself", async () => {
    const s = await start(["--port", "0", "--data", join(dir, "node4")], "npm");
    const res = await fetch(`${s.url}/_matrix/client/versions`);
    expect(res.status).toBe(200);
    // npm relays SIGTERM to the server (the script execs it: no shell in between), as Docker and systemd need.
    expect(await s.stop("SIGTERM")).toEqual({ code: 0, signal: null });
    expect(s.output()).toMatch(/SIGTERM: stopping/);
  });

  it("a SIGTERM while it opens its data directory waits for the start, then stops cleanly with 0", async () => {
    const s = await start(["--port", "0", "--data", join(dir, "early")], "node", /created a new signing key/);
    expect(await s.stop("SIGTERM")).toEqual({ code: 0, signal: null });
    expect(s.output()).toMatch(/SIGTERM: stopping/);
  });

  it("serves the same API over HTTPS with tls_cert and tls_key", async (ctx) => {
    let openssl = true;
    try {
      execFileSync("openssl", ["version"], { stdio: "ignore" });
    } catch {
      openssl = false;
    }
    if (!openssl) {
      ctx.skip("openssl is not installed: cannot make a self-signed certificate for the TLS case");
      return;
    }
    const cert = join(dir, "cert.pem");
    const key = join(dir, "key.pem");
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
      "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", key, "-out", cert,
    ], { stdio: "ignore" });
    const cfg = join(dir, "tls.json");
    await writeFile(cfg, JSON.stringify({ http_port: 0, https_port: 0, tls_cert: "cert.pem", tls_key: "key.pem", data_dir: "node5" }));
    const s = await start(["--config", cfg], "node", /Hyphae listening on (https:\S+)/);
    const httpUrl = /Hyphae listening on (http:\S+)/.exec(s.output())![1]!;
    expect((await fetch(`${httpUrl}/_matrix/client/versions`)).status).toBe(200);

    const ca = readFileSync(cert);
    const body = await new Promise<string>((resolveBody, reject) => {
      const req = httpsRequest(`${s.url}/_matrix/key/v2/server`, { ca }, (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString()));
        res.on("end", () => resolveBody(text));
      });
      req.on("error", reject);
      req.end();
    });
    const keys = JSON.parse(body) as { server_name: string; verify_keys: Record<string, unknown> };
    expect(keys.server_name).toBe(serverNameOf(s.output()));
    expect(Object.keys(keys.verify_keys)).toEqual(["ed25519:auto"]);
    expect(await s.stop()).toEqual({ code: 0, signal: null });
  });
});
