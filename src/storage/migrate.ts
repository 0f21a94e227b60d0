/**
 * Bookkeeping shared by the IndexedDB and SQLite backends: which tables exist at a given schema
 * version, the checks both do before upgrading, and the tracking of pending operations that
 * `close()` waits for. The schema itself is in `schema.ts`.
 */
import { StorageError } from "./store.ts";
import type { Migration } from "./schema.ts";

/** Table names must be plain identifiers: SQLite splices them into SQL (as `"t_<name>"`). */
const TABLE_NAME = /^[a-z][a-z0-9_]*$/;

/** The tables present after applying `migrations[0 .. version)`, in creation order. */
export function tablesAt(migrations: readonly Migration[], version: number): string[] {
  const tables = new Set<string>();
  for (const m of migrations.slice(0, version)) {
    for (const t of m.createTables) {
      if (!TABLE_NAME.test(t)) throw new StorageError(`invalid table name ${JSON.stringify(t)}`);
      tables.add(t);
    }
    for (const t of m.dropTables ?? []) tables.delete(t);
  }
  return [...tables];
}

/** Throws unless a database at `found` can be upgraded by `migrations` (never downgraded). */
export function checkUpgradable(migrations: readonly Migration[], found: number): void {
  if (migrations.length === 0) throw new StorageError("no migrations given");
  if (!Number.isInteger(found) || found < 0) throw new StorageError(`corrupt schema version ${String(found)}`);
  if (found > migrations.length) {
    // Opening a newer database with older code would silently ignore tables it does not know.
    throw new StorageError(`database is at schema ${found}, newer than this code (${migrations.length})`);
  }
}

/** An exclusive upper bound for "starts with `p`" in UTF-16 code unit order, or undefined if unbounded. */
export function prefixEnd(p: string): string | undefined {
  let end = p;
  while (end.length > 0 && end.charCodeAt(end.length - 1) === 0xffff) end = end.slice(0, -1);
  if (end.length === 0) return undefined;
  return end.slice(0, -1) + String.fromCharCode(end.charCodeAt(end.length - 1) + 1);
}

/**
 * An exclusive upper bound for "starts with `p`" in code point order, which is also UTF-8 byte
 * order (SQLite's BINARY collation): the last code point incremented (skipping surrogates, which
 * cannot occur in UTF-8), or undefined if unbounded.
 */
export function prefixEndCodePoint(p: string): string | undefined {
  const cps = [...p].map((c) => c.codePointAt(0) ?? 0);
  while (cps.length > 0 && cps[cps.length - 1] === 0x10ffff) cps.pop();
  if (cps.length === 0) return undefined;
  let last = (cps.pop() ?? 0) + 1;
  if (last >= 0xd800 && last <= 0xdfff) last = 0xe000;
  return String.fromCodePoint(...cps, last);
}

/** A backend's error wrapper: a StorageError passes through, anything else becomes `<backend>: <what>: <message>` with it as cause. */
export const errorWrapper =
  (backend: string) =>
  (what: string, e: unknown): StorageError =>
    e instanceof StorageError ? e : new StorageError(`${backend}: ${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });

/** The rejection a closed store gives every new transaction. */
export const storeClosed = (): Promise<never> => Promise.reject(new StorageError("store is closed"));

/** Operations a backend has started and not finished, so that `close()` can let them settle first. */
export function inFlightTracker(): { track<T>(p: Promise<T>): Promise<T>; settle(): Promise<void> } {
  const inFlight = new Set<Promise<unknown>>();
  return {
    track<T>(p: Promise<T>): Promise<T> {
      inFlight.add(p);
      void p.then(
        () => inFlight.delete(p),
        () => inFlight.delete(p),
      );
      return p;
    },
    async settle(): Promise<void> {
      // An operation may start another while settling (a write's durability step): loop until none is left.
      while (inFlight.size) await Promise.allSettled([...inFlight]);
    },
  };
}
