/**
 * Federation figures. Inbound `/send` ingest: B takes 1,000 of A's message PDUs in transactions of
 * 50 through the in-memory network (X-Matrix check, the checks on receipt, the pipeline, the
 * store), as PDUs/s against the raw verify + hash of the same PDUs (redact, canonical JSON, one
 * ed25519 verify, the content hash and the reference hash per PDU) measured in the same run.
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
import { buildEvent, eventRef } from "../src/homeserver/rooms/build.ts";
import { createRoom, sendEvent } from "../src/homeserver/roomserver/index.ts";
import { persist } from "../src/homeserver/roomserver/persist.ts";
import { getEvent, rulesOf } from "../src/homeserver/roomserver/state.ts";
import { createMemoryStore } from "../src/storage/memory.ts";
import { key, prefix } from "../src/storage/store.ts";
import type { Bench, Figure } from "./harness.ts";
import { versus } from "./harness.ts";

const N = 1000;
const PER_TXN = 50;

async function timeline(hs: Homeserver, roomId: string): Promise<StoredEvent[]> {
  return hs.services.store.read(async (tx) => {
    const out: StoredEvent[] = [];
    for (const r of await tx.range<string>("timeline", { prefix: prefix(roomId) })) out.push((await getEvent(tx, r.value))!);
    return out;
  });
}

const wire = (e: StoredEvent): Pdu => {
  const { unsigned: _u, ...pdu } = e.pdu;
  return pdu as Pdu;
};

export const fedpduBench: Bench = async () => {
  const network = new MemoryNetwork();
  const start = async (name: string, n: number) => {
    const hs = await createHomeserver({ store: createMemoryStore(), seed: new Uint8Array(32).fill(n), serverName: name, federationTransport: network.transportFor(name) });
    network.attach(name, (r) => hs.handle(r));
    return hs;
  };
  const a = await start("a.bench", 1);
  const b = await start("b.bench", 2);
  const alice = "@alice:a.bench";
  const bob = "@bob:b.bench";
  const { roomId } = await createRoom(a.services, alice, { preset: "public_chat" });
  // B holds the room as a joined server would (A's events, then its own user's join, sent to A).
  const room = (await a.services.store.read((tx) => tx.get<RoomRecord>("rooms", roomId)))!;
  const rules = rulesOf(room);
  await persist(b.services, roomId, (await timeline(a, roomId)).map((e) => ({ kind: "new" as const, event: { eventId: e.eventId, roomId, pdu: wire(e) } })), { roomId, roomVersion: room.roomVersion });
  const join = await b.services.store.read(async (tx) => {
    const pre = prefix(roomId);
    const prevs = await Promise.all((await tx.range<true>("extremities", { prefix: pre })).map(async (r) => (await getEvent(tx, r.key.slice(pre.length)))!));
    const auths = await Promise.all(["m.room.power_levels", "m.room.join_rules"].map(async (t) => (await getEvent(tx, (await tx.get<string>("room_state", key(roomId, t, "")))!))!));
    return buildEvent({
      roomId, sender: bob, type: "m.room.member", stateKey: bob, content: { membership: "join" },
      prevEvents: await Promise.all(prevs.map((e) => eventRef(e, rules))), authEvents: await Promise.all(auths.map((e) => eventRef(e, rules))),
      depth: Math.max(...prevs.map((e) => e.pdu.depth)) + 1, originServerTs: Date.now(), origin: "b.bench",
    }, rules, b.services.signingKey);
  });
  await b.services.federation!.json("a.bench", "PUT", "/_matrix/federation/v1/send/join", { body: { origin: "b.bench", origin_server_ts: Date.now(), pdus: [join.pdu] } });
  await persist(b.services, roomId, [{ kind: "local", event: join }]);

  const before = (await timeline(a, roomId)).length;
  for (let i = 0; i < N; i++) await sendEvent(a.services, { roomId, sender: alice, type: "m.room.message", content: { msgtype: "m.text", body: `message ${i} `.repeat(4) } });
  const pdus = (await timeline(a, roomId)).slice(before).map(wire);

  // Raw: what verifying and hashing these PDUs costs by itself.
  const publicKey = a.services.signingKey.signer.publicKey;
  const keyId = a.services.signingKey.keyId;
  const verifier = b.services.verifier;
  const rawStart = performance.now();
  for (const pdu of pdus) {
    const redacted = redact(pdu, rules);
    const ok = await verifier.verify(publicKey, canonicalJsonBytes(signable(redacted)), decodeBase64(pdu.signatures["a.bench"]![keyId]!));
    if (!ok || !(await checkContentHash(pdu))) throw new Error("bench PDU does not verify");
    await eventIdOf(pdu, rules);
  }
  const rawRate = (pdus.length * 1000) / (performance.now() - rawStart);

  const ingestStart = performance.now();
  for (let i = 0; i < pdus.length; i += PER_TXN) {
    const answer = await a.services.federation!.json<{ pdus: Record<string, { error?: string }> }>("b.bench", "PUT", `/_matrix/federation/v1/send/bench${i}`, {
      body: { origin: "a.bench", origin_server_ts: Date.now(), pdus: pdus.slice(i, i + PER_TXN) },
    });
    const failed = Object.values(answer.pdus).find((r) => r.error);
    if (failed) throw new Error(`ingest failed: ${failed.error}`);
  }
  const ingestRate = (pdus.length * 1000) / (performance.now() - ingestStart);
  const stored = (await timeline(b, roomId)).length;
  if (stored !== before + N) throw new Error(`B holds ${stored} events, expected ${before + N}`);
  await a.close();
  await b.close();
  const figures: Figure[] = [
    versus(`inbound /send ingest, ${N.toLocaleString("en-US")} PDUs in transactions of ${PER_TXN} (memory store)`, ingestRate, "PDUs/s", "raw verify + hash of the same PDUs", rawRate),
  ];
  return figures;
};
