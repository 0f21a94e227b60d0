/**
 * Persistence pipeline figures: the state storage of a 10,000-member room (state-group entries and
 * bytes per join, against the one entry / the member event's own bytes that any storage needs),
 * and the time per join through the pipeline against the raw sign + hash + put of the same event.
 */
import { createHomeserver } from "../src/homeserver/homeserver.ts";
import { createRoom, sendEvent } from "../src/homeserver/roomserver/index.ts";
import type { StateGroup } from "../src/homeserver/roomserver/stateGroups.ts";
import type { StoredEvent } from "../src/homeserver/events/types.ts";
import { createMemoryStore } from "../src/storage/memory.ts";
import type { Bench, Figure } from "./harness.ts";
import { versus } from "./harness.ts";

const N = 10_000;

export const pipelineBench: Bench = async () => {
  const hs = await createHomeserver({ store: createMemoryStore(), seed: new Uint8Array(32).fill(5), serverName: "bench.test" });
  const s = hs.services;
  const { roomId } = await createRoom(s, "@creator:bench.test", { preset: "public_chat" });
  const started = performance.now();
  for (let i = 0; i < N; i++) {
    const u = `@u${i}:bench.test`;
    await sendEvent(s, { roomId, sender: u, type: "m.room.member", stateKey: u, content: { membership: "join" } });
  }
  const perJoinMs = (performance.now() - started) / N;
  const { entries, groupBytes, eventBytes } = await s.store.read(async (tx) => {
    let entries = 0;
    let groupBytes = 0;
    for (const row of await tx.range<StateGroup>("state_groups")) {
      if (row.value.roomId !== roomId) continue;
      entries += Object.keys(row.value.delta).length;
      groupBytes += JSON.stringify(row.value).length;
    }
    let eventBytes = 0;
    for (const row of await tx.range<StoredEvent>("events")) if (row.value.roomId === roomId) eventBytes += JSON.stringify(row.value).length;
    return { entries, groupBytes, eventBytes };
  });
  await hs.close();
  const figures: Figure[] = [
    versus(`state entries per join, ${N.toLocaleString("en-US")}-member room`, entries / N, "entries", "one entry per state change (the minimum)", 1, "entries",
      `full snapshots stored ${(N / 2).toLocaleString("en-US")} per join`),
    versus(`state group bytes, ${N.toLocaleString("en-US")}-member room`, groupBytes / 1e6, "MB", "the room's events themselves", eventBytes / 1e6, "MB"),
    { name: `join through the pipeline (memory store), ${N.toLocaleString("en-US")}-member room`, value: perJoinMs, unit: "ms/join" },
  ];
  return figures;
};
