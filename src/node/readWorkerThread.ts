/**
 * The read worker's thread (see readWorker.ts): a read-only store on the runner's database file,
 * answering one message per job with the response body already encoded as JSON (its buffer is
 * transferred, not copied, and the main thread does not serialize megabytes either).
 */
import { parentPort, workerData } from "node:worker_threads";
import { readlinkSync } from "node:fs";
import { setPriority } from "node:os";
import type { ReadWorkerReply, ReadWorkerRequest } from "./readWorker.ts";
import { hideSqliteExperimentalWarning } from "./warnings.ts";

hideSqliteExperimentalWarning();

/** The nice value of this thread: when it and the main thread both want a core, the main thread's requests go first. */
const NICE = 10;
// On Linux a thread has its own nice value, set through its thread ID (the last part of
// /proc/thread-self). Elsewhere there is no per-thread way, and the thread keeps the process's.
try {
  const tid = Number(readlinkSync("/proc/thread-self").split("/").pop());
  if (tid > 0 && tid !== process.pid) setPriority(tid, NICE);
} catch {
  // not Linux, or not allowed: the same priority as the main thread
}
// Loaded only now, so the filter above is in place when node:sqlite is.
const { createNodeSqliteStore } = await import("../storage/nodeSqlite.ts");
const { searchRoomEvents } = await import("../homeserver/services/search.ts");

const port = parentPort!;
const store = await createNodeSqliteStore((workerData as { path: string }).path, { readOnly: true });
const encoder = new TextEncoder();
const reply = (msg: ReadWorkerReply, transfer: ArrayBuffer[] = []): void => port.postMessage(msg, transfer);

port.on("message", (msg: ReadWorkerRequest) => {
  if (msg.kind === "close") {
    // The main thread sends this only once no job is left; closing the port lets the thread end.
    void store.close().finally(() => port.close());
    return;
  }
  const { id, job } = msg;
  store.read((tx) => searchRoomEvents(tx, job)).then(
    (out) => {
      const body = encoder.encode(JSON.stringify(out));
      reply({ id, body }, [body.buffer]);
    },
    (err: unknown) => reply({ id, error: err instanceof Error ? err.message : String(err) }),
  );
});
reply({ ready: true });
