/**
 * An in-memory Store: for unit tests and for throwaway servers. Writes are serialized and applied
 * at commit from an overlay, so a throwing transaction leaves nothing behind. A transaction with a
 * declared scope (`TxScope`) throws on any table outside it: IndexedDB would too, but only in a
 * browser, so this is where the tests check every declared scope.
 */
import type { KeyRange, ReadTx, Row, Store, StoredValue, TxScope, WriteTx } from "./store.ts";
import { StorageError } from "./store.ts";
import { inRange } from "./range.ts";
import { storeClosed } from "./migrate.ts";
import { currentTables, SCHEMA_VERSION } from "./schema.ts";

const DELETED = Symbol("deleted");
type Overlay = Map<string, Map<string, StoredValue | typeof DELETED>>;

/**
 * Creates an empty in-memory store at the current schema. `tables` replaces the current schema's
 * tables (the export module migrates an older export's rows in a store holding every table any
 * migration step touches).
 */
export function createMemoryStore(options: { tables?: readonly string[] } = {}): Store {
  const tables = new Map<string, Map<string, StoredValue>>((options.tables ?? currentTables()).map((t) => [t, new Map()]));
  let queue: Promise<unknown> = Promise.resolve();
  let closed = false;

  const table = (name: string): Map<string, StoredValue> => {
    const t = tables.get(name);
    if (!t) throw new StorageError(`no table ${name}`);
    return t;
  };

  /** The declared scope as a set (undefined: every table), each name checked to exist. */
  const scopeOf = (scope: TxScope | undefined): Set<string> | undefined => {
    if (!scope?.tables) return undefined;
    for (const t of scope.tables) table(t);
    return new Set(scope.tables);
  };

  const makeTx = (overlay: Overlay | undefined, scope: Set<string> | undefined): WriteTx => {
    const inScope = (name: string): void => {
      if (scope && !scope.has(name)) {
        throw new StorageError(`table ${name} is outside this transaction's declared scope (${[...scope].join(", ")}): add it to the tables given to ${overlay ? "write" : "read"}()`);
      }
    };
    const view = (name: string): Map<string, StoredValue | typeof DELETED> | undefined => overlay?.get(name);
    const rows = (name: string, r: KeyRange = {}): Row<StoredValue>[] => {
      inScope(name);
      const base = table(name);
      const ov = view(name);
      const keys = new Set<string>();
      for (const k of base.keys()) if (inRange(k, r)) keys.add(k);
      if (ov) for (const k of ov.keys()) if (inRange(k, r)) keys.add(k);
      const sorted = [...keys].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      if (r.reverse) sorted.reverse();
      const out: Row<StoredValue>[] = [];
      for (const k of sorted) {
        if (r.limit !== undefined && out.length >= r.limit) break;
        const v = ov?.has(k) ? ov.get(k) : base.get(k);
        if (v === DELETED) continue;
        out.push({ key: k, value: structuredClone(v) });
      }
      return out;
    };
    const write = (name: string): Map<string, StoredValue | typeof DELETED> => {
      if (!overlay) throw new StorageError("write in a read transaction");
      inScope(name);
      table(name);
      let m = overlay.get(name);
      if (!m) overlay.set(name, (m = new Map()));
      return m;
    };
    return {
      async get<T>(name: string, k: string) {
        inScope(name);
        const ov = view(name);
        const v = ov?.has(k) ? ov.get(k) : table(name).get(k);
        return v === DELETED || v === undefined ? undefined : (structuredClone(v) as T);
      },
      async range<T>(name: string, r?: KeyRange) {
        return rows(name, r) as Row<T>[];
      },
      async count(name: string, r?: KeyRange) {
        return rows(name, { ...r, limit: undefined }).length;
      },
      put(name, k, v) {
        write(name).set(k, structuredClone(v));
      },
      delete(name, k) {
        write(name).set(k, DELETED);
      },
      deleteRange(name, r) {
        const m = write(name);
        for (const row of rows(name, { ...r, limit: undefined, reverse: false })) m.set(row.key, DELETED);
      },
    };
  };

  const enqueue = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  };

  return {
    kind: "memory",
    read<T>(fn: (tx: ReadTx) => Promise<T>, scope?: TxScope) {
      if (closed) return storeClosed();
      return (async () => fn(makeTx(undefined, scopeOf(scope))))();
    },
    write<T>(fn: (tx: WriteTx) => Promise<T>, scope?: TxScope) {
      if (closed) return storeClosed();
      return enqueue(async () => {
        const overlay: Overlay = new Map();
        const result = await fn(makeTx(overlay, scopeOf(scope)));
        for (const [name, m] of overlay) {
          const t = table(name);
          for (const [k, v] of m) {
            if (v === DELETED) t.delete(k);
            else t.set(k, v);
          }
        }
        return result;
      });
    },
    async schemaVersion() {
      return SCHEMA_VERSION;
    },
    async close() {
      closed = true;
      await queue;
    },
  };
}
