import { afterAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { openSqliteFileStore } from "../../src/node/sqliteFile.ts";
import { pos, StorageError } from "../../src/storage/store.ts";
import { SCHEMA_VERSION } from "../../src/storage/schema.ts";
import { storageConformance } from "./conformance.ts";

const dir = mkdtempSync(join(tmpdir(), "hyphae-sqlite-file-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const freshPath = (): string => join(dir, `db${n++}.sqlite`);

storageConformance("sqlite (file)", () => openSqliteFileStore(freshPath()));
// The same suite with the tables it exercises most kept as blob files, so byte values, inline
// values next to them, ranges, deletes and rollbacks all go through the blob layer.
storageConformance("sqlite (file, blob tables)", () =>
  openSqliteFileStore(freshPath(), { blobTables: ["media_content", "settings", "timeline", "events", "accounts"] }),
);

describe("sqlite file store", () => {
  it("creates the file at open, with the schema", async () => {
    const path = freshPath();
    const s = await openSqliteFileStore(path);
    expect(existsSync(path)).toBe(true);
    expect(readFileSync(path).subarray(0, 16).toString("latin1")).toBe("SQLite format 3\0");
    await s.close();
    const again = await openSqliteFileStore(path);
    expect(await again.schemaVersion()).toBe(SCHEMA_VERSION);
    await again.close();
  });

  it("keeps data across reopen", async () => {
    const path = join(dir, "nested", "dir", "db.sqlite"); // directories are created
    const s = await openSqliteFileStore(path);
    await s.write(async (tx) => {
      tx.put("accounts", "@alice:x", { userId: "@alice:x", createdAt: 5 });
      tx.put("media_content", "m", new Uint8Array([1, 2, 3]));
    });
    await s.write(async (tx) => tx.delete("accounts", "@gone:x"));
    await s.close();
    expect(existsSync(path + ".tmp")).toBe(false);
    const r = await openSqliteFileStore(path);
    expect(await r.read((tx) => tx.get("accounts", "@alice:x"))).toEqual({ userId: "@alice:x", createdAt: 5 });
    expect(await r.read((tx) => tx.get("media_content", "m"))).toEqual(new Uint8Array([1, 2, 3]));
    await r.close();
  });

  it("refuses a file another live process has open, and takes over a dead one's lock", async () => {
    const path = freshPath();
    const other = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "ignore" });
    try {
      writeFileSync(path + ".lock", String(other.pid));
      await expect(openSqliteFileStore(path, { lockWaitMs: 300 })).rejects.toBeInstanceOf(StorageError);
    } finally {
      other.kill("SIGKILL");
      await new Promise((r) => other.once("exit", r));
    }
    // Now the owner is dead: its lock is stale.
    const s = await openSqliteFileStore(path);
    expect(readFileSync(path + ".lock", "utf8").split(" ")[0]).toBe(String(process.pid));
    await s.close();
    expect(existsSync(path + ".lock")).toBe(false);
  });

  it("has every resolved write in the file when the process is killed", async () => {
    const path = freshPath();
    const child = spawn(process.execPath, [fileURLToPath(new URL("./fileWriter.child.ts", import.meta.url)), path], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const acknowledged = await new Promise<number>((resolve, reject) => {
      let buf = "";
      let last = -1;
      child.stdout.on("data", (d: Buffer) => {
        buf += d.toString();
        const lines = buf.split("\n");
        buf = lines.pop() ?? "";
        for (const l of lines) last = Number(l);
        // Kill it in the middle of its stream of writes, without warning.
        if (last >= 30) child.kill("SIGKILL");
      });
      child.on("exit", (_code, signal) => (signal === "SIGKILL" ? resolve(last) : reject(new Error(`child exited: ${stderr}`))));
    });
    expect(acknowledged).toBeGreaterThanOrEqual(30);
    const s = await openSqliteFileStore(path);
    const rows = await s.read((tx) => tx.range<{ i: number }>("settings"));
    // Every acknowledged write is there (unacknowledged later ones may be too).
    expect(rows.length).toBeGreaterThanOrEqual(acknowledged + 1);
    expect(rows.slice(0, acknowledged + 1).map((r) => r.value.i)).toEqual(Array.from({ length: acknowledged + 1 }, (_, i) => i));
    // Every acknowledged blob write survived, byte for byte.
    const media = await s.read((tx) => tx.range<Uint8Array>("media_content", { lte: pos(acknowledged) }));
    expect(media.map((r) => r.key)).toEqual(Array.from({ length: acknowledged + 1 }, (_, i) => pos(i)));
    for (const [i, r] of media.entries()) {
      expect(r.value).toBeInstanceOf(Uint8Array);
      expect(Buffer.from(r.value).equals(Buffer.alloc(20_000 + i, i & 0xff))).toBe(true);
    }
    // Only referenced blob files are left (a file written for the killed transaction is an orphan, deleted on open).
    expect(readdirSync(path + ".blobs/media_content")).toHaveLength(await s.read((tx) => tx.count("media_content")));
    await s.close();
  });
});
