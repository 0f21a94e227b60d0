/**
 * The one storage conformance suite (docs/STYLE.md §10): every backend's spec calls
 * `storageConformance(name, factory)` and must pass it through the Store interface alone.
 */
import { afterEach, describe, expect, it } from "vitest";
import fc from "fast-check";
import type { KeyRange, Store } from "../../src/storage/store.ts";
import { key, pos, prefix, StorageError } from "../../src/storage/store.ts";
import { SCHEMA_VERSION } from "../../src/storage/schema.ts";

/** Makes a fresh, empty store at the current schema. */
export type StoreFactory = () => Promise<Store>;

/** Reference semantics of a range over a plain sorted key list (JS string order). */
function reference(entries: Map<string, unknown>, r: KeyRange = {}): { key: string; value: unknown }[] {
  let keys = [...entries.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  keys = keys.filter(
    (k) =>
      (r.prefix === undefined || k.startsWith(r.prefix)) &&
      (r.gte === undefined || k >= r.gte) &&
      (r.gt === undefined || k > r.gt) &&
      (r.lte === undefined || k <= r.lte) &&
      (r.lt === undefined || k < r.lt),
  );
  if (r.reverse) keys.reverse();
  if (r.limit !== undefined) keys = keys.slice(0, r.limit);
  return keys.map((k) => ({ key: k, value: entries.get(k) }));
}

// Keys as the homeserver builds them: compound keys with SEP, fixed-width hex positions, and a
// sibling room id ("!ab") that a careless prefix scan over "!a" would pick up. Non-ASCII parts
// stay in the BMP below U+E000, where UTF-8 byte order and UTF-16 code unit order agree.
const ROOMS = ["!a", "!ab", "!b", "!é", "!日本"];
const POSITIONS = [0, 1, 2, 9, 10, 15, 16, 255, 256, 4096, 2 ** 40];
const DATASET = new Map<string, unknown>();
for (const r of ROOMS) for (const n of POSITIONS) DATASET.set(key(r, pos(n)), { room: r, n });
DATASET.set("!a", { bare: true });

const RANGE_CASES: [string, KeyRange][] = [
  ["everything", {}],
  ["prefix", { prefix: prefix("!a") }],
  ["prefix of a non-ASCII room", { prefix: prefix("!日本") }],
  ["prefix that matches nothing", { prefix: prefix("!zz") }],
  ["gte", { gte: key("!ab", pos(10)) }],
  ["gt", { gt: key("!ab", pos(10)) }],
  ["lte", { lte: key("!ab", pos(10)) }],
  ["lt", { lt: key("!ab", pos(10)) }],
  ["prefix + gt (sync since)", { prefix: prefix("!a"), gt: key("!a", pos(9)) }],
  ["prefix + gte + lt", { prefix: prefix("!b"), gte: key("!b", pos(2)), lt: key("!b", pos(256)) }],
  ["prefix + lte", { prefix: prefix("!b"), lte: key("!b", pos(16)) }],
  ["bounds wider than the prefix", { prefix: prefix("!b"), gt: "!", lt: "!z" }],
  ["reverse", { reverse: true }],
  ["prefix + reverse", { prefix: prefix("!ab"), reverse: true }],
  ["limit", { limit: 3 }],
  ["limit 0", { limit: 0 }],
  ["limit larger than the range", { prefix: prefix("!b"), limit: 100 }],
  ["prefix + reverse + limit (latest N)", { prefix: prefix("!a"), reverse: true, limit: 4 }],
  ["prefix + lt + reverse + limit (back-pagination)", { prefix: prefix("!a"), lt: key("!a", pos(256)), reverse: true, limit: 3 }],
  ["empty: gt above lt", { gt: key("!b", pos(5)), lt: key("!a", pos(5)) }],
  ["empty: gt equals lte", { gt: key("!b", pos(2)), lte: key("!b", pos(2)) }],
  ["single key: gte equals lte", { gte: key("!b", pos(2)), lte: key("!b", pos(2)) }],
];

/** Registers the whole suite for one backend. */
export function storageConformance(name: string, factory: StoreFactory): void {
  describe(`storage conformance: ${name}`, () => {
    const open: Store[] = [];
    const fresh = async (): Promise<Store> => {
      const s = await factory();
      open.push(s);
      return s;
    };
    afterEach(async () => {
      for (const s of open.splice(0)) await s.close();
    });
    const seed = async (s: Store, table = "timeline"): Promise<void> => {
      await s.write(async (tx) => {
        for (const [k, v] of DATASET) tx.put(table, k, v);
      });
    };

    it("is at the current schema version", async () => {
      const s = await fresh();
      expect(await s.schemaVersion()).toBe(SCHEMA_VERSION);
      expect(typeof s.kind).toBe("string");
    });

    it("gets nothing from an empty table", async () => {
      const s = await fresh();
      expect(await s.read((tx) => tx.get("accounts", "@nobody:x"))).toBeUndefined();
      expect(await s.read((tx) => tx.range("accounts"))).toEqual([]);
      expect(await s.read((tx) => tx.count("accounts"))).toBe(0);
    });

    it("puts, gets, overwrites and deletes", async () => {
      const s = await fresh();
      const account = { userId: "@alice:x", createdAt: 1, displayname: "Alice" };
      expect(await s.write(async (tx) => (tx.put("accounts", "@alice:x", account), "done"))).toBe("done");
      expect(await s.read((tx) => tx.get("accounts", "@alice:x"))).toEqual(account);
      await s.write(async (tx) => tx.put("accounts", "@alice:x", { ...account, displayname: "A." }));
      expect(await s.read((tx) => tx.get("accounts", "@alice:x"))).toEqual({ ...account, displayname: "A." });
      expect(await s.read((tx) => tx.count("accounts"))).toBe(1);
      await s.write(async (tx) => tx.delete("accounts", "@alice:x"));
      expect(await s.read((tx) => tx.get("accounts", "@alice:x"))).toBeUndefined();
      // Deleting a missing key is not an error.
      await s.write(async (tx) => tx.delete("accounts", "@alice:x"));
    });

    it("keeps tables apart", async () => {
      const s = await fresh();
      await s.write(async (tx) => {
        tx.put("accounts", "k", 1);
        tx.put("devices", "k", 2);
      });
      expect(await s.read(async (tx) => [await tx.get("accounts", "k"), await tx.get("devices", "k")])).toEqual([1, 2]);
    });

    it("sees its own writes inside a write transaction", async () => {
      const s = await fresh();
      await s.write(async (tx) => tx.put("settings", "a", 1));
      const seen = await s.write(async (tx) => {
        tx.put("settings", "b", 2);
        tx.delete("settings", "a");
        return [await tx.get("settings", "a"), await tx.get("settings", "b"), await tx.count("settings"), (await tx.range("settings")).map((r) => r.key)];
      });
      expect(seen).toEqual([undefined, 2, 1, ["b"]]);
    });

    it("orders keys by pos() numerically and by compound key part", async () => {
      const s = await fresh();
      // Insert in scrambled order; the scan must come back sorted.
      const keys = [...DATASET.keys()].reverse();
      await s.write(async (tx) => {
        for (const k of keys) tx.put("timeline", k, DATASET.get(k));
      });
      const got = (await s.read((tx) => tx.range("timeline", { prefix: prefix("!b") }))).map((r) => (r.value as { n: number }).n);
      expect(got).toEqual(POSITIONS);
      const all = (await s.read((tx) => tx.range("timeline"))).map((r) => r.key);
      expect(all).toEqual(reference(DATASET).map((r) => r.key));
      // "!a" < "!a␟…" < "!ab…": the separator sorts below every identifier character.
      expect(all.indexOf("!a")).toBe(0);
      expect(all.indexOf(key("!a", pos(2 ** 40)))).toBeLessThan(all.indexOf(key("!ab", pos(0))));
    });

    describe("range", () => {
      it.each(RANGE_CASES)("%s", async (_label, r) => {
        const s = await fresh();
        await seed(s);
        const expected = reference(DATASET, r);
        expect(await s.read((tx) => tx.range("timeline", r))).toEqual(expected);
        // count ignores reverse and limit.
        expect(await s.read((tx) => tx.count("timeline", { ...r, limit: undefined, reverse: undefined }))).toBe(
          reference(DATASET, { ...r, limit: undefined }).length,
        );
      });
    });

    describe("deleteRange", () => {
      it.each(RANGE_CASES.filter(([, r]) => r.limit === undefined && !r.reverse))("%s", async (_label, r) => {
        const s = await fresh();
        await seed(s);
        await s.write(async (tx) => tx.deleteRange("timeline", r));
        const deleted = new Set(reference(DATASET, r).map((row) => row.key));
        const remaining = new Map([...DATASET].filter(([k]) => !deleted.has(k)));
        expect(await s.read((tx) => tx.range("timeline"))).toEqual(reference(remaining));
      });
    });

    it("stores Uint8Array values, top-level and nested", async () => {
      const s = await fresh();
      const bytes = new Uint8Array(70_000).map((_, i) => (i * 31) & 0xff);
      const nested = { mimetype: "image/png", thumbs: [{ w: 32, data: new Uint8Array([0, 255, 1]) }], empty: new Uint8Array(0) };
      await s.write(async (tx) => {
        tx.put("media_content", "m1", bytes);
        tx.put("media", "m1", nested);
      });
      const [b, n] = await s.read(async (tx) => [await tx.get<Uint8Array>("media_content", "m1"), await tx.get<typeof nested>("media", "m1")] as const);
      expect(b).toBeInstanceOf(Uint8Array);
      expect(b && [...b]).toEqual([...bytes]);
      expect(n?.thumbs[0].data).toBeInstanceOf(Uint8Array);
      expect(n?.thumbs[0].data && [...n.thumbs[0].data]).toEqual([0, 255, 1]);
      expect(n?.empty).toBeInstanceOf(Uint8Array);
      expect(n?.empty.length).toBe(0);
      const rows = await s.read((tx) => tx.range<Uint8Array>("media_content"));
      expect(rows[0].value).toBeInstanceOf(Uint8Array);
    });

    it("round-trips nested JSON values unchanged", async () => {
      const s = await fresh();
      const values: unknown[] = [
        { type: "m.room.message", content: { body: "héllo 🌍 \u0000 \"quoted\"", "m.relates_to": { rel_type: "m.thread" } }, depth: 3 },
        [1, -2.5, 1e21, 0, true, false, null, "x", [[]], {}],
        { $u8: "AAAA" }, // data that looks like an encoding tag stays data
        { $dollar: { $$two: 1 }, "": "empty key", "a\u001fb": 1 },
        "a plain string",
        42,
        true,
        null,
        { big: Number.MAX_SAFE_INTEGER, neg: -Number.MAX_SAFE_INTEGER },
      ];
      await s.write(async (tx) => values.forEach((v, i) => tx.put("events", `$e${i}`, v)));
      const got = await s.read(async (tx) => Promise.all(values.map((_, i) => tx.get("events", `$e${i}`))));
      expect(got).toEqual(values);
    });

    it("returns copies: mutating a read value does not change the store", async () => {
      const s = await fresh();
      await s.write(async (tx) => tx.put("rooms", "!r", { members: ["@a:x"] }));
      const v = await s.read((tx) => tx.get<{ members: string[] }>("rooms", "!r"));
      v?.members.push("@mallory:x");
      expect(await s.read((tx) => tx.get("rooms", "!r"))).toEqual({ members: ["@a:x"] });
    });

    it("writes nothing when the transaction function throws", async () => {
      const s = await fresh();
      await s.write(async (tx) => {
        tx.put("accounts", "@keep:x", { v: 1 });
        tx.put("timeline", key("!a", pos(1)), "$1");
        tx.put("timeline", key("!a", pos(2)), "$2");
      });
      const boom = new Error("boom");
      await expect(
        s.write(async (tx) => {
          tx.put("accounts", "@new:x", { v: 2 });
          tx.put("accounts", "@keep:x", { v: 99 });
          tx.deleteRange("timeline", { prefix: prefix("!a") });
          await tx.get("accounts", "@keep:x");
          throw boom;
        }),
      ).rejects.toBe(boom);
      expect(await s.read((tx) => tx.get("accounts", "@new:x"))).toBeUndefined();
      expect(await s.read((tx) => tx.get("accounts", "@keep:x"))).toEqual({ v: 1 });
      expect(await s.read((tx) => tx.count("timeline"))).toBe(2);
      // The store still works afterwards.
      await s.write(async (tx) => tx.put("accounts", "@after:x", 1));
      expect(await s.read((tx) => tx.get("accounts", "@after:x"))).toBe(1);
    });

    it("fails a write whose value cannot be stored, writing nothing", async () => {
      const s = await fresh();
      await expect(
        s.write(async (tx) => {
          tx.put("settings", "ok", 1);
          tx.put("settings", "bad", { f: () => 1 });
        }),
      ).rejects.toThrow();
      expect(await s.read((tx) => tx.count("settings"))).toBe(0);
    });

    it("isolates readers from a write in progress", async () => {
      const s = await fresh();
      let started!: () => void;
      const inside = new Promise<void>((r) => (started = r));
      const writing = s.write(async (tx) => {
        tx.put("settings", "a", 1);
        started();
        // Slow, but only through the transaction's own reads (no timers inside transactions).
        for (let i = 0; i < 50; i++) await tx.get("settings", "a");
        tx.put("settings", "b", 1);
      });
      await inside;
      const seen = await s.read(async (tx) => [await tx.get("settings", "a"), await tx.get("settings", "b")]);
      expect([[undefined, undefined], [1, 1]]).toContainEqual(seen);
      await writing;
      expect(await s.read(async (tx) => [await tx.get("settings", "a"), await tx.get("settings", "b")])).toEqual([1, 1]);
    });

    it("serializes concurrent read-modify-write transactions", async () => {
      const s = await fresh();
      const N = 25;
      await Promise.all(
        Array.from({ length: N }, () =>
          s.write(async (tx) => {
            const n = (await tx.get<number>("settings", "counter")) ?? 0;
            tx.put("settings", "counter", n + 1);
          }),
        ),
      );
      expect(await s.read((tx) => tx.get("settings", "counter"))).toBe(N);
    });

    it("runs reads and writes scoped to the tables they declare", async () => {
      const s = await fresh();
      const scope = { tables: ["settings", "rooms"] };
      await s.write(async (tx) => {
        tx.put("settings", "a", 1);
        tx.put("rooms", "!r", { v: 1 });
        expect(await tx.get("settings", "a")).toBe(1);
        expect(await tx.count("rooms")).toBe(1);
      }, scope);
      await Promise.all([
        s.write(async (tx) => tx.put("settings", "b", 2), { tables: ["settings"] }),
        s.write(async (tx) => tx.delete("rooms", "!r"), { tables: ["rooms"] }),
      ]);
      expect(await s.read(async (tx) => [await tx.get("settings", "a"), await tx.get("settings", "b"), await tx.range("rooms")], scope)).toEqual([1, 2, []]);
    });

    it("rejects unknown tables with StorageError", async () => {
      const s = await fresh();
      await expect(s.read((tx) => tx.get("no_such_table", "k"))).rejects.toBeInstanceOf(StorageError);
      await expect(s.read((tx) => tx.range("no_such_table"))).rejects.toBeInstanceOf(StorageError);
      await expect(s.read((tx) => tx.count("no_such_table"))).rejects.toBeInstanceOf(StorageError);
      await expect(s.write(async (tx) => tx.put("no_such_table", "k", 1))).rejects.toBeInstanceOf(StorageError);
      await expect(s.write(async (tx) => tx.deleteRange("no_such_table", {}))).rejects.toBeInstanceOf(StorageError);
      // A failed write leaves the other tables alone and the store usable.
      await expect(
        s.write(async (tx) => {
          tx.put("settings", "x", 1);
          tx.delete("no_such_table", "k");
        }),
      ).rejects.toBeInstanceOf(StorageError);
      expect(await s.read((tx) => tx.get("settings", "x"))).toBeUndefined();
    });

    it("refuses to be used after close()", async () => {
      const s = await factory();
      await s.write(async (tx) => tx.put("settings", "x", 1));
      await s.close();
      await expect(s.read((tx) => tx.get("settings", "x"))).rejects.toBeInstanceOf(StorageError);
      await expect(s.write(async (tx) => tx.put("settings", "x", 2))).rejects.toBeInstanceOf(StorageError);
    });

    it("close() waits for pending writes", async () => {
      const s = await factory();
      const pending = Array.from({ length: 5 }, (_, i) => s.write(async (tx) => tx.put("settings", `k${i}`, i)));
      await s.close();
      await Promise.all(pending); // all of them resolved, none rejected
    });

    it("matches a reference Map for random put/delete sequences (property)", async () => {
      const s = await fresh();
      const keyArb = fc
        .array(fc.constantFrom("a", "b", "é", "日", "\u001f", "0", "f"), { minLength: 1, maxLength: 4 })
        .map((cs) => cs.join(""));
      const op = fc.oneof(
        fc.record({ kind: fc.constant("put" as const), k: keyArb, v: fc.oneof(fc.integer(), fc.string(), fc.constant(new Uint8Array([7]))) }),
        fc.record({ kind: fc.constant("delete" as const), k: keyArb }),
      );
      const rangeArb = fc.record(
        { prefix: keyArb, gt: keyArb, gte: keyArb, lt: keyArb, lte: keyArb, reverse: fc.boolean(), limit: fc.nat(6) },
        { requiredKeys: [] },
      );
      await fc.assert(
        fc.asyncProperty(fc.array(fc.array(op, { maxLength: 8 }), { maxLength: 4 }), fc.array(rangeArb, { minLength: 1, maxLength: 4 }), async (txs, ranges) => {
          const model = new Map<string, unknown>();
          await s.write(async (tx) => tx.deleteRange("settings", {}));
          for (const ops of txs) {
            await s.write(async (tx) => {
              for (const o of ops) {
                if (o.kind === "put") tx.put("settings", o.k, o.v);
                else tx.delete("settings", o.k);
              }
            });
            for (const o of ops) {
              if (o.kind === "put") model.set(o.k, o.v);
              else model.delete(o.k);
            }
          }
          for (const r of ranges) {
            expect(await s.read((tx) => tx.range("settings", r))).toEqual(reference(model, r));
            expect(await s.read((tx) => tx.count("settings", { ...r, limit: undefined }))).toBe(reference(model, { ...r, limit: undefined }).length);
          }
        }),
        { numRuns: 60 },
      );
    });
  });
}
