import { describe, it, expect, afterEach } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startNode } from "../../src/node/runner.ts";
import { DEFAULTS } from "../../src/node/config.ts";
import { createMemoryStore } from "../../src/storage/memory.ts";
import type { Store } from "../../src/storage/store.ts";
import { silentLogger } from "../../src/homeserver/context.ts";

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A memory store whose writes wait for `release()` while `hold` is on, and which records close(). */
function gatedStore() {
  const inner = createMemoryStore();
  let hold = false;
  let release: () => void = () => {};
  let held: Promise<void> = Promise.resolve();
  let writeStarted: () => void = () => {};
  const started = new Promise<void>((r) => (writeStarted = r));
  let closed = false;
  const store: Store = {
    kind: "gated",
    read: (fn) => inner.read(fn),
    write: async (fn) => {
      if (hold) {
        writeStarted();
        await held;
      }
      return inner.write(fn);
    },
    schemaVersion: () => inner.schemaVersion(),
    close: async () => {
      closed = true;
      await inner.close();
    },
  };
  return {
    store,
    holdWrites() {
      hold = true;
      held = new Promise<void>((r) => (release = r));
    },
    release: () => release(),
    writeStarted: started,
    isClosed: () => closed,
  };
}

describe("startNode shutdown", () => {
  it("finishes in-flight requests and their writes before closing the store", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "hyphae-runner-"));
    dirs.push(dataDir);
    const gate = gatedStore();
    const node = await startNode({ ...DEFAULTS, httpPort: 0, dataDir, passwordIterations: 10 }, { logger: silentLogger, openStore: async () => gate.store });
    // The push sender's first pass writes its cursor in the background right after start-up:
    // let it finish, so the write held below is the registration's.
    for (let i = 0; i < 250 && (await gate.store.read((tx) => tx.get("settings", "push_stream_pos"))) === undefined; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    gate.holdWrites();
    const pending = fetch(`${node.httpUrl}/_matrix/client/v3/register`, {
      method: "POST",
      body: JSON.stringify({ username: "late", password: "pw", auth: { type: "m.login.dummy" } }),
    });
    await gate.writeStarted;
    const closing = node.close();
    let released = false;
    let closedEarly = false;
    void closing.then(() => (closedEarly = !released));
    // New connections are refused once closing has begun.
    await expect(fetch(`${node.httpUrl}/_matrix/client/versions`)).rejects.toThrow();
    expect(gate.isClosed()).toBe(false);
    released = true;
    gate.release();
    const res = await pending;
    expect(res.status).toBe(200);
    expect(((await res.json()) as { user_id: string }).user_id).toMatch(/^@late:/);
    await closing;
    expect(closedEarly).toBe(false);
    expect(gate.isClosed()).toBe(true);
  });
});
