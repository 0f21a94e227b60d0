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
  // The machine is shared and each `npm run` costs seconds: the cases run side by side.
  it("each is one line on stderr, exit 1, and nothing created", async () => {
    const results = await Promise.all(
      startupCases(busyPort).map(async (c, i) => {
        const base = join(dir, `case${i}`);
        await mkdir(base);
        const data = join(base, "data");
        const args = await c.prepare(data, base);
        const before = await snapshot(data);
        const run = await runServe(args, "npm");
        return { c, run, before, after: await snapshot(data) };
      }),
    );
    for (const { c, run, before, after } of results) {
      expect(run.code, `${c.name}: ${run.output}`).toBe(1);
      const lines = run.stderr.split("\n").filter((l) => l !== "");
      expect(lines, c.name).toHaveLength(1);
      expect(lines[0], c.name).toMatch(/^hyphae: /);
      expect(lines[0], c.name).toMatch(c.says);
      expect(after, `${c.name} left the data directory as it was`).toEqual(before);
    }
  }, 240_000);
});
