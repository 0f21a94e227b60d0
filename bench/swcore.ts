/**
 * The core through the real Service Worker in Chromium (issue 8, "Storage that fits each
 * backend"): the worker bundle (src/sw/worker.ts) serves a page on a local origin, holds
 * EVENTS messages in one room (sent through it, 20 in flight) and seven more rooms, and every
 * figure is a ratio to a raw primitive measured in the same browser in the same run:
 * - a warm send (`PUT …/send`, one at a time) against a raw IndexedDB put + commit of an
 *   event-sized value, from the page into a scratch database;
 * - eight sends at once (one into each of eight rooms) against the same eight one after another;
 * - `/messages?dir=b&limit=50` against a raw IndexedDB read of 50 event-sized values in one
 *   transaction;
 * - the first `/sync` after the worker is stopped (CDP `ServiceWorker.stopAllWorkers`, as a browser
 *   stops an idle worker): the client's next incremental sync since its last `next_batch`, one new
 *   message waiting; against a stop → `/versions` restart.
 * Times are measured in the page (`performance.now()` around `fetch`), medians of several rounds.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Page } from "playwright-core";
import type { Figure } from "./harness.ts";
import { registerWorker, workerStopper } from "./swtools.ts";
import { versus } from "./harness.ts";
import { buildWorker } from "../vite.config.ts";
import { serveStatic } from "../src/node/staticServer.ts";
import { launchChromium } from "../test/e2e/browser.ts";

const REPO = fileURLToPath(new URL("../", import.meta.url));
const EVENTS = Number(process.env["HYPHAE_BENCH_SW_EVENTS"] ?? 10_000);
const ROOMS = 8;
const SENDS = 60;
const ROUNDS = 7;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** The page's side of the bench: Matrix calls through the worker and the raw IndexedDB primitives. */
const PAGE_HELPERS = `
window.bench = {
  async call(method, path, body, token) {
    const res = await fetch(path, { method, headers: { ...(body !== undefined ? { "Content-Type": "application/json" } : {}), ...(token ? { Authorization: "Bearer " + token } : {}) }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    const json = await res.json();
    if (!res.ok) throw new Error(method + " " + path + ": " + res.status + " " + JSON.stringify(json));
    return json;
  },
  async timed(method, path, body, token) {
    const t0 = performance.now();
    await window.bench.call(method, path, body, token);
    return performance.now() - t0;
  },
  // An event as the store holds one (about 1 KB of structured-clone data).
  eventLike(i) {
    return { eventId: "$" + i.toString(36).padStart(43, "A"), roomId: "!aaaaaaaaaaaaaaaaaaaa:bench", streamPos: i,
      pdu: { type: "m.room.message", room_id: "!aaaaaaaaaaaaaaaaaaaa:bench", sender: "@bench:bench", origin_server_ts: Date.now(), depth: i,
        content: { msgtype: "m.text", body: "message " + i }, prev_events: ["$" + "B".repeat(43)], auth_events: ["$" + "C".repeat(43), "$" + "D".repeat(43), "$" + "E".repeat(43)],
        hashes: { sha256: "F".repeat(43) }, signatures: { bench: { "ed25519:a": "G".repeat(86) } }, unsigned: {} } };
  },
  async scratch() {
    if (window.bench.db) return window.bench.db;
    await new Promise((r) => { const d = indexedDB.deleteDatabase("bench-scratch"); d.onsuccess = d.onerror = d.onblocked = r; });
    window.bench.db = await new Promise((resolve, reject) => {
      const req = indexedDB.open("bench-scratch", 1);
      req.onupgradeneeded = () => req.result.createObjectStore("s");
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    window.bench.n = 0;
    return window.bench.db;
  },
  // One put of an event-sized value in its own readwrite transaction, until it has committed.
  async rawPut() {
    const db = await window.bench.scratch();
    const i = ++window.bench.n;
    const t0 = performance.now();
    await new Promise((resolve, reject) => {
      const tx = db.transaction(["s"], "readwrite");
      tx.objectStore("s").put(window.bench.eventLike(i), "k" + String(i).padStart(8, "0"));
      tx.oncomplete = resolve;
      tx.onerror = tx.onabort = () => reject(tx.error);
    });
    return performance.now() - t0;
  },
  // 50 event-sized values read in one readonly transaction (keys and values, as a range scan).
  async rawRead50() {
    const db = await window.bench.scratch();
    const t0 = performance.now();
    await new Promise((resolve, reject) => {
      const tx = db.transaction(["s"], "readonly");
      const store = tx.objectStore("s");
      const range = IDBKeyRange.lowerBound("k");
      const keys = store.getAllKeys(range, 50);
      const values = store.getAll(range, 50);
      tx.oncomplete = () => resolve([keys.result, values.result]);
      tx.onerror = tx.onabort = () => reject(tx.error);
    });
    return performance.now() - t0;
  },
};
`;

interface Setup {
  token: string;
  rooms: string[];
}

/** Registers a user and fills the worker: EVENTS messages in the first room, eight rooms in all. */
async function fill(page: Page): Promise<Setup> {
  return page.evaluate(
    async ([events, rooms]) => {
      const b = (window as unknown as { bench: { call(m: string, p: string, body?: unknown, t?: string): Promise<Record<string, unknown>> } }).bench;
      const first = await fetch("/_matrix/client/v3/register", { method: "POST", body: JSON.stringify({ username: "bench", password: "bench password" }) }).then((r) => r.json() as Promise<{ session: string }>);
      const reg = await b.call("POST", "/_matrix/client/v3/register", { username: "bench", password: "bench password", auth: { type: "m.login.dummy", session: first.session } });
      const token = reg.access_token as string;
      const ids: string[] = [];
      for (let r = 0; r < rooms; r++) ids.push((await b.call("POST", "/_matrix/client/v3/createRoom", { preset: "private_chat", name: `room ${r}` }, token)).room_id as string);
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < events) {
          const i = next++;
          await b.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(ids[0]!)}/send/m.room.message/fill${i}`, { msgtype: "m.text", body: `message ${i}` }, token);
        }
      };
      await Promise.all(Array.from({ length: 20 }, worker));
      return { token, rooms: ids };
    },
    [EVENTS, ROOMS] as const,
  );
}

/** The figures of issue 8 measured through the worker in Chromium. */
export async function swcoreBench(): Promise<Figure[]> {
  const dir = await mkdtemp(join(tmpdir(), "hyphae-bench-swcore-"));
  const figures: Figure[] = [];
  try {
    await buildWorker(join(REPO, "src/sw/worker.ts"), "sw.js", dir);
    await writeFile(join(dir, "index.html"), '<!doctype html><meta charset="utf-8"><title>bench</title><p>bench</p>');
    await writeFile(join(dir, "bench.js"), PAGE_HELPERS);
    const server = await serveStatic(dir);
    const browser = await launchChromium();
    try {
      const page = browser.page;
      await page.goto(`${server.url}/`);
      await page.addScriptTag({ url: "/bench.js" });
      await registerWorker(page);
      const fillStart = performance.now();
      const setup = await fill(page);
      process.stdout.write(`  filled ${EVENTS} events in ${((performance.now() - fillStart) / 1000).toFixed(1)} s\n`);
      const send = (room: string, txn: string): string =>
        `["PUT", "/_matrix/client/v3/rooms/${encodeURIComponent(room)}/send/m.room.message/${txn}", { "msgtype": "m.text", "body": "${txn}" }, "${setup.token}"]`;
      const ev = <T>(expr: string): Promise<T> => page.evaluate(expr) as Promise<T>;

      // Raw primitives first warmed up, then interleaved with what they are compared to.
      for (let i = 0; i < 20; i++) await ev("bench.rawPut()");
      for (let i = 0; i < 60; i++) await ev("bench.rawPut()"); // 80 rows for the 50-row read
      const rawPuts: number[] = [];
      const sends: number[] = [];
      for (let i = 0; i < 10; i++) await ev(`bench.timed(...${send(setup.rooms[0]!, `warm${i}`)})`);
      for (let i = 0; i < SENDS; i++) {
        rawPuts.push(await ev<number>("bench.rawPut()"));
        sends.push(await ev<number>(`bench.timed(...${send(setup.rooms[0]!, `s${i}`)})`));
      }
      const rawPut = median(rawPuts);
      figures.push(versus(`warm send through the worker (${EVENTS.toLocaleString("en-US")} events stored)`, median(sends), "ms", "raw IndexedDB put + commit (event-sized value, same browser)", rawPut, "ms", "goal ≤ 4"));

      // Eight sends at once, one per room, against the same eight one after another.
      const concurrent: number[] = [];
      const sequential: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const calls = setup.rooms.map((room, i) => send(room, `c${r}_${i}`));
        concurrent.push(await ev<number>(`(async () => { const t0 = performance.now(); await Promise.all([${calls.map((c) => `bench.call(...${c})`).join(",")}]); return performance.now() - t0; })()`));
        const seqCalls = setup.rooms.map((room, i) => send(room, `q${r}_${i}`));
        sequential.push(await ev<number>(`(async () => { const t0 = performance.now(); ${seqCalls.map((c) => `await bench.call(...${c});`).join(" ")} return performance.now() - t0; })()`));
      }
      figures.push(versus("8 concurrent sends (one per room), wall time", median(concurrent), "ms", "the same 8 sends one after another", median(sequential), "ms", "1 = no overlap; 0.125 = fully parallel"));

      // /messages, the newest 50 events of the big room.
      const messagesPath = `/_matrix/client/v3/rooms/${encodeURIComponent(setup.rooms[0]!)}/messages?dir=b&limit=50`;
      const messages: number[] = [];
      const rawReads: number[] = [];
      await ev(`bench.timed("GET", ${JSON.stringify(messagesPath)}, undefined, "${setup.token}")`);
      for (let i = 0; i < 15; i++) {
        rawReads.push(await ev<number>("bench.rawRead50()"));
        messages.push(await ev<number>(`bench.timed("GET", ${JSON.stringify(messagesPath)}, undefined, "${setup.token}")`));
      }
      figures.push(versus("/messages?dir=b&limit=50 through the worker", median(messages), "ms", "raw IndexedDB read of 50 event-sized values in one transaction", median(rawReads), "ms"));

      // The first /sync after a stop: the client's retry since its last next_batch, one new message.
      const { stop, detach } = await workerStopper(browser.context, page);
      const cold: number[] = [];
      const versions: number[] = [];
      const warmSync: number[] = [];
      for (let r = 0; r < 5; r++) {
        const since = (await ev<{ next_batch: string }>(`bench.call("GET", "/_matrix/client/v3/sync?timeout=0", undefined, "${setup.token}")`)).next_batch;
        await ev(`bench.call(...${send(setup.rooms[0]!, `cold${r}`)})`);
        const syncPath = `/_matrix/client/v3/sync?timeout=0&since=${encodeURIComponent(since)}`;
        await stop();
        cold.push(await ev<number>(`bench.timed("GET", ${JSON.stringify(syncPath)}, undefined, "${setup.token}")`));
        warmSync.push(await ev<number>(`bench.timed("GET", ${JSON.stringify(syncPath)}, undefined, "${setup.token}")`));
        await stop();
        versions.push(await ev<number>(`bench.timed("GET", "/_matrix/client/versions")`));
      }
      await detach();
      figures.push(versus("first incremental /sync after a worker stop (one new message)", median(cold), "ms", "stop → /versions restart", median(versions), "ms", "goal ≤ 1.5"));
      figures.push(versus("the same /sync again, warm worker", median(warmSync), "ms", "raw IndexedDB put + commit", rawPut, "ms"));
    } finally {
      await browser.close();
      await server.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return figures;
}
