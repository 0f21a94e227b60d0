/**
 * Fairness (issue 12): one user's heavy `/search` must not stall everyone else. The Node runner
 * (`src/node/main.ts` as `npm run serve` runs it, a child process on a temporary data directory)
 * holds a room of 2,000 messages that all match the search term. User A runs the heaviest search a
 * client can ask for (`event_context` with `before_limit`/`after_limit` of 100,000 and the largest
 * page), two at a time, back to back; meanwhile user B, in a room of its own, syncs and sends. B's
 * median `/sync` and `/send` latencies under that load are set next to the same latencies measured
 * on the idle server in the same run (a ratio near 1 means the search is not in B's way; the
 * machine's two cores are shared by both, so some slow-down is the CPU, not queueing). Idle and
 * loaded phases alternate, `ROUNDS` of each, so that a change in the machine's other load during
 * the run falls on both sides of the ratio.
 *
 * The stored history is made quickly rather than over HTTP: events are sent through `handle()` of
 * a homeserver on a memory store with the runner's identity, and its tables are copied into
 * `DATA_DIR/homeserver.sqlite` through the file store (as bench/durable.ts does).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHomeserver } from "../src/homeserver/homeserver.ts";
import { createMemoryStore } from "../src/storage/memory.ts";
import { loadOrCreateSeed, serverNameFromSeed } from "../src/node/identity.ts";
import type { Bench, Figure } from "./harness.ts";
import { copyIntoDataDir, startRunner, stopRunner } from "./runner.ts";
import type { Runner } from "./runner.ts";
import { call, seedDevice, versus } from "./harness.ts";

const MESSAGES = 2000;
/** B's requests of each kind per phase. */
const SAMPLES = 20;
const ROUNDS = 3;

interface Prepared {
  dataDir: string;
  heavy: { token: string };
  light: { token: string; roomId: string };
}

/** A data directory with A's 2,000-message room and B's own room, and both users' tokens. */
async function prepare(root: string): Promise<Prepared> {
  const dataDir = join(root, "data");
  mkdirSync(dataDir, { recursive: true });
  const { seed } = await loadOrCreateSeed(dataDir);
  const serverName = serverNameFromSeed(seed);
  const mem = createMemoryStore();
  const hs = await createHomeserver({ store: mem, seed, serverName });
  await mem.write(async (tx) => tx.put("settings", "server_name", serverName));
  const heavy = await seedDevice(hs, `@heavy:${serverName}`, "H");
  const light = await seedDevice(hs, `@light:${serverName}`, "L");
  const big = (await call(hs, "POST", "/createRoom", heavy, { preset: "private_chat" })).room_id as string;
  for (let i = 0; i < MESSAGES; i++) {
    await call(hs, "PUT", `/rooms/${encodeURIComponent(big)}/send/m.room.message/p${i}`, heavy, { msgtype: "m.text", body: `apple pie number ${i} ${"words ".repeat(20)}` });
  }
  const own = (await call(hs, "POST", "/createRoom", light, { preset: "private_chat" })).room_id as string;
  await copyIntoDataDir(mem, dataDir);
  await hs.close();
  return { dataDir, heavy: { token: heavy }, light: { token: light, roomId: own } };
}

/** The runner on `dataDir`, with the message rate limit lifted: B's sends are measured, not throttled. */
function startLifted(dataDir: string): Promise<Runner> {
  const config = join(dataDir, "..", "bench.json");
  writeFileSync(config, JSON.stringify({ rc_message: { per_second: 10_000, burst_count: 10_000 } }));
  return startRunner(dataDir, ["--config", config]);
}

/** One request as `token`; resolves with its duration in ms (throws unless 200). */
async function timed(url: string, method: string, path: string, token: string, body?: unknown): Promise<number> {
  const start = performance.now();
  let res: Response;
  try {
    res = await fetch(`${url}/_matrix/client/v3${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(120_000),
    });
    await res.arrayBuffer();
  } catch (err) {
    throw new Error(`${method} ${path} failed after ${Math.round(performance.now() - start)} ms at ${new Date().toISOString()}`, { cause: err });
  }
  if (res.status !== 200) throw new Error(`${method} ${path} → ${res.status}`);
  return performance.now() - start;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

let txn = 0;
/** B's latencies: `SAMPLES` incremental `/sync` calls and `SAMPLES` sends, interleaved. */
async function lightUser(url: string, light: Prepared["light"]): Promise<{ sync: number[]; send: number[] }> {
  const first = await fetch(`${url}/_matrix/client/v3/sync?timeout=0`, { headers: { authorization: `Bearer ${light.token}` } });
  let since = ((await first.json()) as { next_batch: string }).next_batch;
  const sync: number[] = [];
  const send: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    send.push(await timed(url, "PUT", `/rooms/${encodeURIComponent(light.roomId)}/send/m.room.message/f${txn++}`, light.token, { msgtype: "m.text", body: "still here" }));
    const start = performance.now();
    const res = await fetch(`${url}/_matrix/client/v3/sync?timeout=0&since=${encodeURIComponent(since)}`, { headers: { authorization: `Bearer ${light.token}` } });
    since = ((await res.json()) as { next_batch: string }).next_batch;
    sync.push(performance.now() - start);
  }
  return { sync, send };
}

const HEAVY_SEARCH = {
  search_categories: {
    room_events: {
      search_term: "apple",
      order_by: "recent",
      event_context: { before_limit: 100_000, after_limit: 100_000, include_profile: true },
      filter: { limit: 100_000 },
    },
  },
};

export const fairnessBench: Bench = async () => {
  const figures: Figure[] = [];
  const root = mkdtempSync(join(tmpdir(), "hyphae-bench-fairness-"));
  let runner: Runner | undefined;
  try {
    const prepared = await prepare(root);
    runner = await startLifted(prepared.dataDir);
    const { url } = runner;
    await lightUser(url, prepared.light); // warm-up
    const idle = { sync: [] as number[], send: [] as number[] };
    const loaded = { sync: [] as number[], send: [] as number[] };
    const searchTimes: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const i = await lightUser(url, prepared.light);
      idle.sync.push(...i.sync);
      idle.send.push(...i.send);
      let stop = false;
      const started = searchTimes.length;
      const searchers = Array.from({ length: 2 }, async () => {
        while (!stop) searchTimes.push(await timed(url, "POST", "/search", prepared.heavy.token, HEAVY_SEARCH));
      });
      // A failed search ends the run (after B's measurement), not the process.
      const searching = Promise.all(searchers);
      searching.catch(() => (stop = true));
      // The searches are under way (one has been answered) before B starts measuring.
      while (searchTimes.length === started && !stop) await new Promise((r) => setTimeout(r, 20));
      const l = await lightUser(url, prepared.light);
      loaded.sync.push(...l.sync);
      loaded.send.push(...l.send);
      stop = true;
      await searching;
    }
    figures.push(versus("B's /sync while A runs heavy /search ×2 (2,000 matches, context 100,000)", median(loaded.sync), "ms", "B's /sync, idle server", median(idle.sync)));
    figures.push(versus("B's /send while A runs heavy /search ×2", median(loaded.send), "ms", "B's /send, idle server", median(idle.send)));
    figures.push({ name: "one heavy /search (limits capped by the server)", value: median(searchTimes), unit: "ms", note: `${searchTimes.length} searches` });
  } catch (err) {
    if (runner) process.stderr.write(`runner output (last 4,000 characters):\n${runner.output().slice(-4000)}\n`);
    throw err;
  } finally {
    if (runner) await stopRunner(runner.child);
    rmSync(root, { recursive: true, force: true });
  }
  return figures;
};

