/**
 * Upgrade tests (STYLE.md §11): a database written by an earlier schema is opened by the current
 * code, every migration applies, and the data comes through unchanged.
 */
import "fake-indexeddb/auto";
import { describe, expect, it } from "vitest";
import { IDBFactory } from "fake-indexeddb";
import { openDB } from "idb";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Migration } from "../../src/storage/schema.ts";
import { MIGRATIONS, SCHEMA_VERSION, currentTables } from "../../src/storage/schema.ts";
import type { Store, WriteTx } from "../../src/storage/store.ts";
import { StorageError } from "../../src/storage/store.ts";
import { createSqliteStore } from "../../src/storage/sqlite.ts";
import { createIndexedDbStore } from "../../src/storage/indexeddb.ts";
import { openSqliteFileStore } from "../../src/node/sqliteFile.ts";
import { SCHEMA0_ROWS } from "../fixtures/schema0Data.ts";

const FIXTURE = new URL("../fixtures/schema0.sqlite", import.meta.url);
const fixtureBytes = (): Uint8Array => new Uint8Array(readFileSync(FIXTURE));

/** Test-only schema: migration 0, then a step that builds a table from existing data, then a drop. */
const indexByName = async (tx: WriteTx): Promise<void> => {
  for (const { key, value } of await tx.range<{ displayname?: string; createdAt: number }>("accounts")) {
    tx.put("accounts_by_name", `${value.displayname ?? ""}\u001f${key}`, true);
    tx.put("accounts", key, { ...value, migrated: true });
  }
  tx.put("accounts_by_name", "~count", await tx.count("accounts"));
};
const TEST_MIGRATIONS: readonly Migration[] = [
  MIGRATIONS[0],
  { createTables: ["accounts_by_name"], migrate: indexByName },
  { createTables: [], dropTables: ["reports"] },
];
const FAILING_MIGRATIONS: readonly Migration[] = [
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

async function expectFixtureRows(s: Store, except: Set<string> = new Set()): Promise<void> {
  for (const [table, k, v] of SCHEMA0_ROWS) {
    if (except.has(table)) continue;
    expect(await s.read((tx) => tx.get(table, k)), `${table} ${k}`).toEqual(v);
  }
  const tables = new Set(SCHEMA0_ROWS.map(([t]) => t));
  for (const t of tables) {
    if (except.has(t)) continue;
    expect(await s.read((tx) => tx.count(t))).toBe(SCHEMA0_ROWS.filter(([tt]) => tt === t).length);
  }
}

async function expectTestMigrationsApplied(s: Store): Promise<void> {
  expect(await s.schemaVersion()).toBe(3);
  expect((await s.read((tx) => tx.range("accounts_by_name"))).map((r) => r.key)).toEqual(["\u001f@bob:0f3a", "Alice ✨\u001f@alice:0f3a", "~count"]);
  expect(await s.read((tx) => tx.get("accounts_by_name", "~count"))).toBe(2);
  expect(await s.read((tx) => tx.get("accounts", "@bob:0f3a"))).toMatchObject({ userId: "@bob:0f3a", migrated: true });
  await expect(s.read((tx) => tx.count("reports"))).rejects.toBeInstanceOf(StorageError);
  await expectFixtureRows(s, new Set(["accounts"]));
}

describe("upgrade: SQLite fixture written by schema 0", () => {
  it("the fixture really is at schema 1 with migration 0's tables only", async () => {
    const s = await createSqliteStore({ data: fixtureBytes(), migrations: MIGRATIONS.slice(0, 1) });
    expect(await s.schemaVersion()).toBe(1);
    await expectFixtureRows(s);
    await s.close();
  });

  it("opens with the current code: all migrations, data unchanged", async () => {
    const s = await createSqliteStore({ data: fixtureBytes() });
    expect(await s.schemaVersion()).toBe(SCHEMA_VERSION);
    await expectFixtureRows(s);
    // Every current table exists and is usable.
    for (const t of currentTables()) expect(await s.read((tx) => tx.count(t))).toBeGreaterThanOrEqual(0);
    await s.write(async (tx) => tx.put(currentTables().at(-1) ?? "settings", "new", { ok: true }));
    await s.close();
  });

  it("upgrades a file in place, durably", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hyphae-upgrade-"));
    try {
      const path = join(dir, "db.sqlite");
      copyFileSync(FIXTURE, path);
      const s = await openSqliteFileStore(path);
      await s.close();
      // The upgraded schema is in the file even though nothing else was written.
      const old = await createSqliteStore({ data: new Uint8Array(readFileSync(path)), migrations: [...MIGRATIONS] });
      expect(await old.schemaVersion()).toBe(SCHEMA_VERSION);
      await expectFixtureRows(old);
      await old.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("runs a migration's migrate step through the generic transaction", async () => {
    let persisted: Uint8Array | undefined;
    const s = await createSqliteStore({ data: fixtureBytes(), migrations: TEST_MIGRATIONS, persist: async (b) => void (persisted = b) });
    await expectTestMigrationsApplied(s);
    await s.close();
    expect(persisted).toBeDefined();
    const reopened = await createSqliteStore({ data: persisted, migrations: TEST_MIGRATIONS });
    await expectTestMigrationsApplied(reopened);
    await reopened.close();
  });

  it("applies nothing when a migration fails", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hyphae-upgrade-"));
    try {
      const path = join(dir, "db.sqlite");
      copyFileSync(FIXTURE, path);
      const before = readFileSync(path);
      await expect(openSqliteFileStore(path, { migrations: FAILING_MIGRATIONS })).rejects.toBeInstanceOf(StorageError);
      expect(readFileSync(path).equals(before)).toBe(true);
      const s = await openSqliteFileStore(path, { migrations: MIGRATIONS.slice(0, 1) });
      expect(await s.schemaVersion()).toBe(1);
      await expectFixtureRows(s);
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses a database newer than the code", async () => {
    let bytes: Uint8Array | undefined;
    const s = await createSqliteStore({ data: fixtureBytes(), migrations: TEST_MIGRATIONS, persist: async (b) => void (bytes = b) });
    await s.close();
    await expect(createSqliteStore({ data: bytes, migrations: TEST_MIGRATIONS.slice(0, 2) })).rejects.toBeInstanceOf(StorageError);
  });
});

describe("upgrade: IndexedDB database written by schema 0", () => {
  /** Simulates the old code: raw idb, version 1, migration 0's object stores, the fixture rows. */
  async function oldDatabase(factory: IDBFactory, name: string): Promise<void> {
    globalThis.indexedDB = factory;
    const db = await openDB(name, 1, {
      upgrade(d) {
        for (const t of MIGRATIONS[0].createTables) d.createObjectStore(t);
      },
    });
    const tx = db.transaction([...new Set(SCHEMA0_ROWS.map(([t]) => t))], "readwrite");
    for (const [t, k, v] of SCHEMA0_ROWS) void tx.objectStore(t).put(v, k);
    await tx.done;
    db.close();
  }

  it("opens with the current code: all migrations, data unchanged", async () => {
    const factory = new IDBFactory();
    await oldDatabase(factory, "old");
    const s = await createIndexedDbStore({ name: "old", indexedDB: factory });
    expect(await s.schemaVersion()).toBe(SCHEMA_VERSION);
    await expectFixtureRows(s);
    for (const t of currentTables()) expect(await s.read((tx) => tx.count(t))).toBeGreaterThanOrEqual(0);
    await s.close();
  });

  it("runs a migration's migrate step inside the versionchange transaction", async () => {
    const factory = new IDBFactory();
    await oldDatabase(factory, "old");
    const s = await createIndexedDbStore({ name: "old", indexedDB: factory, migrations: TEST_MIGRATIONS });
    await expectTestMigrationsApplied(s);
    await s.close();
    const again = await createIndexedDbStore({ name: "old", indexedDB: factory, migrations: TEST_MIGRATIONS });
    await expectTestMigrationsApplied(again);
    await again.close();
  });

  it("applies nothing when a migration fails", async () => {
    const factory = new IDBFactory();
    await oldDatabase(factory, "old");
    await expect(createIndexedDbStore({ name: "old", indexedDB: factory, migrations: FAILING_MIGRATIONS })).rejects.toThrow("migration bug");
    const s = await createIndexedDbStore({ name: "old", indexedDB: factory, migrations: MIGRATIONS.slice(0, 1) });
    expect(await s.schemaVersion()).toBe(1);
    await expectFixtureRows(s);
    await expect(s.read((tx) => tx.count("half_done"))).rejects.toBeInstanceOf(StorageError);
    await s.close();
  });

  it("refuses a database newer than the code", async () => {
    const factory = new IDBFactory();
    const s = await createIndexedDbStore({ name: "db", indexedDB: factory, migrations: TEST_MIGRATIONS });
    await s.close();
    await expect(createIndexedDbStore({ name: "db", indexedDB: factory, migrations: TEST_MIGRATIONS.slice(0, 2) })).rejects.toBeInstanceOf(StorageError);
  });
});
