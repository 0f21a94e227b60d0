/**
 * Crash safety of the Node runner's storage, from outside: a burst of sends into `npm run serve`
 * (a real child process, Node 22 on the sources as `npm run serve` runs it), SIGKILLed again and again on the same data
 * directory, while a `/sync` client follows along across the restarts with its `since` token.
 * Afterwards: every acknowledged send is there, every event the `/sync` client was shown is still
 * there, and the `/sync` client was shown every event the room holds, each once (a stream position
 * given out twice would hide the second event behind the client's `since`).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnServe } from "./spawnServe.ts";
import type { Spawned } from "./spawnServe.ts";

let dir: string;
const running: Spawned[] = [];
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "hyphae-crash-test-"));
});
afterAll(async () => {
  for (const s of running) await s.stop("SIGKILL", true);
  await rm(dir, { recursive: true, force: true });
});

const REQUEST_TIMEOUT_MS = 15_000;

/** A JSON request with a bounded wait; network errors (the server was killed) come back as status 0. */
async function call(base: string, method: string, path: string, token?: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  for (let attempt = 0; attempt < 20; attempt++) {
    let res: Response;
    try {
      res = await fetch(base + path, {
        method,
        headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { "content-type": "application/json" } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch {
      return { status: 0, json: {} };
    }
    const json = (await res.json().catch(() => ({}))) as Record<string, unknown>;
    if (res.status !== 429) return { status: res.status, json };
    await new Promise((r) => setTimeout(r, Math.min(Number(json.retry_after_ms) || 100, 2000)));
  }
  throw new Error(`${method} ${path}: still rate limited`);
}

interface TimelineEvent {
  event_id: string;
  type: string;
  content: { body?: string };
}

describe("SIGKILL during a burst of sends", () => {
  it("loses no acknowledged event; a /sync client following along sees nothing that is lost and misses nothing", async () => {
    const data = join(dir, "node");
    const start = async (): Promise<Spawned> => {
      // A burst of sends from one user: raise rc_message as a load test would on Synapse.
      const config = join(dir, "crash.json");
      await writeFile(config, JSON.stringify({ rc_message: { per_second: 1000, burst_count: 10_000 } }));
      const s = await spawnServe(["--port", "0", "--data", data, "--config", config]);
      running.push(s);
      return s;
    };
    let server = await start();

    const reg = await call(server.url, "POST", "/_matrix/client/v3/register", undefined, { username: "crash", password: "pw-crash-1", auth: { type: "m.login.dummy" } });
    expect(reg.status).toBe(200);
    const token = reg.json.access_token as string;
    const created = await call(server.url, "POST", "/_matrix/client/v3/createRoom", token, { name: "crash" });
    expect(created.status).toBe(200);
    const roomId = created.json.room_id as string;

    // The /sync follower: one long-lived `since` across every restart.
    const filter = encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 1000, types: ["m.room.message"] }, state: { lazy_load_members: true } } }));
    let since: string | undefined;
    const seen = new Map<string, string>(); // event_id → body
    const acknowledged = new Map<string, string>(); // event_id → body
    const duplicates: string[] = [];
    let limited = false;
    /**
     * Syncs against `base` until `stop()` turns true or the server goes away; calls `early()` when
     * it is shown a message whose send has not been answered yet (the moment a crash would take
     * back a write that was visible before it was durable).
     */
    const follow = async (base: string, stop: () => boolean, early: () => void = () => undefined): Promise<void> => {
      while (!stop()) {
        const r = await call(base, "GET", `/_matrix/client/v3/sync?timeout=0&filter=${filter}${since ? `&since=${encodeURIComponent(since)}` : ""}`, token);
        if (r.status !== 200) return; // killed
        const room = (r.json.rooms as { join?: Record<string, { timeline: { events: TimelineEvent[]; limited?: boolean } }> } | undefined)?.join?.[roomId];
        if (room?.timeline.limited && since) limited = true;
        for (const e of room?.timeline.events ?? []) {
          if (e.type !== "m.room.message") continue;
          if (seen.has(e.event_id)) duplicates.push(e.event_id);
          seen.set(e.event_id, e.content.body ?? "");
          if (!acknowledged.has(e.event_id)) early();
        }
        since = r.json.next_batch as string;
      }
    };

    const ROUNDS = 6;
    let txn = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const base = server.url;
      let killed = false;
      let ackedThisRound = 0;
      const victim = server;
      const kill = (): void => {
        if (killed) return;
        killed = true;
        process.kill(-victim.child.pid!, "SIGKILL");
      };
      // Killed without warning as soon as the follower is shown a send that is not answered yet
      // (after a few answered ones), or else at a random point of the burst.
      const syncing = follow(base, () => killed, () => ackedThisRound >= 10 && kill());
      const killAfter = 20 + Math.floor(Math.random() * 20);
      // Four senders at once, so commits are grouped.
      const sender = async (): Promise<void> => {
        while (!killed) {
          const body = `r${round} m${txn}`;
          const r = await call(base, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t${txn++}`, token, { msgtype: "m.text", body });
          if (r.status === 0) return;
          expect(r.status).toBe(200);
          acknowledged.set(r.json.event_id as string, body);
          if (++ackedThisRound === killAfter) {
            await new Promise((res) => setTimeout(res, Math.floor(Math.random() * 30)));
            kill();
          }
        }
      };
      await Promise.all([sender(), sender(), sender(), sender()]);
      await syncing;
      expect(await victim.exited).toEqual({ code: null, signal: "SIGKILL" });
      expect(ackedThisRound).toBeGreaterThanOrEqual(10);
      server = await start();
    }

    // Catch up: the follower now runs to the end of the room against the last server.
    const tail = Date.now() + 10_000;
    let previous = -1;
    while (Date.now() < tail && seen.size !== previous) {
      previous = seen.size;
      await follow(server.url, ((n) => () => n-- <= 0)(2));
    }

    // Every event the room holds now, from the server's own history (/messages, newest first).
    const inRoom = new Map<string, string>();
    let from: string | undefined;
    for (let page = 0; page < 100; page++) {
      const r = await call(server.url, "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=100${from ? `&from=${encodeURIComponent(from)}` : ""}`, token);
      expect(r.status).toBe(200);
      for (const e of r.json.chunk as TimelineEvent[]) if (e.type === "m.room.message") inRoom.set(e.event_id, e.content.body ?? "");
      if (!r.json.end) break;
      from = r.json.end as string;
    }

    expect(acknowledged.size).toBeGreaterThanOrEqual(ROUNDS * 10);
    // No acknowledged event is lost.
    expect([...acknowledged].filter(([id]) => !inRoom.has(id))).toEqual([]);
    // The /sync client never saw an event that is gone afterwards.
    expect([...seen].filter(([id]) => !inRoom.has(id))).toEqual([]);
    // …and missed none, each shown once, without a gap it would have to fill.
    expect([...inRoom].filter(([id]) => !seen.has(id))).toEqual([]);
    expect(duplicates).toEqual([]);
    expect(limited).toBe(false);
    // Bodies match (no event id was reused for other content).
    for (const [id, body] of acknowledged) expect(inRoom.get(id)).toBe(body);
    // Each acknowledged event is also served by id.
    for (const id of [...acknowledged.keys()].slice(-5)) {
      expect((await call(server.url, "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(id)}`, token)).status).toBe(200);
    }
    expect(await server.stop("SIGTERM")).toEqual({ code: 0, signal: null });
  }, 240_000);
});
