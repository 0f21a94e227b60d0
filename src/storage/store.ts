/**
 * The storage interface every backend implements (IndexedDB through `idb`, SQLite through
 * `sql.js` and, in the Node runner, through `node:sqlite`). It is deliberately small: named tables of string keys → structured values, with
 * ordered range scans, inside transactions. Typed access for each kind of data lives in
 * `tables.ts` on top of this, once, shared by both backends.
 *
 * Keys are strings compared by code unit / byte; compound keys are built with `key()` below so
 * that prefix scans work identically in both backends.
 */

/** A value a table can hold: JSON-compatible data, optionally containing `Uint8Array`s. */
export type StoredValue = unknown;

/** A key range over one table. `prefix` selects keys starting with `key(...parts) + SEP`. */
export interface KeyRange {
  /** Inclusive lower bound. */
  gte?: string;
  /** Exclusive lower bound. */
  gt?: string;
  /** Inclusive upper bound. */
  lte?: string;
  /** Exclusive upper bound. */
  lt?: string;
  /** Only keys that start with this string (combined with the bounds above). */
  prefix?: string;
  /** Newest / highest first. */
  reverse?: boolean;
  /** At most this many rows. */
  limit?: number;
}

/** One row of a range scan. */
export interface Row<T> {
  key: string;
  value: T;
}

/** Reads inside a transaction. Await only these inside a transaction, never network or crypto. */
export interface ReadTx {
  get<T = StoredValue>(table: TableName, key: string): Promise<T | undefined>;
  range<T = StoredValue>(table: TableName, range?: KeyRange): Promise<Row<T>[]>;
  count(table: TableName, range?: KeyRange): Promise<number>;
}

/** Writes are queued synchronously and take effect, all or nothing, when the transaction commits. */
export interface WriteTx extends ReadTx {
  put(table: TableName, key: string, value: StoredValue): void;
  delete(table: TableName, key: string): void;
  deleteRange(table: TableName, range: KeyRange): void;
}

/**
 * The tables a transaction may touch, declared up front. IndexedDB needs a transaction's scope
 * when it opens one and runs transactions with disjoint scopes side by side, while one with a
 * write over a table waits for every earlier transaction over that table; a transaction over
 * every table (no `tables`, the default) therefore waits for all others. The memory backend
 * refuses any access outside the declared scope with a StorageError, so every test run checks
 * every declared scope; the SQLite backends ignore it (they lock the whole database).
 */
export interface TxScope {
  /** Every table `fn` reads or writes, including inside the helpers it calls. */
  readonly tables?: readonly TableName[];
}

/** A storage backend. One logical operation = one `write()` call. */
export interface Store {
  /** The backend's name (`indexeddb`, `sqlite`). */
  readonly kind: string;
  /** Runs `fn` in a read-only transaction over `scope` (default: every table). */
  read<T>(fn: (tx: ReadTx) => Promise<T>, scope?: TxScope): Promise<T>;
  /**
   * Runs `fn` in a read-write transaction. Resolves after the commit is durable (for the Node
   * runner's SQLite file: after its WAL frames were fsynced). If `fn` throws, nothing is written.
   * A `read()` started after `write()` resolved sees the write. The Node file backend
   * (`nodeSqlite.ts`) also guarantees that no `read()` sees a write before its commit is durable;
   * the in-memory backends (memory, sql.js with `persist`) may show it earlier. `scope` names the
   * tables `fn` touches (default: every table); see TxScope.
   */
  write<T>(fn: (tx: WriteTx) => Promise<T>, scope?: TxScope): Promise<T>;
  /** The schema version the database is at (index of the last migration applied + 1). */
  schemaVersion(): Promise<number>;
  /** Finishes pending writes and releases the database. */
  close(): Promise<void>;
}

/** Thrown by backends when the database fails; `cause` carries the backend's error. */
export class StorageError extends Error {
  override readonly name = "StorageError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Separator for compound keys; it cannot occur in Matrix identifiers. */
export const SEP = "\u001f";
/** The character after SEP, the exclusive upper bound of a prefix scan. */
export const SEP_END = "\u0020";

/** A compound key from its parts: `key(roomId, pos(5))`. */
export const key = (...parts: string[]): string => parts.join(SEP);

/** A prefix for range scans: every key that starts with these parts. */
export const prefix = (...parts: string[]): string => parts.join(SEP) + SEP;

/** A non-negative integer as a fixed-width key part, so that string order is numeric order. */
export const pos = (n: number): string => n.toString(16).padStart(13, "0");
/** The inverse of `pos`. */
export const unpos = (s: string): number => parseInt(s, 16);

import type { TableName } from "./schema.ts";
export type { TableName };
