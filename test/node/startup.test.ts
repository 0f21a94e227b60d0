/**
 * Start-up failures through `npm run serve` as a child process: each bad start is one line on
 * stderr and a non-zero exit, and leaves the data directory as it found it (nothing created).
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import type { Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runServe } from "./spawnServe.ts";
import { snapshot, startupCases } from "./startupCases.ts";

let dir: string;
let busy: Server;
let busyPort: number;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "hyphae-startup-"));
  busy = createServer();
  await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r));
  busyPort = (busy.address() as { port: number }).port;
});
afterAll(async () => {
  await new Promise<void>((r) => busy.close(() => r()));
  await rm(dir, { recursive: true, force: true });
});

describe("start-up failures through npm run serve", () => {
  // Each `npm run` costs seconds: the cases run four at a time (all at once, on a loaded 2-core
  // machine, some took longer than runServe's 90 s limit).
  it("each is one line on stderr, exit 1, and nothing created", async () => {
    const cases = startupCases(busyPort);
    const results: { c: (typeof cases)[number]; run: Awaited<ReturnType<typeof runServe>>; before: unknown; after: unknown }[] = [];
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < cases.length) {
        const i = next++;
        const c = cases[i]!;
        const base = join(dir, `case${i}`);
        await mkdir(base);
        const data = join(base, "data");
        const args = await c.prepare(data, base);
        const before = await snapshot(data);
        const run = await runServe(args, "npm");
        results.push({ c, run, before, after: await snapshot(data) });
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    for (const { c, run, before, after } of results) {
      expect(run.code, `${c.name}: ${run.output}`).toBe(1);
      const lines = run.stderr.split("\n").filter((l) => l !== "");
      expect(lines, c.name).toHaveLength(1);
      expect(lines[0], c.name).toMatch(/^hyphae: /);
      expect(lines[0], c.name).toMatch(c.says);
      expect(after, `${c.name} left the data directory as it was`).toEqual(before);
    }
  }, 420_000);
});
