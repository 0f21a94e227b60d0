/**
 * ed25519 through WebCrypto where the runtime has it (Node 22, Chromium) and tweetnacl otherwise.
 * `npm run bench` measures both; WebCrypto wins by a wide margin, so it is the default.
 * Both produce byte-identical signatures (ed25519 is deterministic).
 */
import nacl from "tweetnacl";

/** A signing key pair derived from a 32-byte seed. */
export interface Ed25519Signer {
  readonly publicKey: Uint8Array;
  sign(message: Uint8Array): Promise<Uint8Array>;
}

/** Verifies ed25519 signatures; implementations cache imported keys. */
export interface Ed25519Verifier {
  verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): Promise<boolean>;
}

// PKCS#8 wrapping of a raw ed25519 seed (RFC 8410).
const PKCS8_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);

const bufferOf = (u: Uint8Array): ArrayBuffer =>
  u.byteOffset === 0 && u.byteLength === u.buffer.byteLength && u.buffer instanceof ArrayBuffer
    ? u.buffer
    : (u.slice().buffer as ArrayBuffer);

/** The public key for a seed (tweetnacl; synchronous, used at start-up). */
export function publicKeyFromSeed(seed: Uint8Array): Uint8Array {
  return nacl.sign.keyPair.fromSeed(seed).publicKey;
}

/** tweetnacl signer: pure JS, works everywhere. */
export function naclSigner(seed: Uint8Array): Ed25519Signer {
  const kp = nacl.sign.keyPair.fromSeed(seed);
  return {
    publicKey: kp.publicKey,
    sign: (message) => Promise.resolve(nacl.sign.detached(message, kp.secretKey)),
  };
}

/** tweetnacl verifier. */
export const naclVerifier: Ed25519Verifier = {
  verify: (publicKey, message, signature) =>
    Promise.resolve(signature.length === 64 && publicKey.length === 32 && nacl.sign.detached.verify(message, signature, publicKey)),
};

let webCryptoSupport: Promise<boolean> | undefined;
/** Whether this runtime's WebCrypto implements Ed25519. */
export function hasWebCryptoEd25519(): Promise<boolean> {
  webCryptoSupport ??= (async () => {
    try {
      const seed = new Uint8Array(32);
      const key = await crypto.subtle.importKey("pkcs8", bufferOf(concat(PKCS8_PREFIX, seed)), { name: "Ed25519" }, false, ["sign"]);
      const sig = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key, new Uint8Array(1)));
      return sig.length === 64;
    } catch {
      return false;
    }
  })();
  return webCryptoSupport;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** The private key of a seed in WebCrypto, and its public key (exported, so no curve maths runs in JS). */
async function importSeed(seed: Uint8Array): Promise<{ key: CryptoKey; publicKey: Uint8Array }> {
  const key = await crypto.subtle.importKey("pkcs8", bufferOf(concat(PKCS8_PREFIX, seed)), { name: "Ed25519" }, true, ["sign"]);
  const { x } = await crypto.subtle.exportKey("jwk", key);
  if (typeof x !== "string") throw new Error("WebCrypto exported an Ed25519 key without its public part");
  const publicKey = Uint8Array.from(atob(x.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
  if (publicKey.length !== 32) throw new Error("WebCrypto exported a malformed Ed25519 public key");
  return { key, publicKey };
}

/**
 * The public key for a seed, through WebCrypto where the runtime has it. On a cold start this is
 * what matters: tweetnacl's derivation runs tens of milliseconds in a JIT that has not warmed up
 * (a Service Worker restarted by a fetch), WebCrypto's a few.
 */
export async function publicKeyFromSeedAsync(seed: Uint8Array): Promise<Uint8Array> {
  return (await hasWebCryptoEd25519()) ? (await importSeed(seed)).publicKey : publicKeyFromSeed(seed);
}

/** WebCrypto signer. */
export async function webCryptoSigner(seed: Uint8Array): Promise<Ed25519Signer> {
  const { key, publicKey } = await importSeed(seed);
  return {
    publicKey,
    sign: async (message) => new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, key, bufferOf(message))),
  };
}

/** WebCrypto verifier with a small cache of imported public keys. */
export function webCryptoVerifier(): Ed25519Verifier {
  const cache = new Map<string, Promise<CryptoKey>>();
  return {
    async verify(publicKey, message, signature) {
      if (signature.length !== 64 || publicKey.length !== 32) return false;
      const id = String.fromCharCode(...publicKey);
      let key = cache.get(id);
      if (!key) {
        if (cache.size > 1000) cache.clear();
        key = crypto.subtle.importKey("raw", bufferOf(publicKey), { name: "Ed25519" }, false, ["verify"]);
        cache.set(id, key);
      }
      try {
        return await crypto.subtle.verify({ name: "Ed25519" }, await key, bufferOf(signature), bufferOf(message));
      } catch {
        return false;
      }
    },
  };
}

/** The best signer for this runtime. */
export async function createSigner(seed: Uint8Array): Promise<Ed25519Signer> {
  return (await hasWebCryptoEd25519()) ? webCryptoSigner(seed) : naclSigner(seed);
}

/** The best verifier for this runtime. */
export async function createVerifier(): Promise<Ed25519Verifier> {
  return (await hasWebCryptoEd25519()) ? webCryptoVerifier() : naclVerifier;
}
