import { describe, expect, it } from "vitest";
import initSqlJs from "sql.js";
import { createSqliteStore, decodeValue, encodeValue } from "../../src/storage/sqlite.ts";
import { StorageError } from "../../src/storage/store.ts";
import { storageConformance } from "./conformance.ts";

storageConformance("sqlite (in memory)", () => createSqliteStore());

describe("sqlite value codec", () => {
  // The on-disk format is a contract with every existing database file: pin it.
  it.each<[string, unknown, string | Uint8Array]>([
    ["plain JSON", { a: [1, "x", null, true] }, '{"a":[1,"x",null,true]}'],
    ["a nested Uint8Array as tagged base64", { d: new Uint8Array([1, 2, 255]) }, '{"d":{"$u8":"AQL/"}}'],
    ["keys starting with $ get one more $", { $u8: "AQL/", $$x: 1 }, '{"$$u8":"AQL/","$$$x":1}'],
    ["a top-level Uint8Array stays raw bytes (a BLOB)", new Uint8Array([7, 8]), new Uint8Array([7, 8])],
    ["a string", "s", '"s"'],
  ])("%s", (_label, value, encoded) => {
    expect(encodeValue(value)).toEqual(encoded);
    expect(decodeValue(encoded)).toEqual(value);
  });

  it("refuses values JSON cannot hold", () => {
    expect(() => encodeValue(undefined)).toThrow(StorageError);
    expect(() => encodeValue({ n: 1n })).toThrow(StorageError);
    expect(() => encodeValue({ b: new Uint16Array(2) })).toThrow(StorageError);
  });

  it("round-trips a large binary nested value", () => {
    const big = new Uint8Array(200_000).map((_, i) => i % 251);
    const back = decodeValue(encodeValue({ big })) as { big: Uint8Array };
    expect(back.big).toEqual(big);
  });
});

describe("sqlite persistence (group commit)", () => {
  const SQL = initSqlJs();
  /** The value of settings[k] inside an exported database image. */
  async function valueIn(bytes: Uint8Array, k: string): Promise<unknown> {
    const db = new (await SQL).Database(bytes);
    try {
      const r = db.exec(`SELECT v FROM "t_settings" WHERE k = ?`, [k]);
      return r.length ? decodeValue(r[0].values[0][0]) : undefined;
    } finally {
      db.close();
    }
  }

  /** A persist function the test can hold: while held, persists wait in `pending`. */
  function gate() {
    const g = {
      held: false,
      persisted: [] as Uint8Array[],
      pending: [] as (() => void)[],
      persist: (bytes: Uint8Array): Promise<void> => {
        if (!g.held) return (g.persisted.push(bytes), Promise.resolve());
        return new Promise<void>((resolve) => g.pending.push(() => (g.persisted.push(bytes), resolve())));
      },
      releaseOne: (): boolean => {
        const r = g.pending.shift();
        r?.();
        return r !== undefined;
      },
    };
    return g;
  }
  const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 1));

  it("resolves each write only after an export containing it was persisted, sharing exports", async () => {
    const g = gate();
    const s = await createSqliteStore({ persist: g.persist });
    expect(g.persisted.length).toBe(1); // opening a fresh database persists its schema
    g.held = true;
    const N = 20;
    const resolvedAfter: number[] = [];
    const writes = Array.from({ length: N }, (_, i) =>
      s.write(async (tx) => tx.put("settings", `k${i}`, i)).then(() => void (resolvedAfter[i] = g.persisted.length)),
    );
    // Every write commits while the first export's persist is held.
    while (g.pending.length === 0) await tick();
    for (let i = 0; i < 5; i++) await tick();
    expect(resolvedAfter.filter((x) => x !== undefined)).toEqual([]); // nothing resolves before its persist
    while (resolvedAfter.filter((x) => x !== undefined).length < N) {
      g.releaseOne();
      await tick();
    }
    await Promise.all(writes);
    // 1 (schema) + the first write's export + one shared export for the 19 that queued behind it.
    expect(g.persisted.length).toBeLessThanOrEqual(3);
    for (let i = 0; i < N; i++) {
      // The last export persisted before write i resolved contains write i.
      expect(await valueIn(g.persisted[resolvedAfter[i] - 1], `k${i}`)).toBe(i);
    }
    await s.close();
  });

  it("does not block reads while a persist is in progress", async () => {
    const g = gate();
    const s = await createSqliteStore({ persist: g.persist });
    g.held = true;
    let done = false;
    const writing = s.write(async (tx) => tx.put("settings", "a", 1)).then(() => void (done = true));
    while (g.pending.length === 0) await tick();
    // Committed (visible to readers) but not yet durable: the writer is still waiting.
    expect(await s.read((tx) => tx.get("settings", "a"))).toBe(1);
    await tick();
    expect(done).toBe(false);
    g.releaseOne();
    await writing;
    expect(done).toBe(true);
    await s.close();
  });

  it("fails the writes a failed persist covered, and recovers on the next one", async () => {
    let fail = false;
    const persisted: Uint8Array[] = [];
    const s = await createSqliteStore({
      persist: async (bytes) => {
        if (fail) throw new Error("disk full");
        persisted.push(bytes);
      },
    });
    fail = true;
    const err = await s.write(async (tx) => tx.put("settings", "a", 1)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as StorageError).cause).toBeInstanceOf(Error);
    fail = false;
    await s.write(async (tx) => tx.put("settings", "b", 2));
    const last = persisted[persisted.length - 1];
    // The later export carries both: the failed write was committed, only its persist failed.
    expect(await valueIn(last, "a")).toBe(1);
    expect(await valueIn(last, "b")).toBe(2);
    await s.close();
  });

  it("does not persist read-only or unchanged writes", async () => {
    let count = 0;
    const s = await createSqliteStore({ persist: async () => void count++ });
    const after = count;
    await s.write(async (tx) => tx.get("settings", "x"));
    await s.read((tx) => tx.get("settings", "x"));
    expect(count).toBe(after);
    await s.close();
  });

  it("rejects bytes that are not a SQLite database with StorageError", async () => {
    await expect(createSqliteStore({ data: new TextEncoder().encode("not a database at all, just some text padding it out") })).rejects.toBeInstanceOf(StorageError);
  });
});
