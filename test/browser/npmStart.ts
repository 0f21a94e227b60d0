/**
 * The real `npm start` as a child process (its own process group, so the rendezvous node it may
 * start goes with it), for the browser tests: waits for the "Hyphae app at URL" line.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "../e2e/serve.ts";
import { within } from "../e2e/http.ts";

const BIN = join(REPO_ROOT, "node_modules", ".bin");

/** A running `npm start`. */
export interface StartedApp {
  readonly url: string;
  readonly child: ChildProcess;
  output(): string;
  /** SIGTERM to the group; resolves with the exit (SIGKILL after 10 s). */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of children) if (c.pid && c.exitCode === null) try { process.kill(-c.pid, "SIGKILL"); } catch { /* gone */ }
});

/**
 * Runs `npm start -- ARGS` in the repository and waits (bounded) until it prints its URL. Each run
 * builds into its own directory (`HYPHAE_DIST`): test files that run side by side must not rebuild
 * or rewrite (config.json) the bundle another one serves.
 */
export async function npmStart(args: string[] = ["--port", "0"], timeoutMs = 180_000): Promise<StartedApp> {
  const dist = await mkdtemp(join(tmpdir(), "hyphae-dist-"));
  const child = spawn("npm", ["start", "--silent", "--", ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, PATH: `${BIN}:${process.env.PATH ?? ""}`, HYPHAE_DIST: dist },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  children.add(child);
  let out = "";
  child.stdout!.on("data", (c: Buffer) => void (out += c.toString("utf8")));
  child.stderr!.on("data", (c: Buffer) => void (out += c.toString("utf8")));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once("exit", (code, signal) => {
      children.delete(child);
      r({ code, signal });
    }),
  );
  const stop = async (): Promise<{ code: number | null; signal: NodeJS.Signals | null }> => {
    if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, "SIGTERM");
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // gone
      }
    }, 10_000);
    try {
      return await exited;
    } finally {
      clearTimeout(timer);
      await rm(dist, { recursive: true, force: true });
    }
  };
  try {
    const url = await within(
      new Promise<string>((resolve, reject) => {
        const check = (): void => {
          const m = /Hyphae app at (http:\/\/\S+?)\/? /.exec(out);
          if (m) resolve(m[1]!);
        };
        child.stdout!.on("data", check);
        void exited.then(() => reject(new Error(`npm start exited before printing its URL:\n${out}`)));
      }),
      timeoutMs,
      "npm start to print its URL",
    );
    return { url, child, output: () => out, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
