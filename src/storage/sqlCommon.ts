/**
 * What the two SQLite backends share: the value codec of column `v` and the WHERE clause of a key
 * range. sql.js (`sqlite.ts`, browser and tests) and node:sqlite (`nodeSqlite.ts`, the Node runner)
 * read and write the same tables in the same format, so a file written by one opens in the other.
 * No `node:` imports: the browser build uses this too.
 */
import type { KeyRange, StoredValue } from "./store.ts";
import { StorageError } from "./store.ts";
import { prefixEndCodePoint } from "./migrate.ts";

// ---------------------------------------------------------------------------------------------
// Value codec. A value is stored in column `v` as either
//  - a BLOB holding the raw bytes, when the whole value is a Uint8Array (media content), or
//  - TEXT holding JSON of the value with two rewrites, applied recursively:
//      * a Uint8Array becomes {"$u8": "<standard base64 with padding>"};
//      * an object key starting with "$" gets one more "$" in front ("$x" → "$$x"), so an
//        encoded object with the single key "$u8" is always a Uint8Array.
//    `undefined` object members are dropped and non-finite numbers become null, as in JSON.
// ---------------------------------------------------------------------------------------------

function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function encodeTree(v: unknown): unknown {
  if (v === null || typeof v !== "object") {
    if (typeof v === "bigint" || typeof v === "function" || typeof v === "symbol") {
      throw new StorageError(`cannot store a ${typeof v}`);
    }
    return v;
  }
  if (v instanceof Uint8Array) return { $u8: toBase64(v) };
  if (Array.isArray(v)) return v.map((x) => (x === undefined ? null : encodeTree(x)));
  if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) throw new StorageError("only Uint8Array binary values are supported");
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    if (x === undefined) continue;
    out[k.startsWith("$") ? "$" + k : k] = encodeTree(x);
  }
  return out;
}

function decodeTree(v: unknown): unknown {
  if (v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = decodeTree(v[i]);
    return v;
  }
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length === 1 && keys[0] === "$u8" && typeof o.$u8 === "string") return fromBase64(o.$u8);
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k.startsWith("$") ? k.slice(1) : k] = decodeTree(o[k]);
  return out;
}

/** Encodes a value for column `v` (format above). */
export function encodeValue(value: StoredValue): string | Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (value === undefined) throw new StorageError("cannot store undefined");
  return JSON.stringify(encodeTree(value));
}

/** Decodes column `v` (format above). */
export function decodeValue(v: unknown): StoredValue {
  if (v instanceof Uint8Array) return v;
  if (typeof v !== "string") throw new StorageError(`corrupt value of type ${typeof v}`);
  return decodeTree(JSON.parse(v));
}

/**
 * The SQL WHERE clause (and its parameters) selecting `r` over column `k`.
 *
 * Key order: SQLite compares TEXT with the BINARY collation, i.e. UTF-8 bytes = code point order;
 * IndexedDB and the memory store compare UTF-16 code units. The two orders agree except between
 * astral characters and U+E000..U+FFFF, which never occur in our keys' structure (ASCII
 * separators `\u001f`, hex `pos()` parts); prefix scans are exact in both.
 */
export function whereOf(r: KeyRange | undefined): [string, string[]] {
  const conds: string[] = [];
  const params: string[] = [];
  if (r?.prefix !== undefined) {
    conds.push("k >= ?");
    params.push(r.prefix);
    const end = prefixEndCodePoint(r.prefix);
    if (end !== undefined) {
      conds.push("k < ?");
      params.push(end);
    }
  }
  const bound = (op: string, v: string | undefined): void => {
    if (v === undefined) return;
    conds.push(`k ${op} ?`);
    params.push(v);
  };
  bound(">=", r?.gte);
  bound(">", r?.gt);
  bound("<=", r?.lte);
  bound("<", r?.lt);
  return [conds.length ? ` WHERE ${conds.join(" AND ")}` : "", params];
}

/** The SQL of a range scan of `table` (a quoted table name) selecting `k, v` in key order, with its parameters. */
export function rangeSql(table: string, r: KeyRange | undefined): [string, (string | number)[]] {
  const [where, params] = whereOf(r);
  let sql = `SELECT k, v FROM ${table}${where} ORDER BY k${r?.reverse ? " DESC" : ""}`;
  const out: (string | number)[] = params;
  if (r?.limit !== undefined) {
    sql += " LIMIT ?";
    out.push(Math.max(0, Math.floor(r.limit)));
  }
  return [sql, out];
}

/** The SQL creating one Store table (same layout in both SQLite backends). */
export const createTableSql = (name: string): string => `CREATE TABLE "t_${name}" (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID`;
