/**
 * Starts the Node homeserver as a child process in each documented way (Node 22 from node_modules
 * on `src/node/main.ts` directly, `npm run serve`, `npm start`), in its own process group, and waits
 * for its "Hyphae listening on …" line.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const BIN = resolve(REPO, "node_modules/.bin");

/** A started runner. */
export interface Spawned {
  child: ChildProcess;
  /** The first "Hyphae listening on URL" URL. */
  url: string;
  /** Everything printed so far (stdout and stderr). */
  output(): string;
  /** Resolves with the exit status once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends `signal` to the process (or its whole group) and waits for the exit. */
  stop(signal?: NodeJS.Signals, group?: boolean): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of children) if (c.pid && c.exitCode === null) try { process.kill(-c.pid, "SIGKILL"); } catch { /* gone */ }
});

/** Runs `node src/node/main.ts ARGS` (via = "node"), `npm run serve -- ARGS` (via = "npm") or `npm start -- ARGS` (via = "npm-start"). */
export function spawnServe(args: string[], via: "node" | "npm" | "npm-start" = "node", waitFor = /Hyphae listening on (\S+)/): Promise<Spawned> {
  const [cmd, argv] =
    via === "node" ? [resolve(BIN, "node"), ["src/node/main.ts", ...args]]
    : via === "npm" ? ["npm", ["run", "--silent", "serve", "--", ...args]]
    : ["npm", ["start", "--silent", "--", ...args]];
  const child = spawn(cmd, argv, {
    cwd: REPO,
    // node_modules/.bin first, as under `npm run`: this machine's own `node` may be older than 22.
    env: { ...process.env, PATH: `${BIN}:${process.env.PATH ?? ""}` },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  children.add(child);
  let out = "";
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once("exit", (code, signal) => {
      children.delete(child);
      r({ code, signal });
    }),
  );
  const stop = async (signal: NodeJS.Signals = "SIGTERM", group = false) => {
    if (child.exitCode === null && child.signalCode === null) {
      if (group) process.kill(-child.pid!, signal);
      else child.kill(signal);
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // gone
      }
    }, 20_000);
    const status = await exited;
    clearTimeout(timer);
    return status;
  };
  return new Promise((resolveStart, reject) => {
    const timer = setTimeout(() => {
      void stop("SIGKILL", true);
      reject(new Error(`no ready line after 60 s:\n${out}`));
    }, 60_000);
    const onData = (chunk: Buffer): void => {
      out += chunk.toString("utf8");
      const m = waitFor.exec(out);
      if (m) {
        clearTimeout(timer);
        resolveStart({ child, url: m[1] ?? "", output: () => out, exited, stop });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`exited (code ${code}, signal ${signal}) before ready:\n${out}`));
    });
  });
}

/**
 * Runs the CLI to completion (for start-up errors) and returns its status and output: directly
 * with Node 22, or as `npm run --silent serve -- ARGS` (via = "npm"). Killed after 90 s. `where`
 * runs it in another checkout (a production install) with that checkout's environment.
 */
export async function runServe(
  args: string[],
  via: "node" | "npm" = "node",
  where?: { cwd: string; env: NodeJS.ProcessEnv },
): Promise<{ code: number | null; output: string; stderr: string }> {
  const cwd = where?.cwd ?? REPO;
  const [cmd, argv] = via === "node" ? [resolve(cwd, "node_modules/.bin/node"), ["src/node/main.ts", ...args]] : ["npm", ["run", "--silent", "serve", "--", ...args]];
  const child = spawn(cmd, argv, {
    cwd,
    env: where?.env ?? { ...process.env, PATH: `${BIN}:${process.env.PATH ?? ""}` },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  children.add(child);
  let out = "";
  let err = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr.on("data", (c: Buffer) => {
    out += c.toString();
    err += c.toString();
  });
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // gone
    }
  }, 90_000);
  // "close": the exit status once stdout and stderr are fully read.
  const code = await new Promise<number | null>((r) => child.once("close", (c) => r(c)));
  clearTimeout(timer);
  children.delete(child);
  return { code, output: out, stderr: err };
}
