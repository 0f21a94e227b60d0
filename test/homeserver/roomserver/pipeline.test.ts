/**
 * The persistence pipeline against a reference model: random DAGs with forks (several servers'
 * users changing topic, name, power levels and membership concurrently, plus events the auth rules
 * reject) fed through `persist` in random topological orders must end in the state resolution of
 * the whole DAG, reconstruct the state after every event, and `/sync` (incremental and full,
 * `use_state_after`) must agree with `/state` after every event.
 */
import { afterEach, describe, expect, it } from "vitest";
import fc from "fast-check";
import { prefix } from "../../../src/storage/store.ts";
import { buildEvent } from "../../../src/homeserver/rooms/build.ts";
import { authStateKeysFor, checkAuth } from "../../../src/homeserver/rooms/auth.ts";
import { resolveState } from "../../../src/homeserver/rooms/stateRes.ts";
import { roomVersion } from "../../../src/homeserver/rooms/versions.ts";
import { stateKeyOf } from "../../../src/homeserver/events/types.ts";
import type { EventWithId, Pdu, StateMap, StoredEvent } from "../../../src/homeserver/events/types.ts";
import { ExtremitiesChanged, persist } from "../../../src/homeserver/roomserver/persist.ts";
import { stateAfter } from "../../../src/homeserver/roomserver/state.ts";
import { TestServer } from "./harness.ts";
import type { TestUser } from "./harness.ts";

const rules = roomVersion("12")!;
const CREATOR = "@c:one.test";
const A = "@a:one.test";
const B = "@b:two.test";
const D = "@d:two.test";
const E = "@e:three.test";

/** A small deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface RefEvent extends EventWithId {
  rejected: boolean;
}

/** The reference model: builds events on chosen prevs and computes their state as the spec defines it. */
class Dag {
  readonly events = new Map<string, RefEvent>();
  readonly order: string[] = [];
  readonly after = new Map<string, StateMap>();
  roomId = "";
  private ts = 1_700_000_000_000;
  private readonly t: TestServer;
  constructor(t: TestServer) {
    this.t = t;
  }

  fetch = (id: string): RefEvent | undefined => this.events.get(id);

  async stateBefore(prevs: string[]): Promise<StateMap> {
    if (prevs.length === 0) return new Map();
    if (prevs.length === 1) return new Map(this.after.get(prevs[0]!)!);
    return resolveState(rules, prevs.map((p) => this.after.get(p)!), this.fetch);
  }

  async add(sender: string, type: string, stateKey: string | undefined, content: Record<string, unknown>, prevs: string[]): Promise<RefEvent> {
    const before = await this.stateBefore(prevs);
    const authIds = authStateKeysFor(type, stateKey, sender, content, rules).map((k) => before.get(k)).filter((x): x is string => x !== undefined);
    const built = await buildEvent(
      {
        ...(this.roomId ? { roomId: this.roomId } : {}),
        sender, type, ...(stateKey !== undefined ? { stateKey } : {}), content,
        prevEvents: prevs.map((eventId) => ({ eventId, sha256: "" })),
        authEvents: authIds.map((eventId) => ({ eventId, sha256: "" })),
        depth: Math.max(0, ...prevs.map((p) => this.events.get(p)!.pdu.depth)) + 1,
        originServerTs: this.ts++, origin: sender.slice(sender.indexOf(":") + 1),
      },
      rules,
      this.t.hs.services.signingKey,
    );
    if (!this.roomId) this.roomId = built.roomId;
    const authState = new Map<string, Pdu>();
    for (const k of [...authStateKeysFor(type, stateKey, sender, content, rules), stateKeyOf("m.room.create", "")]) {
      const id = before.get(k);
      if (id) authState.set(k, this.events.get(id)!.pdu);
    }
    const ok = checkAuth(built.pdu, built.eventId, authState, rules).allowed;
    const e: RefEvent = { ...built, rejected: !ok };
    this.events.set(e.eventId, e);
    this.order.push(e.eventId);
    const after = new Map(before);
    if (ok && stateKey !== undefined) after.set(stateKeyOf(type, stateKey), e.eventId);
    this.after.set(e.eventId, after);
    return e;
  }

  /** Accepted events (of `among`, default all) no accepted event names as a prev. */
  extremities(among: Iterable<string> = this.events.keys()): string[] {
    const events = [...among].map((id) => this.events.get(id)!).filter((e) => !e.rejected);
    const referenced = new Set<string>();
    for (const e of events) for (const p of e.pdu.prev_events as string[]) referenced.add(p);
    return events.filter((e) => !referenced.has(e.eventId)).map((e) => e.eventId);
  }

  /** The resolution of the states after the extremities of `among`. */
  currentState(among: Iterable<string>): Promise<StateMap> {
    return resolveState(rules, this.extremities(among).map((x) => this.after.get(x)!), this.fetch);
  }

  /** A random order in which every event comes after its prevs. */
  topologicalOrder(rand: () => number): string[] {
    const placed = new Set<string>();
    const out: string[] = [];
    const pending = [...this.order];
    while (pending.length > 0) {
      const ready = pending.filter((id) => (this.events.get(id)!.pdu.prev_events as string[]).every((p) => placed.has(p)));
      const pick = ready[Math.floor(rand() * ready.length)]!;
      pending.splice(pending.indexOf(pick), 1);
      placed.add(pick);
      out.push(pick);
    }
    return out;
  }
}

const pl = (d: number, custom: number): Record<string, unknown> => ({
  users: { [A]: 100, [B]: 100, [D]: d }, users_default: 0, events_default: 0, state_default: 50,
  ban: 50, kick: 50, redact: 50, invite: 0, events: { "m.room.power_levels": 100, "x.custom": custom },
});

/** Generates a DAG: a linear start (room, joins), then `steps` random events on random prevs. */
async function generate(t: TestServer, viewer: string, seed: number, steps: number): Promise<Dag> {
  const rand = prng(seed);
  const dag = new Dag(t);
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  let last = (await dag.add(CREATOR, "m.room.create", "", { room_version: "12" }, [])).eventId;
  const linear: [string, string, string | undefined, Record<string, unknown>][] = [
    [CREATOR, "m.room.member", CREATOR, { membership: "join" }],
    [CREATOR, "m.room.power_levels", "", pl(0, 0)],
    [CREATOR, "m.room.join_rules", "", { join_rule: "public" }],
    [CREATOR, "m.room.history_visibility", "", { history_visibility: "shared" }],
    [A, "m.room.member", A, { membership: "join" }],
    [B, "m.room.member", B, { membership: "join" }],
    [viewer, "m.room.member", viewer, { membership: "join" }],
  ];
  for (const [sender, type, sk, content] of linear) last = (await dag.add(sender, type, sk, content, [last])).eventId;
  for (let i = 0; i < steps; i++) {
    // Every later event descends from the viewer's join (the last of the linear start).
    const accepted = dag.order.slice(linear.length).filter((id) => !dag.events.get(id)!.rejected);
    // Prefer recent events, so branches grow as well as fork.
    const recent = accepted.slice(-6);
    const n = 1 + Math.floor(rand() * 3);
    const prevs = [...new Set(Array.from({ length: n }, () => pick(rand() < 0.8 ? recent : accepted)))];
    const before = await dag.stateBefore(prevs);
    const joined = (u: string): boolean => {
      const id = before.get(stateKeyOf("m.room.member", u));
      return id !== undefined && dag.events.get(id)!.pdu.content.membership === "join";
    };
    const r = rand();
    const admin = pick([CREATOR, A, B]);
    if (r < 0.2) await dag.add(admin, "m.room.topic", "", { topic: `topic ${i}` }, prevs);
    else if (r < 0.35) await dag.add(admin, "m.room.name", "", { name: `name ${i}` }, prevs);
    else if (r < 0.5) await dag.add(pick([CREATOR, A]), "m.room.power_levels", "", pl(pick([0, 10, 20]), pick([0, 50, 100])), prevs);
    else if (r < 0.65) {
      const u = pick([D, E]);
      if (!joined(u)) await dag.add(u, "m.room.member", u, { membership: "join", displayname: `${u} ${i}` }, prevs);
      else await dag.add(u, "m.room.message", undefined, { body: `hello ${i}`, msgtype: "m.text" }, prevs);
    } else if (r < 0.75 && joined(D)) {
      // D's power level stays below state_default: the auth rules reject this in every order.
      await dag.add(D, "m.room.topic", "", { topic: `forbidden ${i}` }, prevs);
    } else {
      await dag.add(admin, "m.room.message", undefined, { body: `msg ${i}`, msgtype: "m.text" }, prevs);
    }
  }
  return dag;
}

let t: TestServer | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

/** The state a client holds after applying sync responses' `state_after` blocks. */
function applyStateAfter(state: Map<string, string>, body: Record<string, any>, roomId: string): void {
  const room = body.rooms?.join?.[roomId];
  for (const e of (room?.state_after?.events ?? []) as { type: string; state_key: string; event_id: string }[]) {
    state.set(stateKeyOf(e.type, e.state_key), e.event_id);
  }
}

async function stateOfRoom(t: TestServer, viewer: TestUser, roomId: string): Promise<Map<string, string>> {
  const events = (await t.ok("GET", `/rooms/${encodeURIComponent(roomId)}/state`, viewer)) as unknown as { type: string; state_key: string; event_id: string }[];
  return new Map(events.map((e) => [stateKeyOf(e.type, e.state_key), e.event_id]));
}

describe("persistence pipeline", () => {
  it("random DAGs with forks, fed in random orders, end in the resolution of the whole DAG; /sync agrees with /state throughout", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 - 1 }), async (seed) => {
        await t?.close();
        t = await TestServer.start();
        const viewer = await t.user("viewer");
        const dag = await generate(t, viewer.userId, seed, 30);
        const hs = t.hs.services;
        const order = dag.topologicalOrder(prng(seed ^ 0x5bd1e995));
        let since: string | undefined;
        const clientState = new Map<string, string>();
        for (const [i, id] of order.entries()) {
          const e = dag.events.get(id)!;
          const [outcome] = await persist(hs, dag.roomId, [{ kind: "new", event: e }], i === 0 ? { roomId: dag.roomId, roomVersion: "12" } : undefined);
          expect(outcome!.outcome).toBe(e.rejected ? "rejected" : "accepted");
          if (i < 8) continue; // the viewer joins with the 8th event
          const q = since ? `&since=${encodeURIComponent(since)}` : "";
          const inc = await t.ok("GET", `/sync?timeout=0&use_state_after=true${q}`, viewer);
          applyStateAfter(clientState, inc, dag.roomId);
          since = inc.next_batch as string;
          const truth = await stateOfRoom(t, viewer, dag.roomId);
          expect(truth).toEqual(await dag.currentState(order.slice(0, i + 1)));
          expect(clientState).toEqual(truth);
          if (i % 5 === 0 || i === order.length - 1) {
            const full = new Map<string, string>();
            applyStateAfter(full, await t.ok("GET", `/sync?timeout=0&use_state_after=true`, viewer), dag.roomId);
            expect(full).toEqual(truth);
          }
        }
        const expected = await resolveState(rules, dag.extremities().map((x) => dag.after.get(x)!), dag.fetch);
        const current = await hs.store.read(async (tx) => {
          const pre = prefix(dag.roomId);
          return new Map((await tx.range<string>("room_state", { prefix: pre })).map((r) => [r.key.slice(pre.length), r.value]));
        });
        expect(current).toEqual(expected);
        await hs.store.read(async (tx) => {
          for (const [id, e] of dag.events) {
            const stored = await tx.get<StoredEvent>("events", id);
            expect(Boolean(stored?.rejected)).toBe(e.rejected);
            if (!e.rejected) expect(await stateAfter(tx, id)).toEqual(dag.after.get(id));
          }
        });
      }),
      { numRuns: 12 },
    );
  });

  /** A room with the linear start of `generate`, fed through the pipeline; returns the DAG. */
  async function startedRoom(): Promise<{ dag: Dag; hs: TestServer["hs"]["services"]; viewer: TestUser }> {
    t = await TestServer.start();
    const viewer = await t.user("viewer");
    const dag = await generate(t, viewer.userId, 1, 0);
    const hs = t.hs.services;
    for (const [i, id] of dag.order.entries()) {
      await persist(hs, dag.roomId, [{ kind: "new", event: dag.events.get(id)! }], i === 0 ? { roomId: dag.roomId, roomVersion: "12" } : undefined);
    }
    return { dag, hs, viewer };
  }

  const extremitiesOf = (hs: TestServer["hs"]["services"], roomId: string): Promise<string[]> =>
    hs.store.read(async (tx) => (await tx.range("extremities", { prefix: prefix(roomId) })).map((r) => r.key.slice(prefix(roomId).length)));

  it("soft-fails an event that passes against its own state but not the current one: stored, never timeline, state or extremity", async () => {
    const { dag, hs } = await startedRoom();
    const head = dag.order.at(-1)!;
    const join = await dag.add(D, "m.room.member", D, { membership: "join" }, [head]);
    const kick = await dag.add(CREATOR, "m.room.member", D, { membership: "leave" }, [join.eventId]);
    // D speaks on the branch that has not seen the kick.
    const late = await dag.add(D, "m.room.topic", "", { topic: "from the past" }, [join.eventId]);
    const msg = await dag.add(D, "m.room.message", undefined, { body: "still here?" }, [join.eventId]);
    for (const e of [join, kick]) expect((await persist(hs, dag.roomId, [{ kind: "new", event: e }]))[0]!.outcome).toBe("accepted");
    const before = await hs.store.read((tx) => tx.range("room_state", { prefix: prefix(dag.roomId) }));
    for (const e of [late, msg]) {
      const [o] = await persist(hs, dag.roomId, [{ kind: "new", event: e }]);
      // D's topic is rejected outright (power level), the message only soft-fails.
      expect(o!.outcome).toBe(e === msg ? "soft-failed" : "rejected");
      expect(o!.streamPos).toBeUndefined();
    }
    const stored = await hs.store.read((tx) => tx.get<StoredEvent>("events", msg.eventId));
    expect(stored).toMatchObject({ softFailed: true });
    expect(stored!.streamPos).toBeUndefined();
    expect(await extremitiesOf(hs, dag.roomId)).toEqual([kick.eventId]);
    expect(await hs.store.read((tx) => tx.range("room_state", { prefix: prefix(dag.roomId) }))).toEqual(before);
    // Its state after is still known (a later event may name it as a prev).
    expect(await hs.store.read((tx) => stateAfter(tx, msg.eventId))).toEqual(dag.after.get(msg.eventId));
  });

  it("the commit's compare-and-swap refuses a batch decided on extremities that moved", async () => {
    const { dag, hs } = await startedRoom();
    const head = dag.order.at(-1)!;
    const one = await dag.add(A, "m.room.message", undefined, { body: "one" }, [head]);
    const two = await dag.add(B, "m.room.message", undefined, { body: "two" }, [head]);
    // Two writers (e.g. two worker instances: no shared in-process lock) decided on the same extremities.
    const results = await Promise.allSettled([
      persist(hs, dag.roomId, [{ kind: "local", event: one }]),
      persist(hs, dag.roomId, [{ kind: "local", event: two }]),
    ]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const refused = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect(refused.reason).toBeInstanceOf(ExtremitiesChanged);
    const winner = results[0]!.status === "fulfilled" ? one : two;
    expect(await extremitiesOf(hs, dag.roomId)).toEqual([winner.eventId]);
    // A remote event is simply decided again: both end up in the room, as a fork.
    const loser = winner === one ? two : one;
    expect((await persist(hs, dag.roomId, [{ kind: "new", event: loser }]))[0]!.outcome).toBe("accepted");
    expect((await extremitiesOf(hs, dag.roomId)).sort()).toEqual([one.eventId, two.eventId].sort());
  });
});

