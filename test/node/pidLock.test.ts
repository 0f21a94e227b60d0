/** The database lock names its owner by pid and start time, so a reused pid does not hold it forever. */
import { afterAll, describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSqliteFileStore } from "../../src/node/sqliteFile.ts";
import { lockOwnerAlive, ownLockStamp, parseLockStamp } from "../../src/node/pidLock.ts";
import { StorageError } from "../../src/storage/store.ts";

const dir = mkdtempSync(join(tmpdir(), "hyphae-pidlock-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `fn` while a live child process exists; gives it the child's pid. */
async function withLiveProcess(fn: (pid: number) => Promise<void>): Promise<void> {
  const other = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "ignore" });
  try {
    await fn(other.pid!);
  } finally {
    other.kill("SIGKILL");
    await new Promise((r) => other.once("exit", r));
  }
}

describe.runIf(process.platform === "linux")("process lock", () => {
  it("stamps pid and start time", () => {
    const stamp = parseLockStamp(ownLockStamp());
    expect(stamp.pid).toBe(process.pid);
    expect(stamp.start).toMatch(/^\d+$/);
    expect(lockOwnerAlive(stamp)).toBe(true);
    expect(lockOwnerAlive({ pid: process.pid, start: "1" })).toBe(false);
  });

  it("takes over a lock whose pid now belongs to another process (a reused pid)", async () => {
    await withLiveProcess(async (pid) => {
      const path = join(dir, "reused.sqlite");
      // The lock of a process that had this pid before: same pid, another start time.
      writeFileSync(path + ".lock", `${pid} 1`);
      const s = await openSqliteFileStore(path, { lockWaitMs: 300 });
      expect(parseLockStamp(readFileSync(path + ".lock", "utf8")).pid).toBe(process.pid);
      await s.close();
    });
  });

  it("still refuses a lock held by the live process it names", async () => {
    await withLiveProcess(async (pid) => {
      const path = join(dir, "held.sqlite");
      const start = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[19];
      writeFileSync(path + ".lock", `${pid} ${start}`);
      await expect(openSqliteFileStore(path, { lockWaitMs: 300 })).rejects.toBeInstanceOf(StorageError);
    });
  });
});
