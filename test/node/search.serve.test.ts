/**
 * `/search` through `npm run serve`, where it runs on the read worker thread (src/node/readWorker.ts):
 * results with context for a message sent just before, and a clean stop that leaves the database
 * file in rollback-journal mode (the worker's connection closed before the store's).
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { spawnServe } from "./spawnServe.ts";
import type { Spawned } from "./spawnServe.ts";

let dir: string;
let server: Spawned | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "hyphae-search-serve-"));
});
afterAll(async () => {
  await server?.stop("SIGKILL", true);
  await rm(dir, { recursive: true, force: true });
});

async function call(base: string, method: string, path: string, token: string | undefined, body?: unknown): Promise<{ status: number; body: Record<string, any> }> {
  const res = await fetch(`${base}/_matrix/client/v3${path}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), "content-type": "application/json" },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

describe("npm run serve: /search", () => {
  it("answers from the read worker, sees the message sent just before, and stops cleanly", async () => {
    const data = join(dir, "data");
    server = await spawnServe(["--port", "0", "--data", data]);
    const base = server.url;
    const reg = await call(base, "POST", "/register", undefined, { username: "alice", password: "a long password", auth: { type: "m.login.dummy" } });
    expect(reg.status).toBe(200);
    const token = reg.body.access_token as string;
    const room = (await call(base, "POST", "/createRoom", token, {})).body.room_id as string;
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const sent = await call(base, "PUT", `/rooms/${encodeURIComponent(room)}/send/m.room.message/t${i}`, token, { msgtype: "m.text", body: `walnut ${i}` });
      expect(sent.status).toBe(200);
      ids.push(sent.body.event_id as string);
    }
    const found = await call(base, "POST", "/search", token, { search_categories: { room_events: { search_term: "walnut", order_by: "recent", event_context: { before_limit: 1, after_limit: 1 } } } });
    expect(found.status).toBe(200);
    const results = found.body.search_categories.room_events.results as { result: { event_id: string }; context: { events_before: { event_id: string }[]; events_after: { event_id: string }[] } }[];
    expect(results.map((r) => r.result.event_id)).toEqual([...ids].reverse());
    expect(results[0]!.context.events_before.map((e) => e.event_id)).toEqual([ids[2]]);
    expect(results[0]!.context.events_after).toEqual([]);
    expect(found.body.search_categories.room_events.count).toBe(4);

    expect((await server.stop("SIGTERM")).code).toBe(0);
    const db = new DatabaseSync(join(data, "homeserver.sqlite"), { readOnly: true });
    try {
      expect(db.prepare("PRAGMA journal_mode").get()?.journal_mode).toBe("delete");
    } finally {
      db.close();
    }
  });
});
