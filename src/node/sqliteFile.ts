/**
 * The Node runner's storage: the sql.js SQLite backend persisted to one file. Each persist writes
 * the full export to `<path>.tmp`, fsyncs it, renames it over `<path>` and fsyncs the directory,
 * so the file on disk is always one complete committed state: a crash leaves either the old or the
 * new database, and a `write()` that resolved is in the file.
 *
 * Byte values of the blob tables (`media_content` by default) are not in that file: they live as
 * one file each under `<path>.blobs/`, so a commit does not rewrite every photo ever uploaded
 * (see `blobFiles.ts` for their durability rules).
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { createSqliteStore } from "../storage/sqlite.ts";
import type { Store } from "../storage/store.ts";
import { StorageError } from "../storage/store.ts";
import { withBlobFiles } from "./blobFiles.ts";
import { fsyncDir, replaceFile, tempPathOf } from "./durableFile.ts";
import type { Migration } from "../storage/schema.ts";

async function writeDurably(path: string, bytes: Uint8Array): Promise<void> {
  await replaceFile(path, bytes);
  // The rename itself is durable only once the directory entry is on disk.
  await fsyncDir(dirname(path));
}

/** Options of `openSqliteFileStore`. */
export interface SqliteFileOptions {
  /** The schema; tests pass their own list. */
  migrations?: readonly Migration[];
  /** How long to wait for another live process to release the file before failing (default 5 s). */
  lockWaitMs?: number;
  /** Tables whose `Uint8Array` values are kept as files under `<path>.blobs/` (default `["media_content"]`). */
  blobTables?: readonly string[];
  /** Move byte values an older version stored inline in blob tables out to files at open (default false). */
  moveInlineBlobs?: boolean;
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
};

/**
 * Takes `<path>.lock` (holding our pid). Two processes on one file would each persist their own
 * in-memory copy and silently drop the other's writes, so a live other owner is refused; a lock
 * left by a dead process (crash, SIGKILL) is taken over, and a live one is waited for up to
 * `waitMs` (a restarting runner). The same process may reopen the file.
 */
async function lock(path: string, waitMs: number): Promise<() => Promise<void>> {
  const lockPath = path + ".lock";
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      await writeFile(lockPath, String(process.pid), { flag: "wx" });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const owner = Number((await readFile(lockPath, "utf8").catch(() => "")).trim());
      if (owner === process.pid) break;
      // An empty lock is one being written right now (or left by a crash at that instant).
      if ((owner > 0 && alive(owner)) || (!(owner > 0) && Date.now() < deadline)) {
        // A previous runner may still be shutting down (restart): give it a moment.
        if (Date.now() >= deadline) throw new StorageError(`${path} is in use by process ${owner}`);
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      await rm(lockPath, { force: true });
    }
  }
  return async () => {
    const owner = Number((await readFile(lockPath, "utf8").catch(() => "")).trim());
    if (owner === process.pid) await rm(lockPath, { force: true });
  };
}

/** Opens (or creates, with its directory) the SQLite database file at `path` as a Store (one process at a time). */
export async function openSqliteFileStore(path: string, options: SqliteFileOptions = {}): Promise<Store> {
  await mkdir(dirname(path), { recursive: true });
  const unlock = await lock(path, options.lockWaitMs ?? 5000);
  try {
    const sqlite = await openLocked(path, options);
    let store: Store;
    try {
      store = await withBlobFiles(sqlite, path + ".blobs", options.blobTables ?? ["media_content"], options.moveInlineBlobs);
    } catch (e) {
      await sqlite.close();
      throw e;
    }
    return {
      kind: store.kind,
      read: (fn) => store.read(fn),
      write: (fn) => store.write(fn),
      schemaVersion: () => store.schemaVersion(),
      close: async () => {
        await store.close();
        await unlock();
      },
    };
  } catch (e) {
    await unlock();
    throw e;
  }
}

async function openLocked(path: string, options: SqliteFileOptions): Promise<Store> {
  let data: Uint8Array | undefined;
  try {
    data = await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  // A leftover temp file is an export whose rename never happened: the file at `path` is newer.
  await rm(tempPathOf(path), { force: true });
  return createSqliteStore({
    data: data && new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    persist: (bytes) => writeDurably(path, bytes),
    migrations: options.migrations,
  });
}
