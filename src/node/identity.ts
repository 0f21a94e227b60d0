/**
 * The homeserver's identity: one 32-byte ed25519 seed in the data directory (docs/DESIGN.md "Identity
 * and naming"). Created on first start, readable only by its owner, never rewritten.
 */
import { mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { serverNameFromSeed } from "../homeserver/keys/server.ts";
import { createFileOnce } from "./durableFile.ts";
import { StartupError } from "./config.ts";

/** The seed file's name inside the data directory (32 raw bytes). */
export const SEED_FILE = "identity.seed";

/** The P2P server name of a seed (one definition for Node and the Service Worker). */
export { serverNameFromSeed };

/** Reads the seed from `dataDir`, creating the directory and a fresh seed (mode 0600) on first start. */
export async function loadOrCreateSeed(dataDir: string): Promise<{ seed: Uint8Array; created: boolean }> {
  const existing = await readSeed(dataDir);
  if (existing) return { seed: existing, created: false };
  return writeNewSeed(dataDir, crypto.getRandomValues(new Uint8Array(32)));
}

/**
 * The seed in `dataDir`, or undefined when there is none yet (nothing is created). An empty seed
 * left by an earlier version's crash identified nothing yet and counts as none.
 */
export async function readSeed(dataDir: string): Promise<Uint8Array | undefined> {
  const path = join(dataDir, SEED_FILE);
  try {
    const bytes = await readFile(path);
    return bytes.length === 0 ? undefined : checkSeed(bytes, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    return undefined;
  }
}

/**
 * Stores `seed` as the seed of `dataDir` (creating the directory). The seed is written to a temp
 * file, fsynced, and only then linked into place: a crash during creation leaves no seed (or a
 * stray temp file), never an empty or short one. If another process stored one meanwhile, that
 * one wins and is returned.
 */
export async function writeNewSeed(dataDir: string, seed: Uint8Array): Promise<{ seed: Uint8Array; created: boolean }> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, SEED_FILE);
  // An empty seed (an older version's crash) is replaced.
  if ((await readFile(path).catch(() => undefined))?.length === 0) await rm(path, { force: true });
  if (!(await createFileOnce(path, seed))) return { seed: checkSeed(await readFile(path), path), created: false };
  return { seed, created: true };
}

function checkSeed(bytes: Uint8Array, path: string): Uint8Array {
  if (bytes.length !== 32) throw new StartupError(`${path} must hold exactly 32 bytes (found ${bytes.length}); refusing to start`);
  return new Uint8Array(bytes);
}
