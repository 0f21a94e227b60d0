/**
 * Blob tables of the SQLite file store: byte values live as files under `<path>.blobs/`, the
 * database file holds only markers (src/node/blobFiles.ts). The Store contract itself is covered
 * by the conformance suite run with blob tables in sqliteFile.test.ts.
 */
import { afterAll, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqliteFileStore } from "../../src/node/sqliteFile.ts";
import { createSqliteStore } from "../../src/storage/sqlite.ts";
import { StorageError } from "../../src/storage/store.ts";

const dir = mkdtempSync(join(tmpdir(), "hyphae-sqlite-blobs-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const freshPath = (): string => join(dir, `db${n++}`, "db.sqlite");
const mediaDir = (path: string): string => path + ".blobs/media_content";
const files = (path: string): string[] => (existsSync(mediaDir(path)) ? readdirSync(mediaDir(path)).sort() : []);
const MB = 1024 * 1024;
const bytesOf = (seed: number, size: number): Uint8Array => {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = (i * 7 + seed) & 0xff;
  return b;
};
/** Byte equality without a deep-equal walk over a megabyte (and the type checked too). */
const expectBytes = (actual: unknown, expected: Uint8Array): void => {
  expect(actual).toBeInstanceOf(Uint8Array);
  expect(Buffer.from(actual as Uint8Array).equals(Buffer.from(expected))).toBe(true);
};

describe("sqlite file store: blob tables", () => {
  it("keeps the database file small after 20 MB of media, and returns the bytes after reopen", async () => {
    const path = freshPath();
    const s = await openSqliteFileStore(path);
    for (let m = 0; m < 20; m++) await s.write(async (tx) => tx.put("media_content", `media${m}`, bytesOf(m, MB)));
    await s.write(async (tx) => tx.put("settings", "after", 1)); // a later commit rewrites the file
    // The empty schema alone is about a page per table (4 KiB × ~65); 20 MB of media stays outside.
    expect(statSync(path).size).toBeLessThan(512 * 1024);
    expect(files(path)).toHaveLength(20);
    expect(readFileSync(path).includes(Buffer.from(bytesOf(3, MB).subarray(0, 64)))).toBe(false);
    await s.close();

    const r = await openSqliteFileStore(path);
    for (const m of [0, 7, 19]) expectBytes(await r.read((tx) => tx.get("media_content", `media${m}`)), bytesOf(m, MB));
    const rows = await r.read((tx) => tx.range<Uint8Array>("media_content", { gte: "media1", lt: "media2" }));
    expect(rows.map((row) => row.key)).toEqual(["media1", ...Array.from({ length: 10 }, (_, i) => `media1${i}`)]);
    expectBytes(rows[0].value, bytesOf(1, MB));
    expect(await r.read((tx) => tx.count("media_content"))).toBe(20);
    await r.close();
  });

  it("a throwing transaction leaves no row and no file", async () => {
    const path = freshPath();
    const s = await openSqliteFileStore(path);
    const boom = new Error("boom");
    await expect(
      s.write(async (tx) => {
        tx.put("media_content", "m", bytesOf(1, 1000));
        expect(await tx.get("media_content", "m")).toEqual(bytesOf(1, 1000));
        throw boom;
      }),
    ).rejects.toBe(boom);
    // A value that cannot be stored fails the write after the bytes were queued.
    await expect(
      s.write(async (tx) => {
        tx.put("media_content", "m2", bytesOf(2, 1000));
        tx.put("settings", "bad", { f: () => 1 });
      }),
    ).rejects.toThrow();
    expect(await s.read((tx) => tx.get("media_content", "m"))).toBeUndefined();
    expect(await s.read((tx) => tx.count("media_content"))).toBe(0);
    expect(files(path)).toEqual([]);
    await s.close();
  });

  it("sees its own pending writes and deletes inside the transaction", async () => {
    const path = freshPath();
    const s = await openSqliteFileStore(path);
    await s.write(async (tx) => tx.put("media_content", "old", bytesOf(0, 10)));
    const seen = await s.write(async (tx) => {
      tx.put("media_content", "new", bytesOf(1, 10));
      tx.delete("media_content", "old");
      const [a, b, c, rows] = await Promise.all([
        tx.get("media_content", "new"),
        tx.get("media_content", "old"),
        tx.count("media_content"),
        tx.range("media_content"),
      ]);
      return { a, b, c, rows };
    });
    expect(seen).toEqual({ a: bytesOf(1, 10), b: undefined, c: 1, rows: [{ key: "new", value: bytesOf(1, 10) }] });
    await s.close();
  });

  it("removes the file of an overwritten or deleted row once the commit is durable", async () => {
    const path = freshPath();
    const s = await openSqliteFileStore(path);
    await s.write(async (tx) => {
      for (const k of ["a", "b", "c", "d"]) tx.put("media_content", k, bytesOf(k.charCodeAt(0), 100));
    });
    const first = files(path);
    expect(first).toHaveLength(4);
    await s.write(async (tx) => tx.put("media_content", "a", bytesOf(9, 50)));
    expect(files(path)).toHaveLength(4);
    expect(files(path)).not.toEqual(first); // a new file for "a", the old one gone
    await s.write(async (tx) => tx.delete("media_content", "b"));
    expect(files(path)).toHaveLength(3);
    await s.write(async (tx) => tx.deleteRange("media_content", { gte: "c" }));
    expect(files(path)).toHaveLength(1);
    // A file put and replaced inside one transaction is never written at all.
    await s.write(async (tx) => {
      tx.put("media_content", "e", bytesOf(1, 10));
      tx.put("media_content", "e", bytesOf(2, 10));
    });
    expect(files(path)).toHaveLength(2);
    expect(await s.read((tx) => tx.get("media_content", "a"))).toEqual(bytesOf(9, 50));
    expect(await s.read((tx) => tx.get("media_content", "e"))).toEqual(bytesOf(2, 10));
    await s.close();
  });

  it("commits concurrent blob writes (group commit) with every file in place", async () => {
    const path = freshPath();
    const s = await openSqliteFileStore(path);
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        s.write(async (tx) => {
          tx.put("media_content", `c${i}`, bytesOf(i, 5000));
          tx.put("media", `c${i}`, { size: 5000 });
        }),
      ),
    );
    await s.close();
    expect(files(path)).toHaveLength(20);
    const r = await openSqliteFileStore(path);
    const rows = await r.read((tx) => tx.range<Uint8Array>("media_content"));
    expect(rows).toHaveLength(20);
    for (const row of rows) expectBytes(row.value, bytesOf(Number(row.key.slice(1)), 5000));
    await r.close();
  });

  it("deletes orphan files on open and keeps referenced ones", async () => {
    const path = freshPath();
    const s = await openSqliteFileStore(path);
    await s.write(async (tx) => tx.put("media_content", "kept", bytesOf(5, 100)));
    await s.close();
    const [kept] = files(path);
    // Left by a crash: a complete file whose transaction never committed, and a temp file.
    writeFileSync(join(mediaDir(path), "6f727068616e.0123456789abcdef"), "orphan");
    writeFileSync(join(mediaDir(path), "6f727068616e.fedcba9876543210.tmp"), "half");
    writeFileSync(join(mediaDir(path), "junk"), "x");
    const r = await openSqliteFileStore(path);
    expect(files(path)).toEqual([kept]);
    expect(await r.read((tx) => tx.get("media_content", "kept"))).toEqual(bytesOf(5, 100));
    await r.close();
  });

  it("stores keys with /, .., unicode and long keys inside its own directory", async () => {
    const path = freshPath();
    const keys = ["a/b", "..", "../../escape", "/etc/passwd", "日本語/🌍", "", ".", "x".repeat(500), "C:\\windows", "a\u001fb"];
    const s = await openSqliteFileStore(path);
    await s.write(async (tx) => keys.forEach((k, i) => tx.put("media_content", k, bytesOf(i, 100 + i))));
    await s.close();
    // Everything the store wrote is the database, its lock-free leftovers, and flat files in the blob dir.
    const root = join(path, "..");
    expect(readdirSync(root).sort()).toEqual(["db.sqlite", "db.sqlite.blobs"]);
    expect(readdirSync(path + ".blobs")).toEqual(["media_content"]);
    const names = files(path);
    expect(names).toHaveLength(keys.length);
    for (const f of names) {
      expect(f).toMatch(/^h?[0-9a-f]*\.[0-9a-f]{16}$/);
      expect(statSync(join(mediaDir(path), f)).isFile()).toBe(true);
    }
    const r = await openSqliteFileStore(path);
    for (const [i, k] of keys.entries()) expect(await r.read((tx) => tx.get("media_content", k))).toEqual(bytesOf(i, 100 + i));
    expect((await r.read((tx) => tx.range("media_content"))).map((row) => row.key)).toEqual([...keys].sort());
    await r.close();
  });

  it("keeps values that are not bytes inline, including ones shaped like its marker", async () => {
    const path = freshPath();
    const s = await openSqliteFileStore(path);
    const values = [{ "\u0001blob": "00.0123456789abcdef" }, { "\u0001inline": 1 }, "text", { nested: new Uint8Array([1]) }, null];
    await s.write(async (tx) => values.forEach((v, i) => tx.put("media_content", `v${i}`, v)));
    expect(files(path)).toEqual([]);
    await s.close();
    const r = await openSqliteFileStore(path);
    expect(await r.read(async (tx) => Promise.all(values.map((_, i) => tx.get("media_content", `v${i}`))))).toEqual(values);
    await r.close();
  });

  it("reads bytes an older version stored inline, and moves them out to files when asked", async () => {
    const path = freshPath();
    const old = await openSqliteFileStore(path, { blobTables: [] });
    await old.write(async (tx) => {
      for (let i = 0; i < 40; i++) tx.put("media_content", `m${i}`, bytesOf(i, 10_000));
    });
    await old.close();
    expect(files(path)).toEqual([]);
    // By default they stay inline, readable (and an older runner could still read them).
    const kept = await openSqliteFileStore(path);
    expect(files(path)).toEqual([]);
    expect(await kept.read((tx) => tx.get("media_content", "m33"))).toEqual(bytesOf(33, 10_000));
    await kept.close();
    const s = await openSqliteFileStore(path, { moveInlineBlobs: true });
    expect(files(path)).toHaveLength(40);
    expect(await s.read((tx) => tx.get("media_content", "m33"))).toEqual(bytesOf(33, 10_000));
    await s.close();
    // The rows in the database are markers now, not bytes.
    const raw = await createSqliteStore({ data: new Uint8Array(readFileSync(path)) });
    expect(await raw.read((tx) => tx.get("media_content", "m33"))).not.toBeInstanceOf(Uint8Array);
    await raw.close();
  });

  it("fails a read whose file is gone (corruption is reported, not hidden)", async () => {
    const path = freshPath();
    const s = await openSqliteFileStore(path);
    await s.write(async (tx) => tx.put("media_content", "m", bytesOf(1, 10)));
    for (const f of files(path)) rmSync(join(mediaDir(path), f));
    await expect(s.read((tx) => tx.get("media_content", "m"))).rejects.toBeInstanceOf(StorageError);
    await s.close();
  });

  it("refuses a marker naming a path outside its directory", async () => {
    const path = freshPath();
    mkdirSync(join(path, ".."), { recursive: true });
    writeFileSync(join(path, "..", "secret"), "secret");
    const plain = await openSqliteFileStore(path, { blobTables: [] });
    await plain.write(async (tx) => tx.put("media_content", "evil", { "\u0001blob": "../../secret" }));
    await plain.close();
    const s = await openSqliteFileStore(path);
    await expect(s.read((tx) => tx.get("media_content", "evil"))).rejects.toBeInstanceOf(StorageError);
    await s.close();
  });
});
