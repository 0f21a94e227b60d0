/**
 * The Node runner's storage: one SQLite file through `node:sqlite` (`src/storage/nodeSqlite.ts`:
 * WAL, durable commits that write only the changed pages; a `write()` resolves once its commit is
 * on disk, and no read sees it before). Files written by the earlier sql.js release (whole-file
 * exports) are the same SQLite format and open unchanged.
 *
 * Byte values of the blob tables (`media_content` by default) are not in that file: they live as
 * one file each under `<path>.blobs/`, so a commit does not rewrite every photo ever uploaded
 * (see `blobFiles.ts` for their durability rules).
 */
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { createNodeSqliteStore } from "../storage/nodeSqlite.ts";
import type { Store } from "../storage/store.ts";
import { StorageError } from "../storage/store.ts";
import { withBlobFiles } from "./blobFiles.ts";
import { lockOwnerAlive, ownLockStamp, parseLockStamp } from "./pidLock.ts";
import { fsyncDir, tempPathOf } from "./durableFile.ts";
import type { Migration } from "../storage/schema.ts";

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

/**
 * Takes `<path>.lock` (holding our pid). One live process per data directory: a second runner would
 * serve from its own caches and notifier while the first writes behind its back, so a live other owner is refused; a lock
 * left by a dead process (crash, SIGKILL) is taken over, and a live one is waited for up to
 * `waitMs` (a restarting runner). The same process may reopen the file.
 */
async function lock(path: string, waitMs: number): Promise<() => Promise<void>> {
  const lockPath = path + ".lock";
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      await writeFile(lockPath, ownLockStamp(), { flag: "wx" });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const stamp = parseLockStamp(await readFile(lockPath, "utf8").catch(() => ""));
      const owner = stamp.pid;
      if (owner === process.pid) break;
      // An empty lock is one being written right now (or left by a crash at that instant).
      if ((owner > 0 && lockOwnerAlive(stamp)) || (!(owner > 0) && Date.now() < deadline)) {
        // A previous runner may still be shutting down (restart): give it a moment.
        if (Date.now() >= deadline) throw new StorageError(`${path} is in use by process ${owner}`);
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      await rm(lockPath, { force: true });
    }
  }
  return async () => {
    const owner = parseLockStamp(await readFile(lockPath, "utf8").catch(() => "")).pid;
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
      read: (fn, scope) => store.read(fn, scope),
      write: (fn, scope) => store.write(fn, scope),
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
  // A leftover temp file is an export of the sql.js release whose rename never happened: the file at `path` is newer.
  await rm(tempPathOf(path), { force: true });
  const store = await createNodeSqliteStore(path, { migrations: options.migrations });
  // A new database file and the WAL file opening creates are durable only once their directory entries are.
  await fsyncDir(dirname(path));
  return store;
}
