/**
 * Writes `test/fixtures/previous-worker.js.gz` and `previous-worker.json` for the upgrade test
 * (test/browser/upgrade.browser.test.ts): the Service Worker of the previous release, built from
 * git history. The previous release is the commit just before the one that added the newest
 * migration (found in schema.ts's history). Its code, not just its schema: a release's code only
 * ever runs on its own schema, so a "previous" worker made of today's code on yesterday's tables
 * would fail where the real one did not. Run it after adding a migration (it needs the full
 * history, which is why the test reads the committed file instead of building it):
 * `npx node scripts/make-previous-worker.ts`.
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { buildWorker } from "../vite.config.ts";

const run = promisify(execFile);
const REPO = fileURLToPath(new URL("../", import.meta.url));
const FIXTURES = join(REPO, "test/fixtures");

const git = async (...args: string[]): Promise<string> => (await run("git", ["-C", REPO, ...args], { maxBuffer: 64 * 1024 * 1024 })).stdout;

/** How many migrations a version of schema.ts has (each entry has its own `createTables: [`). */
const migrationsIn = (schema: string): number => schema.match(/createTables: \[/g)?.length ?? 0;

const current = migrationsIn(await readFile(join(REPO, "src/storage/schema.ts"), "utf8"));
let adding: string | undefined;
for (const commit of (await git("log", "--format=%H", "--", "src/storage/schema.ts")).split("\n").filter(Boolean)) {
  const n = migrationsIn(await git("show", `${commit}:src/storage/schema.ts`));
  if (n < current) break;
  if (n === current) adding = commit;
}
if (!adding) throw new Error("the commit adding the newest migration is not in this clone's history (a shallow clone?)");
const commit = (await git("rev-parse", `${adding}^`)).trim();

const dir = await mkdtemp(join(tmpdir(), "hyphae-previous-"));
try {
  const src = join(dir, "src-tree");
  await mkdir(src);
  const archive = join(dir, "previous.tar");
  await git("archive", "--format=tar", "-o", archive, commit, "src", "tsconfig.json", "package.json");
  await run("tar", ["-xf", archive, "-C", src]);
  await symlink(join(REPO, "node_modules"), join(src, "node_modules"), "dir");
  await buildWorker(join(src, "src/sw/worker.ts"), "sw.js", join(dir, "out"));
  const script = await readFile(join(dir, "out", "sw.js"));
  await writeFile(join(FIXTURES, "previous-worker.js.gz"), gzipSync(script, { level: 9 }));
  await writeFile(join(FIXTURES, "previous-worker.json"), JSON.stringify({ commit, schemaVersion: current - 1 }, null, 2) + "\n");
  process.stdout.write(`previous release ${commit} (schema ${current - 1}): ${script.length} bytes\n`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
