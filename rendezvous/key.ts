/**
 * The rendezvous node's identity: a 32-byte ed25519 seed in a file (the same format as a
 * homeserver's `identity.seed`), so the peer ID, and with it every relay address handed out,
 * survives restarts.
 */
import { mkdir, readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { generateKeyPairFromSeed } from "@libp2p/crypto/keys";
import type { PrivateKey } from "@libp2p/interface";
import { createFileOnce } from "../src/node/durableFile.ts";

/** A key file that exists but cannot be the node's identity (exit 1, one line). */
export class KeyFileError extends Error {
  override readonly name = "KeyFileError";
}

/** The node's private key from `path`, creating the file with a fresh seed (mode 0600) when it is missing. */
export async function loadOrCreateKey(path: string): Promise<{ key: PrivateKey; created: boolean }> {
  const existing = await readSeed(path);
  if (existing) return { key: await generateKeyPairFromSeed("Ed25519", existing), created: false };
  const { seed, created } = await writeSeed(path, crypto.getRandomValues(new Uint8Array(32)));
  return { key: await generateKeyPairFromSeed("Ed25519", seed), created };
}

/** A key for a node started without `--key`: a new peer ID each start. */
export async function ephemeralKey(): Promise<PrivateKey> {
  return generateKeyPairFromSeed("Ed25519", crypto.getRandomValues(new Uint8Array(32)));
}

async function readSeed(path: string): Promise<Uint8Array | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new KeyFileError(`cannot read key file ${path}: ${(err as Error).message}`);
  }
  if (bytes.length !== 32) throw new KeyFileError(`key file ${path} must hold exactly 32 bytes (an ed25519 seed), found ${bytes.length}; refusing to start`);
  return new Uint8Array(bytes);
}

/**
 * Creates the key file (0600, written whole before it appears: see `createFileOnce`); if another
 * process created it meanwhile, its seed wins.
 */
async function writeSeed(path: string, seed: Uint8Array): Promise<{ seed: Uint8Array; created: boolean }> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  let created: boolean;
  try {
    created = await createFileOnce(path, seed);
  } catch (err) {
    throw new KeyFileError(`cannot create key file ${path}: ${(err as Error).message}`);
  }
  if (created) return { seed, created: true };
  const theirs = await readSeed(path);
  if (!theirs) throw new KeyFileError(`key file ${path} vanished while being created`);
  return { seed: theirs, created: false };
}
