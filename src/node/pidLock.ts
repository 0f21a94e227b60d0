/**
 * What a lock file says about its owner: the pid and, where the OS tells it (Linux `/proc`), the
 * process's start time. A pid alone is not enough: after a crash and a reboot (or enough churn),
 * an unrelated process may have the dead owner's pid, and a lock trusting it would never be
 * taken over. With the start time, a reused pid is recognized as a different process.
 */
import { readFileSync } from "node:fs";

/** The start time of `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`), or undefined off Linux. */
function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** The text this process writes into a lock file it takes. */
export function ownLockStamp(): string {
  const start = startTimeOf(process.pid);
  return start === undefined ? String(process.pid) : `${process.pid} ${start}`;
}

/** The owner a lock file names (pid 0 when the text is empty or garbled). */
export function parseLockStamp(text: string): { pid: number; start?: string } {
  const [pid, start] = text.trim().split(/\s+/);
  const n = Number(pid);
  return { pid: Number.isInteger(n) && n > 0 ? n : 0, ...(start ? { start } : {}) };
}

/** Whether the process a lock names is still running (the same process, not a reuse of its pid). */
export function lockOwnerAlive(owner: { pid: number; start?: string }): boolean {
  if (owner.pid <= 0) return false;
  try {
    process.kill(owner.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  if (owner.start === undefined) return true;
  const now = startTimeOf(owner.pid);
  return now === undefined || now === owner.start;
}
