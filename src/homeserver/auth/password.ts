/**
 * Password hashes: PBKDF2-SHA512 through WebCrypto, so the same code runs in the Service Worker
 * and in Node. Stored as `pbkdf2-sha512$<iterations>$<salt b64>$<hash b64>` so the iteration
 * count can be raised later without invalidating existing hashes.
 */
import { decodeBase64, encodeBase64 } from "../crypto/base64.ts";

const SCHEME = "pbkdf2-sha512";
const HASH_BYTES = 64;
const SALT_BYTES = 16;

async function derive(password: string, salt: Uint8Array, iterations: number): Promise<Uint8Array> {
  const material = await crypto.subtle.importKey("raw", new TextEncoder().encode(password), "PBKDF2", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-512", salt: salt.slice().buffer as ArrayBuffer, iterations },
    material,
    HASH_BYTES * 8,
  );
  return new Uint8Array(bits);
}

/** Hashes a password with a fresh random salt. */
export async function hashPassword(password: string, iterations: number, random: (n: number) => Uint8Array): Promise<string> {
  if (!Number.isInteger(iterations) || iterations < 1) throw new RangeError("PBKDF2 iterations must be a positive integer");
  const salt = random(SALT_BYTES);
  const hash = await derive(password, salt, iterations);
  return `${SCHEME}$${iterations}$${encodeBase64(salt)}$${encodeBase64(hash)}`;
}

/** Whether `password` matches a stored hash; false for malformed or unknown hash formats. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split("$");
  if (parts.length !== 4 || parts[0] !== SCHEME) return false;
  const iterations = Number(parts[1]);
  if (!Number.isInteger(iterations) || iterations < 1) return false;
  let salt: Uint8Array;
  let expected: Uint8Array;
  try {
    salt = decodeBase64(parts[2]!);
    expected = decodeBase64(parts[3]!);
  } catch {
    return false;
  }
  const actual = await derive(password, salt, iterations);
  return constantTimeEqual(actual, expected);
}

/** Compares two byte strings without an early exit (the length is not secret). */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}
