/**
 * Several `npm run serve` processes in classic mode on loopback, federating over real HTTPS: each has
 * its own certificate from a CA made in the test, trusts that CA through `federation_custom_ca_list`,
 * and is named `127.0.0.1:{https port}` (an IP literal with an explicit port: other servers connect
 * straight to it, no DNS). The acceptance tests of the federation issue run on this.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { HttpsFederationTransport } from "../../src/node/federationHttps.ts";
import { federationUrl } from "../../src/homeserver/federation/transport.ts";
import { freePort } from "../e2e/serve.ts";
import { createTestCa } from "../node/testCa.ts";
import type { TestCa } from "../node/testCa.ts";

/** One parsed answer. */
export interface Reply {
  status: number;
  body: Record<string, any>;
}

/** One classic-mode homeserver process. */
export interface ClassicNode {
  /** Its server name, `127.0.0.1:{https port}`. */
  readonly name: string;
  /** `https://127.0.0.1:{port}`: federation and the Client-Server API. */
  readonly httpsUrl: string;
  /** `http://127.0.0.1:{port}`: the Client-Server API (set once started). */
  httpUrl: string;
  readonly dataDir: string;
  readonly configFile: string;
  /** The running process (undefined while stopped). */
  process: ServeProcess | undefined;
  /** Everything the process printed, across restarts. */
  output(): string;
  /** A Client-Server API call over HTTP. */
  call(method: string, path: string, body?: unknown, token?: string): Promise<Reply>;
  /** Registers `localpart` (dummy auth) and returns its user ID and token. */
  register(localpart: string): Promise<{ userId: string; token: string }>;
  /** A request to this server over HTTPS as another server would send it (certificate checked against the test CA). */
  https(path: string, init?: RequestInit): Promise<Reply>;
}

/** The servers and what controls them. */
export interface ClassicFederation {
  readonly ca: TestCa;
  readonly nodes: ClassicNode[];
  /** SIGTERM (or `signal`, e.g. SIGKILL for a crash) and wait (the data directory stays). */
  stop(node: ClassicNode, signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
  /** Starts a stopped node again on its data directory and port. */
  start(node: ClassicNode): Promise<void>;
  /** Stops every process and removes every file. */
  close(): Promise<void>;
}

const REPO = resolve(fileURLToPath(new URL("../..", import.meta.url)));

/** One `npm run serve` process. */
export interface ServeProcess {
  readonly child: ChildProcess;
  output(): string;
  /** SIGTERM (or `signal`) to the process group, SIGKILL after 20 s; resolves with how it ended. */
  stop(signal?: "SIGTERM" | "SIGKILL"): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of running) if (c.pid && c.exitCode === null) try { process.kill(-c.pid, "SIGKILL"); } catch { /* gone */ }
});

/** `npm run serve -- ARGS` (or another script) in its own process group; resolves once its output matches `ready`. */
export function npmServe(args: string[], ready: RegExp, env: Record<string, string> = {}, timeoutMs = 90_000, script = "serve"): Promise<ServeProcess> {
  const child = spawn("npm", ["run", "--silent", script, "--", ...args], {
    cwd: REPO,
    env: { ...process.env, PATH: `${resolve(REPO, "node_modules/.bin")}:${process.env.PATH ?? ""}`, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  running.add(child);
  let out = "";
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once("exit", (code, signal) => {
      running.delete(child);
      r({ code, signal });
    }),
  );
  const kill = (signal: NodeJS.Signals): void => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // already gone
    }
  };
  const stop = async (signal: "SIGTERM" | "SIGKILL" = "SIGTERM") => {
    if (child.exitCode === null && child.signalCode === null) kill(signal);
    const timer = setTimeout(() => kill("SIGKILL"), 20_000);
    const status = await exited;
    clearTimeout(timer);
    return status;
  };
  return new Promise((resolveReady, reject) => {
    const timer = setTimeout(() => {
      kill("SIGKILL");
      reject(new Error(`npm run ${script} not ready after ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    const onData = (chunk: Buffer): void => {
      out += chunk.toString("utf8");
      if (ready.test(out)) {
        clearTimeout(timer);
        resolveReady({ child, output: () => out, stop });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`npm run ${script} exited (code ${code}, signal ${signal}) before it was ready:\n${out}`));
    });
  });
}

/** Limits out of the way of a test's bursts (as a provisioning script would raise them). */
const RELAXED_LIMITS = {
  rc_message: { per_second: 1000, burst_count: 1000 },
  rc_registration: { per_second: 1000, burst_count: 1000 },
  rc_login: { address: { per_second: 1000, burst_count: 1000 }, account: { per_second: 1000, burst_count: 1000 }, failed_attempts: { per_second: 1000, burst_count: 1000 } },
  rc_joins: { local: { per_second: 1000, burst_count: 1000 }, remote: { per_second: 1000, burst_count: 1000 } },
  rc_invites: { per_room: { per_second: 1000, burst_count: 1000 }, per_user: { per_second: 1000, burst_count: 1000 }, per_issuer: { per_second: 1000, burst_count: 1000 } },
  rc_room_creation: { per_second: 1000, burst_count: 1000 },
  rc_presence: { per_user: { per_second: 1000, burst_count: 1000 } },
  rc_federation: { window_size: 1000, sleep_limit: 1000, sleep_delay: 0, reject_limit: 1000, concurrent: 100 },
};

const HTTPS_READY = /Hyphae listening on (https:\/\/\S+)/;
const HTTP_READY = /Hyphae listening on (http:\/\/\S+)/;

async function parse(response: Response): Promise<Reply> {
  const text = await response.text();
  try {
    return { status: response.status, body: text ? JSON.parse(text) : {} };
  } catch {
    return { status: response.status, body: { text } };
  }
}

/**
 * Starts `count` classic-mode servers side by side. `config(i)` adds keys to server i's config file
 * (e.g. `trusted_key_servers`); `env(i, caFile)` adds environment variables (`caFile`: the test CA's PEM).
 */
export async function startClassicFederation(count: number, options: { config?: (i: number) => Record<string, unknown>; env?: (i: number, caFile: string) => Record<string, string> } = {}): Promise<ClassicFederation> {
  const root = await mkdtemp(join(tmpdir(), "hyphae-classic-"));
  const ca = createTestCa();
  await writeFile(join(root, "ca.pem"), ca.cert);
  // One transport for the test's own HTTPS requests, trusting the test CA like the servers do.
  const client = new HttpsFederationTransport({ extraCa: [ca.cert] });
  const outputs = new Map<ClassicNode, string>();

  const makeNode = async (i: number): Promise<ClassicNode> => {
    const dir = join(root, `server${i}`);
    await mkdir(dir);
    const port = await freePort();
    const name = `127.0.0.1:${port}`;
    const { cert, key } = ca.issue({ ips: ["127.0.0.1"] });
    await writeFile(join(dir, "cert.pem"), cert);
    await writeFile(join(dir, "key.pem"), key);
    const configFile = join(dir, "hyphae.json");
    await writeFile(
      configFile,
      JSON.stringify({
        server_name: name,
        bind_host: "127.0.0.1",
        http_port: 0,
        https_port: port,
        tls_cert: "cert.pem",
        tls_key: "key.pem",
        data_dir: "data",
        federation_custom_ca_list: ["../ca.pem"],
        password_pbkdf2_iterations: 1000,
        ...RELAXED_LIMITS,
        ...options.config?.(i),
      }),
    );
    const node: ClassicNode = {
      name,
      httpsUrl: `https://${name}`,
      httpUrl: "",
      dataDir: join(dir, "data"),
      configFile,
      process: undefined,
      output: () => (outputs.get(node) ?? "") + (node.process?.output() ?? ""),
      call: async (method, path, body, token) => {
        const headers: Record<string, string> = {};
        if (token) headers.Authorization = `Bearer ${token}`;
        if (body !== undefined) headers["Content-Type"] = "application/json";
        return parse(await fetch(`${node.httpUrl}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}), signal: AbortSignal.timeout(60_000) }));
      },
      register: async (localpart) => {
        const r = await node.call("POST", "/_matrix/client/v3/register", { username: localpart, password: "correct horse battery", auth: { type: "m.login.dummy" } });
        if (r.status !== 200) throw new Error(`register ${localpart} on ${name}: ${r.status} ${JSON.stringify(r.body)}`);
        return { userId: r.body.user_id as string, token: r.body.access_token as string };
      },
      https: async (path, init = {}) => parse(await client.request(name, new Request(federationUrl(name, path), { signal: AbortSignal.timeout(60_000), ...init }))),
    };
    return node;
  };

  const start = async (node: ClassicNode): Promise<void> => {
    const env = options.env?.(nodes.indexOf(node), join(root, "ca.pem"));
    const spawned = await npmServe(["--config", node.configFile], HTTPS_READY, env);
    node.process = spawned;
    // The HTTP line comes first; the HTTPS one was waited for.
    node.httpUrl = HTTP_READY.exec(spawned.output())![1]!;
  };
  const stop = async (node: ClassicNode, signal: "SIGTERM" | "SIGKILL" = "SIGTERM"): Promise<void> => {
    const p = node.process;
    if (!p) return;
    await p.stop(signal);
    outputs.set(node, (outputs.get(node) ?? "") + p.output());
    node.process = undefined;
  };

  const nodes = await Promise.all(Array.from({ length: count }, (_, i) => makeNode(i)));
  try {
    await Promise.all(nodes.map(start));
  } catch (err) {
    await Promise.all(nodes.map((n) => stop(n)));
    client.close();
    await rm(root, { recursive: true, force: true });
    throw err;
  }
  return {
    ca,
    nodes,
    stop,
    start,
    close: async () => {
      await Promise.all(nodes.map((n) => stop(n)));
      client.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last error: ${String(last)})` : ""}`);
}
