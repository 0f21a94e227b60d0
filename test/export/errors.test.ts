/**
 * What an import refuses, and that a refused import writes nothing: a wrong passphrase, every way
 * of cutting or damaging the file, a store that is not empty, a file from a newer schema, a
 * failure while writing. Plus the one thing it accepts instead of refusing: an older schema,
 * migrated on import exactly as opening the old database would migrate it.
 */
import { readFile } from "node:fs/promises";
import { beforeAll, describe, expect, it } from "vitest";
import { createMemoryStore } from "../../src/storage/memory.ts";
import { createSqliteStore } from "../../src/storage/sqlite.ts";
import type { Store } from "../../src/storage/store.ts";
import { MIGRATIONS, SCHEMA_VERSION } from "../../src/storage/schema.ts";
import { tokenHash } from "../../src/homeserver/auth/tokens.ts";
import { ExportFileError, ImportError, exportHomeserver, importHomeserver, unfinishedImport } from "../../src/export/homeserver.ts";
import { loadOrCreateIdentity } from "../../src/sw/identity.ts";
import { SEED, SERVER_NAME, client, dump, homeserverOn, isEmpty, populate, verify } from "./fixture.ts";
import type { Populated } from "./fixture.ts";

const PASSPHRASE = "correct horse battery staple";
const FAST = { iterations: 1000, chunkBytes: 16 * 1024 };

async function exportOf(store: Store, identity = { seed: SEED, serverName: SERVER_NAME }): Promise<Uint8Array> {
  return new Uint8Array(await new Response(exportHomeserver(store, identity, PASSPHRASE, FAST)).arrayBuffer());
}

/** Offsets where each chunk (its length field) starts, and the end of the file. */
function chunkStarts(file: Uint8Array): number[] {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  let at = 8 + 4 + view.getUint32(8) + 32;
  const starts: number[] = [];
  while (at < file.length) {
    starts.push(at);
    at += 4 + view.getUint32(at);
  }
  return starts;
}

const flip = (file: Uint8Array, at: number, bit = 0): Uint8Array => {
  const copy = file.slice();
  copy[at] = copy[at]! ^ (1 << bit);
  return copy;
};

let file: Uint8Array;
let populated: Populated;
let sourceRows: Awaited<ReturnType<typeof dump>>;

beforeAll(async () => {
  const source = createMemoryStore();
  const hs = await homeserverOn(source);
  populated = await populate(client((r) => hs.handle(r)));
  file = await exportOf(source);
  sourceRows = await dump(source);
  await hs.close();
}, 60_000);

/** Imports `bytes` into a fresh store and expects `reason`, with nothing written. */
async function refused(bytes: Uint8Array, reason: string, passphrase = PASSPHRASE): Promise<string> {
  const target = createMemoryStore();
  const err = await importHomeserver(target, bytes, passphrase).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, "the import should have been refused").toBeInstanceOf(ExportFileError);
  expect((err as ExportFileError).reason).toBe(reason);
  expect(await isEmpty(target)).toBe(true);
  return (err as Error).message;
}

describe("a damaged or wrong file is refused and nothing is written", () => {
  it("the file is several chunks long (the cases below cut and damage them)", () => {
    expect(chunkStarts(file).length).toBeGreaterThan(5);
  });

  it("wrong passphrase", async () => {
    expect(await refused(file, "passphrase", "correct horse battery stapler")).toBe("wrong passphrase for this export file");
  });

  it("not an export at all", async () => {
    expect(await refused(new TextEncoder().encode("SQLite format 3\0 and then some"), "format")).toBe("not a Hyphae export file");
    await refused(new Uint8Array(0), "format");
  });

  it("a header from a future container version", async () => {
    const view = new DataView(file.buffer, file.byteOffset);
    const headerLen = view.getUint32(8);
    const header = JSON.parse(new TextDecoder().decode(file.subarray(12, 12 + headerLen))) as { version: number };
    header.version = 2;
    const newHeader = new TextEncoder().encode(JSON.stringify(header));
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", newHeader));
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, newHeader.length);
    const rest = file.subarray(12 + headerLen + 32);
    const out = new Uint8Array([...file.subarray(0, 8), ...len, ...newHeader, ...digest, ...rest]);
    expect(await refused(out, "version")).toMatch(/format version 2.*update Hyphae/);
  });

  const truncations: [string, (f: Uint8Array) => number][] = [
    ["inside the magic", () => 5],
    ["inside the header", () => 30],
    ["right after the header", (f) => chunkStarts(f)[0]!],
    ["inside the first chunk's length", (f) => chunkStarts(f)[0]! + 2],
    ["inside the first chunk", (f) => chunkStarts(f)[0]! + 100],
    ["at a chunk boundary", (f) => chunkStarts(f)[3]!],
    ["one byte short", (f) => f.length - 1],
  ];
  it.each(truncations)("truncated %s", async (_what, at) => {
    const cut = file.subarray(0, at(file));
    await refused(cut, cut.length < 8 ? "format" : "corrupt");
  });

  const flips: [string, (f: Uint8Array) => number][] = [
    ["in the header's salt", () => 12 + 60],
    ["in the header digest", (f) => chunkStarts(f)[0]! - 3],
    ["in a chunk's length", (f) => chunkStarts(f)[2]! + 3],
    ["in the first chunk's ciphertext", (f) => chunkStarts(f)[0]! + 40],
    ["in a middle chunk's ciphertext", (f) => chunkStarts(f)[3]! + 500],
    ["in the last chunk's tag", (f) => f.length - 2],
  ];
  it.each(flips)("a bit flipped %s", async (_what, at) => {
    expect(await refused(flip(file, at(file), 3), "corrupt")).toMatch(/damaged|truncated/);
  });

  it("two chunks swapped", async () => {
    const s = chunkStarts(file);
    const a = file.subarray(s[1]!, s[2]!);
    const b = file.subarray(s[2]!, s[3]!);
    expect(a.length).toBe(b.length);
    const swapped = file.slice();
    swapped.set(b, s[1]!);
    swapped.set(a, s[2]!);
    expect(await refused(swapped, "corrupt")).toMatch(/chunk 1 fails its integrity check/);
  });

  it("a chunk dropped, and data appended after the end", async () => {
    const s = chunkStarts(file);
    await refused(new Uint8Array([...file.subarray(0, s[2]!), ...file.subarray(s[3]!)]), "corrupt");
    expect(await refused(new Uint8Array([...file, 0, 0, 0, 0]), "corrupt")).toMatch(/after its last chunk/);
    // The last chunk of another file by the same passphrase does not fit either (other salt, other key).
  });
});

describe("the store must be empty", () => {
  it("refuses a store with a homeserver in it and leaves it as it was", async () => {
    const store = createMemoryStore();
    const hs = await homeserverOn(store);
    await client((r) => hs.handle(r)).call("POST", "/_matrix/client/v3/register", { username: "carol", password: "pw-carol-123", auth: { type: "m.login.dummy" } });
    const before = await dump(store);
    const err = await importHomeserver(store, file, PASSPHRASE).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImportError);
    expect((err as ImportError).reason).toBe("not_empty");
    expect((err as Error).message).toMatch(/already holds a homeserver \(table \w+ has rows\); import needs an empty one/);
    expect(await dump(store)).toEqual(before);
    await hs.close();
  });

  it("what a fresh peer fills before anyone signs in (other servers' directories and keys, sender cursors) does not block an import, and is emptied by it", async () => {
    const store = createMemoryStore();
    await loadOrCreateIdentity(store);
    await store.write(async (tx) => {
      tx.put("directory_peers", "f".repeat(64), { lastSeen: 1 });
      tx.put("directory_rooms", `${"f".repeat(64)}|!cached`, { chunk: { room_id: "!cached" }, fetchedAt: 1 });
      tx.put("server_keys", `${"f".repeat(64)}|ed25519:auto`, { key: "x" });
      tx.put("settings", "fed_device_pos", 3);
    });
    await importHomeserver(store, file, PASSPHRASE);
    expect(await loadOrCreateIdentity(store)).toEqual({ seed: SEED, serverName: SERVER_NAME, created: false });
    expect(await dump(store)).toEqual(sourceRows);
  });

  it("replaces an identity a browser generated on its first start (and nothing else was made)", async () => {
    const store = createMemoryStore();
    const generated = await loadOrCreateIdentity(store);
    expect(generated.serverName).not.toBe(SERVER_NAME);
    await importHomeserver(store, file, PASSPHRASE);
    expect(await loadOrCreateIdentity(store)).toEqual({ seed: SEED, serverName: SERVER_NAME, created: false });
    expect(await dump(store)).toEqual(sourceRows);
  });

  it("a failure while writing empties the store again and puts the generated identity back", async () => {
    const inner = createMemoryStore();
    const generated = await loadOrCreateIdentity(inner);
    const before = await dump(inner);
    let writes = 0;
    const failing: Store = { ...inner, kind: "failing", read: (fn) => inner.read(fn), write: (fn) => (++writes === 4 ? Promise.reject(new Error("disk full")) : inner.write(fn)) };
    await expect(importHomeserver(failing, file, PASSPHRASE, { batchRows: 50 })).rejects.toThrow("disk full");
    expect(writes).toBeGreaterThan(4);
    expect(await dump(inner)).toEqual(before);
    expect(await loadOrCreateIdentity(inner)).toEqual({ ...generated, created: false });
  });

  it("an import cut short for good leaves a marker: the store is not served, exported or imported over", async () => {
    const inner = createMemoryStore();
    let writes = 0;
    // Every write after the third fails, the clean-up included (as if the machine went away).
    const dying: Store = { ...inner, read: (fn) => inner.read(fn), write: (fn) => (++writes > 3 ? Promise.reject(new Error("gone")) : inner.write(fn)) };
    await expect(importHomeserver(dying, file, PASSPHRASE, { batchRows: 50 })).rejects.toThrow("gone");
    expect(await unfinishedImport(inner)).toBe(true);
    const again = await importHomeserver(inner, file, PASSPHRASE).catch((e: unknown) => e);
    expect((again as ImportError).reason).toBe("unfinished");
    await expect(exportOf(inner)).rejects.toThrow(/unfinished import/);
  });
});

describe("schema versions", () => {
  it("refuses a file from a newer schema, naming the versions", async () => {
    const inner = createMemoryStore();
    await inner.write(async (tx) => tx.put("settings", "server_name", SERVER_NAME));
    const newer: Store = { ...inner, read: (fn) => inner.read(fn), write: (fn) => inner.write(fn), schemaVersion: async () => SCHEMA_VERSION + 1 };
    const bytes = await exportOf(newer);
    const target = createMemoryStore();
    const err = await importHomeserver(target, bytes, PASSPHRASE).catch((e: unknown) => e);
    expect((err as ImportError).reason).toBe("schema");
    expect((err as Error).message).toContain(`schema ${SCHEMA_VERSION + 1}; this one has ${SCHEMA_VERSION}`);
    expect(await isEmpty(target)).toBe(true);
  });

  it("migrates a file from schema 1 exactly as opening that database migrates it", async () => {
    const fixture = new Uint8Array(await readFile(new URL("../fixtures/schema0.sqlite", import.meta.url)));
    // The old database, at its own schema, as the sql.js release of that time would export it.
    const old = await createSqliteStore({ data: fixture, migrations: MIGRATIONS.slice(0, 1) });
    expect(await old.schemaVersion()).toBe(1);
    const bytes = await exportOf(old, { seed: SEED, serverName: "0f3a" });
    await old.close();

    const imported = createMemoryStore();
    const result = await importHomeserver(imported, bytes, PASSPHRASE);
    expect(result.fileSchemaVersion).toBe(1);
    const upgraded = await createSqliteStore({ data: fixture });
    const expected = await dump(upgraded);
    expected.settings = [...(expected.settings ?? []), ["server_name", "0f3a"] as [string, unknown]].sort((a, b) => (a[0] < b[0] ? -1 : 1));
    expect(await dump(imported)).toEqual(expected);
    // Migration 7 ran: the plaintext token of schema 1 is stored hashed now.
    expect(await imported.read((tx) => tx.get("access_tokens", tokenHash("syt_alice_token")))).toEqual({ userId: "@alice:0f3a", deviceId: "ALICEDEV" });
    await upgraded.close();
  });
});

describe("a current file after all that", () => {
  it("still imports and serves", async () => {
    const target = createMemoryStore();
    await importHomeserver(target, file, PASSPHRASE);
    const hs = await homeserverOn(target);
    await verify(client((r) => hs.handle(r)), populated);
    await hs.close();
  }, 60_000);
});
