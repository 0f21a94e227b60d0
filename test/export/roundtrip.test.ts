/**
 * Export and import between every storage backend, through the real core: a homeserver filled
 * through the Client-Server API on one backend, exported, imported into another, and served from
 * there (same Matrix IDs, rooms, history, logins, E2EE keys, media), with identical rows.
 */
import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createMemoryStore } from "../../src/storage/memory.ts";
import { createIndexedDbStore } from "../../src/storage/indexeddb.ts";
import { createSqliteStore } from "../../src/storage/sqlite.ts";
import { openSqliteFileStore } from "../../src/node/sqliteFile.ts";
import type { Store } from "../../src/storage/store.ts";
import { exportHomeserver, importHomeserver, readExport } from "../../src/export/homeserver.ts";
import { loadOrCreateIdentity } from "../../src/sw/identity.ts";
import { SEED, SERVER_NAME, client, dump, homeserverOn, populate, verify } from "./fixture.ts";

const PASSPHRASE = "correct horse battery staple";
/** Few PBKDF2 iterations and small chunks: fast, and the media spans many chunks. */
const FAST = { iterations: 1000, chunkBytes: 16 * 1024 };

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const backends: Record<string, () => Promise<Store>> = {
  memory: async () => createMemoryStore(),
  "indexeddb (fake-indexeddb)": () => createIndexedDbStore({ name: "hyphae", indexedDB: new IDBFactory() }),
  "sql.js": () => createSqliteStore(),
  "node:sqlite file (the runner's store, media in blob files)": async () => {
    const dir = await mkdtemp(join(tmpdir(), "hyphae-export-"));
    dirs.push(dir);
    return openSqliteFileStore(join(dir, "homeserver.sqlite"));
  },
};

/** The whole export as bytes. */
export async function exportBytes(store: Store, options = FAST): Promise<Uint8Array> {
  return new Uint8Array(await new Response(exportHomeserver(store, { seed: SEED, serverName: SERVER_NAME }, PASSPHRASE, options)).arrayBuffer());
}

const NODE_FILE = "node:sqlite file (the runner's store, media in blob files)";
const cases: [string, string][] = [
  ["memory", NODE_FILE],
  ["indexeddb (fake-indexeddb)", NODE_FILE],
  ["sql.js", NODE_FILE],
  [NODE_FILE, "indexeddb (fake-indexeddb)"],
];

describe("export → import between backends", () => {
  it.each(cases)("%s → %s", async (from, to) => {
    const source = await backends[from]!();
    const hs = await homeserverOn(source);
    const populated = await populate(client((r) => hs.handle(r)));
    // Exported while the server is up (the snapshot is one read transaction).
    const bytes = await exportBytes(source);
    const before = await dump(source);
    await hs.close();

    const target = await backends[to]!();
    const result = await importHomeserver(target, bytes, PASSPHRASE);
    expect(result.serverName).toBe(SERVER_NAME);
    expect(result.seed).toEqual(SEED);
    expect(await dump(target)).toEqual(before);
    // The Service Worker finds the same identity in the imported store.
    const identity = await loadOrCreateIdentity(target);
    expect(identity).toEqual({ seed: SEED, serverName: SERVER_NAME, created: false });

    const moved = await homeserverOn(target);
    try {
      await verify(client((r) => moved.handle(r)), populated);
    } finally {
      await moved.close();
    }
  }, 120_000);

  it("reads the file as a Blob stream too, and reports what it holds", async () => {
    const source = createMemoryStore();
    const hs = await homeserverOn(source);
    await populate(client((r) => hs.handle(r)));
    const bytes = await exportBytes(source);
    const rows = Object.values(await dump(source)).reduce((n, r) => n + r.length, 0);
    await hs.close();
    const file = await readExport(new Blob([bytes as Uint8Array<ArrayBuffer>]), PASSPHRASE);
    expect(file.manifest.serverName).toBe(SERVER_NAME);
    expect(file.tables.media_content).toBe(1);
    expect(file.tables.accounts).toBe(2);
    expect(file.rows).toBe(rows);
  }, 60_000);

  it("reads a page at a time without a snapshot (pages smaller than some tables), with the same rows", async () => {
    const source = createMemoryStore();
    const hs = await homeserverOn(source);
    await populate(client((r) => hs.handle(r)));
    const before = await dump(source);
    expect(before.events!.length).toBeGreaterThan(50);
    const paged = new Uint8Array(await new Response(exportHomeserver(source, { seed: SEED, serverName: SERVER_NAME }, PASSPHRASE, { ...FAST, snapshot: false, pageRows: 7 })).arrayBuffer());
    await hs.close();
    const target = createMemoryStore();
    await importHomeserver(target, paged, PASSPHRASE);
    expect(await dump(target)).toEqual(before);
  }, 60_000);
});
