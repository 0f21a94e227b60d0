/**
 * Runs the Node homeserver (`npm run serve -- --port P --data DIR`) as a child process for tests:
 * `--port 0` (the runner picks a free port and prints it, so no race for a port), a fresh temporary
 * data directory, ready once it prints its "Hyphae listening on http://…" line, stopped with
 * SIGTERM (then SIGKILL if it lingers).
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync, realpathSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root. */
export const REPO_ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));

const READY_LINE = /Hyphae listening on (https?:\/\/[^\s…]+)/;

/** Options for {@link startServe}. */
export interface ServeOptions {
  /** Use this data directory (kept afterwards) instead of a fresh temporary one (removed on stop). */
  dataDir?: string;
  /** The port to ask for (default 0: the runner picks a free one; the URL is read from its output). */
  port?: number;
  /** Extra command line arguments after `--port P --data DIR`. */
  args?: string[];
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** How long to wait for the ready line (default 60 s: Node strips the types of every source file on start). */
  readyTimeoutMs?: number;
}

/** A running Node homeserver. */
export interface ServedHomeserver {
  /** Base URL of the Client-Server API, e.g. `http://127.0.0.1:40123` (no trailing slash). */
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  readonly pid: number;
  /** Everything the process wrote to stdout and stderr so far (for failure messages). */
  output(): string;
  /** How the process ended (undefined while it runs): a clean SIGTERM shutdown is `{ code: 0, signal: null }`. */
  exitStatus(): { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** SIGTERM, wait for exit (SIGKILL after `graceMs`, default 10 s), remove a temporary data dir. */
  stop(graceMs?: number): Promise<void>;
}

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

/**
 * The Node 22 binary: the one from node_modules (`npm run` uses it), else the current one. The
 * system `node` on this machine is older and cannot run matrix-js-sdk or the runner.
 */
function nodeBinary(): string {
  const local = join(REPO_ROOT, "node_modules/.bin/node");
  return existsSync(local) ? realpathSync(local) : process.execPath;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

/** If the test process dies without calling stop(), take the children with it. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const child of running) killGroup(child, "SIGKILL");
  });
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    // The child leads its own process group (detached), so this also reaches anything it spawned.
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

/**
 * Starts `src/node/main.ts` with Node 22 directly, as `npm run serve` does but without the npm
 * wrapper, so that the pid is the homeserver's own.
 */
export async function startServe(options: ServeOptions = {}): Promise<ServedHomeserver> {
  installExitHook();
  const ownDir = options.dataDir === undefined;
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), "hyphae-serve-")));
  const port = options.port ?? 0;
  const args = ["src/node/main.ts", "--port", String(port), "--data", dataDir, ...(options.args ?? [])];
  const child = spawn(nodeBinary(), args, {
    cwd: REPO_ROOT,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  running.add(child);
  let output = "";
  let status: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<void>((resolveExit) => {
    child.once("exit", (code, signal) => {
      status = { code, signal };
      running.delete(child);
      resolveExit();
    });
  });

  const stop = async (graceMs = 10_000): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      killGroup(child, "SIGTERM");
      let timer: NodeJS.Timeout | undefined;
      const killed = new Promise<void>((r) => {
        timer = setTimeout(() => {
          killGroup(child, "SIGKILL");
          r();
        }, graceMs);
      });
      await Promise.race([exited, killed]);
      clearTimeout(timer);
      await exited;
    }
    if (ownDir) await rm(dataDir, { recursive: true, force: true });
  };

  try {
    const url = await new Promise<string>((resolveUrl, reject) => {
      const timeoutMs = options.readyTimeoutMs ?? 60_000;
      const timer = setTimeout(() => reject(new Error(`homeserver not ready after ${timeoutMs} ms`)), timeoutMs);
      const onData = (chunk: Buffer): void => {
        output += chunk.toString("utf8");
        const m = READY_LINE.exec(output);
        if (m) {
          clearTimeout(timer);
          resolveUrl(m[1]!.replace(/[/.,;:]+$/, ""));
        }
      };
      child.stdout!.on("data", onData);
      child.stderr!.on("data", onData);
      child.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`homeserver exited before it was ready (code ${code}, signal ${signal})`));
      });
    });
    return {
      url,
      port: Number(new URL(url).port),
      dataDir,
      pid: child.pid!,
      output: () => output,
      exitStatus: () => status,
      stop,
    };
  } catch (err) {
    await stop(2_000);
    throw new Error(`${(err as Error).message}\n--- homeserver output ---\n${output}`, { cause: err });
  }
}
