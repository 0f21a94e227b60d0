/**
 * Upgrade tests (STYLE.md §11): a database written by an earlier schema is opened by the current
 * code, every migration applies, and the data comes through unchanged.
 */
import "fake-indexeddb/auto";
import { afterAll, describe, expect, it } from "vitest";
import { IDBFactory } from "fake-indexeddb";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MIGRATIONS, SCHEMA_VERSION, currentTables } from "../../src/storage/schema.ts";
import { StorageError, key, prefix } from "../../src/storage/store.ts";
import { createSqliteStore } from "../../src/storage/sqlite.ts";
import { openSqliteFileStore } from "../../src/node/sqliteFile.ts";
import { expectFixtureRows, expectTestMigrationsApplied, FAILING_MIGRATIONS, indexedDbUpgradeSuite, TEST_MIGRATIONS } from "./upgradeCases.ts";

const FIXTURE = new URL("../fixtures/schema0.sqlite", import.meta.url);
const fixtureBytes = (): Uint8Array => new Uint8Array(readFileSync(FIXTURE));
const dir = mkdtempSync(join(tmpdir(), "hyphae-upgrade-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
/** A copy of the fixture as a database file named `name` in this file's temporary directory. */
const fixtureFile = (name: string): string => {
  const path = join(dir, name);
  copyFileSync(FIXTURE, path);
  return path;
};

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

  it("migration 1 indexes the access tokens schema 0 already held by device", async () => {
    const s = await createSqliteStore({ data: fixtureBytes() });
    const rows = await s.read((tx) => tx.range("device_tokens", { prefix: prefix("@alice:0f3a", "ALICEDEV") }));
    expect(rows.map((r) => r.key)).toEqual([key("@alice:0f3a", "ALICEDEV", "syt_alice_token")]);
    await s.close();
  });

  it("upgrades a file in place, durably", async () => {
    const path = fixtureFile("in-place.sqlite");
    const s = await openSqliteFileStore(path);
    await s.close();
    // The upgraded schema is in the file even though nothing else was written.
    const old = await createSqliteStore({ data: new Uint8Array(readFileSync(path)), migrations: [...MIGRATIONS] });
    expect(await old.schemaVersion()).toBe(SCHEMA_VERSION);
    await expectFixtureRows(old);
    await old.close();
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
    const path = fixtureFile("failed-migration.sqlite");
    const before = readFileSync(path);
    await expect(openSqliteFileStore(path, { migrations: FAILING_MIGRATIONS })).rejects.toBeInstanceOf(StorageError);
    expect(readFileSync(path).equals(before)).toBe(true);
    const s = await openSqliteFileStore(path, { migrations: MIGRATIONS.slice(0, 1) });
    expect(await s.schemaVersion()).toBe(1);
    await expectFixtureRows(s);
    await s.close();
  });

  it("refuses a database newer than the code", async () => {
    let bytes: Uint8Array | undefined;
    const s = await createSqliteStore({ data: fixtureBytes(), migrations: TEST_MIGRATIONS, persist: async (b) => void (bytes = b) });
    await s.close();
    await expect(createSqliteStore({ data: bytes, migrations: TEST_MIGRATIONS.slice(0, 2) })).rejects.toBeInstanceOf(StorageError);
  });
});

let dbNumber = 0;
indexedDbUpgradeSuite("fake-indexeddb", () => ({ factory: new IDBFactory(), name: `old-${dbNumber++}` }));
