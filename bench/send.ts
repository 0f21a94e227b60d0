/**
 * Local send throughput: `PUT /rooms/{roomId}/send/…` through `handle()` (auth, build, sign, auth
 * rules, one write transaction, notify), on the memory store and on the sql.js store, as a ratio to
 * the raw rate of what a send cannot avoid, measured in the same run: one ed25519 signature, one
 * content hash and one store write of the PDU.
 */
import { createHomeserver } from "../src/homeserver/homeserver.ts";
import type { Homeserver } from "../src/homeserver/homeserver.ts";
import { createSigner } from "../src/homeserver/crypto/ed25519.ts";
import { canonicalJsonBytes } from "../src/homeserver/crypto/canonicalJson.ts";
import { contentHash } from "../src/homeserver/events/hashes.ts";
import { createMemoryStore } from "../src/storage/memory.ts";
import { createSqliteStore } from "../src/storage/sqlite.ts";
import type { Store } from "../src/storage/store.ts";
import type { Bench, Figure } from "./harness.ts";
import { call, rate, seedDevice, versus } from "./harness.ts";

const SEED = new Uint8Array(32).fill(9);
const SERVER = "bench.local";

const user = (hs: Homeserver, localpart: string): Promise<string> => seedDevice(hs, `@${localpart}:${SERVER}`, "D");

/** A room ready for sending: the homeserver, the sender's token and the room. */
async function setupRoom(store: Store, members: number): Promise<{ hs: Homeserver; token: string; roomId: string }> {
  const hs = await createHomeserver({ store, seed: SEED, serverName: SERVER });
  const token = await user(hs, "alice");
  const roomId = (await call(hs, "POST", "/createRoom", token, { preset: "public_chat" })).room_id as string;
  for (let i = 1; i < members; i++) {
    const t = await user(hs, `m${i}`);
    await call(hs, "POST", `/rooms/${encodeURIComponent(roomId)}/join`, t, {});
  }
  return { hs, token, roomId };
}

let txn = 0;
/** Messages per second through handle() into a prepared room. */
function sendRate(r: { hs: Homeserver; token: string; roomId: string }, ms: number): Promise<number> {
  const body = { msgtype: "m.text", body: "Hello, world! ".repeat(8) };
  return rate(() => call(r.hs, "PUT", `/rooms/${encodeURIComponent(r.roomId)}/send/m.room.message/t${txn++}`, r.token, body), ms);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * The machine may be shared, so the send rate and its baseline are measured in alternating short
 * rounds and each reported as the median of its rounds.
 */
async function paired(room: { hs: Homeserver; token: string; roomId: string }, rawStore: Store, rounds = 5, ms = 600): Promise<[send: number, raw: number]> {
  const sends: number[] = [];
  const raws: number[] = [];
  for (let i = 0; i < rounds; i++) {
    raws.push(await rawRate(rawStore, ms));
    sends.push(await sendRate(room, ms));
  }
  await room.hs.close();
  await rawStore.close();
  return [median(sends), median(raws)];
}

/** The unavoidable work of one send: sign + content hash + one store write of the PDU. */
async function rawRate(store: Store, ms: number): Promise<number> {
  const signer = await createSigner(SEED);
  let n = 0;
  const r = await rate(async () => {
    const pdu: Record<string, unknown> = {
      type: "m.room.message", room_id: "!r:bench.local", sender: "@alice:bench.local", depth: n,
      content: { msgtype: "m.text", body: "Hello, world! ".repeat(8) }, origin_server_ts: 1_700_000_000_000 + n,
      prev_events: ["$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"], auth_events: ["$b", "$c", "$d"],
    };
    pdu.hashes = { sha256: await contentHash(pdu) };
    pdu.signatures = { "bench.local": { "ed25519:auto": await signer.sign(canonicalJsonBytes(pdu)) } };
    const id = `$e${n++}`;
    await store.write(async (tx) => tx.put("events", id, { eventId: id, roomId: "!r:bench.local", pdu }));
  }, ms);
  return r;
}

export const sendBench: Bench = async () => {
  // Warm the JIT on both paths first, so the first measured case is not the cold one.
  const warm = await setupRoom(createMemoryStore(), 2);
  await sendRate(warm, 1000);
  await warm.hs.close();
  const warmStore = createMemoryStore();
  await rawRate(warmStore, 500);
  await warmStore.close();
  const [mem, rawMem] = await paired(await setupRoom(createMemoryStore(), 2), createMemoryStore());
  const [mem200, rawMem200] = await paired(await setupRoom(createMemoryStore(), 200), createMemoryStore());
  const [sql, rawSql] = await paired(await setupRoom(await createSqliteStore(), 2), await createSqliteStore());
  const figures: Figure[] = [
    versus("local send via handle(), memory store, 2 members", mem, "events/s", "raw sign + hash + put (memory)", rawMem),
    versus("local send via handle(), memory store, 200 members", mem200, "events/s", "raw sign + hash + put (memory)", rawMem200),
    versus("local send via handle(), sql.js store (in-memory db), 2 members", sql, "events/s", "raw sign + hash + put (sql.js)", rawSql),
  ];
  return figures;
};
