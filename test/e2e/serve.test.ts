import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { startServe } from "./serve.ts";

/** Whether a process with this pid still exists (signal 0 only checks). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("test helper startServe (the Node runner as a child process)", () => {
  it("serves the Client-Server API on loopback and is gone after stop()", async () => {
    const hs = await startServe();
    try {
      expect(hs.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const res = await fetch(`${hs.url}/_matrix/client/versions`);
      expect(res.status).toBe(200);
      const body = (await res.json()) as { versions: string[] };
      expect(body.versions.length).toBeGreaterThan(0);
      expect(existsSync(hs.dataDir)).toBe(true);
    } finally {
      await hs.stop();
    }
    expect(alive(hs.pid)).toBe(false);
    // SIGTERM is a graceful shutdown (in-flight requests finish, the store is closed), not a kill.
    expect(hs.exitStatus()).toEqual({ code: 0, signal: null });
    expect(existsSync(hs.dataDir)).toBe(false);
    await expect(fetch(`${hs.url}/_matrix/client/versions`)).rejects.toThrow();
    await hs.stop(); // a second stop is harmless
  });

  it("keeps a caller's data directory and the server's identity across restarts", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "hyphae-serve-test-"));
    try {
      const serverName = async (): Promise<string> => {
        const hs = await startServe({ dataDir });
        try {
          const res = await fetch(`${hs.url}/_matrix/client/v3/register`, {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ username: `u${Math.random().toString(36).slice(2, 8)}`, password: "a long enough password", auth: { type: "m.login.dummy" } }),
          });
          const body = (await res.json()) as { user_id?: string };
          expect(res.status, JSON.stringify(body)).toBe(200);
          return body.user_id!.split(":")[1]!;
        } finally {
          await hs.stop();
        }
      };
      const first = await serverName();
      expect(existsSync(dataDir)).toBe(true);
      expect(await serverName()).toBe(first);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it("reports the runner's output when it cannot start", async () => {
    await expect(startServe({ args: ["--config", "/nonexistent/hyphae-config.json"], readyTimeoutMs: 30_000 })).rejects.toThrow(
      /exited before it was ready|not ready/,
    );
  });
});
