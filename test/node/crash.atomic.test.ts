/**
 * SIGKILL during createRoom and room upgrades (`npm run serve`'s runner, node:sqlite on disk): each
 * is one transaction, so after every kill each room is whole — all of its initial state or absent —
 * every tombstone names a replacement room that exists, and every room whose creation was
 * acknowledged is there.
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
  dir = await mkdtemp(join(tmpdir(), "hyphae-crash-"));
});
afterAll(async () => {
  for (const s of running) await s.stop("SIGKILL", true);
  await rm(dir, { recursive: true, force: true });
});

async function call(url: string, method: string, path: string, token?: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}/_matrix/client/v3${path}`, {
    method,
    headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { "Content-Type": "application/json" } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(20_000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : {} };
}

const start = async (): Promise<Spawned> => {
  // Bursts of room creations and upgrades from one user: raise the limits as a load test would.
  const config = join(dir, "hyphae.json");
  await writeFile(config, JSON.stringify({ rc_message: { per_second: 1000, burst_count: 10_000 }, rc_room_creation: { per_second: 1000, burst_count: 10_000 } }));
  const s = await spawnServe(["--port", "0", "--data", join(dir, "data"), "--config", config]);
  running.push(s);
  return s;
};

/** The initial state types every room made here must have, all or none. */
const CREATED = ["m.room.create", "m.room.member", "m.room.power_levels", "m.room.join_rules", "m.room.history_visibility", "m.room.name", "m.room.topic"];

describe("SIGKILL during createRoom and upgrades", () => {
  it("leaves no half-made room, no dangling tombstone, and loses no acknowledged room", async () => {
    let s = await start();
    const reg = await call(s.url, "POST", "/register", undefined, { username: "crash", password: "pw-crash-1", auth: { type: "m.login.dummy" } });
    expect(reg.status).toBe(200);
    const token = reg.body.access_token as string;
    const acknowledged = new Set<string>();
    for (let round = 0; round < 6; round++) {
      // A burst of room creations and upgrades, killed part way through.
      const work: Promise<void>[] = [];
      for (let i = 0; i < 6; i++) {
        work.push(
          call(s.url, "POST", "/createRoom", token, { name: `room ${round}.${i}`, topic: "t", preset: "private_chat" })
            .then(async (r) => {
              if (r.status !== 200) return;
              acknowledged.add(r.body.room_id);
              await call(s.url, "POST", `/rooms/${encodeURIComponent(r.body.room_id)}/upgrade`, token, { new_version: "12" });
            })
            .catch(() => undefined),
        );
      }
      await new Promise((r) => setTimeout(r, 150 + round * 60));
      await s.stop("SIGKILL", true);
      await Promise.all(work);
      s = await start();

      const joined = (await call(s.url, "GET", "/joined_rooms", token)).body.joined_rooms as string[];
      for (const roomId of acknowledged) expect(joined, `acknowledged room ${roomId}`).toContain(roomId);
      for (const roomId of joined) {
        const state = (await call(s.url, "GET", `/rooms/${encodeURIComponent(roomId)}/state`, token)).body as { type: string; content: any }[];
        const types = new Set(state.map((e) => e.type));
        for (const t of CREATED) expect(types.has(t), `${roomId} lacks ${t}`).toBe(true);
        const tomb = state.find((e) => e.type === "m.room.tombstone");
        if (tomb) {
          const next = await call(s.url, "GET", `/rooms/${encodeURIComponent(tomb.content.replacement_room)}/state/m.room.create/`, token);
          expect(next.status, `replacement of ${roomId}`).toBe(200);
          expect(next.body.predecessor?.room_id).toBe(roomId);
        }
      }
    }
  }, 300_000);
});
