/**
 * Atomic, durable file replacement (Node runner): the database file (`sqliteFile.ts`) and the blob
 * files beside it (`blobFiles.ts`) are written the same way, so a crash leaves either the old file
 * or the complete new one, never a torn write.
 */
import { link, open, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";

/** The temp file `replaceFile` writes before renaming it over `path` (a leftover is an unfinished write). */
export const tempPathOf = (path: string): string => path + ".tmp";

/**
 * Writes `bytes` to `tempPathOf(path)`, fsyncs it and renames it over `path`. The rename is durable
 * only once the directory entry is on disk: follow with `fsyncDir(dirname(path))` (one per directory
 * when writing several files).
 */
export async function replaceFile(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = tempPathOf(path);
  const fh = await open(tmp, "w");
  try {
    await fh.writeFile(bytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}

/** Fsyncs a directory, making the renames and creations of entries in it durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } catch {
    // some filesystems refuse fsync on directories; the rename is still atomic
  } finally {
    await fh.close();
  }
}

/**
 * Creates `path` holding `bytes` (mode `mode`) unless it exists: written to a temp file, fsynced,
 * then linked into place, so a crash leaves no file or a whole one, never an empty or short one; if
 * another process created `path` meanwhile, its file stays and this returns false. Link, not rename:
 * an existing file is never replaced.
 */
export async function createFileOnce(path: string, bytes: Uint8Array, mode = 0o600): Promise<boolean> {
  const tmp = `${path}.${process.pid}.tmp`;
  const fh = await open(tmp, "w", mode);
  try {
    await fh.writeFile(bytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await link(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  }
  await rm(tmp, { force: true });
  await fsyncDir(dirname(path));
  return true;
}
