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
    // The push and federation senders' first passes write their cursors in the background right
    // after start-up: let them finish, so the write held below is the registration's.
    const settled = async (): Promise<boolean> =>
      gate.store.read(async (tx) => (await tx.get("settings", "push_stream_pos")) !== undefined && (await tx.get("settings", "fed_device_pos")) !== undefined);
    for (let i = 0; i < 250 && !(await settled()); i++) await new Promise((r) => setTimeout(r, 20));
    expect(await settled()).toBe(true);
    await new Promise((r) => setTimeout(r, 200));
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

  it("answers a long-polling /sync and /events at once instead of waiting out their timeout or the shutdown grace", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "hyphae-runner-"));
    dirs.push(dataDir);
    const node = await startNode({ ...DEFAULTS, httpPort: 0, dataDir, passwordIterations: 10 }, { logger: silentLogger, openStore: async () => createMemoryStore() });
    const post = (path: string, body: unknown) => fetch(`${node.httpUrl}${path}`, { method: "POST", body: JSON.stringify(body) });
    const reg = (await (await post("/_matrix/client/v3/register", { username: "poller", password: "pw", auth: { type: "m.login.dummy" } })).json()) as { access_token: string };
    const headers = { Authorization: `Bearer ${reg.access_token}` };
    const first = (await (await fetch(`${node.httpUrl}/_matrix/client/v3/sync?timeout=0`, { headers })).json()) as { next_batch: string };
    const started = performance.now();
    const poll = fetch(`${node.httpUrl}/_matrix/client/v3/sync?timeout=60000&since=${encodeURIComponent(first.next_batch)}`, { headers });
    const events = fetch(`${node.httpUrl}/_matrix/client/v3/events?timeout=60000&from=${encodeURIComponent(first.next_batch)}`, { headers });
    // Both long polls have reached the server and are waiting.
    for (let i = 0; i < 100 && node.homeserver.services.notifier.waiting() < 2; i++) await new Promise((r) => setTimeout(r, 20));
    expect(node.homeserver.services.notifier.waiting()).toBe(2);
    await node.close();
    const res = await poll;
    expect(res.status).toBe(200);
    expect(((await res.json()) as { next_batch: string }).next_batch).toBe(first.next_batch);
    const ev = await events;
    expect(ev.status).toBe(200);
    expect(((await ev.json()) as { chunk: unknown[] }).chunk).toEqual([]);
    // Not cut at the 10 s grace, not held for the 60 s timeout.
    expect(performance.now() - started).toBeLessThan(8_000);
  });
});
