/**
 * The Node runner's storage: the sql.js SQLite backend persisted to one file. Each persist writes
 * the full export to `<path>.tmp`, fsyncs it, renames it over `<path>` and fsyncs the directory,
 * so the file on disk is always one complete committed state: a crash leaves either the old or the
 * new database, and a `write()` that resolved is in the file.
 */
import { open, readFile, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { createSqliteStore } from "../storage/sqlite.ts";
import type { Store } from "../storage/store.ts";
import type { Migration } from "../storage/schema.ts";

async function writeDurably(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = path + ".tmp";
  const fh = await open(tmp, "w");
  try {
    await fh.writeFile(bytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  // The rename itself is durable only once the directory entry is on disk.
  const dir = await open(dirname(path), "r");
  try {
    await dir.sync();
  } catch {
    // some filesystems refuse fsync on directories; the rename is still atomic
  } finally {
    await dir.close();
  }
}

/** Opens (or creates) the SQLite database file at `path` as a Store. */
export async function openSqliteFileStore(path: string, options: { migrations?: readonly Migration[] } = {}): Promise<Store> {
  let data: Uint8Array | undefined;
  try {
    data = await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  // A leftover temp file is an export whose rename never happened: the file at `path` is newer.
  await rm(path + ".tmp", { force: true });
  return createSqliteStore({
    data: data && new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    persist: (bytes) => writeDurably(path, bytes),
    migrations: options.migrations,
  });
}
