/** Signing JSON and checking signatures (appendix "Signing JSON", "Checking for a Signature"). */
import { encodeBase64, tryDecodeBase64 } from "./base64.ts";
import { canonicalJsonBytes } from "./canonicalJson.ts";
import type { Ed25519Signer, Ed25519Verifier } from "./ed25519.ts";

/** A server's (or device's) signing key: who signs, under which key ID, with what. */
export interface SigningKey {
  /** The entity name the signature is filed under (a server name, or a user ID for device keys). */
  readonly entity: string;
  /** e.g. `ed25519:auto`. */
  readonly keyId: string;
  readonly signer: Ed25519Signer;
}

export type JsonObject = Record<string, unknown>;

/** The object without `signatures` and `unsigned`: what a signature covers. */
export function signable(obj: JsonObject): JsonObject {
  const { signatures: _s, unsigned: _u, ...rest } = obj;
  return rest;
}

/** Returns a copy of `obj` with this key's signature added to `signatures`. */
export async function signJson<T extends JsonObject>(obj: T, key: SigningKey): Promise<T> {
  const sig = await key.signer.sign(canonicalJsonBytes(signable(obj)));
  const signatures = structuredClone((obj.signatures ?? {}) as Record<string, Record<string, string>>);
  signatures[key.entity] = { ...(signatures[key.entity] ?? {}), [key.keyId]: encodeBase64(sig) };
  return { ...obj, signatures };
}

/** Looks up verification keys: `keyId` → raw 32-byte public key, or undefined when unknown. */
export type KeyLookup = (entity: string, keyId: string) => Uint8Array | undefined | Promise<Uint8Array | undefined>;

/**
 * Checks that `entity` signed `obj` with at least one known ed25519 key and that every known
 * ed25519 signature of it verifies.
 */
export async function verifyJsonSignature(obj: JsonObject, entity: string, lookup: KeyLookup, verifier: Ed25519Verifier): Promise<boolean> {
  const sigs = (obj.signatures as Record<string, Record<string, unknown>> | undefined)?.[entity];
  if (!sigs || typeof sigs !== "object") return false;
  const ed = Object.keys(sigs).filter((k) => k.startsWith("ed25519:"));
  if (ed.length === 0) return false;
  const bytes = canonicalJsonBytes(signable(obj));
  let checked = 0;
  for (const keyId of ed) {
    const publicKey = await lookup(entity, keyId);
    if (!publicKey) continue;
    const b64 = sigs[keyId];
    if (typeof b64 !== "string") return false;
    const sig = tryDecodeBase64(b64);
    if (!sig) return false;
    if (!(await verifier.verify(publicKey, bytes, sig))) return false;
    checked++;
  }
  return checked > 0;
}
