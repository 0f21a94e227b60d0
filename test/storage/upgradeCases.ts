/**
 * Upgrade cases shared by the Node tests (upgrade.test.ts) and the real-browser page: test-only
 * migration lists, the fixture checks, and the IndexedDB upgrade suite for any IDBFactory.
 */
import { describe, expect, it } from "vitest";
import type { Migration } from "../../src/storage/schema.ts";
import { MIGRATIONS, SCHEMA_VERSION, currentTables } from "../../src/storage/schema.ts";
import type { Store, WriteTx } from "../../src/storage/store.ts";
import { StorageError } from "../../src/storage/store.ts";
import { createIndexedDbStore } from "../../src/storage/indexeddb.ts";
import { SCHEMA0_ROWS } from "../fixtures/schema0Data.ts";
import { tokenHash } from "../../src/homeserver/auth/tokens.ts";

const indexByName = async (tx: WriteTx): Promise<void> => {
  for (const { key, value } of await tx.range<{ displayname?: string; createdAt: number }>("accounts")) {
    tx.put("accounts_by_name", `${value.displayname ?? ""}\u001f${key}`, true);
    tx.put("accounts", key, { ...value, migrated: true });
  }
  tx.put("accounts_by_name", "~count", await tx.count("accounts"));
};
/** Migration 0, a step that builds a table from existing data, then a drop. */
export const TEST_MIGRATIONS: readonly Migration[] = [
  MIGRATIONS[0],
  { createTables: ["accounts_by_name"], migrate: indexByName },
  { createTables: [], dropTables: ["reports"] },
];
/** Migration 0, then a step that writes and then throws. */
export const FAILING_MIGRATIONS: readonly Migration[] = [
  MIGRATIONS[0],
  {
    createTables: ["half_done"],
    migrate: async (tx) => {
      tx.put("half_done", "x", 1);
      tx.put("settings", "server_seed", "overwritten");
      await tx.get("accounts", "@alice:0f3a");
      throw new Error("migration bug");
    },
  },
];

/** Checks that every fixture row is there unchanged (tables in `except` skipped). */
export async function expectFixtureRows(s: Store, except: Set<string> = new Set()): Promise<void> {
  // After migration 7, access tokens are keyed by their hash (the values are unchanged).
  const hashed = (await s.read((tx) => tx.get("access_tokens", "syt_alice_token"))) === undefined;
  for (const [table, k, v] of SCHEMA0_ROWS) {
    if (except.has(table)) continue;
    const stored = table === "access_tokens" && hashed ? tokenHash(k) : k;
    expect(await s.read((tx) => tx.get(table, stored)), `${table} ${k}`).toEqual(v);
  }
  const tables = new Set(SCHEMA0_ROWS.map(([t]) => t));
  for (const t of tables) {
    if (except.has(t)) continue;
    expect(await s.read((tx) => tx.count(t))).toBe(SCHEMA0_ROWS.filter(([tt]) => tt === t).length);
  }
}

/** Checks the effects of TEST_MIGRATIONS on the fixture. */
export async function expectTestMigrationsApplied(s: Store): Promise<void> {
  expect(await s.schemaVersion()).toBe(3);
  expect((await s.read((tx) => tx.range("accounts_by_name"))).map((r) => r.key)).toEqual(["\u001f@bob:0f3a", "Alice ✨\u001f@alice:0f3a", "~count"]);
  expect(await s.read((tx) => tx.get("accounts_by_name", "~count"))).toBe(2);
  expect(await s.read((tx) => tx.get("accounts", "@bob:0f3a"))).toMatchObject({ userId: "@bob:0f3a", migrated: true });
  await expect(s.read((tx) => tx.count("reports"))).rejects.toBeInstanceOf(StorageError);
  await expectFixtureRows(s, new Set(["accounts"]));
}

/** The IndexedDB upgrade suite; `fresh()` gives a factory and a database name never used before. */
export function indexedDbUpgradeSuite(label: string, fresh: () => { factory: IDBFactory; name: string }): void {
  describe(`upgrade: IndexedDB database written by schema 0 (${label})`, () => {
    /** Simulates the old code: the bare IDB API, version 1, migration 0's stores, the fixture rows. */
    async function oldDatabase(): Promise<{ factory: IDBFactory; name: string }> {
      const env = fresh();
      const request = env.factory.open(env.name, 1);
      request.onupgradeneeded = () => {
        for (const t of MIGRATIONS[0].createTables) request.result.createObjectStore(t);
      };
      const db = await new Promise<IDBDatabase>((resolve, reject) => {
        request.onsuccess = () => resolve(request.result);
        request.onerror = () => reject(request.error);
      });
      const tx = db.transaction([...new Set(SCHEMA0_ROWS.map(([t]) => t))], "readwrite");
      for (const [t, k, v] of SCHEMA0_ROWS) tx.objectStore(t).put(v, k);
      await new Promise<void>((resolve, reject) => {
        tx.oncomplete = () => resolve();
        tx.onabort = () => reject(tx.error);
      });
      db.close();
      return env;
    }

    it("opens with the current code: all migrations, data unchanged", async () => {
      const { factory, name } = await oldDatabase();
      const s = await createIndexedDbStore({ name, indexedDB: factory });
      expect(await s.schemaVersion()).toBe(SCHEMA_VERSION);
      await expectFixtureRows(s);
      for (const t of currentTables()) expect(await s.read((tx) => tx.count(t))).toBeGreaterThanOrEqual(0);
      await s.close();
    });

    it("runs a migration's migrate step inside the versionchange transaction", async () => {
      const { factory, name } = await oldDatabase();
      const s = await createIndexedDbStore({ name, indexedDB: factory, migrations: TEST_MIGRATIONS });
      await expectTestMigrationsApplied(s);
      await s.close();
      const again = await createIndexedDbStore({ name, indexedDB: factory, migrations: TEST_MIGRATIONS });
      await expectTestMigrationsApplied(again);
      await again.close();
    });

    it("applies nothing when a migration fails", async () => {
      const { factory, name } = await oldDatabase();
      await expect(createIndexedDbStore({ name, indexedDB: factory, migrations: FAILING_MIGRATIONS })).rejects.toThrow("migration bug");
      const s = await createIndexedDbStore({ name, indexedDB: factory, migrations: MIGRATIONS.slice(0, 1) });
      expect(await s.schemaVersion()).toBe(1);
      await expectFixtureRows(s);
      await expect(s.read((tx) => tx.count("half_done"))).rejects.toBeInstanceOf(StorageError);
      await s.close();
    });

    it("refuses a database newer than the code", async () => {
      const { factory, name } = fresh();
      const s = await createIndexedDbStore({ name, indexedDB: factory, migrations: TEST_MIGRATIONS });
      await s.close();
      await expect(createIndexedDbStore({ name, indexedDB: factory, migrations: TEST_MIGRATIONS.slice(0, 2) })).rejects.toBeInstanceOf(StorageError);
    });
  });
}
