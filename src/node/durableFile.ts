/**
 * Atomic, durable file replacement (Node runner): the database file (`sqliteFile.ts`) and the blob
 * files beside it (`blobFiles.ts`) are written the same way, so a crash leaves either the old file
 * or the complete new one, never a torn write.
 */
import { open, rename } from "node:fs/promises";

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
