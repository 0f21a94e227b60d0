/**
 * The Node runner as benchmarks use it: `src/node/main.ts` (what `npm run serve` runs) as one child
 * process on a data directory, and data directories filled quickly from a memory store (events sent
 * through `handle()` rather than over HTTP, then every table copied into the runner's file store).
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Store } from "../src/storage/store.ts";
import { currentTables } from "../src/storage/schema.ts";
import { openSqliteFileStore } from "../src/node/sqliteFile.ts";
import { DATABASE_FILE } from "../src/node/storage.ts";

const REPO = resolve(fileURLToPath(new URL("..", import.meta.url)));

/** A running runner: its process, its Client-Server URL and everything it printed so far. */
export interface Runner {
  child: ChildProcess;
  url: string;
  output(): string;
}

/** Starts the runner on `dataDir` (one Node process, so its /proc/<pid>/io is the server's own). */
export async function startRunner(dataDir: string, extraArgs: string[] = []): Promise<Runner> {
  const child = spawn(process.execPath, ["src/node/main.ts", "--port", "0", "--data", dataDir, ...extraArgs], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const url = await new Promise<string>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`runner not ready after 60 s:\n${out}`)), 60_000);
    const onData = (c: Buffer): void => {
      out += c.toString();
      const m = /Hyphae listening on (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        res(m[1]!);
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", () => rej(new Error(`runner exited:\n${out}`)));
  });
  return { child, url, output: () => out };
}

/** SIGTERM, then SIGKILL after 20 s; resolves when the process is gone. */
export async function stopRunner(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  await exited;
  clearTimeout(timer);
}

/** Copies every table of `from` into `dataDir`'s database file, in batches of 5,000 rows. */
export async function copyIntoDataDir(from: Store, dataDir: string): Promise<void> {
  const file = await openSqliteFileStore(join(dataDir, DATABASE_FILE));
  for (const table of currentTables()) {
    const rows = await from.read((tx) => tx.range(table));
    for (let i = 0; i < rows.length; i += 5000) {
      await file.write(async (tx) => {
        for (const r of rows.slice(i, i + 5000)) tx.put(table, r.key, r.value);
      });
    }
  }
  await file.close();
}
