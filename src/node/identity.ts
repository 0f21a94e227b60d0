/**
 * The homeserver's identity: one 32-byte ed25519 seed in the data directory (DESIGN.md "Identity
 * and naming"). Created on first start, readable only by its owner, never rewritten.
 */
import { mkdir, open, readFile } from "node:fs/promises";
import { join } from "node:path";
import { serverNameFromSeed } from "../homeserver/keys/server.ts";

/** The seed file's name inside the data directory (32 raw bytes). */
export const SEED_FILE = "identity.seed";

/** The P2P server name of a seed (one definition for Node and the Service Worker). */
export { serverNameFromSeed };

/** Reads the seed from `dataDir`, creating the directory and a fresh seed (mode 0600) on first start. */
export async function loadOrCreateSeed(dataDir: string): Promise<{ seed: Uint8Array; created: boolean }> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, SEED_FILE);
  try {
    return { seed: checkSeed(await readFile(path), path), created: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const seed = crypto.getRandomValues(new Uint8Array(32));
  let fh;
  try {
    // "wx": never overwrite a seed another process created meanwhile.
    fh = await open(path, "wx", 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return { seed: checkSeed(await readFile(path), path), created: false };
    throw err;
  }
  try {
    await fh.writeFile(seed);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return { seed, created: true };
}

function checkSeed(bytes: Uint8Array, path: string): Uint8Array {
  if (bytes.length !== 32) throw new Error(`${path} must hold exactly 32 bytes (found ${bytes.length}); refusing to start`);
  return new Uint8Array(bytes);
}
