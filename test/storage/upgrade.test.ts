/**
 * Upgrade tests (docs/STYLE.md §11): a database written by an earlier schema is opened by the current
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
import { tokenHash } from "../../src/homeserver/auth/tokens.ts";
import { createHomeserver } from "../../src/homeserver/homeserver.ts";
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

  it("migration 1 indexes the access tokens schema 0 already held by device (by hash since migration 7)", async () => {
    const s = await createSqliteStore({ data: fixtureBytes() });
    const rows = await s.read((tx) => tx.range("device_tokens", { prefix: prefix("@alice:0f3a", "ALICEDEV") }));
    expect(rows.map((r) => r.key)).toEqual([key("@alice:0f3a", "ALICEDEV", tokenHash("syt_alice_token"))]);
    await s.close();
  });

  it("migration 7 stores token hashes only, and a token issued before the upgrade still works", async () => {
    const path = fixtureFile("tokens.sqlite");
    const store = await openSqliteFileStore(path);
    expect(await store.read((tx) => tx.get("access_tokens", "syt_alice_token"))).toBeUndefined();
    expect(await store.read((tx) => tx.get("access_tokens", tokenHash("syt_alice_token")))).toEqual({ userId: "@alice:0f3a", deviceId: "ALICEDEV" });
    const hs = await createHomeserver({ store, seed: new Uint8Array(32).fill(1), serverName: "0f3a" });
    const whoami = await hs.handle(new Request("http://localhost/_matrix/client/v3/account/whoami", { headers: { Authorization: "Bearer syt_alice_token" } }));
    expect(await whoami.json()).toMatchObject({ user_id: "@alice:0f3a", device_id: "ALICEDEV" });
    // Logging out with it revokes it (found through its hash).
    const logout = await hs.handle(new Request("http://localhost/_matrix/client/v3/logout", { method: "POST", headers: { Authorization: "Bearer syt_alice_token" } }));
    expect(logout.status).toBe(200);
    const after = await hs.handle(new Request("http://localhost/_matrix/client/v3/account/whoami", { headers: { Authorization: "Bearer syt_alice_token" } }));
    expect(after.status).toBe(401);
    await hs.close();
    // No plaintext token in the file.
    expect(readFileSync(path).includes("syt_alice_token")).toBe(false);
  });

  it("migration 7 rekeys refresh tokens and the hashes they point at", async () => {
    let bytes: Uint8Array | undefined;
    const before = await createSqliteStore({ data: fixtureBytes(), migrations: MIGRATIONS.slice(0, 7), persist: async (b) => void (bytes = b) });
    await before.write(async (tx) => {
      tx.put("access_tokens", "hyt_a2", { userId: "@alice:0f3a", deviceId: "ALICEDEV", expiresAt: 5, supersedes: "hyr_r1" });
      tx.put("refresh_tokens", "hyr_r1", { userId: "@alice:0f3a", deviceId: "ALICEDEV", accessToken: "hyt_a1", next: "hyr_r2" });
      tx.put("refresh_tokens", "hyr_r2", { userId: "@alice:0f3a", deviceId: "ALICEDEV", accessToken: "hyt_a2", supersedes: "hyr_r1" });
      tx.put("device_tokens", key("@alice:0f3a", "ALICEDEV", "hyr_r2"), true);
    });
    await before.close();
    const up = await createSqliteStore({ data: bytes });
    const h = tokenHash;
    expect(await up.read((tx) => tx.get("access_tokens", h("hyt_a2")))).toEqual({ userId: "@alice:0f3a", deviceId: "ALICEDEV", expiresAt: 5, supersedes: h("hyr_r1") });
    expect(await up.read((tx) => tx.get("refresh_tokens", h("hyr_r1")))).toEqual({ userId: "@alice:0f3a", deviceId: "ALICEDEV", accessToken: h("hyt_a1"), next: h("hyr_r2") });
    expect(await up.read((tx) => tx.get("refresh_tokens", h("hyr_r2")))).toEqual({ userId: "@alice:0f3a", deviceId: "ALICEDEV", accessToken: h("hyt_a2"), supersedes: h("hyr_r1") });
    expect((await up.read((tx) => tx.range("device_tokens"))).map((r) => r.key).sort()).toEqual([key("@alice:0f3a", "ALICEDEV", h("hyr_r2")), key("@alice:0f3a", "ALICEDEV", h("syt_alice_token"))].sort());
    expect(await up.read((tx) => tx.count("refresh_tokens"))).toBe(2);
    await up.close();
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
