/**
 * Room DAG figures: auth checks per second (against the raw ed25519 verify rate of the same run)
 * and state resolution of a 10,000-member room with a 100-event fork (goal ≤ 1 s), against one raw
 * canonical-JSON + SHA-256 pass over the same events.
 */
import { webCryptoSigner, webCryptoVerifier } from "../src/homeserver/crypto/ed25519.ts";
import { canonicalJsonBytes } from "../src/homeserver/crypto/canonicalJson.ts";
import type { SigningKey } from "../src/homeserver/crypto/signing.ts";
import { sha256 } from "../src/homeserver/events/hashes.ts";
import type { EventWithId, Pdu, StateMap } from "../src/homeserver/events/types.ts";
import { stateKeyOf } from "../src/homeserver/events/types.ts";
import { authStateKeysFor, checkAuth } from "../src/homeserver/rooms/auth.ts";
import { buildEvent } from "../src/homeserver/rooms/build.ts";
import { resolveState } from "../src/homeserver/rooms/stateRes.ts";
import type { RoomVersionRules } from "../src/homeserver/rooms/versions.ts";
import { roomVersion } from "../src/homeserver/rooms/versions.ts";
import type { Bench, Figure } from "./harness.ts";
import { rate, time, versus } from "./harness.ts";

/** A minimal linear room builder (no auth checks while building: the bench builds valid events). */
class BenchRoom {
  readonly events = new Map<string, EventWithId>();
  state: StateMap = new Map();
  last: string[] = [];
  roomId = "";
  depth = 0;
  ts = 1_700_000_000_000;
  readonly version: RoomVersionRules;
  readonly key: SigningKey;
  constructor(version: RoomVersionRules, key: SigningKey) {
    this.version = version;
    this.key = key;
  }

  branch(): BenchRoom {
    const b = new BenchRoom(this.version, this.key);
    (b as { events: Map<string, EventWithId> }).events = this.events;
    Object.assign(b, { state: new Map(this.state), last: [...this.last], roomId: this.roomId, depth: this.depth, ts: this.ts + 1_000_000 });
    return b;
  }

  async send(sender: string, type: string, content: Record<string, unknown>, stateKey?: string): Promise<EventWithId> {
    const authIds = authStateKeysFor(type, stateKey, sender, content, this.version).map((k) => this.state.get(k)).filter((x): x is string => !!x);
    const e = await buildEvent({
      roomId: this.roomId || undefined, sender, type, stateKey, content,
      prevEvents: this.last.map((eventId) => ({ eventId, sha256: "" })), authEvents: authIds.map((eventId) => ({ eventId, sha256: "" })),
      depth: ++this.depth, originServerTs: ++this.ts, origin: "bench.test",
    }, this.version, this.key);
    this.events.set(e.eventId, e);
    if (stateKey !== undefined) this.state.set(stateKeyOf(type, stateKey), e.eventId);
    this.last = [e.eventId];
    this.roomId ||= e.roomId;
    return e;
  }
}

const user = (i: number): string => `@user${i}:bench.test`;
const admin = "@admin:bench.test";

export const roomsBench: Bench = async () => {
  const version = roomVersion("12")!;
  const signer = await webCryptoSigner(new Uint8Array(32).fill(3));
  const key: SigningKey = { entity: "bench.test", keyId: "ed25519:b", signer };
  const verifier = webCryptoVerifier();
  const members = Number(process.env.BENCH_ROOM_MEMBERS ?? 10_000);

  // The room: create, admin join, power levels (moderators at 50), public join rule, N joins.
  const r = new BenchRoom(version, key);
  await r.send(admin, "m.room.create", { room_version: version.id }, "");
  await r.send(admin, "m.room.member", { membership: "join" }, admin);
  await r.send(admin, "m.room.power_levels", { users: { [user(0)]: 50, [user(1)]: 50 }, state_default: 50 }, "");
  await r.send(admin, "m.room.join_rules", { join_rule: "public" }, "");
  const buildStart = performance.now();
  for (let i = 0; i < members; i++) await r.send(user(i), "m.room.member", { membership: "join" }, user(i));
  const buildMs = performance.now() - buildStart;

  // Auth check rate: a message by a member, against the full current state as a PDU map.
  const stateMap = new Map<string, Pdu>([...r.state].map(([k, id]) => [k, r.events.get(id)!.pdu]));
  const msg = await r.branch().send(user(5), "m.room.message", { body: "hello" });
  if (!checkAuth(msg.pdu, msg.eventId, stateMap, version).allowed) throw new Error("bench message should be allowed");
  const kick = await r.branch().send(user(0), "m.room.member", { membership: "leave" }, user(7));
  if (!checkAuth(kick.pdu, kick.eventId, stateMap, version).allowed) throw new Error("bench kick should be allowed");
  const authRate = await rate(() => checkAuth(msg.pdu, msg.eventId, stateMap, version));
  const kickRate = await rate(() => checkAuth(kick.pdu, kick.eventId, stateMap, version));
  const sigMsg = canonicalJsonBytes({ a: 1 });
  const sig = await signer.sign(sigMsg);
  const verifyRate = await rate(() => verifier.verify(signer.publicKey, sigMsg, sig));

  // A 100-event fork: branch A has 100 events (state changes by moderators and members: kicks,
  // topics, leaves, power changes); branch B has a few concurrent changes.
  const a = r.branch();
  const b = r.branch();
  for (let i = 0; i < 100; i++) {
    const kind = i % 5;
    if (kind === 0) await a.send(user(0), "m.room.member", { membership: "leave" }, user(100 + i));
    else if (kind === 1) await a.send(user(1), "m.room.topic", { topic: `topic ${i}` }, "");
    else if (kind === 2) await a.send(user(200 + i), "m.room.member", { membership: "leave" }, user(200 + i));
    else if (kind === 3) await a.send(admin, "m.room.power_levels", { users: { [user(0)]: 50, [user(1)]: 50, [user(300 + i)]: 10 }, state_default: 50 }, "");
    else await a.send(user(400 + i), "m.room.message", { body: `m${i}` });
  }
  for (let i = 0; i < 5; i++) await b.send(user(1), "m.room.member", { membership: "ban" }, user(100 + i * 5));
  await b.send(admin, "m.room.power_levels", { users: { [user(0)]: 0, [user(1)]: 50 }, state_default: 50 }, "");
  const fetch = (id: string) => r.events.get(id);
  const sets = [a.state, b.state];
  await resolveState(version, sets, fetch); // warm-up
  const runs = 5;
  let total = 0;
  for (let i = 0; i < runs; i++) total += await time(() => resolveState(version, sets, fetch));
  const resMs = total / runs;

  // Baseline: one raw canonical JSON + SHA-256 pass over every event of the room.
  const all = [...r.events.values()];
  const rawMs = await time(async () => {
    for (const e of all) await sha256(canonicalJsonBytes(e.pdu));
  });

  const figures: Figure[] = [
    versus("auth check, m.room.message (v12)", authRate, "ops/s", "ed25519 verify, WebCrypto", verifyRate),
    versus("auth check, kick (v12)", kickRate, "ops/s", "ed25519 verify, WebCrypto", verifyRate),
    {
      ...versus(`state resolution v2.1, ${members} members, 100-event fork`, resMs, "ms", `canonical JSON + SHA-256 of all ${all.length} events`, rawMs),
      note: "goal ≤ 1000 ms; ratio = resolution time / hashing time",
    },
    { name: `building ${members} signed joins (buildEvent)`, value: (members * 1000) / buildMs, unit: "events/s" },
  ];
  return figures;
};
