/**
 * The Service Worker in Chromium (issue 13): the worker bundle's size and its cold start.
 * - Size: Hyphae's worker alone (`hyphae-sw.js`, src/sw/worker.ts, no client UI) and the libp2p side
 *   it imports when its node starts (`hyphae-p2p.js`), minified + gzip -9, together against the
 *   350 KB goal; the core script alone is what a restarted worker compiles before it answers.
 * - Cold start: a worker with 10,000 events stored is stopped (CDP `ServiceWorker.stopAllWorkers`);
 *   the next `/sync` (incremental, as a client's retry) restarts it from IndexedDB. Compared to the
 *   same `/sync` answered by the warm worker in the same run, and next to a bare `/versions` after a stop.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import type { Figure } from "./harness.ts";
import { registerWorker, workerStopper } from "./swtools.ts";
import { versus } from "./harness.ts";
import { buildWorker } from "../vite.config.ts";
import { P2P_SCRIPT } from "../src/sw/p2pCore.ts";
import { serveStatic } from "../src/node/staticServer.ts";
import { launchChromium } from "../test/e2e/browser.ts";

const REPO = fileURLToPath(new URL("../", import.meta.url));
const EVENTS = Number(process.env["HYPHAE_BENCH_SW_EVENTS"] ?? 10_000);
const GOAL_BYTES = 350 * 1024;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function browserBench(): Promise<Figure[]> {
  const dir = await mkdtemp(join(tmpdir(), "hyphae-bench-sw-"));
  const figures: Figure[] = [];
  try {
    await buildWorker(join(REPO, "src/sw/worker.ts"), "sw.js", dir);
    const gzipped = async (file: string): Promise<number> => gzipSync(await readFile(join(dir, file)), { level: 9 }).length;
    const core = await gzipped("sw.js");
    const p2p = await gzipped(P2P_SCRIPT);
    figures.push(versus("worker bundle (hyphae-sw.js + hyphae-p2p.js, min+gzip, no client UI)", (core + p2p) / 1024, "KB", "goal", GOAL_BYTES / 1024, "KB", "ratio ≤ 1 meets the goal"));
    figures.push(versus("worker core script alone (hyphae-sw.js, compiled before a restarted worker answers)", core / 1024, "KB", "both scripts", (core + p2p) / 1024, "KB"));

    const html = '<!doctype html><meta charset="utf-8"><title>bench</title><p>bench</p>';
    await import("node:fs/promises").then((fs) => fs.writeFile(join(dir, "index.html"), html));
    const server = await serveStatic(dir);
    const browser = await launchChromium();
    try {
      const page = browser.page;
      await page.goto(`${server.url}/`);
      await registerWorker(page);
      // One user, one room, EVENTS messages (20 sends in flight at a time).
      const setup = await page.evaluate(async (events) => {
        const post = async (method: string, path: string, body: unknown, token?: string): Promise<Record<string, unknown>> => {
          const res = await fetch(path, { method, headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body) });
          return (await res.json()) as Record<string, unknown>;
        };
        const first = await post("POST", "/_matrix/client/v3/register", { username: "bench", password: "bench password" });
        const reg = await post("POST", "/_matrix/client/v3/register", { username: "bench", password: "bench password", auth: { type: "m.login.dummy", session: first.session } });
        const token = reg.access_token as string;
        const room = (await post("POST", "/_matrix/client/v3/createRoom", { preset: "private_chat" }, token)).room_id as string;
        const sync = await fetch("/_matrix/client/v3/sync?timeout=0", { headers: { Authorization: `Bearer ${token}` } });
        const since = ((await sync.json()) as { next_batch: string }).next_batch;
        let next = 0;
        const worker = async (): Promise<void> => {
          while (next < events) {
            const i = next++;
            await post("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/send/m.room.message/b${i}`, { msgtype: "m.text", body: `message ${i}` }, token);
          }
        };
        await Promise.all(Array.from({ length: 20 }, worker));
        return { token, since };
      }, EVENTS);
      const { stop, detach } = await workerStopper(browser.context, page);
      const timed = (path: string): Promise<number> =>
        page.evaluate(
          async ([path, token]) => {
            const t0 = performance.now();
            const res = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
            await res.arrayBuffer();
            if (!res.ok) throw new Error(`${path}: ${res.status}`);
            return performance.now() - t0;
          },
          [path, setup.token] as const,
        );
      // A client's retry after the worker stopped: an incremental sync since before the messages (timeline limited).
      const syncPath = `/_matrix/client/v3/sync?timeout=0&since=${encodeURIComponent(setup.since)}`;
      const cold: number[] = [];
      const warm: number[] = [];
      const versions: number[] = [];
      for (let i = 0; i < 5; i++) {
        await stop();
        cold.push(await timed(syncPath));
        warm.push(await timed(syncPath));
        await stop();
        versions.push(await timed("/_matrix/client/versions"));
      }
      figures.push(versus(`cold start: stopped worker → first /sync answered (${EVENTS.toLocaleString("en-US")} events stored)`, median(cold), "ms", "the same /sync, warm worker", median(warm), "ms"));
      figures.push({ name: "cold start: stopped worker → /versions answered", value: median(versions), unit: "ms" });
      await detach();
    } finally {
      await browser.close();
      await server.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return figures;
}
