/**
 * Large binary values out of the SQLite file (Node runner only). The file store rewrites the whole
 * database export after every commit, so media bytes inside it would be rewritten by every later
 * message send. `withBlobFiles` wraps the store: a `Uint8Array` put into a blob table (by default
 * `media_content`) is written to its own file under `<database>.blobs/<table>/`, and the row holds
 * only a small marker `{ "\u0001blob": "<file name>" }`. The Store interface and its callers do not
 * change: reads (get, range, count) return the real bytes.
 *
 * File names: the hex of the key's UTF-8 bytes (or `h` + its SHA-256 when the key is longer than
 * 100 bytes), a dot, and 16 random hex digits. The key is never used as a path, so `/`, `..` or
 * unicode in a key cannot leave the directory; the name is only ever read back from the marker.
 * Every put writes a NEW file name, never over the file a committed row references: that is what
 * keeps a crash or a rollback from pairing an old row with new bytes.
 *
 * Durability and atomicity rules:
 *  1. A blob file is complete and durable (temp file, fsync, rename, fsync of the directory)
 *     BEFORE the transaction whose row references it commits. Puts are collected while `fn` runs
 *     and written at the end of the wrapped `fn`, still inside the sql.js transaction. Awaiting
 *     file I/O inside a transaction is against the general rule (IndexedDB would auto-commit), but
 *     is sound here: sql.js is synchronous, the transaction stays open until our function returns,
 *     and the queue that serializes transactions is the store's own, so nothing else runs meanwhile.
 *  2. A transaction that throws (in `fn` or while writing its files) rolls back and leaves at most
 *     orphan files; they are removed at once (best effort), and any that survive are unreferenced,
 *     so they are never read and are deleted at the next open.
 *  3. A file whose row was deleted or overwritten is removed only after the commit that did so is
 *     durable (the database file on disk no longer references it). If that commit fails to become
 *     durable, the file is kept: the old database may still reference it.
 *  4. Reads inside a write transaction see its own pending writes and deletes (pending bytes are
 *     served from memory until they are written).
 *  5. On open, files no marker references (orphans of a crash or of rule 2/3) are deleted. Byte
 *     values stored inline by older versions stay readable where they are; with `moveInline` they
 *     are moved out to files (off by default: the database file then no longer holds them, so an
 *     older runner could not read that media).
 * Values that are not `Uint8Array` stay inline, unchanged; an inline value that happens to have
 * the marker's shape is wrapped as `{ "\u0001inline": value }` so it is never mistaken for one.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { KeyRange, ReadTx, Row, Store, StoredValue, TableName, WriteTx } from "../storage/store.ts";
import { StorageError } from "../storage/store.ts";
import { fsyncDir, replaceFile, tempPathOf } from "./durableFile.ts";

const BLOB = "\u0001blob";
const INLINE = "\u0001inline";
/** What a file name from a marker must look like (anything else is refused, never used as a path). */
const SAFE_NAME = /^(?:[0-9a-f]{0,200}|h[0-9a-f]{64})\.[0-9a-f]{16}$/;
/** Table names become directory names: only our own identifier characters. */
const SAFE_TABLE = /^[A-Za-z0-9_]+$/;

const soleKey = (v: unknown): string | undefined => {
  if (v === null || typeof v !== "object" || Array.isArray(v) || v instanceof Uint8Array) return undefined;
  const keys = Object.keys(v);
  return keys.length === 1 ? keys[0] : undefined;
};

/** The file name in a marker row, or undefined when the row holds an inline value. */
function markerName(v: unknown): string | undefined {
  if (soleKey(v) !== BLOB) return undefined;
  const name = (v as Record<string, unknown>)[BLOB];
  if (typeof name !== "string" || !SAFE_NAME.test(name)) throw new StorageError("corrupt blob marker");
  return name;
}

/** An inline value as stored in a blob table (marker-shaped values wrapped, see above). */
function encodeInline(v: StoredValue): StoredValue {
  const k = soleKey(v);
  return k === BLOB || k === INLINE ? { [INLINE]: v } : v;
}

/** A fresh file name for `key` (see the header). */
function newName(key: string): string {
  const utf8 = Buffer.from(key, "utf8");
  const base = utf8.length <= 100 ? utf8.toString("hex") : "h" + createHash("sha256").update(utf8).digest("hex");
  return `${base}.${randomBytes(8).toString("hex")}`;
}

/** A plain Uint8Array (not a Buffer) over a file's bytes; copied only when the Buffer shares a pool. */
const asUint8 = (b: Buffer): Uint8Array =>
  b.byteOffset === 0 && b.byteLength === b.buffer.byteLength
    ? new Uint8Array(b.buffer)
    : new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));

const removeQuietly = async (paths: Iterable<string>): Promise<void> => {
  await Promise.all([...paths].map((p) => rm(p, { force: true }).catch(() => undefined)));
};

type Op =
  | { kind: "put"; table: string; key: string; value: StoredValue }
  | { kind: "delete"; table: string; key: string }
  | { kind: "deleteRange"; table: string; range: KeyRange };

/** One write transaction's blob bookkeeping. */
interface Pending {
  /** Files to write before commit: path → bytes. */
  files: Map<string, Uint8Array>;
  /** Files of rows this transaction deleted or overwrote, removed once its commit is durable. */
  released: string[];
  /** Files already written (removed again if the transaction fails). */
  written: string[];
}

/**
 * Wraps `inner` (a store whose transactions may await file I/O, i.e. the sql.js file store) so that
 * `Uint8Array` values of `tables` live in files under `dir`. Removes orphan files (and, with
 * `moveInline`, moves bytes stored inline by older versions out to files) before returning.
 */
export async function withBlobFiles(inner: Store, dir: string, tables: readonly string[], moveInline = false): Promise<Store> {
  // A configured table the schema does not have (tests with their own migrations) stays ordinary:
  // the inner store refuses it as it refuses any unknown table.
  const blobTables = new Set<string>();
  for (const t of tables) {
    if (!SAFE_TABLE.test(t)) throw new StorageError(`blob table name not allowed: ${t}`);
    const exists = await inner.read((tx) => tx.count(t)).then(
      () => true,
      () => false,
    );
    if (exists) blobTables.add(t);
  }
  for (const t of blobTables) await mkdir(join(dir, t), { recursive: true });
  // The directories' own entries must be durable too, or a crash could lose a whole fresh directory
  // of files whose rows did commit.
  if (blobTables.size) for (const d of [dirname(dir), dir]) await fsyncDir(d);
  const pathOf = (table: string, name: string): string => join(dir, table, name);

  /** The real value of a stored row (reading its file when it is a marker). */
  const resolve = async (table: string, v: unknown, pending?: Pending): Promise<unknown> => {
    const name = markerName(v);
    if (name === undefined) return soleKey(v) === INLINE ? (v as Record<string, unknown>)[INLINE] : v;
    const path = pathOf(table, name);
    const mine = pending?.files.get(path);
    if (mine) return mine.slice();
    try {
      return asUint8(await readFile(path));
    } catch (e) {
      throw new StorageError(`blob file of a ${table} row is unreadable: ${(e as Error).message}`, { cause: e });
    }
  };

  /** A read view; for writes, blob-table ops are queued and applied (`settle`) before any read of that table. */
  const makeTx = (itx: WriteTx, pending?: Pending): WriteTx & { settle(): Promise<void>; finish(): void } => {
    let open = true;
    const ops: Op[] = [];
    let chain: Promise<void> = Promise.resolve();
    const release = (table: string, old: unknown): void => {
      const name = markerName(old);
      if (name === undefined || !pending) return;
      const path = pathOf(table, name);
      // A file this transaction created and no longer needs is simply never written.
      if (!pending.files.delete(path)) pending.released.push(path);
    };
    const apply = async (op: Op): Promise<void> => {
      if (!pending) throw new StorageError("write in a read transaction");
      if (op.kind === "deleteRange") {
        for (const row of await itx.range(op.table, op.range)) release(op.table, row.value);
        itx.deleteRange(op.table, op.range);
        return;
      }
      release(op.table, await itx.get(op.table, op.key));
      if (op.kind === "delete") return itx.delete(op.table, op.key);
      if (op.value instanceof Uint8Array) {
        const name = newName(op.key);
        pending.files.set(pathOf(op.table, name), op.value);
        itx.put(op.table, op.key, { [BLOB]: name });
      } else {
        itx.put(op.table, op.key, encodeInline(op.value));
      }
    };
    // Serialized: concurrent reads inside one transaction must not apply ops twice or out of order.
    const settle = (): Promise<void> =>
      (chain = chain.then(async () => {
        while (ops.length) await apply(ops.shift() as Op);
      }));
    const check = (): void => {
      if (!open) throw new StorageError("transaction already finished");
    };
    const queue = (op: Op): void => {
      check();
      if (!pending) throw new StorageError("write in a read transaction");
      ops.push(op);
    };
    return {
      settle,
      finish: () => void (open = false),
      async get<T>(table: TableName, key: string): Promise<T | undefined> {
        check();
        if (!blobTables.has(table)) return itx.get<T>(table, key);
        await settle();
        const v = await itx.get(table, key);
        return v === undefined ? undefined : ((await resolve(table, v, pending)) as T);
      },
      async range<T>(table: TableName, r?: KeyRange): Promise<Row<T>[]> {
        check();
        if (!blobTables.has(table)) return itx.range<T>(table, r);
        await settle();
        const rows = await itx.range(table, r);
        return Promise.all(rows.map(async (row) => ({ key: row.key, value: (await resolve(table, row.value, pending)) as T })));
      },
      async count(table: TableName, r?: KeyRange): Promise<number> {
        check();
        if (blobTables.has(table)) await settle();
        return itx.count(table, r);
      },
      put(table, key, value) {
        if (!blobTables.has(table)) return itx.put(table, key, value);
        // Copied now, as the other backends do (a caller may reuse its buffer after put).
        queue({ kind: "put", table, key, value: value instanceof Uint8Array ? value.slice() : value });
      },
      delete(table, key) {
        if (!blobTables.has(table)) return itx.delete(table, key);
        queue({ kind: "delete", table, key });
      },
      deleteRange(table, range) {
        if (!blobTables.has(table)) return itx.deleteRange(table, range);
        queue({ kind: "deleteRange", table, range });
      },
    };
  };

  /** Rule 1: temp file, fsync, rename; then one fsync per directory touched. */
  const writeFiles = async (pending: Pending): Promise<void> => {
    const dirs = new Set<string>();
    for (const [path, bytes] of pending.files) {
      pending.written.push(tempPathOf(path), path);
      await replaceFile(path, bytes);
      dirs.add(dirname(path));
    }
    for (const d of dirs) await fsyncDir(d);
  };

  let closed = false;
  const inFlight = new Set<Promise<unknown>>();

  const write = <T>(fn: (tx: WriteTx) => Promise<T>): Promise<T> => {
    const pending: Pending = { files: new Map(), released: [], written: [] };
    const p = (async () => {
      const result = await inner.write(async (itx) => {
        const tx = makeTx(itx, pending);
        try {
          const r = await fn(tx);
          await tx.settle();
          tx.finish();
          await writeFiles(pending);
          return r;
        } catch (e) {
          tx.finish();
          await removeQuietly(pending.written); // rule 2
          throw e;
        }
      });
      // Durable now (inner.write resolved): rule 3. Had it failed, the files would stay.
      await removeQuietly(pending.released);
      return result;
    })();
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p)).catch(() => undefined);
    return p;
  };

  const store: Store = {
    kind: inner.kind,
    read: <T>(fn: (tx: ReadTx) => Promise<T>): Promise<T> =>
      inner.read(async (itx) => {
        const tx = makeTx(itx as WriteTx);
        try {
          return await fn(tx);
        } finally {
          tx.finish();
        }
      }),
    write: <T>(fn: (tx: WriteTx) => Promise<T>): Promise<T> => (closed ? inner.write(fn) : write(fn)),
    schemaVersion: () => inner.schemaVersion(),
    close: async () => {
      closed = true;
      await Promise.allSettled([...inFlight]);
      await inner.close();
    },
  };

  // Rule 5: delete unreferenced files; move inline bytes out.
  for (const table of blobTables) {
    const referenced = new Set<string>();
    const inlineBytes: string[] = [];
    await inner.read(async (tx) => {
      for (const row of await tx.range(table)) {
        let name: string | undefined;
        try {
          name = markerName(row.value);
        } catch {
          continue; // a corrupt marker fails when read, not the whole open
        }
        if (name !== undefined) referenced.add(name);
        else if (moveInline && row.value instanceof Uint8Array) inlineBytes.push(row.key);
      }
    });
    const files = await readdir(join(dir, table));
    await removeQuietly(files.filter((f) => !referenced.has(f)).map((f) => pathOf(table, f)));
    for (let i = 0; i < inlineBytes.length; i += 16) {
      const keys = inlineBytes.slice(i, i + 16);
      await store.write(async (tx) => {
        for (const k of keys) {
          const v = await tx.get(table, k);
          if (v !== undefined) tx.put(table, k, v);
        }
      });
    }
  }
  return store;
}
