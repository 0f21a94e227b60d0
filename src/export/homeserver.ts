/**
 * Export and import of a whole homeserver (issue 13 item 3): the identity (signing seed and server
 * name) and every row of every table the store holds — accounts, devices and E2EE keys, rooms,
 * events, state groups, stream positions, account data, media bytes… — in one file encrypted with
 * a passphrase (`container.ts`). Storage-agnostic: it talks to the `Store` interface only, so it
 * works on IndexedDB, node:sqlite, sql.js and the memory store alike, and moves a homeserver from
 * a browser to a Node runner (or back). No `node:` imports.
 *
 * The payload inside the container is a sequence of records, each
 *
 *     type u8 · u32 length · part A · u32 length · part B
 *
 *   'M' manifest (first): A = JSON {@link ExportManifest}, B empty
 *   'J' a row:            A = JSON [table, key], B = the value as JSON text (sqlCommon's codec:
 *                         nested Uint8Arrays as {"$u8": base64})
 *   'B' a row of bytes:   A = JSON [table, key], B = the raw bytes (media content)
 *   'E' end (last):       A = JSON { "rows": n, "tables": { table: n } }, B empty
 *
 * The end record's counts are checked against what was read, so a file cut at a record boundary
 * by its writer is refused too.
 */
import type { Row, Store, StoredValue, WriteTx } from "../storage/store.ts";
import { MIGRATIONS, SCHEMA_VERSION, currentTables } from "../storage/schema.ts";
import { tablesAt } from "../storage/migrate.ts";
import { decodeValue, encodeValue } from "../storage/sqlCommon.ts";
import { createMemoryStore } from "../storage/memory.ts";
import { serverNameFromSeed } from "../homeserver/keys/server.ts";
import { isKeyServerName } from "../homeserver/federation/keyring.ts";
import { ByteReader, ExportFileError, fromBase64, open, seal, toBase64 } from "./container.ts";
import type { KeyCache, SealOptions } from "./container.ts";

export { ExportFileError };

/** key settings|identity_seed → Uint8Array(32): where the Service Worker keeps its seed (src/sw/identity.ts). */
const SEED_SETTING = "identity_seed";
/** key settings|server_name → string (both runners). */
const SERVER_NAME_SETTING = "server_name";
/** key settings|import_in_progress → { serverName, startedAt }: rows are being imported; the store must not be served yet. */
export const IMPORT_MARKER_SETTING = "import_in_progress";
/** Tables whose values are large byte strings: read a few rows at a time instead of in the snapshot. */
const BLOB_TABLES: ReadonlySet<string> = new Set(["media_content", "remote_media_content"]);
/** Rows per read of a blob table. */
const BLOB_PAGE_ROWS = 8;
/** Rows per read of other tables when the export is not one snapshot. */
const PAGE_ROWS = 1000;
/** The shortest passphrase an export accepts. */
export const MIN_PASSPHRASE_LENGTH = 8;

/** The homeserver's identity, as the runners hold it. */
export interface HomeserverIdentity {
  /** The 32-byte ed25519 seed of the signing key. */
  seed: Uint8Array;
  /** The server name every stored ID was made with. */
  serverName: string;
}

/** What an export says about itself (the first record, inside the encryption). */
export interface ExportManifest {
  kind: "hyphae-homeserver";
  /** The schema version (`src/storage/schema.ts`) the rows are at. */
  schemaVersion: number;
  serverName: string;
  /** Base64 of the 32-byte seed. */
  seed: string;
  /** When the export was written (ms since the epoch). */
  exportedAt: number;
}

/** Why an import was refused (besides {@link ExportFileError} for the file itself). */
export class ImportError extends Error {
  override readonly name = "ImportError";
  readonly reason: "not_empty" | "schema" | "unfinished" | "server_name";
  constructor(reason: ImportError["reason"], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}

/** Options of {@link exportHomeserver}. */
export interface ExportOptions extends SealOptions {
  clock?: () => number;
  /**
   * Read every table but the media bytes in one read transaction (default true): a consistent
   * export of a server that keeps running, at the cost of holding those rows in memory once. With
   * false, tables are read a page at a time (memory stays small); only for a store nothing else
   * writes to meanwhile (the Node runner's `--export` holds the database lock).
   */
  snapshot?: boolean;
  /** Rows per read without a snapshot (default 1000). */
  pageRows?: number;
}

/** Anything the file can be read from more than once: bytes, a `Blob` / `File` (`openAsBlob` in Node). */
export type ExportSource = Uint8Array | { stream(): ReadableStream<Uint8Array> };

// ------------------------------------------------------------------------------------------------
// Records

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });
const T_MANIFEST = 0x4d;
const T_JSON = 0x4a;
const T_BYTES = 0x42;
const T_END = 0x45;

function record(type: number, a: Uint8Array, b: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(9 + a.length + b.length);
  const view = new DataView(out.buffer);
  out[0] = type;
  view.setUint32(1, a.length);
  out.set(a, 5);
  view.setUint32(5 + a.length, b.length);
  out.set(b, 9 + a.length);
  return out;
}

/** One decoded record; values stay encoded until they are written. */
type Rec =
  | { type: typeof T_MANIFEST | typeof T_END; json: unknown }
  | { type: typeof T_JSON | typeof T_BYTES; table: string; key: string; value: Uint8Array };

const corrupt = (what: string): ExportFileError => new ExportFileError("corrupt", `the export file is damaged (${what})`);

function parseJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(dec.decode(bytes));
  } catch {
    throw corrupt(`unreadable ${what}`);
  }
}

/** The records of a decrypted payload, read piece by piece. */
async function* records(plaintext: AsyncGenerator<Uint8Array>): AsyncGenerator<Rec> {
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await plaintext.next();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel() {
      await plaintext.return(undefined);
    },
  });
  const input = new ByteReader(stream);
  try {
    for (;;) {
      const head = await input.read(5);
      if (head.length === 0) return;
      if (head.length < 5) throw corrupt("a record is cut short");
      const type = head[0]!;
      const aLen = new DataView(head.buffer, head.byteOffset).getUint32(1);
      const a = await input.read(aLen);
      const bLenBytes = await input.read(4);
      if (a.length < aLen || bLenBytes.length < 4) throw corrupt("a record is cut short");
      const bLen = new DataView(bLenBytes.buffer, bLenBytes.byteOffset).getUint32(0);
      const b = await input.read(bLen);
      if (b.length < bLen) throw corrupt("a record is cut short");
      if (type === T_MANIFEST || type === T_END) {
        yield { type, json: parseJson(a, "record") };
      } else if (type === T_JSON || type === T_BYTES) {
        const tk = parseJson(a, "row key");
        if (!Array.isArray(tk) || tk.length !== 2 || typeof tk[0] !== "string" || typeof tk[1] !== "string") throw corrupt("bad row key");
        yield { type, table: tk[0], key: tk[1], value: b };
      } else {
        throw corrupt(`unknown record type ${type}`);
      }
    }
  } finally {
    await input.cancel();
  }
}

// ------------------------------------------------------------------------------------------------
// Export

/**
 * The encrypted export of the homeserver in `store` whose identity is `identity`, as a stream of
 * file bytes (`new Response(stream).blob()` in a browser, a file write in Node).
 *
 * Every table except the media bytes is read in ONE read transaction, so the export is a
 * consistent snapshot even while the server keeps running; those rows are held in memory once and
 * released as they are encrypted (never a second copy of the database). Media bytes are read a few
 * rows at a time afterwards (media is written once and never changed in place). The output is
 * produced chunk by chunk as the consumer pulls. `snapshot: false` reads everything a page at a
 * time instead, for a store no one else writes to.
 */
export function exportHomeserver(store: Store, identity: HomeserverIdentity, passphrase: string, options: ExportOptions = {}): ReadableStream<Uint8Array> {
  const chunks = exportChunks(store, identity, passphrase, options);
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await chunks.next();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel() {
      await chunks.return(undefined);
    },
  });
}

/** {@link exportHomeserver} as an async generator of file pieces. */
export async function* exportChunks(store: Store, identity: HomeserverIdentity, passphrase: string, options: ExportOptions = {}): AsyncGenerator<Uint8Array> {
  if (passphrase.length < MIN_PASSPHRASE_LENGTH) throw new TypeError(`the passphrase must have at least ${MIN_PASSPHRASE_LENGTH} characters`);
  if (!(identity.seed instanceof Uint8Array) || identity.seed.length !== 32) throw new TypeError("the identity seed must be 32 bytes");
  if (isKeyServerName(identity.serverName) && identity.serverName !== serverNameFromSeed(identity.seed)) {
    throw new TypeError(`server name ${identity.serverName} does not belong to this seed`);
  }
  yield* seal(payload(store, identity, options.clock ?? Date.now, options.snapshot ?? true, options.pageRows ?? PAGE_ROWS), passphrase, options);
}

async function* payload(store: Store, identity: HomeserverIdentity, clock: () => number, snapshot: boolean, tablePageRows: number): AsyncGenerator<Uint8Array> {
  const schemaVersion = await store.schemaVersion();
  const tables = tablesAt(MIGRATIONS, schemaVersion);
  // Settings hold counters (the stream position) that must agree with the tables: always in the
  // same read as the snapshot.
  const held = await store.read(async (tx) => {
    const settings = new Map((await tx.range<unknown>("settings")).map((r) => [r.key, r.value]));
    const rows = new Map<string, Row<StoredValue>[]>();
    if (snapshot) for (const t of tables) if (!BLOB_TABLES.has(t) && t !== "settings") rows.set(t, await tx.range(t));
    rows.set("settings", [...settings].filter(([k]) => k !== SEED_SETTING).map(([key, value]) => ({ key, value })));
    return { settings, rows };
  });
  if (held.settings.has(IMPORT_MARKER_SETTING)) throw new ImportError("unfinished", "this store holds an unfinished import; it cannot be exported");
  const known = held.settings.get(SERVER_NAME_SETTING);
  if (known !== undefined && known !== identity.serverName) throw new TypeError(`the store belongs to server "${String(known)}", not "${identity.serverName}"`);

  const manifest: ExportManifest = { kind: "hyphae-homeserver", schemaVersion, serverName: identity.serverName, seed: toBase64(identity.seed), exportedAt: clock() };
  yield record(T_MANIFEST, enc.encode(JSON.stringify(manifest)));
  const counts: Record<string, number> = {};
  let total = 0;
  const row = (table: string, r: Row<StoredValue>): Uint8Array => {
    counts[table] = (counts[table] ?? 0) + 1;
    total++;
    const v = encodeValue(r.value);
    const tk = enc.encode(JSON.stringify([table, r.key]));
    return typeof v === "string" ? record(T_JSON, tk, enc.encode(v)) : record(T_BYTES, tk, v);
  };
  for (const t of tables) {
    const rows = held.rows.get(t);
    if (!rows) {
      // Media bytes (and, without a snapshot, every table): a page at a time.
      const pageRows = BLOB_TABLES.has(t) ? BLOB_PAGE_ROWS : tablePageRows;
      let after: string | undefined;
      for (;;) {
        const page = await store.read((tx) => tx.range(t, { ...(after === undefined ? {} : { gt: after }), limit: pageRows }));
        for (const r of page) yield row(t, r);
        if (page.length < pageRows) break;
        after = page[page.length - 1]!.key;
      }
      continue;
    }
    held.rows.delete(t);
    // Released as they go, so the snapshot shrinks while the file grows.
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      (rows as unknown[])[i] = undefined;
      yield row(t, r);
    }
  }
  yield record(T_END, enc.encode(JSON.stringify({ rows: total, tables: counts })));
}

// ------------------------------------------------------------------------------------------------
// Import

/** An export file whose passphrase, integrity and structure have been checked, ready to import. */
export interface VerifiedExport {
  readonly manifest: ExportManifest;
  readonly seed: Uint8Array;
  /** Rows per table, as the file's end record lists them. */
  readonly tables: Readonly<Record<string, number>>;
  readonly rows: number;
  /** The records again, from the start (the file is read and checked a second time). */
  records(): AsyncGenerator<Rec>;
}

const streamOf = (source: ExportSource): ReadableStream<Uint8Array> =>
  source instanceof Uint8Array
    ? new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(source);
          c.close();
        },
      })
    : source.stream();

/**
 * Reads the whole file once: passphrase, every chunk's integrity, the record structure and the
 * end record's counts. Nothing is written. Throws {@link ExportFileError} (`format`, `version`,
 * `passphrase`, `corrupt`) or {@link ImportError} (`schema`: made by a newer Hyphae).
 */
export async function readExport(source: ExportSource, passphrase: string): Promise<VerifiedExport> {
  const cache: KeyCache = {};
  const read = (): AsyncGenerator<Rec> => records(open(streamOf(source), passphrase, cache));
  let manifest: ExportManifest | undefined;
  let end: { rows: number; tables: Record<string, number> } | undefined;
  let known: Set<string> | undefined;
  const counts: Record<string, number> = {};
  let rows = 0;
  for await (const rec of read()) {
    if (end) throw corrupt("records after the end");
    if (!manifest) {
      if (rec.type !== T_MANIFEST) throw corrupt("no manifest");
      manifest = checkManifest(rec.json);
      known = new Set(tablesAt(MIGRATIONS, manifest.schemaVersion));
      continue;
    }
    if (rec.type === T_MANIFEST) throw corrupt("a second manifest");
    if (!("table" in rec)) {
      end = rec.json as typeof end;
      continue;
    }
    if (!known!.has(rec.table)) throw corrupt(`a row of table "${rec.table}", which schema ${manifest.schemaVersion} does not have`);
    counts[rec.table] = (counts[rec.table] ?? 0) + 1;
    rows++;
  }
  if (!manifest) throw corrupt("no manifest");
  if (!end || typeof end !== "object") throw corrupt("no end record");
  const sameCounts = end.rows === rows && typeof end.tables === "object" && end.tables !== null &&
    Object.keys(end.tables).length === Object.keys(counts).length && Object.entries(counts).every(([t, n]) => end!.tables[t] === n);
  if (!sameCounts) throw corrupt("row counts differ from the end record");
  const seed = fromBase64(manifest.seed);
  return { manifest, seed, tables: counts, rows, records: read };
}

function checkManifest(json: unknown): ExportManifest {
  const m = json as Partial<ExportManifest> | null;
  if (m?.kind !== "hyphae-homeserver" || typeof m.serverName !== "string" || typeof m.seed !== "string" || !Number.isInteger(m.schemaVersion) || (m.schemaVersion ?? 0) < 1) {
    throw corrupt("bad manifest");
  }
  if (m.schemaVersion! > SCHEMA_VERSION) {
    throw new ImportError("schema", `the export was made by a newer Hyphae (database schema ${m.schemaVersion}; this one has ${SCHEMA_VERSION}): update Hyphae to import it`);
  }
  let seed: Uint8Array;
  try {
    seed = fromBase64(m.seed);
  } catch {
    throw corrupt("bad seed");
  }
  if (seed.length !== 32) throw corrupt("bad seed");
  if (isKeyServerName(m.serverName) && m.serverName !== serverNameFromSeed(seed)) throw corrupt("the server name does not match the seed");
  return m as ExportManifest;
}

/** Options of {@link importHomeserver}. */
export interface ImportOptions {
  /**
   * Also store the seed in the `settings` table, where the Service Worker's identity lives
   * (default true). The Node runner keeps it in a file instead and passes false.
   */
  seedInStore?: boolean;
  /**
   * Called once the file is verified and the store found empty, before anything is written;
   * throwing refuses the import (the Node runner checks the configured server name here).
   */
  accept?: (file: VerifiedExport) => void | Promise<void>;
  /** Called after every row is written, before the import is marked finished (the Node runner writes the seed file here). */
  beforeFinish?: (file: VerifiedExport) => Promise<void>;
  /** Rows per write transaction (default 2000). */
  batchRows?: number;
  clock?: () => number;
}

/** What an import restored. */
export interface ImportResult {
  serverName: string;
  seed: Uint8Array;
  /** The schema version of the file (older ones were migrated to the current one). */
  fileSchemaVersion: number;
  rows: number;
}

/**
 * Imports an export into `store`, which must be empty: no rows at all, except that an identity a
 * runner generated on its first start (`settings` `identity_seed` and `server_name`, nothing else)
 * is replaced. The file is read and checked completely before anything is written; rows of an
 * older schema are migrated to the current one first. If writing fails half way, the store is
 * emptied again (and its replaced identity put back). The homeserver must not be serving from
 * `store` meanwhile; a running core must be recreated afterwards (it holds the old identity).
 */
export async function importHomeserver(store: Store, source: ExportSource | VerifiedExport, passphrase: string, options: ImportOptions = {}): Promise<ImportResult> {
  const file = "manifest" in source ? source : await readExport(source, passphrase);
  return importVerified(store, file, options);
}

/** Whether `store` holds an import that never finished (it must not be served; empty it and import again). */
export async function unfinishedImport(store: Store): Promise<boolean> {
  return (await store.read((tx) => tx.get("settings", IMPORT_MARKER_SETTING))) !== undefined;
}

async function importVerified(store: Store, file: VerifiedExport, options: ImportOptions): Promise<ImportResult> {
  const { manifest } = file;
  const clock = options.clock ?? Date.now;
  const tables = currentTables();
  // Refuse a non-empty store before the caller's checks, so the clearest reason comes first.
  await store.read((tx) => emptyOrIdentityOnly(tx, tables));
  await options.accept?.(file);

  // Emptiness is checked again inside the transaction that claims the store.
  const identityRows = await store.write(async (tx) => {
    const rows = await emptyOrIdentityOnly(tx, tables);
    for (const t of tables) tx.deleteRange(t, {});
    tx.put("settings", IMPORT_MARKER_SETTING, { serverName: manifest.serverName, startedAt: clock() });
    return rows;
  });
  try {
    const rows = manifest.schemaVersion === SCHEMA_VERSION ? decodedRows(file.records()) : migrated(file);
    await writeRows(store, rows, options.batchRows ?? 2000);
    await options.beforeFinish?.(file);
    await store.write(async (tx) => {
      if ((await tx.get("settings", SERVER_NAME_SETTING)) === undefined) tx.put("settings", SERVER_NAME_SETTING, manifest.serverName);
      if (options.seedInStore ?? true) tx.put("settings", SEED_SETTING, file.seed);
      tx.delete("settings", IMPORT_MARKER_SETTING);
    });
  } catch (err) {
    await store
      .write(async (tx) => {
        for (const t of tables) tx.deleteRange(t, {});
        for (const r of identityRows) tx.put("settings", r.key, r.value);
      })
      .catch(() => undefined); // the marker (if it survives) says the store is unusable
    throw err;
  }
  return { serverName: manifest.serverName, seed: file.seed, fileSchemaVersion: manifest.schemaVersion, rows: file.rows };
}

/**
 * What makes a store "a homeserver" that an import must not overwrite: accounts, rooms, events or
 * media. A fresh peer fills other tables by itself before anyone signs in (other servers'
 * directories and keys, its senders' cursors): all of that is fetched or rebuilt at any time, and an
 * import empties it.
 */
const USER_DATA_TABLES = new Set(["accounts", "rooms", "events", "media"]);
/** The identity `settings` rows to keep (seed, server name), or ImportError when the store holds user data. */
async function emptyOrIdentityOnly(tx: { range: WriteTx["range"] }, tables: readonly string[]): Promise<Row<unknown>[]> {
  const notEmpty = (what: string): ImportError =>
    new ImportError("not_empty", `the store already holds a homeserver (${what}); import needs an empty one`);
  const settings = await tx.range("settings");
  if (settings.some((r) => r.key === IMPORT_MARKER_SETTING)) {
    throw new ImportError("unfinished", "the store holds an unfinished import; empty it (delete the database) and import again");
  }
  for (const t of tables) {
    if (!USER_DATA_TABLES.has(t)) continue;
    if ((await tx.range(t, { limit: 1 })).length > 0) throw notEmpty(`table ${t} has rows`);
  }
  return settings.filter((r) => r.key === SEED_SETTING || r.key === SERVER_NAME_SETTING);
}

/** A row to write. */
interface PlainRow {
  table: string;
  key: string;
  value: StoredValue;
}

/** The rows among `recs`, decoded (the seed and an import marker are never taken from the table dump). */
async function* decodedRows(recs: AsyncIterable<Rec>): AsyncGenerator<PlainRow> {
  for await (const rec of recs) {
    if (!("table" in rec)) continue;
    if (rec.table === "settings" && (rec.key === SEED_SETTING || rec.key === IMPORT_MARKER_SETTING)) continue;
    yield { table: rec.table, key: rec.key, value: decodeRow(rec) };
  }
}

/** Writes `rows` in transactions of at most `batchRows` rows (and about 16 MiB). */
async function writeRows(store: Store, rows: AsyncIterable<PlainRow>, batchRows: number): Promise<void> {
  const MAX_BATCH_BYTES = 16 << 20;
  let batch: PlainRow[] = [];
  let bytes = 0;
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const b = batch;
    batch = [];
    bytes = 0;
    await store.write(async (tx) => {
      for (const r of b) tx.put(r.table, r.key, r.value);
    });
  };
  for await (const row of rows) {
    batch.push(row);
    bytes += row.value instanceof Uint8Array ? row.value.length : 256;
    if (batch.length >= batchRows || bytes >= MAX_BATCH_BYTES) await flush();
  }
  await flush();
}

function decodeRow(rec: Extract<Rec, { table: string }>): StoredValue {
  if (rec.type === T_BYTES) return rec.value;
  try {
    return decodeValue(dec.decode(rec.value));
  } catch {
    throw corrupt(`unreadable value in table ${rec.table}`);
  }
}

/**
 * The rows of an export from an older schema, migrated to the current one: loaded into a memory
 * store holding every table any migration touches, then the pending migrations' steps run on it
 * as the backends run them on open. The whole file is held in memory for this (only older files).
 */
async function* migrated(file: VerifiedExport): AsyncGenerator<PlainRow> {
  const from = file.manifest.schemaVersion;
  const every = new Set<string>(tablesAt(MIGRATIONS, from));
  for (const m of MIGRATIONS.slice(from)) for (const t of [...m.createTables, ...(m.dropTables ?? [])]) every.add(t);
  const mem = createMemoryStore({ tables: [...every] });
  const pending: PlainRow[] = [];
  for await (const row of decodedRows(file.records())) pending.push(row);
  await mem.write(async (tx) => {
    for (const r of pending) tx.put(r.table, r.key, r.value);
  });
  pending.length = 0;
  for (const m of MIGRATIONS.slice(from)) {
    await mem.write(async (tx) => {
      await m.migrate?.(tx);
      for (const t of m.dropTables ?? []) tx.deleteRange(t, {});
    });
  }
  for (const t of currentTables()) {
    for (const r of await mem.read((tx) => tx.range(t))) yield { table: t, key: r.key, value: r.value };
  }
  await mem.close();
}
