/**
 * Catch-up from any peer (federation/catchup.ts): C was offline while A's user wrote 1,000
 * messages (B received them), then A went offline; C comes back and fetches all 1,000 from B
 * (timestamp_to_event probe, get_missing_events pages, the checks on receipt, the pipeline).
 * Timed from C's return to the 1,000th message in C's timeline, as a ratio to verifying the same
 * 1,000 PDUs raw (redact, canonical JSON, one ed25519 verify, the content hash and the reference
 * hash each) in the same run, before and after (the mean). Three servers on the in-memory
 * network, memory stores.
 */
import { createHomeserver } from "../src/homeserver/homeserver.ts";
import type { Homeserver } from "../src/homeserver/homeserver.ts";
import { MemoryNetwork } from "../src/homeserver/federation/transport.ts";
import { canonicalJsonBytes } from "../src/homeserver/crypto/canonicalJson.ts";
import { decodeBase64 } from "../src/homeserver/crypto/base64.ts";
import { signable } from "../src/homeserver/crypto/signing.ts";
import { checkContentHash, eventIdOf } from "../src/homeserver/events/hashes.ts";
import { redact } from "../src/homeserver/events/redaction.ts";
import type { Pdu, RoomRecord, StoredEvent } from "../src/homeserver/events/types.ts";
import { createRoom, sendEvent } from "../src/homeserver/roomserver/index.ts";
import { getEvent, rulesOf, serversInRoom } from "../src/homeserver/roomserver/state.ts";
import { createMemoryStore } from "../src/storage/memory.ts";
import { prefix } from "../src/storage/store.ts";
import type { Bench } from "./harness.ts";
import { seedDevice, versus } from "./harness.ts";

const N = 1000;

async function messages(hs: Homeserver, roomId: string): Promise<StoredEvent[]> {
  return hs.services.store.read(async (tx) => {
    const out: StoredEvent[] = [];
    for (const r of await tx.range<string>("timeline", { prefix: prefix(roomId) })) {
      const e = (await getEvent(tx, r.value))!;
      if (e.pdu.type === "m.room.message") out.push(e);
    }
    return out;
  });
}

/** How many events the room's timeline holds (a cheap count: polled while timing). */
function timelineLength(hs: Homeserver, roomId: string): Promise<number> {
  return hs.services.store.read((tx) => tx.count("timeline", { prefix: prefix(roomId) }));
}

/** Polls `check` every few milliseconds for at most `ms`. */
async function until(check: () => Promise<boolean>, what: string, ms = 120_000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`bench catchup: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const catchupBench: Bench = async () => {
  const network = new MemoryNetwork();
  const start = async (name: string, n: number) => {
    const hs = await createHomeserver({
      store: createMemoryStore(), seed: new Uint8Array(32).fill(n), serverName: name, federationTransport: network.transportFor(name),
      federationSenderOptions: { minBackoffMs: 20, maxBackoffMs: 200 },
    });
    network.attach(name, (r) => hs.handle(r));
    return hs;
  };
  const [a, b, c] = [await start("a.bench", 1), await start("b.bench", 2), await start("c.bench", 3)];
  const alice = "@alice:a.bench";
  const { roomId } = await createRoom(a.services, alice, { preset: "public_chat" });
  for (const [hs, user] of [[b, "@bob:b.bench"], [c, "@carol:c.bench"]] as const) {
    const token = await seedDevice(hs, user, "BENCH");
    const r = await hs.handle(new Request(`http://localhost/_matrix/client/v3/join/${encodeURIComponent(roomId)}?server_name=a.bench`, {
      method: "POST", headers: { Authorization: `Bearer ${token}` }, body: "{}",
    }));
    if (r.status !== 200) throw new Error(`bench catchup: join failed ${r.status} ${await r.text()}`);
  }
  const joinedEverywhere = async (): Promise<boolean> => {
    for (const hs of [a, b, c]) {
      if ((await hs.services.store.read((tx) => serversInRoom(tx, roomId))).length < 3) return false;
    }
    return true;
  };
  await until(joinedEverywhere, "three members on every server");

  network.setOnline("c.bench", false);
  const cBefore = await timelineLength(c, roomId);
  const bBefore = await timelineLength(b, roomId);
  for (let i = 0; i < N; i++) await sendEvent(a.services, { roomId, sender: alice, type: "m.room.message", content: { msgtype: "m.text", body: `message ${i} `.repeat(4) } });
  await until(async () => (await timelineLength(b, roomId)) >= bBefore + N, "B to hold the 1,000 messages");
  network.setOnline("a.bench", false);
  const sent = await messages(a, roomId);
  const pdus = sent.map((e) => {
    const { unsigned: _u, ...pdu } = e.pdu;
    return pdu as Pdu;
  });

  // Raw: verifying and hashing the same PDUs by themselves.
  const room = (await a.services.store.read((tx) => tx.get<RoomRecord>("rooms", roomId)))!;
  const rules = rulesOf(room);
  const publicKey = a.services.signingKey.signer.publicKey;
  const keyId = a.services.signingKey.keyId;
  const raw = async (): Promise<number> => {
    const rawStart = performance.now();
    for (const pdu of pdus) {
      const ok = await c.services.verifier.verify(publicKey, canonicalJsonBytes(signable(redact(pdu, rules))), decodeBase64(pdu.signatures["a.bench"]![keyId]!));
      if (!ok || !(await checkContentHash(pdu))) throw new Error("bench PDU does not verify");
      await eventIdOf(pdu, rules);
    }
    return performance.now() - rawStart;
  };
  // Measured before and after the catch-up (the mean), so a load swing on a shared machine
  // weighs on both sides of the ratio.
  const rawBefore = await raw();

  const catchStart = performance.now();
  network.setOnline("c.bench", true);
  await until(async () => (await timelineLength(c, roomId)) >= cBefore + N, "C to catch up on the 1,000 messages");
  const catchMs = performance.now() - catchStart;
  const rawMs = (rawBefore + (await raw())) / 2;
  const got = (await messages(c, roomId)).map((e) => e.eventId);
  if (got.join() !== sent.map((e) => e.eventId).join()) throw new Error("bench catchup: C's messages differ from A's, or their order does");
  await c.services.catchUp!.idle();
  for (const hs of [a, b, c]) await hs.close();
  return [
    versus(`catch-up of a server that was offline: ${N.toLocaleString("en-US")} messages from a third server (memory stores)`, catchMs, "ms", `raw verify + hash of the same ${N.toLocaleString("en-US")} PDUs`, rawMs),
  ];
};
