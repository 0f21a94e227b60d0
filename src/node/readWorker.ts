/**
 * The Node runner's read worker (issue 12, "one request must not stall the server"): heavy
 * read-only requests — `/search` — run on a worker thread with its own read-only connection to the
 * database file (`readWorkerThread.ts`), so the thread that answers everyone else's `/sync` and
 * `/send` is not the one that spends seconds on a search.
 *
 * Visibility: the file is in WAL mode and its writes are committed on the main thread, each commit
 * durable and visible once its `COMMIT` returns. A job is posted after the handler's own earlier
 * writes resolved, and the worker starts a new read transaction for it, so it sees every write a
 * `store.read()` started at that moment would see (read-your-writes), and, as on the main thread,
 * no commit that is not yet durable.
 *
 * A worker that dies (it should not) fails the jobs it had; the next job starts a new one.
 */
import { Worker } from "node:worker_threads";
import type { ReadWorker } from "../homeserver/context.ts";
import type { SearchJob } from "../homeserver/services/search.ts";

/** A message from the thread: ready after opening the database, or one job's answer. */
export type ReadWorkerReply =
  | { ready: true }
  | { id: number; body: Uint8Array<ArrayBuffer> }
  | { id: number; error: string };

/** A message to the thread. */
export type ReadWorkerRequest = { id: number; kind: "search"; job: SearchJob } | { kind: "close" };

interface Pending {
  resolve: (body: Uint8Array<ArrayBuffer>) => void;
  reject: (err: unknown) => void;
}

/** How long `close()` waits for the thread to close its connection and end before terminating it. */
const EXIT_WAIT_MS = 5_000;

/** One thread and the jobs it was given. */
interface Thread {
  worker: Worker;
  pending: Map<number, Pending>;
  ready: Promise<void>;
  exited: Promise<void>;
}

function spawn(dbPath: string, onGone: (t: Thread) => void): Thread {
  const worker = new Worker(new URL("./readWorkerThread.ts", import.meta.url), { workerData: { path: dbPath } });
  // A pending job's request keeps the process alive; an idle worker must not.
  worker.unref();
  const pending = new Map<number, Pending>();
  let markReady!: () => void;
  let failReady!: (err: unknown) => void;
  const ready = new Promise<void>((res, rej) => {
    markReady = res;
    failReady = rej;
  });
  // Nobody may be waiting for readiness (a replacement worker): that failure is reported through its jobs.
  ready.catch(() => undefined);
  const failAll = (err: unknown): void => {
    failReady(err);
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  };
  const thread: Thread = {
    worker,
    pending,
    ready,
    exited: new Promise<void>((res) => worker.once("exit", () => res())),
  };
  worker.on("message", (reply: ReadWorkerReply) => {
    if ("ready" in reply) return markReady();
    const p = pending.get(reply.id);
    if (!p) return;
    pending.delete(reply.id);
    // The request was checked before it was posted: what fails here is the database (a 500).
    if ("body" in reply) p.resolve(reply.body);
    else p.reject(new Error(`read worker: ${reply.error}`));
  });
  worker.on("error", (err) => {
    onGone(thread);
    failAll(err);
  });
  worker.on("exit", (code) => {
    onGone(thread);
    failAll(new Error(`read worker exited (code ${code})`));
  });
  return thread;
}

/**
 * Starts the read worker on the SQLite database at `dbPath` (already opened, migrated and in WAL
 * mode by the runner's store); resolves once the thread has opened it.
 */
export async function startReadWorker(dbPath: string): Promise<ReadWorker> {
  let current: Thread | undefined;
  const onGone = (t: Thread): void => {
    if (current === t) current = undefined;
  };
  const first = spawn(dbPath, onGone);
  current = first;
  try {
    await first.ready;
  } catch (err) {
    await first.worker.terminate();
    throw err;
  }
  let nextId = 0;
  let closed = false;
  const inFlight = new Set<Promise<unknown>>();

  return {
    search(job: SearchJob): Promise<Uint8Array<ArrayBuffer>> {
      if (closed) return Promise.reject(new Error("read worker closed"));
      const t = (current ??= spawn(dbPath, onGone));
      const id = nextId++;
      const p = new Promise<Uint8Array<ArrayBuffer>>((resolve, reject) => {
        t.pending.set(id, { resolve, reject });
      });
      t.worker.postMessage({ id, kind: "search", job } satisfies ReadWorkerRequest);
      const settled = p.then(
        () => undefined,
        () => undefined,
      );
      inFlight.add(settled);
      void settled.then(() => inFlight.delete(settled));
      return p;
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await Promise.all(inFlight);
      const t = current;
      if (!t) return;
      t.worker.postMessage({ kind: "close" } satisfies ReadWorkerRequest);
      const timer = setTimeout(() => void t.worker.terminate(), EXIT_WAIT_MS);
      await t.exited;
      clearTimeout(timer);
    },
  };
}
