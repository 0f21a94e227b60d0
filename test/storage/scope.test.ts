/**
 * Transaction scopes (`TxScope`): the memory and IndexedDB backends refuse a table outside the
 * declared scope, and IndexedDB runs writes with disjoint scopes side by side while overlapping
 * ones wait for each other (fake-indexeddb schedules by scope as browsers do).
 */
import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import { afterEach, describe, expect, it } from "vitest";
import type { Store } from "../../src/storage/store.ts";
import { StorageError } from "../../src/storage/store.ts";
import { createMemoryStore } from "../../src/storage/memory.ts";
import { createIndexedDbStore } from "../../src/storage/indexeddb.ts";

const idb = (): Promise<Store> => createIndexedDbStore({ name: "hyphae-scope", indexedDB: new IDBFactory() });
const BACKENDS: [string, () => Promise<Store>][] = [
  ["memory", async () => createMemoryStore()],
  ["indexeddb (fake-indexeddb)", idb],
];

const open: Store[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

describe.each(BACKENDS)("declared scopes are checked: %s", (_name, factory) => {
  const fresh = async (): Promise<Store> => {
    const s = await factory();
    open.push(s);
    return s;
  };
  const scope = { tables: ["rooms"] };

  it.each([
    ["get", (tx: Parameters<Parameters<Store["write"]>[0]>[0]) => tx.get("events", "$e")],
    ["range", (tx: Parameters<Parameters<Store["write"]>[0]>[0]) => tx.range("events")],
    ["count", (tx: Parameters<Parameters<Store["write"]>[0]>[0]) => tx.count("events")],
    ["put", async (tx: Parameters<Parameters<Store["write"]>[0]>[0]) => tx.put("events", "$e", 1)],
    ["delete", async (tx: Parameters<Parameters<Store["write"]>[0]>[0]) => tx.delete("events", "$e")],
    ["deleteRange", async (tx: Parameters<Parameters<Store["write"]>[0]>[0]) => tx.deleteRange("events", {})],
  ])("a write that uses %s on a table outside its scope fails, naming the table, and writes nothing", async (_op, use) => {
    const s = await fresh();
    const failing = s.write(async (tx) => {
      tx.put("rooms", "!r", { v: 1 });
      await use(tx);
    }, scope);
    await expect(failing).rejects.toBeInstanceOf(StorageError);
    await expect(failing).rejects.toThrow(/table events is outside this transaction's declared scope \(rooms\)/);
    expect(await s.read((tx) => tx.get("rooms", "!r"))).toBeUndefined();
    // Inside the scope the same store works.
    await s.write(async (tx) => tx.put("rooms", "!r", { v: 2 }), scope);
    expect(await s.read((tx) => tx.get("rooms", "!r"), scope)).toEqual({ v: 2 });
  });

  it("a read outside its scope fails", async () => {
    const s = await fresh();
    await expect(s.read((tx) => tx.get("events", "$e"), scope)).rejects.toThrow(/table events is outside/);
    await expect(s.read((tx) => tx.range("events"), scope)).rejects.toBeInstanceOf(StorageError);
  });

  it("a scope naming an unknown table fails", async () => {
    const s = await fresh();
    await expect(s.write(async () => undefined, { tables: ["no_such_table"] })).rejects.toBeInstanceOf(StorageError);
    await expect(s.read(async () => undefined, { tables: ["no_such_table"] })).rejects.toBeInstanceOf(StorageError);
  });

  it("no declared scope means every table", async () => {
    const s = await fresh();
    await s.write(async (tx) => {
      tx.put("rooms", "!r", 1);
      tx.put("events", "$e", 2);
    });
    expect(await s.read(async (tx) => [await tx.get("rooms", "!r"), await tx.get("events", "$e")])).toEqual([1, 2]);
  });
});

describe("IndexedDB schedules transactions by scope", () => {
  /**
   * Runs a write over `firstTables` that stays open (chaining its own requests: an IndexedDB
   * transaction commits as soon as it has none pending) until the second write over
   * `secondTables` has finished, or for at most `maxRounds` requests. Returns whether the second
   * finished while the first was still open, and the order the two committed in.
   */
  async function race(firstTables: string[], secondTables: string[], maxRounds: number) {
    const s = await idb();
    open.push(s);
    const order: string[] = [];
    let secondDone = false;
    let rounds = 0;
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    const first = s
      .write(async (tx) => {
        tx.put(firstTables[0]!, "k", "first");
        entered();
        while (!secondDone && rounds < maxRounds) {
          await tx.get(firstTables[0]!, "k");
          rounds++;
        }
        return secondDone;
      }, { tables: firstTables })
      .then((sawSecond) => {
        order.push("first");
        return sawSecond;
      });
    await inside;
    const second = s
      .write(async (tx) => {
        tx.put(secondTables[0]!, "k2", "second");
        // An overlapping write runs after the first committed, so it sees its row.
        return tx.get(firstTables[0]!, "k").catch(() => "outside scope");
      }, { tables: secondTables })
      .then((seen) => {
        secondDone = true;
        order.push("second");
        return seen;
      });
    const [sawSecond, secondSaw] = await Promise.all([first, second]);
    return { sawSecond, secondSaw, order, rounds };
  }

  it("a write over other tables commits while the first is still open", async () => {
    const r = await race(["rooms"], ["events"], 5_000);
    expect(r.sawSecond).toBe(true);
    expect(r.order).toEqual(["second", "first"]);
    expect(r.rounds).toBeLessThan(5_000);
  });

  it("a write over an overlapping scope waits until the first has committed", async () => {
    const r = await race(["rooms", "settings"], ["events", "rooms"], 300);
    expect(r.sawSecond).toBe(false);
    expect(r.rounds).toBe(300);
    expect(r.order).toEqual(["first", "second"]);
    expect(r.secondSaw).toBe("first");
  });

  it("a write with no declared scope waits for any other write", async () => {
    const s = await idb();
    open.push(s);
    let rounds = 0;
    let secondDone = false;
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    const first = s.write(async (tx) => {
      entered();
      while (!secondDone && rounds < 300) {
        await tx.get("rooms", "k");
        rounds++;
      }
      return secondDone;
    }, { tables: ["rooms"] });
    await inside;
    const second = s.write(async (tx) => tx.put("events", "k", 1)).then(() => (secondDone = true));
    expect(await first).toBe(false);
    await second;
    expect(rounds).toBe(300);
  });
});
