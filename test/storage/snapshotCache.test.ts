/** withSnapshotCache (src/storage/snapshotCache.ts): each key read once per transaction, bounded. */
import { describe, it, expect } from "vitest";
import { createMemoryStore } from "../../src/storage/memory.ts";
import { withSnapshotCache } from "../../src/storage/snapshotCache.ts";
import type { ReadTx } from "../../src/storage/store.ts";

describe("withSnapshotCache", () => {
  it("reads a key once, remembers misses too, and keeps at most maxEntries keys", async () => {
    const store = createMemoryStore();
    await store.write(async (tx) => {
      for (let i = 0; i < 5; i++) tx.put("settings", `k${i}`, { i });
    });
    await store.read(async (inner) => {
      const reads: string[] = [];
      const counting: ReadTx = {
        get: (table, k) => (reads.push(`${table}/${k}`), inner.get(table, k)),
        range: (table, r) => inner.range(table, r),
        count: (table, r) => inner.count(table, r),
      };
      const tx = withSnapshotCache(counting, 3);
      expect(await tx.get("settings", "k0")).toEqual({ i: 0 });
      expect(await tx.get("settings", "k0")).toEqual({ i: 0 });
      expect(await tx.get("settings", "nope")).toBeUndefined();
      expect(await tx.get("settings", "nope")).toBeUndefined();
      expect(await tx.get("rooms", "k0")).toBeUndefined();
      expect(reads).toEqual(["settings/k0", "settings/nope", "rooms/k0"]);
      // k0 was used least recently: a fourth key pushes it out, the others stay.
      await tx.get("settings", "nope");
      await tx.get("rooms", "k0");
      await tx.get("settings", "k1");
      await tx.get("settings", "nope");
      await tx.get("settings", "k0");
      expect(reads).toEqual(["settings/k0", "settings/nope", "rooms/k0", "settings/k1", "settings/k0"]);
      expect((await tx.range("settings")).length).toBe(5);
      expect(await tx.count("settings")).toBe(5);
    });
  });
});
