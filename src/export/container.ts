/**
 * The encrypted container of a homeserver export: a versioned plaintext header, then the payload
 * in AES-256-GCM chunks under a key derived from the user's passphrase. WebCrypto only, so the
 * same code runs in a Service Worker, a page and Node 22. No `node:` imports.
 *
 * Layout (version 1; all integers big-endian):
 *
 *     magic      8 bytes   "HYPHAEXP"
 *     headerLen  u32
 *     header     headerLen bytes of UTF-8 JSON:
 *                { "format": "hyphae-export", "version": 1,
 *                  "kdf":    { "name": "PBKDF2", "hash": "SHA-256", "iterations": N, "salt": b64(16 bytes) },
 *                  "cipher": { "name": "AES-GCM", "keyBits": 256, "chunkBytes": C },
 *                  "check":  b64(HMAC-SHA-256(checkKey, "hyphae-export key check")) }
 *     digest     32 bytes: SHA-256 of the header bytes (tells a damaged header from a wrong passphrase)
 *     chunk*     u32 ciphertext length, then the ciphertext (plaintext ≤ C bytes + 16-byte tag)
 *
 * PBKDF2 (the strongest password KDF WebCrypto offers) derives 512 bits from the passphrase and a
 * random per-file salt: the first half is the AES-GCM key, the second the key of `check`, which
 * tells a wrong passphrase apart from a damaged file before any chunk is decrypted.
 *
 * Chunk i is sealed with the 12-byte nonce `00 × 7 ‖ u32 i ‖ last`, where `last` is 1 on the final
 * chunk and 0 otherwise, and with everything before the first chunk (magic, length, header, digest) as
 * additional data. The key is unique to the file (its salt is random), so counter nonces never
 * repeat under one key; the counter stops reordering, the `last` flag stops truncation at a chunk
 * boundary, and the additional data stops any edit of the header (KDF parameters included).
 */

/** What went wrong when reading an export; `reason` is meant for code, the message for people. */
export class ExportFileError extends Error {
  override readonly name = "ExportFileError";
  readonly reason: "format" | "version" | "passphrase" | "corrupt";
  constructor(reason: ExportFileError["reason"], message: string) {
    super(message);
    this.reason = reason;
  }
}

const MAGIC = new TextEncoder().encode("HYPHAEXP");
const FORMAT = "hyphae-export";
/** The container version this code writes (and the newest it reads). */
export const CONTAINER_VERSION = 1;
/** PBKDF2-SHA-256 iterations for new files (OWASP's 2023 figure for PBKDF2-HMAC-SHA256). */
export const DEFAULT_ITERATIONS = 600_000;
/** Plaintext bytes per chunk for new files. */
export const DEFAULT_CHUNK_BYTES = 1 << 20;
const TAG_BYTES = 16;
const CHECK_INFO = new TextEncoder().encode("hyphae-export key check");
/** Limits on what a file may ask of the reader (work factor, allocation). */
const MAX_ITERATIONS = 10_000_000;
const MAX_CHUNK_BYTES = 64 << 20;
const MAX_HEADER_BYTES = 64 * 1024;

/** The parsed header of a container. */
export interface ContainerHeader {
  format: typeof FORMAT;
  version: number;
  kdf: { name: "PBKDF2"; hash: "SHA-256"; iterations: number; salt: string };
  cipher: { name: "AES-GCM"; keyBits: 256; chunkBytes: number };
  check: string;
}

/** Options for writing a container. */
export interface SealOptions {
  /** PBKDF2 iterations (default {@link DEFAULT_ITERATIONS}; tests use fewer). */
  iterations?: number;
  /** Plaintext bytes per chunk (default {@link DEFAULT_CHUNK_BYTES}). */
  chunkBytes?: number;
}

export function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

export function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

const u32 = (n: number): Uint8Array => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
};

const readU32 = (b: Uint8Array, at = 0): number => new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(at);

function concat(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function nonce(index: number, last: boolean): Uint8Array<ArrayBuffer> {
  const n = new Uint8Array(12);
  new DataView(n.buffer).setUint32(7, index);
  n[11] = last ? 1 : 0;
  return n;
}

/** Copies into a fresh ArrayBuffer-backed array (WebCrypto's BufferSource typing wants one). */
const own = (b: Uint8Array): Uint8Array<ArrayBuffer> => {
  const out = new Uint8Array(b.length);
  out.set(b);
  return out;
};

interface Keys {
  aes: CryptoKey;
  check: Uint8Array;
}

/** Keys derived by one {@link open} of a file, reused by the next read of the same file (PBKDF2 is slow on purpose). */
export interface KeyCache {
  prologue?: Uint8Array;
  keys?: Keys;
}

async function deriveKeys(passphrase: string, salt: Uint8Array, iterations: number): Promise<Keys> {
  const material = await crypto.subtle.importKey("raw", new TextEncoder().encode(passphrase.normalize("NFC")), "PBKDF2", false, ["deriveBits"]);
  const bits = new Uint8Array(await crypto.subtle.deriveBits({ name: "PBKDF2", hash: "SHA-256", salt: own(salt), iterations }, material, 512));
  const aes = await crypto.subtle.importKey("raw", bits.slice(0, 32), { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
  const hmac = await crypto.subtle.importKey("raw", bits.slice(32), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const check = new Uint8Array(await crypto.subtle.sign("HMAC", hmac, own(CHECK_INFO)));
  return { aes, check };
}

/** Constant-time comparison of two byte strings. */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

/**
 * Encrypts a stream of plaintext pieces into container bytes, chunk by chunk: at most one chunk of
 * plaintext (plus the piece being added) is held at a time.
 */
export async function* seal(plaintext: AsyncIterable<Uint8Array>, passphrase: string, options: SealOptions = {}): AsyncGenerator<Uint8Array> {
  if (passphrase.length === 0) throw new TypeError("the passphrase must not be empty");
  const iterations = options.iterations ?? DEFAULT_ITERATIONS;
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  if (!Number.isInteger(iterations) || iterations < 1 || iterations > MAX_ITERATIONS) throw new RangeError(`iterations must be 1..${MAX_ITERATIONS}`);
  if (!Number.isInteger(chunkBytes) || chunkBytes < 1 || chunkBytes > MAX_CHUNK_BYTES) throw new RangeError(`chunkBytes must be 1..${MAX_CHUNK_BYTES}`);
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const keys = await deriveKeys(passphrase, salt, iterations);
  const header: ContainerHeader = {
    format: FORMAT,
    version: CONTAINER_VERSION,
    kdf: { name: "PBKDF2", hash: "SHA-256", iterations, salt: toBase64(salt) },
    cipher: { name: "AES-GCM", keyBits: 256, chunkBytes },
    check: toBase64(keys.check),
  };
  const headerBytes = new TextEncoder().encode(JSON.stringify(header));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", own(headerBytes)));
  const prologue = concat([MAGIC, u32(headerBytes.length), headerBytes, digest]);
  yield prologue;
  const aad = own(prologue);

  let index = 0;
  const sealChunk = async (data: Uint8Array, last: boolean): Promise<Uint8Array> => {
    const ct = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv: nonce(index++, last), additionalData: aad }, keys.aes, own(data)));
    return concat([u32(ct.length), ct]);
  };
  // One full chunk is held back until we know whether another follows (the last one is flagged).
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  let full: Uint8Array | undefined;
  for await (const piece of plaintext) {
    let at = 0;
    while (at < piece.length) {
      const take = Math.min(chunkBytes - pendingBytes, piece.length - at);
      pending.push(piece.subarray(at, at + take));
      pendingBytes += take;
      at += take;
      if (pendingBytes === chunkBytes) {
        if (full) yield await sealChunk(full, false);
        full = concat(pending);
        pending = [];
        pendingBytes = 0;
      }
    }
  }
  if (pendingBytes > 0 || !full) {
    if (full) yield await sealChunk(full, false);
    yield await sealChunk(concat(pending), true);
  } else {
    yield await sealChunk(full, true);
  }
}

/** Reads exact byte counts from a stream of pieces. */
export class ByteReader {
  private buffered: Uint8Array[] = [];
  private bufferedBytes = 0;
  private done = false;
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  constructor(stream: ReadableStream<Uint8Array>) {
    this.reader = stream.getReader();
  }

  /** Exactly `n` bytes, or fewer only when the stream ends first. */
  async read(n: number): Promise<Uint8Array> {
    while (this.bufferedBytes < n && !this.done) {
      const { value, done } = await this.reader.read();
      if (done) this.done = true;
      else if (value.length > 0) {
        this.buffered.push(value);
        this.bufferedBytes += value.length;
      }
    }
    const all = this.buffered.length === 1 ? this.buffered[0]! : concat(this.buffered);
    const out = all.subarray(0, Math.min(n, all.length));
    const rest = all.subarray(out.length);
    this.buffered = rest.length ? [rest] : [];
    this.bufferedBytes = rest.length;
    return out;
  }

  /** Releases the underlying stream. */
  async cancel(): Promise<void> {
    await this.reader.cancel().catch(() => undefined);
  }
}

const truncated = (): ExportFileError => new ExportFileError("corrupt", "the export file is truncated (it ends before its last chunk)");
const damaged = (chunk: number): ExportFileError => new ExportFileError("corrupt", `the export file is damaged (chunk ${chunk} fails its integrity check)`);

/** Reads and checks the header (magic, format, version, limits). */
async function readHeader(input: ByteReader): Promise<{ header: ContainerHeader; prologue: Uint8Array }> {
  const notExport = (): ExportFileError => new ExportFileError("format", "not a Hyphae export file");
  const magic = await input.read(MAGIC.length + 4);
  if (magic.length < MAGIC.length + 4 || !sameBytes(magic.subarray(0, MAGIC.length), MAGIC)) throw notExport();
  const headerLen = readU32(magic, MAGIC.length);
  if (headerLen > MAX_HEADER_BYTES) throw new ExportFileError("corrupt", "the export file's header is damaged");
  const headerBytes = await input.read(headerLen);
  const digest = await input.read(32);
  if (headerBytes.length < headerLen || digest.length < 32) throw truncated();
  if (!sameBytes(new Uint8Array(await crypto.subtle.digest("SHA-256", own(headerBytes))), digest)) {
    throw new ExportFileError("corrupt", "the export file's header is damaged");
  }
  let header: ContainerHeader;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerBytes)) as ContainerHeader;
  } catch {
    throw new ExportFileError("corrupt", "the export file's header is damaged");
  }
  if (header?.format !== FORMAT) throw notExport();
  if (typeof header.version !== "number" || header.version > CONTAINER_VERSION || header.version < 1) {
    throw new ExportFileError("version", `the export file is format version ${String(header.version)}; this Hyphae reads up to version ${CONTAINER_VERSION} (update Hyphae)`);
  }
  const { kdf, cipher } = header;
  const ok =
    kdf?.name === "PBKDF2" && kdf.hash === "SHA-256" && Number.isInteger(kdf.iterations) && kdf.iterations >= 1 && kdf.iterations <= MAX_ITERATIONS &&
    typeof kdf.salt === "string" && cipher?.name === "AES-GCM" && cipher.keyBits === 256 &&
    Number.isInteger(cipher.chunkBytes) && cipher.chunkBytes >= 1 && cipher.chunkBytes <= MAX_CHUNK_BYTES && typeof header.check === "string";
  if (!ok) throw new ExportFileError("corrupt", "the export file's header is damaged or uses unsupported parameters");
  return { header, prologue: concat([magic, headerBytes, digest]) };
}

/**
 * Decrypts container bytes into the plaintext, chunk by chunk (`cache` carries the derived keys to
 * a later read of the same file). Throws {@link ExportFileError}:
 * `passphrase` before any plaintext when the passphrase is wrong, `corrupt` at the first damaged,
 * reordered or missing chunk (so a consumer must treat what it got so far as unconfirmed until the
 * generator finishes).
 */
export async function* open(stream: ReadableStream<Uint8Array>, passphrase: string, cache: KeyCache = {}): AsyncGenerator<Uint8Array> {
  const input = new ByteReader(stream);
  try {
    const { header, prologue } = await readHeader(input);
    let keys: Keys;
    if (cache.prologue && sameBytes(cache.prologue, prologue) && cache.keys) {
      keys = cache.keys;
    } else {
      let salt: Uint8Array;
      let check: Uint8Array;
      try {
        salt = fromBase64(header.kdf.salt);
        check = fromBase64(header.check);
      } catch {
        throw new ExportFileError("corrupt", "the export file's header is damaged");
      }
      keys = await deriveKeys(passphrase, salt, header.kdf.iterations);
      if (!sameBytes(keys.check, check)) throw new ExportFileError("passphrase", "wrong passphrase for this export file");
      cache.prologue = prologue;
      cache.keys = keys;
    }
    const aad = own(prologue);
    const maxCt = header.cipher.chunkBytes + TAG_BYTES;
    for (let index = 0; ; index++) {
      const lenBytes = await input.read(4);
      if (lenBytes.length < 4) throw truncated();
      const len = readU32(lenBytes);
      if (len < TAG_BYTES || len > maxCt) throw damaged(index);
      const ct = await input.read(len);
      if (ct.length < len) throw truncated();
      let plain: Uint8Array | undefined;
      let last = false;
      for (const flag of [false, true]) {
        try {
          plain = new Uint8Array(await crypto.subtle.decrypt({ name: "AES-GCM", iv: nonce(index, flag), additionalData: aad }, keys.aes, own(ct)));
          last = flag;
          break;
        } catch {
          // not sealed with this flag (or damaged): try the other, then give up
        }
      }
      if (!plain) throw damaged(index);
      yield plain;
      if (last) {
        if ((await input.read(1)).length > 0) throw new ExportFileError("corrupt", "the export file is damaged (data after its last chunk)");
        return;
      }
    }
  } finally {
    await input.cancel();
  }
}
