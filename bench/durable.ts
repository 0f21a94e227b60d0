/**
 * Durable sends over HTTP into the Node runner (`src/node/main.ts` as `npm run serve` runs it, a
 * child process on a temporary data directory) with 0, 10,000 and 100,000 events already stored
 * in the room, and the bytes the runner writes to disk per message (from its `/proc/<pid>/io`).
 * Each is set next to the raw primitive under a durable send, measured in the same run just before
 * it: one `node:sqlite` INSERT + COMMIT of a ~1 KB row in WAL mode with `synchronous=FULL` (the
 * runner's settings), its rate and its bytes written.
 *
 * The stored history is made quickly rather than over HTTP: the events are sent through `handle()`
 * of a homeserver on a memory store with the runner's identity, and its tables are copied into
 * `DATA_DIR/homeserver.sqlite` through the file store at 0, 10,000 and 100,000 events.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { createHomeserver } from "../src/homeserver/homeserver.ts";
import { createMemoryStore } from "../src/storage/memory.ts";
import { loadOrCreateSeed, SEED_FILE, serverNameFromSeed } from "../src/node/identity.ts";
import type { Bench, Figure } from "./harness.ts";
import { copyIntoDataDir, startRunner, stopRunner } from "./runner.ts";
import type { Runner } from "./runner.ts";
import { call, seedDevice, versus } from "./harness.ts";

const BODY = { msgtype: "m.text", body: "Hello, world! ".repeat(8) };
const MEASURE_MS = 1500;
const ROUNDS = 5;

/** Bytes this process (or `pid`) has caused to be written to storage so far. */
function writtenBytes(pid: number | "self" = "self"): number | undefined {
  const file = `/proc/${pid}/io`;
  if (!existsSync(file)) return undefined;
  const m = /write_bytes:\s*(\d+)/.exec(readFileSync(file, "utf8"));
  return m ? Number(m[1]) : undefined;
}

/** The raw primitive: INSERT + COMMIT of a ~1 KB row, WAL, synchronous=FULL, for `ms`; rate and bytes written per commit. */
export function rawSqlite(dir: string, ms = 2000): { rate: number; bytes: number | undefined } {
  const path = join(dir, `raw${Date.now()}.sqlite`);
  const db = new DatabaseSync(path);
  db.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID");
  const insert = db.prepare("INSERT INTO t (k, v) VALUES (?, ?)");
  const row = JSON.stringify({ pdu: { type: "m.room.message", content: BODY, pad: "x".repeat(700) } });
  let n = 0;
  const once = (): void => {
    db.exec("BEGIN IMMEDIATE");
    insert.run(`k${n++}`, row);
    db.exec("COMMIT");
  };
  for (let i = 0; i < 50; i++) once();
  const before = writtenBytes();
  const start = performance.now();
  let count = 0;
  while (performance.now() - start < ms) {
    once();
    count++;
  }
  const elapsed = performance.now() - start;
  const after = writtenBytes();
  db.close();
  rmSync(path, { force: true });
  rmSync(path + "-wal", { force: true });
  rmSync(path + "-shm", { force: true });
  return { rate: (count * 1000) / elapsed, bytes: before !== undefined && after !== undefined ? (after - before) / count : undefined };
}

/**
 * Data directories whose room already holds each of `counts` messages (one homeserver on a memory
 * store keeps sending; at each count its tables are copied into a fresh data directory with the
 * same identity). Returns the sender's token, the room and the directories by count.
 */
async function prefill(root: string, counts: number[]): Promise<{ token: string; roomId: string; dirs: Map<number, string> }> {
  const first = join(root, "seed");
  const { seed } = await loadOrCreateSeed(first);
  const serverName = serverNameFromSeed(seed);
  const mem = createMemoryStore();
  const hs = await createHomeserver({ store: mem, seed, serverName });
  await mem.write(async (tx) => tx.put("settings", "server_name", serverName));
  const token = await seedDevice(hs, `@bench:${serverName}`, "D");
  const roomId = (await call(hs, "POST", "/createRoom", token, { preset: "private_chat" })).room_id as string;
  const dirs = new Map<number, string>();
  let sent = 0;
  for (const n of [...counts].sort((x, y) => x - y)) {
    for (; sent < n; sent++) await call(hs, "PUT", `/rooms/${encodeURIComponent(roomId)}/send/m.room.message/pre${sent}`, token, BODY);
    const dataDir = join(root, `d${n}`);
    mkdirSync(dataDir, { recursive: true });
    copyFileSync(join(first, SEED_FILE), join(dataDir, SEED_FILE));
    await copyIntoDataDir(mem, dataDir);
    dirs.set(n, dataDir);
  }
  await hs.close();
  return { token, roomId, dirs };
}

let txn = 0;
async function send(url: string, token: string, roomId: string): Promise<void> {
  const res = await fetch(`${url}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/b${txn++}`, {
    method: "PUT",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(BODY),
    signal: AbortSignal.timeout(30_000),
  });
  if (res.status !== 200) throw new Error(`send → ${res.status} ${await res.text()}`);
  await res.arrayBuffer();
}

/** Sends from `clients` concurrent clients for `ms`; returns sends per second and bytes the runner wrote per send. */
async function measure(run: Runner, token: string, roomId: string, clients: number, ms: number): Promise<{ rate: number; bytes: number | undefined }> {
  const pid = run.child.pid!;
  const before = writtenBytes(pid);
  const start = performance.now();
  let count = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() - start < ms) {
        await send(run.url, token, roomId);
        count++;
      }
    }),
  );
  const elapsed = performance.now() - start;
  const after = writtenBytes(pid);
  return { rate: (count * 1000) / elapsed, bytes: before !== undefined && after !== undefined ? (after - before) / count : undefined };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

export const durableBench: Bench = async () => {
  const figures: Figure[] = [];
  const root = mkdtempSync(join(tmpdir(), "hyphae-bench-durable-"));
  const runs = new Map<number, Runner>();
  try {
    const { token, roomId, dirs } = await prefill(root, [0, 10_000, 100_000]);
    for (const [stored, dataDir] of dirs) {
      const run = await startRunner(dataDir);
      runs.set(stored, run);
      for (let i = 0; i < 30; i++) await send(run.url, token, roomId); // warm-up
    }
    // The machine may be shared: the three runners and the raw primitive are measured in
    // alternating short rounds, and each figure is the median of its rounds.
    type Round = { raw: number; rawBytes: number | undefined; seq: number; seqBytes: number | undefined; conc: number };
    const rounds = new Map<number, Round[]>([...runs.keys()].map((k) => [k, []]));
    for (let r = 0; r < ROUNDS; r++) {
      for (const [stored, run] of runs) {
        const raw = rawSqlite(root, MEASURE_MS / 2);
        const seq = await measure(run, token, roomId, 1, MEASURE_MS);
        const conc = await measure(run, token, roomId, 8, MEASURE_MS / 2);
        rounds.get(stored)!.push({ raw: raw.rate, rawBytes: raw.bytes, seq: seq.rate, seqBytes: seq.bytes, conc: conc.rate });
      }
    }
    for (const [stored, rs] of rounds) {
      const label = `${stored.toLocaleString("en-US")} events stored`;
      const seq = median(rs.map((x) => x.seq));
      figures.push(versus(`durable sends over HTTP (npm run serve), ${label}`, seq, "events/s", "raw node:sqlite INSERT+COMMIT (WAL, synchronous=FULL)", median(rs.map((x) => x.raw))));
      figures.push(versus(`durable sends over HTTP, 8 concurrent clients, ${label}`, median(rs.map((x) => x.conc)), "events/s", "same, 1 client", seq));
      if (rs.every((x) => x.seqBytes !== undefined && x.rawBytes !== undefined)) {
        const mean = (f: (x: Round) => number): number => sum(rs.map(f)) / rs.length;
        figures.push(versus(`disk bytes written per send, ${label}`, mean((x) => x.seqBytes!), "B", "raw node:sqlite INSERT+COMMIT of a 1 KB row", mean((x) => x.rawBytes!)));
      }
    }
    const seqOf = (n: number): number => median(rounds.get(n)!.map((x) => x.seq));
    figures.push(versus("durable sends over HTTP: 100,000 events stored vs. empty (goal ≥ 0.8)", seqOf(100_000), "events/s", "same, 0 events stored", seqOf(0)));
  } finally {
    for (const run of runs.values()) await stopRunner(run.child);
    rmSync(root, { recursive: true, force: true });
  }
  return figures;
};
