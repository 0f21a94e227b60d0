/**
 * The SQLite backend, on sql.js (SQLite compiled to WebAssembly). The whole database lives in
 * memory; durability comes from `persist`, which receives a full export after commits (the Node
 * runner writes it to a file, see `src/node/sqliteFile.ts`). No `node:` imports: this module also
 * runs in the browser.
 *
 * Layout: one table per Store table, `"t_<name>" (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID`, and
 * `meta (k TEXT PRIMARY KEY, v TEXT)` holding `schema_version` (how many migrations are applied).
 * Key order and the value format: see `sqlCommon.ts`.
 */
import initSqlJs from "sql.js";
import type { Database, SqlJsStatic, SqlValue, Statement } from "sql.js";
import type { KeyRange, ReadTx, Row, Store, StoredValue, WriteTx } from "./store.ts";
import { StorageError } from "./store.ts";
import { MIGRATIONS } from "./schema.ts";
import type { Migration } from "./schema.ts";
import { checkUpgradable, errorWrapper, inFlightTracker, storeClosed, tablesAt } from "./migrate.ts";
import { createTableSql, decodeValue, encodeValue, rangeSql, whereOf } from "./sqlCommon.ts";

// The value codec lives in sqlCommon.ts (shared with the node:sqlite backend); callers import it from here too.
export { decodeValue, encodeValue };

/** Options of `createSqliteStore`. */
export interface SqliteStoreOptions {
  /** An existing database file's bytes; a new empty database if absent. */
  data?: Uint8Array;
  /** Makes an export durable (e.g. writes it to disk); `write()` resolves only after it. */
  persist?: (bytes: Uint8Array) => Promise<void>;
  /** Where sql.js finds `sql-wasm.wasm` (browser builds); Node finds it next to the module. */
  locateWasm?: (file: string) => string;
  /** The schema; tests pass their own list. */
  migrations?: readonly Migration[];
}

/** One sql.js instance per wasm location (compiling the module is the slow part). */
const sqlJsByLocation = new Map<string, Promise<SqlJsStatic>>();

function loadSqlJs(locateWasm?: (file: string) => string): Promise<SqlJsStatic> {
  // Keyed by where the wasm comes from, not by function identity: callers pass fresh lambdas.
  const where = locateWasm ? locateWasm("sql-wasm.wasm") : "";
  let p = sqlJsByLocation.get(where);
  if (!p) {
    p = initSqlJs(locateWasm ? { locateFile: locateWasm } : undefined);
    sqlJsByLocation.set(where, p);
    p.catch(() => sqlJsByLocation.delete(where)); // let a later call retry
  }
  return p;
}

const wrapError = errorWrapper("sqlite");

/** Creates a Store on sql.js, applying pending migrations (in one SQL transaction) first. */
export async function createSqliteStore(options: SqliteStoreOptions = {}): Promise<Store> {
  const migrations = options.migrations ?? MIGRATIONS;
  let SQL: SqlJsStatic;
  try {
    SQL = await loadSqlJs(options.locateWasm);
  } catch (e) {
    throw wrapError("loading sql.js", e);
  }
  let db: Database;
  try {
    db = options.data ? new SQL.Database(options.data) : new SQL.Database();
  } catch (e) {
    throw wrapError("open", e);
  }

  // Prepared statements, by SQL text. Dropped before every export(): older sql.js versions free
  // all statements there, and a cached freed statement would fail.
  const statements = new Map<string, Statement>();
  const stmt = (sql: string): Statement => {
    let s = statements.get(sql);
    if (!s) statements.set(sql, (s = db.prepare(sql)));
    return s;
  };
  const dropStatements = (): void => {
    for (const s of statements.values()) s.free();
    statements.clear();
  };
  const all = (sql: string, params: SqlValue[]): SqlValue[][] => {
    const s = stmt(sql);
    try {
      s.bind(params);
      const rows: SqlValue[][] = [];
      while (s.step()) rows.push(s.get());
      return rows;
    } finally {
      s.reset();
    }
  };
  const run = (sql: string, params: SqlValue[]): void => {
    const s = stmt(sql);
    try {
      s.run(params);
    } finally {
      s.reset();
    }
  };

  let tables = new Set<string>();
  const tableSql = (name: string): string => {
    if (!tables.has(name)) throw new StorageError(`no table ${name}`);
    return `"t_${name}"`;
  };

  /** A transaction view; `state.open` turns false at commit/rollback so late use fails loudly. */
  const makeTx = (state: { open: boolean; writable: boolean; dirty: boolean }): WriteTx => {
    const check = (): void => {
      if (!state.open) throw new StorageError("transaction already finished");
    };
    const checkWrite = (): void => {
      check();
      if (!state.writable) throw new StorageError("write in a read transaction");
      state.dirty = true;
    };
    const rangeRows = (name: string, r?: KeyRange): Row<StoredValue>[] => {
      const [sql, params] = rangeSql(tableSql(name), r);
      return all(sql, params).map(([k, v]) => ({ key: k as string, value: decodeValue(v) }));
    };
    const guard = <T>(what: string, f: () => T): T => {
      try {
        return f();
      } catch (e) {
        throw wrapError(what, e);
      }
    };
    return {
      async get<T>(name: string, k: string) {
        check();
        return guard("get", () => {
          const rows = all(`SELECT v FROM ${tableSql(name)} WHERE k = ?`, [k]);
          return rows.length ? (decodeValue(rows[0][0]) as T) : undefined;
        });
      },
      async range<T>(name: string, r?: KeyRange) {
        check();
        return guard("range", () => rangeRows(name, r) as Row<T>[]);
      },
      async count(name: string, r?: KeyRange) {
        check();
        return guard("count", () => {
          const [where, params] = whereOf(r);
          return Number(all(`SELECT count(*) FROM ${tableSql(name)}${where}`, params)[0][0]);
        });
      },
      put(name, k, value) {
        checkWrite();
        guard("put", () => run(`INSERT OR REPLACE INTO ${tableSql(name)} (k, v) VALUES (?, ?)`, [k, encodeValue(value)]));
      },
      delete(name, k) {
        checkWrite();
        guard("delete", () => run(`DELETE FROM ${tableSql(name)} WHERE k = ?`, [k]));
      },
      deleteRange(name, r) {
        checkWrite();
        guard("deleteRange", () => {
          const [where, params] = whereOf(r);
          run(`DELETE FROM ${tableSql(name)}${where}`, params);
        });
      },
    };
  };

  // --- migrations, all in one SQL transaction --------------------------------------------------
  try {
    db.run("BEGIN");
    db.run("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)");
    const found = Number((all("SELECT v FROM meta WHERE k = 'schema_version'", [])[0]?.[0] as string | undefined) ?? 0);
    checkUpgradable(migrations, found);
    tables = new Set(tablesAt(migrations, found));
    for (let i = found; i < migrations.length; i++) {
      const m = migrations[i];
      const next = new Set(tablesAt(migrations, i + 1));
      for (const t of m.createTables) {
        if (!tables.has(t)) db.run(createTableSql(t));
      }
      for (const t of m.dropTables ?? []) if (!next.has(t)) db.run(`DROP TABLE IF EXISTS "t_${t}"`);
      tables = next;
      if (m.migrate) {
        const state = { open: true, writable: true, dirty: false };
        await m.migrate(makeTx(state));
        state.open = false;
      }
    }
    run("INSERT OR REPLACE INTO meta (k, v) VALUES ('schema_version', ?)", [String(migrations.length)]);
    db.run("COMMIT");
    if (found !== migrations.length && options.persist) {
      dropStatements();
      await options.persist(db.export());
    }
  } catch (e) {
    try {
      db.run("ROLLBACK");
    } catch {
      // no transaction open (BEGIN itself failed)
    }
    dropStatements();
    db.close();
    throw wrapError("migration", e);
  }

  // --- the queue: every transaction, read or write, runs alone ----------------------------------
  let queue: Promise<unknown> = Promise.resolve();
  const enqueue = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = queue.then(fn);
    queue = p.catch(() => undefined);
    return p;
  };

  // --- group commit ------------------------------------------------------------------------------
  // Every committing write that changed something takes a sequence number. The persister exports
  // (inside the queue, so never mid-transaction), awaits persist(), then releases every write
  // whose sequence number the export covered. Writes committing meanwhile share the next export.
  let committedSeq = 0;
  let attemptedSeq = 0;
  let persistedSeq = 0;
  let persisting: Promise<void> | undefined;
  const waiters: { seq: number; resolve: () => void; reject: (e: unknown) => void }[] = [];
  const settle = (upTo: number, error?: unknown): void => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i];
      if (w.seq > upTo) continue;
      waiters.splice(i, 1);
      if (error === undefined) w.resolve();
      else w.reject(error);
    }
  };
  const persistLoop = async (persist: (bytes: Uint8Array) => Promise<void>): Promise<void> => {
    while (attemptedSeq < committedSeq) {
      const { bytes, upTo } = await enqueue(async () => {
        dropStatements();
        return { bytes: db.export(), upTo: committedSeq };
      });
      attemptedSeq = upTo;
      try {
        await persist(bytes);
        persistedSeq = Math.max(persistedSeq, upTo);
        settle(upTo);
      } catch (e) {
        // Committed in memory but not durable: those writes fail; later exports include them.
        settle(upTo, wrapError("persist", e));
      }
    }
  };
  const durable = (seq: number): Promise<void> => {
    const persist = options.persist;
    if (!persist || persistedSeq >= seq) return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => waiters.push({ seq, resolve, reject }));
    persisting ??= persistLoop(persist).finally(() => {
      persisting = undefined;
      // A commit may have slipped in after the loop's last check.
      if (attemptedSeq < committedSeq && waiters.length) void durable(committedSeq).catch(() => undefined);
    });
    return p;
  };

  let closed = false;
  const inFlight = inFlightTracker();
  const track = inFlight.track;

  return {
    kind: "sqlite",
    read<T>(fn: (tx: ReadTx) => Promise<T>): Promise<T> {
      if (closed) return storeClosed();
      return track(
        enqueue(async () => {
          const state = { open: true, writable: false, dirty: false };
          try {
            return await fn(makeTx(state));
          } finally {
            state.open = false;
          }
        }),
      );
    },
    write<T>(fn: (tx: WriteTx) => Promise<T>): Promise<T> {
      if (closed) return storeClosed();
      const committed = enqueue(async () => {
        try {
          run("BEGIN", []);
        } catch (e) {
          throw wrapError("begin", e);
        }
        const state = { open: true, writable: true, dirty: false };
        let result: T;
        try {
          result = await fn(makeTx(state));
          state.open = false;
          run("COMMIT", []);
        } catch (e) {
          state.open = false;
          try {
            run("ROLLBACK", []);
          } catch {
            // COMMIT failed and SQLite already rolled back
          }
          throw e;
        }
        return { result, seq: state.dirty ? ++committedSeq : committedSeq };
      });
      return track(committed.then(async ({ result, seq }) => (await durable(seq), result)));
    },
    async schemaVersion() {
      if (closed) return storeClosed();
      return migrations.length;
    },
    async close() {
      if (closed) return;
      closed = true;
      await inFlight.settle();
      await queue;
      if (persisting) await persisting;
      dropStatements();
      db.close();
    },
  };
}
