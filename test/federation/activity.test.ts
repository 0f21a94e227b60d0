/**
 * The work in progress a status view shows (src/homeserver/activity.ts): a join over federation
 * reports its phases with the count of the resident's events checked so far, and a backfill
 * reports itself while a client's `/messages` waits on it; both are gone once over, failed or not.
 * Sampled on every turn of the event loop while the real join and backfill run between two
 * harness homeservers.
 */
import { afterEach, describe, expect, it } from "vitest";
import { activitiesOf } from "../../src/homeserver/activity.ts";
import type { Activity } from "../../src/homeserver/activity.ts";
import type { Federation, FedServer } from "./harness.ts";
import { createFederation } from "./harness.ts";

let fed: Federation | undefined;
afterEach(async () => {
  await fed?.close();
  fed = undefined;
});

const enc = encodeURIComponent;

/** Runs `work`, taking a copy of `server`'s activities at every turn of the event loop meanwhile. */
async function sampled<T>(server: FedServer, work: Promise<T>): Promise<{ result: T; seen: Activity[] }> {
  const seen: Activity[] = [];
  let running = true;
  const sample = (): void => {
    seen.push(...activitiesOf(server.hs.services.store).list());
    if (running) setImmediate(sample);
  };
  sample();
  try {
    return { result: await work, seen };
  } finally {
    running = false;
  }
}

describe("progress of joins and backfills", () => {
  it("a join of a room with 200 state events reports asking, checking n of N, storing; nothing once joined", async () => {
    fed = await createFederation(["a.test", "b.test"]);
    const [a, b] = fed.servers as [FedServer, FedServer];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const created = await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, alice.token);
    const roomId = created.body.room_id as string;
    for (let i = 0; i < 200; i++) {
      const r = await a.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/state/org.example.item/${i}`, { i }, alice.token);
      expect(r.status).toBe(200);
    }
    expect(activitiesOf(b.hs.services.store).list()).toEqual([]);

    const { result, seen } = await sampled(b, b.call("POST", `/_matrix/client/v3/join/${enc(roomId)}?server_name=a.test`, {}, bob.token));
    expect(result.status, JSON.stringify(result.body)).toBe(200);
    expect(seen.length).toBeGreaterThan(0);
    for (const s of seen) expect(s).toMatchObject({ kind: "join", roomId });
    const phases = [...new Set(seen.map((s) => s.phase))];
    // In this order; storing may pass within one turn of the loop on the memory store.
    expect(phases.slice(0, 2)).toEqual(["asking a.test", "checking events"]);
    expect(phases.slice(2).every((p) => /^storing \d+ events$/.test(p)), phases.join(" | ")).toBe(true);
    const checking = seen.filter((s) => s.phase === "checking events" && s.total !== undefined);
    const total = checking[0]!.total!;
    expect(total).toBeGreaterThan(200); // the state (200 items + the room's own) and its auth chain
    expect(checking.every((s) => s.total === total)).toBe(true);
    const done = checking.map((s) => s.done);
    expect(done).toEqual([...done].sort((x, y) => x - y));
    expect(done[0]).toBeLessThan(total);
    expect(done.some((d) => d > 0 && d < total), "a count between the ends was seen").toBe(true);
    expect(new Set(seen.map((s) => s.startedAt)).size).toBe(1);
    expect(activitiesOf(b.hs.services.store).list()).toEqual([]);
  });

  it("a failed join leaves nothing behind; a backfill under /messages reports itself and ends", async () => {
    fed = await createFederation(["a.test", "b.test"]);
    const [a, b] = fed.servers as [FedServer, FedServer];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const refused = await b.call("POST", `/_matrix/client/v3/join/${enc("!nowhere:a.test")}?server_name=a.test`, {}, bob.token);
    expect(refused.status).toBeGreaterThanOrEqual(400);
    expect(activitiesOf(b.hs.services.store).list()).toEqual([]);

    const created = await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, alice.token);
    const roomId = created.body.room_id as string;
    for (let i = 0; i < 30; i++) await a.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/t${i}`, { msgtype: "m.text", body: `m${i}` }, alice.token);
    expect((await b.call("POST", `/_matrix/client/v3/join/${enc(roomId)}?server_name=a.test`, {}, bob.token)).status).toBe(200);
    const { result, seen } = await sampled(b, b.call("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=20`, undefined, bob.token));
    expect(result.status).toBe(200);
    const backfills = seen.filter((s) => s.kind === "backfill");
    expect(backfills.length).toBeGreaterThan(0);
    for (const s of backfills) expect(s.roomId).toBe(roomId);
    const phases = [...new Set(backfills.map((s) => s.phase))];
    expect(phases[0]).toBe("asking a.test");
    expect(phases.slice(1).every((p) => /^storing \d+ events$/.test(p)), phases.join(" | ")).toBe(true);
    expect(activitiesOf(b.hs.services.store).list()).toEqual([]);
  });
});
