/**
 * The SQLite backend of the Node runner, on `node:sqlite` (SQLite built into Node 22) over a file.
 * Same tables and value format as the sql.js backend (`sqlCommon.ts`), so a file written by either
 * opens in the other; unlike sql.js, commits write only the pages they change.
 *
 * Durability and visibility:
 *  - The file runs in WAL mode with `synchronous=FULL`: `COMMIT` returns only after the WAL frames
 *    of the transaction are fsynced, so a `write()` resolves only once its commit is on disk.
 *  - Reads run on separate read-only connections. node:sqlite is synchronous and single-threaded
 *    here, so a read connection can only ever observe commits whose `COMMIT` has returned, that is
 *    durable ones: a reader never sees a write that a crash could take back.
 *  - A `read()` is one SQLite read transaction (one snapshot) for its whole callback, even across
 *    awaits. Reads started after a commit never join a snapshot from before it (read-your-writes):
 *    concurrent reads share a connection only while no commit happened since its snapshot began.
 *  - Writes serialize on the one write connection. Group commit: writes queued while a batch runs
 *    join it, each in its own SAVEPOINT (a write that throws rolls back to it and leaves nothing),
 *    and the batch ends with one `COMMIT` (one fsync) after which all its writes resolve. If that
 *    commit fails, every write of the batch rejects and nothing of it is written.
 *  - A write's callback may await between its operations (the blob-file layer writes files there);
 *    reads meanwhile go on, on the read connections, and see the state before the batch.
 *  - The cost of `synchronous=FULL` here: the fsync inside `COMMIT` blocks the event loop (a few
 *    milliseconds per batch, shared by the whole batch).
 *
 * On a clean close the file is switched back to the rollback journal, so at rest it is a plain
 * SQLite file as the sql.js release wrote it (that release, or sql.js, can open it again). After a
 * crash the `-wal` file holds the last commits; SQLite replays it at the next open.
 */
import { DatabaseSync } from "node:sqlite";
import type { StatementSync } from "node:sqlite";
import type { KeyRange, ReadTx, Row, Store, WriteTx } from "./store.ts";
import { StorageError } from "./store.ts";
import { MIGRATIONS } from "./schema.ts";
import type { Migration } from "./schema.ts";
import { checkUpgradable, errorWrapper, inFlightTracker, storeClosed, tablesAt } from "./migrate.ts";
import { createTableSql, decodeValue, encodeValue, rangeSql, whereOf } from "./sqlCommon.ts";

/** Options of `createNodeSqliteStore`. */
export interface NodeSqliteOptions {
  /** The schema; tests pass their own list. */
  migrations?: readonly Migration[];
  /** At most this many writes share one commit (default 64). */
  maxBatch?: number;
  /** How long a connection waits for a lock held by another connection (default 5000 ms). */
  busyTimeoutMs?: number;
  /**
   * Only read connections, to a database another connection writes (the Node runner's read worker
   * thread, src/node/readWorker.ts): no write connection, no migrations (the file must already be
   * at the schema's version), `write()` fails. Each `read()` takes its own snapshot, since the
   * commits it must see happen elsewhere.
   */
  readOnly?: boolean;
}

const wrapError = errorWrapper("sqlite");

/** One connection with its prepared statements. */
interface Conn {
  db: DatabaseSync;
  statements: Map<string, StatementSync>;
}

const connOf = (db: DatabaseSync): Conn => ({ db, statements: new Map() });

/** How long a read transaction works before it lets other requests have a turn. */
const READ_SLICE_MS = 2;

function stmt(c: Conn, sql: string): StatementSync {
  let s = c.statements.get(sql);
  if (!s) c.statements.set(sql, (s = c.db.prepare(sql)));
  return s;
}

/** A read connection: `users` reads share its open snapshot, taken at commit generation `generation`. */
interface Reader extends Conn {
  users: number;
  generation: number;
}

/** A queued write. */
interface PendingWrite {
  fn: (tx: WriteTx) => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/** Creates (or opens) the SQLite database file at `path` as a Store, applying pending migrations in one transaction. */
export async function createNodeSqliteStore(path: string, options: NodeSqliteOptions = {}): Promise<Store> {
  const migrations = options.migrations ?? MIGRATIONS;
  const maxBatch = options.maxBatch ?? 64;
  const timeout = options.busyTimeoutMs ?? 5000;
  const readOnly = options.readOnly === true;

  let writer: Conn;
  try {
    writer = connOf(new DatabaseSync(path, readOnly ? { readOnly: true, timeout } : { timeout }));
  } catch (e) {
    throw wrapError("open", e);
  }
  const exec = (sql: string): void => writer.db.exec(sql);

  let tables = new Set<string>();
  const tableSql = (name: string): string => {
    if (!tables.has(name)) throw new StorageError(`no table ${name}`);
    return `"t_${name}"`;
  };

  const guard = <T>(what: string, f: () => T): T => {
    try {
      return f();
    } catch (e) {
      throw wrapError(what, e);
    }
  };

  /** A transaction view on connection `c`; `state.open` turns false when it ends so late use fails loudly. */
  const makeTx = (c: () => Conn, state: { open: boolean; writable: boolean }): WriteTx => {
    const check = (): void => {
      if (!state.open) throw new StorageError("transaction already finished");
    };
    const checkWrite = (): void => {
      check();
      if (!state.writable) throw new StorageError("write in a read transaction");
    };
    // node:sqlite answers synchronously, so a long read (a search over a big room) would be one
    // unbroken chain of microtasks that starves every other request, and even lets idle keep-alive
    // sockets time out under their next request. A read transaction gives the event loop a turn
    // after every few milliseconds of work; its snapshot stays the same across the pause.
    let lastTurn = performance.now();
    const turn = async (): Promise<void> => {
      if (state.writable || performance.now() - lastTurn < READ_SLICE_MS) return;
      await new Promise<void>((resolve) => setImmediate(resolve));
      lastTurn = performance.now();
    };
    return {
      async get<T>(name: string, k: string) {
        check();
        await turn();
        check();
        return guard("get", () => {
          const row = stmt(c(), `SELECT v FROM ${tableSql(name)} WHERE k = ?`).get(k);
          return row ? (decodeValue(row.v) as T) : undefined;
        });
      },
      async range<T>(name: string, r?: KeyRange) {
        check();
        await turn();
        check();
        return guard("range", () => {
          const [sql, params] = rangeSql(tableSql(name), r);
          return stmt(c(), sql)
            .all(...params)
            .map((row) => ({ key: row.k as string, value: decodeValue(row.v) })) as Row<T>[];
        });
      },
      async count(name: string, r?: KeyRange) {
        check();
        await turn();
        check();
        return guard("count", () => {
          const [where, params] = whereOf(r);
          return Number(stmt(c(), `SELECT count(*) AS n FROM ${tableSql(name)}${where}`).get(...params)?.n ?? 0);
        });
      },
      put(name, k, value) {
        checkWrite();
        guard("put", () => stmt(c(), `INSERT OR REPLACE INTO ${tableSql(name)} (k, v) VALUES (?, ?)`).run(k, encodeValue(value)));
      },
      delete(name, k) {
        checkWrite();
        guard("delete", () => stmt(c(), `DELETE FROM ${tableSql(name)} WHERE k = ?`).run(k));
      },
      deleteRange(name, r) {
        checkWrite();
        guard("deleteRange", () => {
          const [where, params] = whereOf(r);
          stmt(c(), `DELETE FROM ${tableSql(name)}${where}`).run(...params);
        });
      },
    };
  };
  const onWriter = (): Conn => writer;

  // --- open: WAL, durable commits, then the migrations in one transaction ---------------------
  if (readOnly) {
    // The tables of the version the file is at, which must be this schema's (the writer migrated it).
    try {
      const found = Number((writer.db.prepare("SELECT v FROM meta WHERE k = 'schema_version'").get()?.v as string | undefined) ?? 0);
      if (found !== migrations.length) throw new StorageError(`${path} is at schema version ${found}, not ${migrations.length}`);
      tables = new Set(tablesAt(migrations, found));
    } catch (e) {
      writer.db.close();
      throw wrapError("open", e);
    }
  } else {
    try {
      exec("PRAGMA synchronous=FULL");
      // Migrations run in the journal mode the file is in (a file of the sql.js release: the rollback
      // journal), so a failed one leaves the file byte for byte as it was.
      exec("BEGIN IMMEDIATE");
      exec("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)");
      const found = Number((writer.db.prepare("SELECT v FROM meta WHERE k = 'schema_version'").get()?.v as string | undefined) ?? 0);
      checkUpgradable(migrations, found);
      tables = new Set(tablesAt(migrations, found));
      for (let i = found; i < migrations.length; i++) {
        const m = migrations[i];
        const next = new Set(tablesAt(migrations, i + 1));
        for (const t of m.createTables) if (!tables.has(t)) exec(createTableSql(t));
        for (const t of m.dropTables ?? []) if (!next.has(t)) exec(`DROP TABLE IF EXISTS "t_${t}"`);
        tables = next;
        if (m.migrate) {
          const state = { open: true, writable: true };
          await m.migrate(makeTx(onWriter, state));
          state.open = false;
        }
      }
      writer.db.prepare("INSERT OR REPLACE INTO meta (k, v) VALUES ('schema_version', ?)").run(String(migrations.length));
      exec("COMMIT");
      // A file written by the sql.js release is in rollback-journal mode; WAL is a header change.
      const mode = writer.db.prepare("PRAGMA journal_mode=WAL").get()?.journal_mode;
      if (mode !== "wal") throw new StorageError(`cannot switch ${path} to WAL (journal_mode is ${String(mode)})`);
    } catch (e) {
      try {
        if (writer.db.isTransaction) exec("ROLLBACK");
      } catch {
        // the failed statement already ended the transaction
      }
      writer.db.close();
      throw wrapError("migration", e);
    }
  }

  // --- reads -------------------------------------------------------------------------------------
  /** Bumped by every commit that changed something: a snapshot from an older generation may miss it. */
  let generation = 0;
  const readers: Reader[] = [];
  const MAX_IDLE_READERS = 4;

  const acquireReader = (): Reader => {
    // Join a snapshot that already includes every commit so far (read-only: commits happen elsewhere, unseen).
    const current = readOnly ? undefined : readers.find((r) => r.users > 0 && r.generation === generation);
    if (current) {
      current.users++;
      return current;
    }
    let r = readers.find((x) => x.users === 0);
    if (!r) {
      r = { ...connOf(new DatabaseSync(path, { readOnly: true, timeout })), users: 0, generation };
      readers.push(r);
    }
    r.db.exec("BEGIN");
    // A deferred transaction takes its snapshot at its first read: take it now, at this generation.
    stmt(r, "SELECT 1 FROM meta LIMIT 1").get();
    r.generation = generation;
    r.users = 1;
    return r;
  };
  const releaseReader = (r: Reader): void => {
    if (--r.users > 0) return;
    try {
      r.db.exec("COMMIT");
    } catch {
      // a read transaction has nothing to lose
    }
    const idle = readers.filter((x) => x.users === 0);
    if (idle.length > MAX_IDLE_READERS) {
      readers.splice(readers.indexOf(r), 1);
      r.db.close();
    }
  };

  // --- writes: one queue, group commit -----------------------------------------------------------
  const queue: PendingWrite[] = [];
  let draining: Promise<void> | undefined;

  /** Runs one write inside the open batch transaction, in its own savepoint. */
  const runOne = async (w: PendingWrite): Promise<{ ok: boolean; value?: unknown }> => {
    exec("SAVEPOINT w");
    const state = { open: true, writable: true };
    try {
      const value = await w.fn(makeTx(onWriter, state));
      state.open = false;
      exec("RELEASE w");
      return { ok: true, value };
    } catch (e) {
      state.open = false;
      // Undo this write only; the rest of the batch stays. If SQLite already rolled the whole
      // transaction back (an I/O error, a full disk), ROLLBACK TO fails and the batch fails with it.
      exec("ROLLBACK TO w");
      exec("RELEASE w");
      w.reject(e);
      return { ok: false };
    }
  };

  const runBatch = async (): Promise<void> => {
    const batch = queue.splice(0, maxBatch);
    const done: [PendingWrite, unknown][] = [];
    let i = 0;
    try {
      exec("BEGIN IMMEDIATE");
      for (; i < batch.length; i++) {
        const r = await runOne(batch[i]);
        if (r.ok) done.push([batch[i], r.value]);
        // Writes that arrived meanwhile share this commit.
        if (i === batch.length - 1 && batch.length < maxBatch && queue.length) batch.push(...queue.splice(0, maxBatch - batch.length));
      }
      exec("COMMIT"); // synchronous=FULL: durable when this returns
    } catch (e) {
      try {
        if (writer.db.isTransaction) exec("ROLLBACK");
      } catch {
        // already rolled back
      }
      // Nothing of this batch is written: the writes run so far fail (a second reject of the one
      // that already failed is a no-op); those not run yet go back to the front of the line.
      const err = wrapError("commit", e);
      for (const [w] of done) w.reject(err);
      if (i < batch.length) batch[i].reject(err);
      queue.unshift(...batch.slice(i + 1));
      return;
    }
    if (done.length) generation++;
    for (const [w, v] of done) w.resolve(v);
  };

  const drain = (): void => {
    draining ??= (async () => {
      // Let the writes started by this turn of the event loop join the first batch.
      await new Promise((r) => setImmediate(r));
      while (queue.length) await runBatch();
    })().finally(() => {
      draining = undefined;
      if (queue.length) drain();
    });
  };

  let closed = false;
  const inFlight = inFlightTracker();

  return {
    kind: "sqlite",
    read<T>(fn: (tx: ReadTx) => Promise<T>): Promise<T> {
      if (closed) return storeClosed();
      let r: Reader;
      try {
        r = acquireReader();
      } catch (e) {
        return Promise.reject(wrapError("read", e));
      }
      const state = { open: true, writable: false };
      return inFlight.track(
        (async () => {
          try {
            return await fn(makeTx(() => r, state));
          } finally {
            state.open = false;
            releaseReader(r);
          }
        })(),
      );
    },
    write<T>(fn: (tx: WriteTx) => Promise<T>): Promise<T> {
      if (closed) return storeClosed();
      if (readOnly) return Promise.reject(new StorageError(`write to ${path}, opened read-only`));
      const p = new Promise<T>((resolve, reject) => {
        queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      });
      drain();
      return inFlight.track(p);
    },
    async schemaVersion() {
      if (closed) return storeClosed();
      return migrations.length;
    },
    async close() {
      if (closed) return;
      closed = true;
      await inFlight.settle();
      if (draining) await draining;
      for (const r of readers.splice(0)) r.db.close();
      // Back to a plain rollback-journal file at rest (this checkpoints the WAL into the file).
      if (!readOnly) {
        try {
          exec("PRAGMA journal_mode=DELETE");
        } catch {
          // another connection still has the file open: it stays in WAL mode, which is fine
        }
      }
      writer.db.close();
    },
  };
}
