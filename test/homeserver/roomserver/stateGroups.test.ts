/** State groups: storage grows with the number of changes, and the state of any event comes back exactly. */
import { afterEach, describe, expect, it } from "vitest";
import { createRoom, sendEvent, stateAfter } from "../../../src/homeserver/roomserver/index.ts";
import { stateKeyOf } from "../../../src/homeserver/events/types.ts";
import type { StateGroup } from "../../../src/homeserver/roomserver/stateGroups.ts";
import { TestServer } from "./harness.ts";

let t: TestServer | undefined;
afterEach(async () => t?.close());

describe("state groups", () => {
  it("a room with 10,000 joins stores O(10,000) state entries, and the state after any join is exact", async () => {
    t = await TestServer.start();
    const hs = t.hs.services;
    const alice = await t.user("alice");
    const { roomId } = await createRoom(hs, alice.userId, { preset: "public_chat" });
    const N = 10_000;
    const joins: string[] = [];
    for (let i = 0; i < N; i++) {
      const userId = `@u${i}:hs.test`;
      joins.push((await sendEvent(hs, { roomId, sender: userId, type: "m.room.member", stateKey: userId, content: { membership: "join" } })).eventId);
    }
    const entries = await hs.store.read(async (tx) => {
      let n = 0;
      for (const row of await tx.range<StateGroup>("state_groups")) if (row.value.roomId === roomId) n += Object.keys(row.value.delta).length;
      return n;
    });
    console.log(`state entries for ${N} joins: ${entries} (${(entries / N).toFixed(2)} per join)`);
    // Skip deltas store about (N/2)·log2(N) ≈ 6.6·N entries; full snapshots stored N²/2 = 50,000,000.
    expect(entries).toBeLessThanOrEqual(8 * N);
    expect(entries).toBeGreaterThanOrEqual(N);
    await hs.store.read(async (tx) => {
      const first = await stateAfter(tx, joins[0]!);
      const base = first.size - 1; // the createRoom state, plus u0
      for (const i of [0, 1, 2, 3, 7, 8, 255, 256, 1023, 1024, 4095, 5000, 8191, 8192, N - 2, N - 1]) {
        const state = await stateAfter(tx, joins[i]!);
        expect(state.size).toBe(base + i + 1);
        for (const j of [0, Math.floor(i / 2), i]) expect(state.get(stateKeyOf("m.room.member", `@u${j}:hs.test`))).toBe(joins[j]);
        if (i + 1 < N) expect(state.has(stateKeyOf("m.room.member", `@u${i + 1}:hs.test`))).toBe(false);
      }
    });
  }, 240_000);
});
