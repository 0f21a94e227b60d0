import { afterAll, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNodeSqliteStore } from "../../src/storage/nodeSqlite.ts";
import { createSqliteStore } from "../../src/storage/sqlite.ts";
import { currentTables } from "../../src/storage/schema.ts";
import { StorageError } from "../../src/storage/store.ts";
import type { Store } from "../../src/storage/store.ts";
import { storageConformance } from "./conformance.ts";

const dir = mkdtempSync(join(tmpdir(), "hyphae-node-sqlite-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const freshPath = (): string => join(dir, `db${n++}.sqlite`);

storageConformance("sqlite (node:sqlite)", () => createNodeSqliteStore(freshPath()));

describe("node:sqlite store", () => {
  it("a read never sees a write before its commit, and a read after write() resolved always does", async () => {
    const s = await createNodeSqliteStore(freshPath());
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // A long read holds its snapshot from before the write.
    let holding!: () => void;
    const held = new Promise<void>((r) => (holding = r));
    const longRead = s.read(async (tx) => {
      const before = await tx.get("settings", "a");
      holding();
      await gate;
      return [before, await tx.get("settings", "a")];
    });
    await held;
    let inside!: () => void;
    const insideWrite = new Promise<void>((r) => (inside = r));
    let finishWrite!: () => void;
    const writeGate = new Promise<void>((r) => (finishWrite = r));
    const w = s.write(async (tx) => {
      tx.put("settings", "a", 1);
      inside();
      await writeGate;
    });
    await insideWrite;
    // Mid-write: neither a new read nor the long one sees the pending put.
    expect(await s.read((tx) => tx.get("settings", "a"))).toBeUndefined();
    finishWrite();
    await w;
    // After the write resolved, a new read sees it even though the long read still holds an older snapshot.
    expect(await s.read((tx) => tx.get("settings", "a"))).toBe(1);
    release();
    // The long read kept one snapshot throughout.
    expect(await longRead).toEqual([undefined, undefined]);
    await s.close();
  });

  it("writes queued together share a commit; one that throws leaves nothing and the others land", async () => {
    const s = await createNodeSqliteStore(freshPath());
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) =>
        s.write(async (tx) => {
          tx.put("settings", `k${i}`, i);
          if (i === 7) throw new Error("no");
          return i;
        }),
      ),
    );
    expect(results.map((r) => r.status)).toEqual(Array.from({ length: 20 }, (_, i) => (i === 7 ? "rejected" : "fulfilled")));
    const rows = await s.read((tx) => tx.range<number>("settings", { prefix: "k" }));
    expect(rows.map((r) => r.value).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i).filter((i) => i !== 7));
    await s.close();
  });

  it("a long read transaction lets other work run while it goes on (it does not starve the event loop)", async () => {
    const s = await createNodeSqliteStore(freshPath());
    await s.write(async (tx) => {
      for (let i = 0; i < 200; i++) tx.put("settings", `k${i}`, { i, pad: "x".repeat(200) });
    });
    // A timer set as the read starts must fire before a read of ~300 ms of queries ends.
    let timerFiredAt: number | undefined;
    let queries = 0;
    setTimeout(() => (timerFiredAt = queries), 0);
    const start = performance.now();
    await s.read(async (tx) => {
      while (performance.now() - start < 300) {
        await tx.get("settings", `k${queries % 200}`);
        queries++;
      }
    });
    expect(timerFiredAt).toBeDefined();
    expect(timerFiredAt!).toBeLessThan(queries);
    await s.close();
  });

  it("reads run while a write's callback is pending", async () => {
    const s = await createNodeSqliteStore(freshPath());
    await s.write(async (tx) => tx.put("settings", "x", "old"));
    let finish!: () => void;
    const w = s.write(async (tx) => {
      tx.put("settings", "x", "new");
      await new Promise<void>((r) => (finish = r));
    });
    // Not stuck behind the write: resolves while the write is still open.
    expect(await s.read((tx) => tx.get("settings", "x"))).toBe("old");
    finish();
    await w;
    expect(await s.read((tx) => tx.get("settings", "x"))).toBe("new");
    await s.close();
  });

  it.runIf(existsSync("/proc/self/io"))("a small write into a large database writes a few pages, not the file", async () => {
    const path = freshPath();
    const s = await createNodeSqliteStore(path);
    for (let b = 0; b < 20; b++) {
      await s.write(async (tx) => {
        for (let i = 0; i < 100; i++) tx.put("events", `$e${b}_${i}`, { body: "x".repeat(1000), i });
      });
    }
    const written = (): number => Number(/write_bytes:\s*(\d+)/.exec(readFileSync("/proc/self/io", "utf8"))?.[1]);
    const size = statSync(path).size + statSync(path + "-wal").size;
    expect(size).toBeGreaterThan(2_000_000);
    const before = written();
    await s.write(async (tx) => tx.put("events", "$new", { body: "hello" }));
    const delta = written() - before;
    // WAL frames of the changed pages (4 KiB each) plus headers; the old sql.js store wrote the whole file.
    expect(delta).toBeGreaterThan(0);
    expect(delta).toBeLessThan(64 * 1024);
    await s.close();
  });

  it("opens a file the sql.js store exported (the earlier runner's format) with every row identical, and sql.js opens it again after", async () => {
    const path = freshPath();
    let exported: Uint8Array | undefined;
    const old = await createSqliteStore({ persist: async (b) => void (exported = b) });
    const rows: [string, string, unknown][] = [
      ["accounts", "@alice:x", { userId: "@alice:x", createdAt: 5, $weird: { $u8: "not bytes" } }],
      ["events", "$e1", { eventId: "$e1", pdu: { content: { body: "héllo 日本" } }, bytes: new Uint8Array([0, 1, 255]) }],
      ["media_content", "m1", new Uint8Array([9, 8, 7])],
      ["timeline", "!r\u001f0000000000001", "$e1"],
    ];
    await old.write(async (tx) => {
      for (const [t, k, v] of rows) tx.put(t, k, v);
    });
    await old.close();
    writeFileSync(path, exported!);
    const dump = async (s: Store): Promise<unknown> => {
      const out: Record<string, unknown> = {};
      for (const t of currentTables()) out[t] = await s.read((tx) => tx.range(t));
      return out;
    };
    const expected = await dump(await createSqliteStore({ data: exported }));
    const s = await createNodeSqliteStore(path);
    expect(await dump(s)).toEqual(expected);
    await s.write(async (tx) => tx.put("settings", "after", true));
    await s.close();
    const again = await createSqliteStore({ data: new Uint8Array(readFileSync(path)) });
    expect(await again.read((tx) => tx.get("settings", "after"))).toBe(true);
    expect(await again.read((tx) => tx.get("media_content", "m1"))).toEqual(new Uint8Array([9, 8, 7]));
    await again.close();
  });

  it("keeps a file that fails to open untouched, with a clear error", async () => {
    const path = freshPath();
    writeFileSync(path, "this is not a database, just some text that is long enough to look like a header.....");
    const before = readFileSync(path);
    await expect(createNodeSqliteStore(path)).rejects.toBeInstanceOf(StorageError);
    expect(readFileSync(path).equals(before)).toBe(true);
  });
});
