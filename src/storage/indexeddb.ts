/**
 * The IndexedDB backend (browser default), through `idb`. One object store per table with
 * out-of-line string keys; values are stored by structured clone, so `Uint8Array`s stay binary.
 * The IndexedDB version is the schema version: `onupgradeneeded` applies the pending migrations
 * in order inside the versionchange transaction, including their `migrate` steps.
 *
 * Keys compare by UTF-16 code unit, exactly like JavaScript strings (and the memory store).
 */
import { wrap } from "idb";
import type { IDBPDatabase, IDBPObjectStore, IDBPTransaction } from "idb";
import type { KeyRange, ReadTx, Row, Store, StoredValue, TxScope, WriteTx } from "./store.ts";
import { StorageError } from "./store.ts";
import { MIGRATIONS } from "./schema.ts";
import type { Migration } from "./schema.ts";
import { checkUpgradable, errorWrapper, inFlightTracker, prefixEnd, storeClosed, tablesAt } from "./migrate.ts";

/** Options of `createIndexedDbStore`. */
export interface IndexedDbStoreOptions {
  /** The database name. */
  name: string;
  /**
   * The IndexedDB factory; defaults to the global one. `idb` recognises IDB objects by the global
   * classes (`IDBRequest`, `IDBKeyRange` …), so those must be global even with another factory
   * (tests: `import "fake-indexeddb/auto"`, then a fresh `new IDBFactory()` per test).
   */
  indexedDB?: IDBFactory;
  /** The schema; tests pass their own list. */
  migrations?: readonly Migration[];
}

type AnyTx = IDBPTransaction<unknown, string[], IDBTransactionMode>;

/** `IDBObjectStore.getAllRecords` (IndexedDB 3.1), through idb's wrapper: resolves to the records. */
type GetAllRecords = (options: { query?: IDBKeyRange; count?: number; direction?: IDBCursorDirection }) => Promise<{ key: IDBValidKey; value: unknown }[]>;

const wrapError = errorWrapper("indexeddb");

const noop = (): void => undefined;

/**
 * The tightest IDBKeyRange for `r` (prefix folded into the bounds: exact, since code unit order
 * is what IndexedDB uses); `null` if it is empty, `undefined` if it is unbounded.
 */
function toIdbRange(K: typeof IDBKeyRange, r: KeyRange | undefined): IDBKeyRange | null | undefined {
  let lower: string | undefined;
  let lowerOpen = false;
  let upper: string | undefined;
  let upperOpen = false;
  const low = (v: string | undefined, open: boolean): void => {
    if (v === undefined) return;
    if (lower === undefined || v > lower) [lower, lowerOpen] = [v, open];
    else if (v === lower) lowerOpen ||= open;
  };
  const high = (v: string | undefined, open: boolean): void => {
    if (v === undefined) return;
    if (upper === undefined || v < upper) [upper, upperOpen] = [v, open];
    else if (v === upper) upperOpen ||= open;
  };
  low(r?.gte, false);
  low(r?.gt, true);
  high(r?.lte, false);
  high(r?.lt, true);
  if (r?.prefix !== undefined) {
    low(r.prefix, false);
    high(prefixEnd(r.prefix), true);
  }
  if (lower !== undefined && upper !== undefined) {
    if (lower > upper || (lower === upper && (lowerOpen || upperOpen))) return null;
    return K.bound(lower, upper, lowerOpen, upperOpen);
  }
  if (lower !== undefined) return K.lowerBound(lower, lowerOpen);
  if (upper !== undefined) return K.upperBound(upper, upperOpen);
  return undefined;
}

/** Creates (or opens and upgrades) the IndexedDB database `name` as a Store. */
export async function createIndexedDbStore(options: IndexedDbStoreOptions): Promise<Store> {
  const migrations = options.migrations ?? MIGRATIONS;
  const factory = options.indexedDB ?? globalThis.indexedDB;
  const K = globalThis.IDBKeyRange;
  if (!factory || !K) throw new StorageError("IndexedDB is not available");
  if (migrations.length === 0) throw new StorageError("no migrations given");
  const tableSet = new Set<string>();

  const checkTable = (name: string): void => {
    if (!tableSet.has(name)) throw new StorageError(`no table ${name}`);
  };

  /** The generic transaction over an IDB transaction; shared by write() and migrations. */
  const makeTx = (tx: AnyTx, state: { open: boolean; error?: unknown }, writable: boolean, scope?: readonly string[]): WriteTx => {
    const store = (name: string) => {
      checkTable(name);
      if (scope && !scope.includes(name)) throw new StorageError(`table ${name} is outside this transaction's declared scope (${scope.join(", ")})`);
      if (!state.open) throw new StorageError("transaction already finished");
      return tx.objectStore(name);
    };
    const writeStore = (name: string) => {
      if (!writable) throw new StorageError("write in a read transaction");
      return store(name) as unknown as IDBPObjectStore<unknown, string[], string, "readwrite">;
    };
    // A failed request aborts the transaction; remember the first failure so write() reports it.
    const queued = (p: Promise<unknown>): void => {
      p.catch((e: unknown) => {
        state.error ??= e;
      });
    };
    const rows = async (name: string, r?: KeyRange): Promise<Row<StoredValue>[]> => {
      const s = store(name);
      const range = toIdbRange(K, r);
      const limit = r?.limit === undefined ? undefined : Math.max(0, Math.floor(r.limit));
      if (range === null || limit === 0) return [];
      if (!r?.reverse) {
        // Two batch reads in the same transaction see the same snapshot.
        const [keys, values] = await Promise.all([s.getAllKeys(range, limit), s.getAll(range, limit)]);
        return keys.map((k, i) => ({ key: k as string, value: values[i] as StoredValue }));
      }
      // Newest first in one request where the browser has `getAllRecords` (IndexedDB 3.1, Chromium
      // 141): a cursor costs a round trip per row, which a /messages page pays a hundred times.
      const records = (s as unknown as { getAllRecords?: GetAllRecords }).getAllRecords;
      if (typeof records === "function") {
        const got = await records.call(s, { ...(range !== undefined ? { query: range } : {}), ...(limit !== undefined ? { count: limit } : {}), direction: "prev" });
        return got.map((r) => ({ key: r.key as string, value: r.value as StoredValue }));
      }
      const out: Row<StoredValue>[] = [];
      let cursor = await s.openCursor(range, "prev");
      while (cursor && (limit === undefined || out.length < limit)) {
        out.push({ key: cursor.key as string, value: cursor.value as StoredValue });
        cursor = await cursor.continue();
      }
      return out;
    };
    const guard = async <T>(what: string, f: () => Promise<T>): Promise<T> => {
      try {
        return await f();
      } catch (e) {
        throw wrapError(what, e);
      }
    };
    return {
      get<T>(name: string, k: string) {
        return guard("get", async () => (await store(name).get(k)) as T | undefined);
      },
      range<T>(name: string, r?: KeyRange) {
        return guard("range", async () => (await rows(name, r)) as Row<T>[]);
      },
      count(name: string, r?: KeyRange) {
        return guard("count", async () => {
          const range = toIdbRange(K, r);
          return range === null ? 0 : store(name).count(range);
        });
      },
      put(name, k, value) {
        const s = writeStore(name);
        try {
          queued(s.put(value, k) as Promise<unknown>);
        } catch (e) {
          throw wrapError("put", e); // DataCloneError, TransactionInactiveError
        }
      },
      delete(name, k) {
        const s = writeStore(name);
        try {
          queued(s.delete(k) as Promise<unknown>);
        } catch (e) {
          throw wrapError("delete", e);
        }
      },
      deleteRange(name, r) {
        const s = writeStore(name);
        const range = toIdbRange(K, r);
        if (range === null) return;
        try {
          queued(range === undefined ? (s.clear() as Promise<unknown>) : (s.delete(range) as Promise<unknown>));
        } catch (e) {
          throw wrapError("deleteRange", e);
        }
      },
    };
  };

  // --- open and migrate ---------------------------------------------------------------------------
  let migrationRun: Promise<void> | undefined;
  let db: IDBPDatabase;
  try {
    const request = factory.open(options.name, migrations.length);
    request.onupgradeneeded = (event) => {
      const rawDb = request.result;
      const rawTx = request.transaction;
      if (!rawTx) return;
      const tx = wrap(rawTx) as unknown as AnyTx;
      tx.done.catch(noop); // an aborted upgrade is reported through migrationRun / the open request
      migrationRun = (async () => {
        const from = event.oldVersion;
        checkUpgradable(migrations, from);
        for (const t of tablesAt(migrations, from)) tableSet.add(t);
        for (let i = from; i < migrations.length; i++) {
          const m = migrations[i];
          // Object stores can only be created while the versionchange transaction is active: here
          // synchronously, or after an await on one of its own requests (never anything else).
          for (const t of tablesAt([m], 1)) if (!rawDb.objectStoreNames.contains(t)) rawDb.createObjectStore(t);
          for (const t of m.dropTables ?? []) if (rawDb.objectStoreNames.contains(t)) rawDb.deleteObjectStore(t);
          tableSet.clear();
          for (const t of tablesAt(migrations, i + 1)) tableSet.add(t);
          if (m.migrate) {
            const state: { open: boolean; error?: unknown } = { open: true };
            await m.migrate(makeTx(tx, state, true));
            if (state.error !== undefined) throw state.error;
          }
        }
      })().catch((e: unknown) => {
        try {
          rawTx.abort();
        } catch {
          // already finished
        }
        throw e;
      });
      migrationRun.catch(noop);
    };
    request.onblocked = () => {
      // Another connection (an older tab) holds the database open; the upgrade waits for it.
    };
    let opened: IDBPDatabase | undefined;
    let openError: unknown;
    try {
      opened = await (wrap(request) as Promise<IDBPDatabase | undefined>);
    } catch (e) {
      openError = e;
    }
    // A failed migration aborts the upgrade; report its error rather than the AbortError.
    if (migrationRun) await migrationRun;
    if (openError !== undefined) throw openError;
    if (!opened) throw new StorageError("open returned no database");
    db = opened;
  } catch (e) {
    throw wrapError("open", e);
  }
  tableSet.clear();
  for (const t of db.objectStoreNames) tableSet.add(t);
  const allTables = [...tableSet];

  let closed = false;
  /** The object stores of a transaction: the declared scope (checked), or every table. */
  const tablesOf = (scope: TxScope | undefined): string[] => {
    if (!scope?.tables) return allTables;
    const tables = [...new Set(scope.tables)];
    for (const t of tables) checkTable(t);
    return tables;
  };
  const inFlight = inFlightTracker();
  const track = inFlight.track;
  // Another tab's newer code wants to upgrade: step aside instead of blocking it forever.
  db.addEventListener("versionchange", () => {
    closed = true;
    db.close();
  });

  return {
    kind: "indexeddb",
    read<T>(fn: (tx: ReadTx) => Promise<T>, scope?: TxScope): Promise<T> {
      if (closed) return storeClosed();
      return track(
        (async () => {
          const tables = tablesOf(scope);
          const tx = db.transaction(tables, "readonly") as AnyTx;
          tx.done.catch(noop);
          const state = { open: true };
          try {
            return await fn(makeTx(tx, state, false, scope?.tables ? tables : undefined));
          } finally {
            state.open = false;
          }
        })(),
      );
    },
    write<T>(fn: (tx: WriteTx) => Promise<T>, scope?: TxScope): Promise<T> {
      if (closed) return storeClosed();
      return track(
        (async () => {
          const tables = tablesOf(scope);
          let tx: AnyTx;
          try {
            // Only transactions whose scopes overlap wait for each other (IndexedDB 3, "Transaction scheduling").
            tx = db.transaction(tables, "readwrite") as AnyTx;
          } catch (e) {
            throw wrapError("transaction", e);
          }
          tx.done.catch(noop);
          const state: { open: boolean; error?: unknown } = { open: true };
          let result: T;
          try {
            result = await fn(makeTx(tx, state, true, scope?.tables ? tables : undefined));
          } catch (e) {
            state.open = false;
            try {
              tx.abort();
            } catch {
              // already aborted by a failed request, or auto-committed (an await on non-IDB work)
            }
            throw state.error !== undefined ? wrapError("write", state.error) : e;
          }
          state.open = false;
          try {
            await tx.done;
          } catch (e) {
            throw wrapError("commit", state.error ?? e);
          }
          return result;
        })(),
      );
    },
    async schemaVersion() {
      if (closed) return storeClosed();
      return db.version;
    },
    async close() {
      if (closed) return;
      closed = true;
      await inFlight.settle();
      db.close();
    },
  };
}
