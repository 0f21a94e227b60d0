/**
 * `/sync` wake-up: how long after a send's response a waiting long-poll answers with the event,
 * next to the raw primitives it is built on, measured in the same run — the notifier's own wake-up
 * (notify → waiter resolved) and one store write. Also an initial and an idle incremental sync.
 */
import { createHomeserver } from "../src/homeserver/homeserver.ts";
import type { Homeserver } from "../src/homeserver/homeserver.ts";
import { Notifier } from "../src/homeserver/notifier.ts";
import { createMemoryStore } from "../src/storage/memory.ts";
import type { Bench, Figure } from "./harness.ts";
import { call, seedDevice, versus } from "./harness.ts";

const N = 200;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

async function user(hs: Homeserver, name: string): Promise<{ userId: string; token: string }> {
  const userId = `@${name}:bench.test`;
  return { userId, token: await seedDevice(hs, userId, "DEV", { displayname: name }) };
}

export const syncBench: Bench = async () => {
  const hs = await createHomeserver({ store: createMemoryStore(), seed: new Uint8Array(32).fill(9), serverName: "bench.test" });
  const alice = await user(hs, "alice");
  const bob = await user(hs, "bob");
  const roomId = (await call(hs, "POST", "/createRoom", alice.token, { preset: "private_chat", invite: [bob.userId] })).room_id as string;
  await call(hs, "POST", `/rooms/${encodeURIComponent(roomId)}/join`, bob.token, {});
  const r = encodeURIComponent(roomId);
  for (let i = 0; i < 50; i++) await call(hs, "PUT", `/rooms/${r}/send/m.room.message/w${i}`, alice.token, { msgtype: "m.text", body: `warm ${i}` });

  const t0 = performance.now();
  let token = (await call(hs, "GET", "/sync?set_presence=offline", bob.token)).next_batch as string;
  const initial = performance.now() - t0;

  const wake: number[] = [];
  const sendToSync: number[] = [];
  const idle: number[] = [];
  for (let i = 0; i < N; i++) {
    const s0 = performance.now();
    await call(hs, "GET", `/sync?set_presence=offline&timeout=0&since=${token}`, bob.token);
    idle.push(performance.now() - s0);
    const pending = call(hs, "GET", `/sync?set_presence=offline&timeout=30000&since=${token}`, bob.token);
    // Let the long-poll reach its wait before sending.
    await new Promise((res) => setTimeout(res, 1));
    const a = performance.now();
    await call(hs, "PUT", `/rooms/${r}/send/m.room.message/b${i}`, alice.token, { msgtype: "m.text", body: `msg ${i}` });
    const b = performance.now();
    const res = await pending;
    const c = performance.now();
    const events = res.rooms.join[roomId]?.timeline.events ?? [];
    if (!events.some((e: { content: { body?: string } }) => e.content.body === `msg ${i}`)) throw new Error("sync did not carry the event");
    token = res.next_batch as string;
    wake.push(c - b);
    sendToSync.push(c - a);
  }

  // Many rooms: an idle incremental sync has to look at each of them.
  const ROOMS = 50;
  for (let i = 0; i < ROOMS; i++) {
    const id = (await call(hs, "POST", "/createRoom", alice.token, { preset: "private_chat", invite: [bob.userId] })).room_id as string;
    await call(hs, "POST", `/rooms/${encodeURIComponent(id)}/join`, bob.token, {});
    await call(hs, "PUT", `/rooms/${encodeURIComponent(id)}/send/m.room.message/r${i}`, alice.token, { msgtype: "m.text", body: `room ${i}` });
  }
  const m0 = performance.now();
  token = (await call(hs, "GET", "/sync?set_presence=offline", bob.token)).next_batch as string;
  const initialMany = performance.now() - m0;
  const idleMany: number[] = [];
  for (let i = 0; i < 50; i++) {
    const a = performance.now();
    await call(hs, "GET", `/sync?set_presence=offline&timeout=0&since=${token}`, bob.token);
    idleMany.push(performance.now() - a);
  }

  // Raw primitives in the same run.
  const notifier = new Notifier();
  const rawWake: number[] = [];
  for (let i = 0; i < N; i++) {
    const w = notifier.wait(i, 30_000);
    const a = performance.now();
    notifier.notify(i + 1);
    await w;
    rawWake.push(performance.now() - a);
  }
  const store = createMemoryStore();
  const rawPut: number[] = [];
  for (let i = 0; i < N; i++) {
    const a = performance.now();
    await store.write(async (tx) => tx.put("settings", `k${i}`, { v: i }));
    rawPut.push(performance.now() - a);
  }
  await hs.close();

  const figures: Figure[] = [
    versus("/sync long-poll answer after the send returned (median)", median(wake), "ms", "one memory-store write (median)", median(rawPut)),
    versus("/sync long-poll answer after the send returned (median)", median(wake), "ms", "raw notifier wake-up (median)", median(rawWake)),
    versus("send → long-poll answered, end to end (median)", median(sendToSync), "ms", "one memory-store write (median)", median(rawPut)),
    versus("idle incremental /sync, timeout=0 (median)", median(idle), "ms", "one memory-store write (median)", median(rawPut)),
    { name: "initial /sync, 1 room, 60 events", value: initial, unit: "ms" },
    versus(`idle incremental /sync, ${ROOMS + 1} rooms (median)`, median(idleMany), "ms", "idle incremental /sync, 1 room (median)", median(idle)),
    { name: `initial /sync, ${ROOMS + 1} rooms`, value: initialMany, unit: "ms" },
  ];
  return figures;
};
