/**
 * A read transaction that remembers what `get` returned: inside one read transaction (one
 * snapshot) a key's value cannot change, so a long read that looks at the same rows again and again
 * (a search serving overlapping context windows, visibility checks reading the same state events)
 * reads each from the database once. Values are shared between callers, who must not change them
 * (no reader does). At most `maxEntries` values are kept (least recently used go first).
 */
import type { KeyRange, ReadTx, Row } from "./store.ts";
import type { TableName } from "./schema.ts";

/** `tx` with its `get` results remembered (see above). */
export function withSnapshotCache(tx: ReadTx, maxEntries = 20_000): ReadTx {
  const cache = new Map<string, unknown>();
  return {
    async get<T>(table: TableName, k: string): Promise<T | undefined> {
      const ck = `${table}\u0000${k}`;
      if (cache.has(ck)) {
        const v = cache.get(ck);
        // Most recently used at the end.
        cache.delete(ck);
        cache.set(ck, v);
        return v as T | undefined;
      }
      const v = await tx.get<T>(table, k);
      cache.set(ck, v);
      if (cache.size > maxEntries) cache.delete(cache.keys().next().value!);
      return v;
    },
    range<T>(table: TableName, range?: KeyRange): Promise<Row<T>[]> {
      return tx.range<T>(table, range);
    },
    count(table: TableName, range?: KeyRange): Promise<number> {
      return tx.count(table, range);
    },
  };
}
