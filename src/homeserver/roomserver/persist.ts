/**
 * The persistence pipeline: every event enters a room here, local sends and remote PDUs alike
 * (Dendrite's `InputRoomEvent`, Conduit's `append_pdu`). Stages:
 *
 * 1. **verify** — the caller's: hashes and signatures of remote events (rooms/receive.ts), outside
 *    any transaction; local events are built and signed by us.
 * 2. **load** — one read: the room record, its forward extremities and their current state.
 * 3. **decide** — outside transactions (state resolution may await crypto): the state before each
 *    event (its one prev's state, the current state when its prevs are exactly the extremities —
 *    the linear fast path — or state resolution over its prevs), the auth rules against its
 *    `auth_events` and that state (rejected), against the current state (soft failure), the state
 *    after it, and the new current state (resolution over the new extremities unless linear).
 * 4. **commit** — ONE write transaction for the whole batch, guarded by a compare-and-swap on the
 *    room's extremities: if another writer (another worker instance) moved them since `load`, the
 *    batch is decided again. Stream positions are allocated here, so a position is visible only
 *    once committed and never reused.
 * 5. **publish** — after the commit: the output stream (and through it the `/sync` waiters).
 *
 * Rejected and soft-failed events are stored as such: never in the timeline, never state, never a
 * forward extremity.
 */
import type { ReadTx, WriteTx } from "../../storage/store.ts";
import { key, prefix, pos, unpos } from "../../storage/store.ts";
import type { Services } from "../context.ts";
import { nextStreamPos } from "../context.ts";
import type { EventWithId, Pdu, RoomRecord, StateMap, StoredEvent } from "../events/types.ts";
import { isTimelineEvent, refIds, stateKeyOf } from "../events/types.ts";
import type { AuthEventEntry } from "../rooms/auth.ts";
import { authStateKeysFor, checkAuth, checkAuthEvents } from "../rooms/auth.ts";
import { resolveState } from "../rooms/stateRes.ts";
import { requiredPowerLevel, userPowerLevel } from "../rooms/powerLevels.ts";
import { serverOf } from "../rooms/ids.ts";
import type { RoomVersionRules } from "../rooms/versions.ts";
import { asObject } from "../validate.ts";
import type { EventStateRecord, MembershipRecord, StateLogEntry } from "./state.ts";
import { getEvent, rulesOf, stateOfGroup } from "./state.ts";
import { diffState, writeGroup } from "./stateGroups.ts";

/**
 * How an event arrives: built here, a new remote event, only known as someone's auth event, or
 * history older than the timeline fetched with `/backfill` (state and auth like a new event, but
 * no stream position, never a forward extremity, the current state untouched: the `backfill`
 * table orders it, newest first).
 */
export type InputKind = "local" | "new" | "outlier" | "backfill";

/** One event for the pipeline. */
export interface PersistInput {
  kind: InputKind;
  event: EventWithId;
  /** A local client's transaction, recorded under `tkey` with the result. */
  txn?: { deviceId: string; txnId: string };
  tkey?: string;
  /** The event a local redaction redacts, when it takes effect (decided by the sender's power). */
  applyRedaction?: string;
  /**
   * The state before the event as the caller verified it, used instead of the state after its
   * `prev_events` (which this server may not have): e.g. the resident server's answer to a
   * federated join, checked in full by the caller. Its events must be known (stored, or earlier in
   * the batch, typically as outliers).
   */
  stateBefore?: StateMap;
  /**
   * With `stateBefore`: this server (re)enters the room here (a federated join). The event becomes
   * the room's only forward extremity and the state after it the current state; the current state
   * this server had (if any: it left earlier) is stale, so it is neither merged nor used for soft
   * failure.
   */
  entersRoom?: boolean;
  /**
   * Accepted by this server as a resident for another server (send_join, send_leave, send_knock):
   * besides its sender's server, this server must pass it on to the room's other servers.
   */
  relay?: boolean;
  /**
   * A remote event the checks on receipt already rejected (step 4, its own auth events): stored as
   * rejected whatever the state before it says.
   */
  rejected?: string;
}

/** What became of one input. */
export interface PersistOutcome {
  eventId: string;
  outcome: "accepted" | "soft-failed" | "rejected" | "outlier" | "duplicate" | "missing-prevs" | "backfilled";
  streamPos?: number;
  reason?: string;
}

/** The room's extremities changed between load and commit: decide again. */
export class ExtremitiesChanged extends Error {
  override readonly name = "ExtremitiesChanged";
}

const CREATE_SK = stateKeyOf("m.room.create", "");
const MEMBER_PREFIX = stateKeyOf("m.room.member", "");
const POWER_SK = stateKeyOf("m.room.power_levels", "");
const MAX_ATTEMPTS = 8;

/**
 * Every table the commit stage reads or writes: the scope of its write transaction, so that
 * writes elsewhere (receipts, to-device, account data …) run beside it in IndexedDB.
 */
export const COMMIT_TABLES = [
  "settings", "rooms", "extremities", "backfill", "state_groups", "event_state", "events", "timeline", "stream",
  "room_state", "room_state_log", "memberships", "relations", "redactions_pending", "txn_ids",
] as const;
/** The load stage's read. */
const LOAD_TABLES = ["rooms", "extremities", "events", "redactions_pending"] as const;

/** Feeds `inputs` (in order) into room `roomId`; for a new room, `newRoom` is its record. */
export async function persist(hs: Services, roomId: string, inputs: PersistInput[], newRoom?: RoomRecord): Promise<PersistOutcome[]> {
  return (await persistRooms(hs, [{ roomId, inputs, ...(newRoom ? { newRoom } : {}) }]))[0]!;
}

/** One room's part of a `persistRooms` call. */
export interface RoomBatch {
  roomId: string;
  inputs: PersistInput[];
  /** The record of a room this batch creates (its compare-and-swap: the room must not exist). */
  newRoom?: RoomRecord;
  /** Fields to set on the room record with the commit (e.g. `tombstonedBy`). */
  patch?: Partial<RoomRecord>;
}

/**
 * Persists batches into several rooms in ONE write transaction (a room upgrade: the new room, the
 * old room's tombstone and the moved aliases), with `alsoWrite` run inside it for rows outside
 * rooms. Each room keeps its own compare-and-swap.
 */
export async function persistRooms(hs: Services, batches: RoomBatch[], alsoWrite?: (tx: WriteTx) => Promise<void>): Promise<PersistOutcome[][]> {
  for (let attempt = 1; ; attempt++) {
    const plans: Plan[] = [];
    for (const b of batches) {
      const plan = await decide(hs, b.roomId, b.inputs, b.newRoom);
      if (b.patch) Object.assign(plan.room, b.patch);
      plans.push(plan);
    }
    try {
      const outcomes = await hs.store.write(async (tx) => {
        const out: PersistOutcome[][] = [];
        for (const plan of plans) out.push(await commit(tx, plan));
        if (alsoWrite) await alsoWrite(tx);
        return out;
      }, alsoWrite ? undefined : { tables: COMMIT_TABLES });
      for (const plan of plans) publish(hs, plan);
      return outcomes;
    } catch (err) {
      // Local events were built on the extremities they name: their caller rebuilds them.
      const local = batches.some((b) => b.inputs.some((i) => i.kind === "local"));
      if (!(err instanceof ExtremitiesChanged) || attempt >= MAX_ATTEMPTS || local) throw err;
    }
  }
}

/** An event the batch stores, with everything the commit writes for it. */
interface Planned {
  input: PersistInput;
  stored: StoredEvent;
  outcome: PersistOutcome["outcome"];
  reason?: string;
  /** Groups to write, in order (parent first). */
  groups: { id: string; parent: string | undefined; changes: StateMap }[];
  eventState?: EventStateRecord;
  /** Current-state changes this event causes: SK → [before, after] (undefined = absent). */
  currentChanges: Map<string, [string | undefined, string | undefined]>;
  /** The membership of each member key that `currentChanges` sets. */
  memberships: Map<string, string>;
  /**
   * For an event that enters the room (`entersRoom`): the change to the state before it, logged at
   * a stream position of its own just before the event's, so `/sync` serves that state as the
   * room's state before its first timeline event.
   */
  priorChanges: Map<string, [string | undefined, string | undefined]>;
  priorMemberships: Map<string, string>;
  /** Whether it joins the timeline (gets a stream position). */
  timeline: boolean;
  /** A remote redaction that takes effect: the event it redacts. */
  redacts?: string;
  /** A remote redaction whose target is not here yet: the target, recorded in `redactions_pending`. */
  pendingTarget?: string;
  /** `redactions_pending` rows this event settles (it is their target). */
  settledPending?: string[];
}

interface Plan {
  roomId: string;
  room: RoomRecord;
  isNew: boolean;
  /** The extremities `load` saw: the commit's compare-and-swap. */
  extremitiesBefore: string[];
  extremitiesAfter: string[];
  events: Planned[];
  duplicates: PersistOutcome[];
}

/** Loads the room and decides every input; nothing is written. */
async function decide(hs: Services, roomId: string, inputs: PersistInput[], newRoom?: RoomRecord): Promise<Plan> {
  const pending = new Map<string, string[]>();
  const loaded = await hs.store.read(async (tx) => {
    pending.clear();
    const pre = prefix(roomId);
    // The reads are asked for together (in IndexedDB each awaited request is a round trip), the
    // inputs' in slices so that a batch of thousands (a join's state) does not queue them all at once.
    const roomAndExtremities = Promise.all([
      newRoom ?? tx.get<RoomRecord>("rooms", roomId),
      newRoom ? [] : tx.range<true>("extremities", { prefix: pre }).then((rows) => rows.map((r) => r.key.slice(pre.length))),
    ]);
    roomAndExtremities.catch(() => undefined);
    const known = new Map<string, boolean>();
    for (let from = 0; from < inputs.length; from += 64) {
      const slice = await Promise.all(inputs.slice(from, from + 64).map(async (i) => {
        // Only a remote event can be the target of a redaction that came first (other servers
        // learn a local event's ID only once it is stored).
        // key = targetEventId|redactionEventId → true
        const [e, waiting] = await Promise.all([
          getEvent(tx, i.event.eventId),
          i.kind === "new" || i.kind === "backfill" ? tx.range<true>("redactions_pending", { prefix: prefix(i.event.eventId) }) : [],
        ]);
        return { i, e, waiting };
      }));
      for (const { i, e, waiting } of slice) {
        // An outlier (known only as an auth or state event) that now arrives as a new event joins the
        // DAG: it is decided like any new event and its row replaced.
        known.set(i.event.eventId, e !== undefined && !(e.outlier && i.kind !== "outlier"));
        const p = prefix(i.event.eventId);
        if (waiting.length) pending.set(i.event.eventId, waiting.map((r) => r.key.slice(p.length)));
      }
    }
    const [room, extremities] = await roomAndExtremities;
    return { room, extremities, known };
  }, { tables: LOAD_TABLES });
  if (!loaded.room) throw new Error(`unknown room ${roomId}`);
  const room: RoomRecord = { ...loaded.room };
  const rules = rulesOf(room);
  const ctx = new DecideContext(hs, roomId, rules, room, loaded.extremities, pending);
  const plan: Plan = { roomId, room, isNew: newRoom !== undefined, extremitiesBefore: loaded.extremities, extremitiesAfter: loaded.extremities, events: [], duplicates: [] };
  for (const input of inputs) {
    if (loaded.known.get(input.event.eventId) || ctx.batch.has(input.event.eventId)) {
      plan.duplicates.push({ eventId: input.event.eventId, outcome: "duplicate" });
      continue;
    }
    plan.events.push(await ctx.decideOne(input));
  }
  plan.extremitiesAfter = ctx.extremities;
  room.currentGroup = ctx.currentGroup;
  room.maxDepth = ctx.maxDepth;
  return plan;
}

/** The decide stage's view of the room, moved along by each event of the batch. */
class DecideContext {
  /** Events of this batch by ID. */
  readonly batch = new Map<string, { stored: StoredEvent; after?: string }>();
  /** States of groups this batch creates (or materialized), by group ID. */
  private readonly groupStates = new Map<string, StateMap>();
  /** Groups this batch will write: parent and changes. */
  private readonly pendingGroups = new Map<string, { parent: string | undefined; changes: StateMap }>();
  extremities: string[];
  currentGroup: string | undefined;
  maxDepth: number;
  /** The current state, once something needed all of it; else read key by key. */
  private current: StateMap | undefined;
  /** Current-state keys the batch changed (overlay over `room_state` while `current` is not loaded). */
  private readonly currentOverlay = new Map<string, string | undefined>();

  private readonly hs: Services;
  private readonly roomId: string;
  private readonly rules: RoomVersionRules;

  /** Redactions waiting for their target: target → redaction IDs (stored ones, then this batch's). */
  private readonly pendingRedactions: Map<string, string[]>;

  constructor(hs: Services, roomId: string, rules: RoomVersionRules, room: RoomRecord, extremities: string[], pendingRedactions: Map<string, string[]>) {
    this.hs = hs;
    this.pendingRedactions = pendingRedactions;
    this.roomId = roomId;
    this.rules = rules;
    this.extremities = [...extremities];
    this.currentGroup = room.currentGroup;
    this.maxDepth = room.maxDepth ?? 0;
  }

  async decideOne(input: PersistInput): Promise<Planned> {
    const { event, kind } = input;
    const pdu = event.pdu;
    const stored: StoredEvent = { eventId: event.eventId, roomId: event.roomId, pdu, ...(input.txn ? { txn: input.txn } : {}), ...(input.relay ? { relay: true } : {}) };
    const planned: Planned = { input, stored, outcome: "accepted", groups: [], currentChanges: new Map(), memberships: new Map(), priorChanges: new Map(), priorMemberships: new Map(), timeline: false };
    if (kind === "outlier") {
      stored.outlier = true;
      if (input.rejected) stored.rejected = input.rejected;
      planned.outcome = "outlier";
      this.batch.set(event.eventId, { stored });
      return planned;
    }
    const isCreate = pdu.type === "m.room.create" && pdu.state_key === "";
    const prevIds = refIds(pdu.prev_events ?? []);
    const sk = pdu.state_key !== undefined ? stateKeyOf(pdu.type, pdu.state_key) : undefined;

    // --- the state before the event ---
    let beforeGroup: string | undefined;
    let beforeMap: StateMap | undefined;
    if (input.stateBefore && input.entersRoom) this.extremities = [];
    const backfill = kind === "backfill";
    const linear = !backfill && !isCreate && !input.stateBefore && sameSet(prevIds, this.extremities) && this.currentGroup !== undefined;
    if (input.stateBefore) {
      // Given by the caller: one root group holding it in full (it shares nothing known with ours).
      beforeMap = new Map(input.stateBefore);
      beforeGroup = `${event.eventId}<`;
      this.addGroup(planned, beforeGroup, undefined, new Map(beforeMap), beforeMap);
      planned.eventState = { after: "", before: beforeGroup };
    } else if (isCreate) {
      beforeMap = new Map();
    } else if (linear) {
      beforeGroup = this.currentGroup;
    } else {
      const prevGroups: string[] = [];
      for (const id of prevIds) {
        const g = await this.afterGroupOf(id);
        if (g !== undefined) prevGroups.push(g);
      }
      if (prevGroups.length === 0) {
        planned.outcome = "missing-prevs";
        planned.reason = "none of the prev_events is known";
        return planned;
      }
      if (new Set(prevGroups).size === 1) beforeGroup = prevGroups[0];
      else {
        const states = await Promise.all(prevGroups.map((g) => this.groupState(g)));
        beforeMap = await resolveState(this.rules, states, (id) => this.fetchEvent(id));
        beforeGroup = `${event.eventId}<`;
        this.addGroup(planned, beforeGroup, prevGroups[0], diffState(states[0]!, beforeMap), beforeMap);
        planned.eventState = { after: "", before: beforeGroup };
      }
    }

    // --- the auth rules ---
    const authKeys = authStateKeysFor(pdu.type, pdu.state_key, pdu.sender, asObject(pdu.content) ?? {}, this.rules);
    let verdict = input.rejected !== undefined ? { allowed: false as const, reason: input.rejected } : kind === "new" || backfill ? await this.checkAuthEvents(pdu) : undefined;
    if (!verdict || verdict.allowed) {
      const authState = await this.pdusAt(beforeGroup, beforeMap, linear, [...authKeys, CREATE_SK]);
      verdict = checkAuth(pdu, event.eventId, authState, this.rules);
    }
    if (backfill) stored.backfilled = true;
    if (!verdict.allowed) {
      // Rejected: stored as such; its state after is the state before it.
      stored.rejected = verdict.reason;
      planned.outcome = "rejected";
      planned.reason = verdict.reason;
      const after = beforeGroup ?? (await this.rootGroup(planned, event.eventId, beforeMap!));
      planned.eventState = { after, ...(planned.eventState?.before ? { before: planned.eventState.before } : {}) };
      this.batch.set(event.eventId, { stored, after });
      return planned;
    }
    if (kind === "new" && !linear && !input.entersRoom) {
      // Step 6, soft failure: "the event is checked against the current state of the room".
      const cur = await this.pdusAt(undefined, undefined, true, [...authKeys, CREATE_SK]);
      const now = checkAuth(pdu, event.eventId, cur, this.rules);
      if (!now.allowed) {
        stored.softFailed = true;
        planned.outcome = "soft-failed";
        planned.reason = now.reason;
      }
    }

    // A local redaction's target was decided by its sender (roomserver/send.ts, `applyRedaction`).
    if (pdu.type === "m.room.redaction" && kind !== "local" && planned.outcome === "accepted") {
      const raw = this.rules.redactsInContent ? pdu.content.redacts : pdu.redacts;
      const target = typeof raw === "string" ? await this.fetchEvent(raw) : undefined;
      if (typeof raw === "string" && !target) {
        planned.pendingTarget = raw;
        this.pendingRedactions.set(raw, [...(this.pendingRedactions.get(raw) ?? []), event.eventId]);
      } else if (target && (await this.redactionApplies(pdu, target, await this.pdusAt(beforeGroup, beforeMap, linear, [POWER_SK, CREATE_SK])))) {
        planned.redacts = target.eventId;
      }
    }
    // Redactions that arrived before this event.
    const waiting = this.pendingRedactions.get(event.eventId);
    if (waiting && planned.outcome === "accepted") {
      planned.settledPending = waiting.map((r) => key(event.eventId, r));
      for (const rid of waiting) {
        const r = await this.fetchEvent(rid);
        if (!r || !isTimelineEvent(r)) continue;
        const group = await this.afterGroupOf(rid);
        if (group !== undefined && (await this.redactionApplies(r.pdu, stored, await this.pdusAt(group, undefined, false, [POWER_SK, CREATE_SK])))) {
          stored.redactedBy = rid;
          break;
        }
      }
    }

    // --- the state after ---
    let after: string;
    if (sk !== undefined) {
      after = event.eventId;
      this.addGroup(planned, after, beforeGroup, new Map([[sk, event.eventId]]), beforeMap && new Map(beforeMap).set(sk, event.eventId));
    } else {
      after = beforeGroup ?? (await this.rootGroup(planned, event.eventId, beforeMap!));
    }
    planned.eventState = { after, ...(planned.eventState?.before ? { before: planned.eventState.before } : {}) };
    this.batch.set(event.eventId, { stored, after });
    if (backfill) {
      // Older than everything here: no stream position, the extremities and current state stay.
      planned.outcome = "backfilled";
      return planned;
    }
    this.maxDepth = Math.max(this.maxDepth, pdu.depth);
    if (planned.outcome === "soft-failed") return planned;

    // --- the new forward extremities and current state ---
    planned.timeline = true;
    const prevSet = new Set(prevIds);
    const newExtremities = [...this.extremities.filter((x) => !prevSet.has(x)), event.eventId];
    const coversAll = this.extremities.every((x) => prevSet.has(x));
    if (coversAll) {
      // Every extremity is an ancestor: the current state is the state after this event.
      if (linear || isCreate) {
        if (sk !== undefined) planned.currentChanges.set(sk, [await this.currentValue(sk), event.eventId]);
      } else if (input.entersRoom && beforeMap) {
        const from = await this.currentState();
        for (const [k, v] of diffState(from, beforeMap)) planned.priorChanges.set(k, [from.get(k), v === "" ? undefined : v]);
        if (sk !== undefined) planned.currentChanges.set(sk, [beforeMap.get(sk), event.eventId]);
      } else {
        const from = await this.currentState();
        for (const [k, v] of diffState(from, await this.groupState(after))) planned.currentChanges.set(k, [from.get(k), v === "" ? undefined : v]);
      }
      this.currentGroup = after;
    } else {
      // A fork: the current state is the resolution of the states after every extremity.
      const states = await Promise.all(newExtremities.map(async (x) => this.groupState((await this.afterGroupOf(x))!)));
      const resolved = await resolveState(this.rules, states, (id) => this.fetchEvent(id));
      const from = await this.currentState();
      const changes = diffState(from, resolved);
      for (const [k, v] of changes) planned.currentChanges.set(k, [from.get(k), v === "" ? undefined : v]);
      const gid = `${event.eventId}~`;
      this.addGroup(planned, gid, this.currentGroup, changes, resolved);
      this.currentGroup = gid;
    }
    for (const [changes, memberships] of [[planned.priorChanges, planned.priorMemberships], [planned.currentChanges, planned.memberships]] as const) {
      for (const [k, [, v]] of changes) {
        if (v !== undefined && k.startsWith(MEMBER_PREFIX)) {
          const m = (await this.fetchEvent(v))?.pdu.content.membership;
          memberships.set(k, typeof m === "string" ? m : "leave");
        }
        this.currentOverlay.set(k, v);
        if (this.current) {
          if (v === undefined) this.current.delete(k);
          else this.current.set(k, v);
        }
      }
    }
    this.extremities = newExtremities;
    return planned;
  }

  /**
   * Whether a remote (or backfilled) redaction takes effect on `target`. From room version 3 the
   * auth rules no longer look at the target: "servers should only apply redactions to events where
   * the sender's domains match, or the sender of the redaction has the appropriate permissions per
   * the power levels" (server-server API, "Redactions"). `state`: power levels (and create) at the
   * redaction. A redaction whose target is not here yet waits in `redactions_pending`.
   */
  private async redactionApplies(redaction: Pdu, target: StoredEvent, state: Map<string, Pdu>): Promise<boolean> {
    if (target.roomId !== this.roomId || target.outlier || target.rejected || target.softFailed) return false;
    if (serverOf(target.pdu.sender) === serverOf(redaction.sender)) return true;
    return userPowerLevel(redaction.sender, state, this.rules) >= requiredPowerLevel("redact", state);
  }

  /** Writes a root group holding `state` for an event whose state has no stored group yet (a create). */
  private async rootGroup(planned: Planned, id: string, state: StateMap): Promise<string> {
    this.addGroup(planned, id, undefined, new Map(state), state);
    return id;
  }

  /** Plans a group for the commit; `state`, when the caller has it, is its full state. */
  private addGroup(planned: Planned, id: string, parent: string | undefined, changes: StateMap, state?: StateMap): void {
    planned.groups.push({ id, parent, changes });
    this.pendingGroups.set(id, { parent, changes });
    if (state) this.groupStates.set(id, state);
  }

  /** The group of the state after a known event (batch or store), or undefined. */
  private async afterGroupOf(eventId: string): Promise<string | undefined> {
    const b = this.batch.get(eventId);
    if (b) return b.after;
    const rec = await this.hs.store.read((tx) => tx.get<EventStateRecord>("event_state", eventId), { tables: ["event_state"] });
    return rec?.after;
  }

  /** The state of a group (batch or store). */
  private async groupState(id: string): Promise<StateMap> {
    const mine = this.groupStates.get(id);
    if (mine) return new Map(mine);
    // A group this batch plans is its parent's state with its changes.
    const pending = this.pendingGroups.get(id);
    if (pending) {
      const state = pending.parent !== undefined ? await this.groupState(pending.parent) : new Map<string, string>();
      for (const [k, v] of pending.changes) {
        if (v === "") state.delete(k);
        else state.set(k, v);
      }
      this.groupStates.set(id, state);
      return new Map(state);
    }
    return this.hs.store.read((tx) => stateOfGroup(tx, id), { tables: ["state_groups"] });
  }

  private async fetchEvent(id: string): Promise<StoredEvent | undefined> {
    return this.batch.get(id)?.stored ?? (await this.hs.store.read((tx) => getEvent(tx, id), { tables: ["events"] }));
  }

  /** The whole current state (loaded once, then kept up to date by the batch). */
  private async currentState(): Promise<StateMap> {
    if (!this.current) {
      const pre = prefix(this.roomId);
      const rows = await this.hs.store.read((tx) => tx.range<string>("room_state", { prefix: pre }), { tables: ["room_state"] });
      this.current = new Map(rows.map((r) => [r.key.slice(pre.length), r.value]));
      for (const [k, v] of this.currentOverlay) {
        if (v === undefined) this.current.delete(k);
        else this.current.set(k, v);
      }
    }
    return this.current;
  }

  private async currentValue(sk: string): Promise<string | undefined> {
    if (this.current) return this.current.get(sk);
    if (this.currentOverlay.has(sk)) return this.currentOverlay.get(sk);
    return this.hs.store.read((tx) => tx.get<string>("room_state", key(this.roomId, sk)), { tables: ["room_state"] });
  }

  /**
   * The PDUs of `keys` in a state: the current state when `current` is set (cheap: key by key),
   * else the given map or group.
   */
  private async pdusAt(group: string | undefined, map: StateMap | undefined, current: boolean, keys: string[]): Promise<Map<string, Pdu>> {
    const out = new Map<string, Pdu>();
    let ids: StateMap | undefined = map;
    if (!ids && !current) ids = group !== undefined ? await this.groupState(group) : new Map();
    if (!ids && !this.current) {
      // The linear fast path (every local send): the keys the batch did not change are read with
      // their events in one read transaction rather than one each (in IndexedDB each costs a round trip).
      const stored = [...new Set(keys)].filter((k) => !this.currentOverlay.has(k));
      const found = await this.hs.store.read(async (tx) => {
        const m = new Map<string, StoredEvent>();
        // Asked for together: one round trip for the keys, one for their events.
        await Promise.all(stored.map(async (k) => {
          const id = await tx.get<string>("room_state", key(this.roomId, k));
          const e = id ? (this.batch.get(id)?.stored ?? (await getEvent(tx, id))) : undefined;
          if (e) m.set(k, e);
        }));
        return m;
      }, { tables: ["room_state", "events"] });
      for (const [k, e] of found) out.set(k, e.pdu);
      keys = keys.filter((k) => this.currentOverlay.has(k));
    }
    for (const k of new Set(keys)) {
      const id = ids ? ids.get(k) : await this.currentValue(k);
      const e = id ? await this.fetchEvent(id) : undefined;
      if (e) out.set(k, e.pdu);
    }
    return out;
  }

  /** Rule 3 (2 before v12): the event's `auth_events` themselves. */
  private async checkAuthEvents(pdu: Pdu) {
    const entries: AuthEventEntry[] = [];
    for (const id of refIds(pdu.auth_events ?? [])) {
      const e = await this.fetchEvent(id);
      if (!e) return { allowed: false as const, reason: `auth event ${id} is unknown` };
      entries.push({ eventId: e.eventId, pdu: e.pdu, ...(e.rejected ? { rejected: e.rejected } : {}) });
    }
    return checkAuthEvents(pdu, entries, this.rules);
  }
}

function sameSet(a: string[], b: string[]): boolean {
  if (a.length !== b.length) return false;
  const s = new Set(a);
  return b.every((x) => s.has(x));
}

/** The commit stage, inside the write transaction: the batch's rows, or ExtremitiesChanged. */
async function commit(tx: WriteTx, plan: Plan): Promise<PersistOutcome[]> {
  await compareAndSwap(tx, plan);
  await writeBackfillRows(tx, plan);
  const outcomes: PersistOutcome[] = [...plan.duplicates];
  for (const p of plan.events) {
    if (p.outcome === "missing-prevs") {
      outcomes.push({ eventId: p.stored.eventId, outcome: p.outcome, ...(p.reason ? { reason: p.reason } : {}) });
      continue;
    }
    const e = p.stored;
    if (p.timeline && p.priorChanges.size > 0) writeStateRows(tx, e.roomId, await nextStreamPos(tx), p.priorChanges, p.priorMemberships);
    if (p.timeline) e.streamPos = await nextStreamPos(tx);
    for (const g of p.groups) await writeGroup(tx, plan.roomId, g.id, g.parent, g.changes);
    if (p.eventState) tx.put("event_state", e.eventId, p.eventState); // key = eventId
    tx.put("events", e.eventId, e); // key = eventId
    if (p.timeline) writeTimelineRows(tx, e, p.currentChanges, p.memberships);
    if (p.input.applyRedaction && p.timeline) await applyRedaction(tx, p.input.applyRedaction, e.eventId);
    if (p.redacts) await applyRedaction(tx, p.redacts, e.eventId);
    if (p.pendingTarget !== undefined) tx.put("redactions_pending", key(p.pendingTarget, e.eventId), true);
    for (const k of p.settledPending ?? []) tx.delete("redactions_pending", k);
    const outcome: PersistOutcome = { eventId: e.eventId, outcome: p.outcome, ...(e.streamPos !== undefined ? { streamPos: e.streamPos } : {}), ...(p.reason ? { reason: p.reason } : {}) };
    if (p.input.tkey) tx.put("txn_ids", p.input.tkey, { eventId: e.eventId, streamPos: e.streamPos }); // key = userId|deviceId|txnId
    outcomes.push(outcome);
  }
  // key = roomId|eventId → true (forward extremities)
  for (const x of plan.extremitiesBefore) tx.delete("extremities", key(plan.roomId, x));
  for (const x of plan.extremitiesAfter) tx.put("extremities", key(plan.roomId, x), true);
  tx.put("rooms", plan.roomId, plan.room); // key = roomId
  return outcomes;
}

/**
 * The `backfill` rows of the batch's backfilled events (rejected ones too are left out: never
 * served): ordinals after the room's oldest so far, the deepest event first, so a walk by
 * ordinal goes back in time.
 */
async function writeBackfillRows(tx: WriteTx, plan: Plan): Promise<void> {
  const events = plan.events.filter((p) => p.outcome === "backfilled").map((p) => p.stored);
  if (events.length === 0) return;
  const pre = prefix(plan.roomId);
  const [last] = await tx.range<string>("backfill", { prefix: pre, reverse: true, limit: 1 });
  let ordinal = last ? unpos(last.key.slice(pre.length)) : 0;
  // Stable: equal depths keep the batch's order (its caller's topological order), newest first.
  const newestFirst = events.map((e, i) => ({ e, i })).sort((a, b) => b.e.pdu.depth - a.e.pdu.depth || b.i - a.i);
  for (const { e } of newestFirst) tx.put("backfill", key(plan.roomId, pos(++ordinal)), e.eventId); // key = roomId|pos(ordinal) → eventId
}

/** The compare-and-swap: the extremities (and, for a new room, its absence) are what `load` saw. */
async function compareAndSwap(tx: ReadTx, plan: Plan): Promise<void> {
  if (plan.isNew) {
    if (await tx.get("rooms", plan.roomId)) throw new ExtremitiesChanged(`room ${plan.roomId} exists`);
    return;
  }
  const pre = prefix(plan.roomId);
  const now = (await tx.range<true>("extremities", { prefix: pre })).map((r) => r.key.slice(pre.length));
  if (!sameSet(now, plan.extremitiesBefore)) throw new ExtremitiesChanged(`extremities of ${plan.roomId} moved`);
}

/** The rows of an event in the timeline: timeline, stream, current state and its log, memberships, relations. */
function writeTimelineRows(tx: WriteTx, e: StoredEvent, changes: Map<string, [string | undefined, string | undefined]>, memberships: Map<string, string>): void {
  const streamPos = e.streamPos!;
  tx.put("timeline", key(e.roomId, pos(streamPos)), e.eventId); // key = roomId|pos → eventId
  tx.put("stream", pos(streamPos), { roomId: e.roomId, eventId: e.eventId }); // key = pos → { roomId, eventId }
  writeStateRows(tx, e.roomId, streamPos, changes, memberships);
  const rel = relationOf(e.pdu);
  // A redacted event (a redaction that came before it) counts towards no aggregation.
  if (rel && !e.redactedBy) {
    // key = relatesToEventId|relType|eventId → { type, sender, streamPos, key? }
    tx.put("relations", key(rel.event_id, rel.rel_type, e.eventId), {
      type: e.pdu.type, sender: e.pdu.sender, streamPos, ...(typeof rel.key === "string" ? { key: rel.key } : {}),
    });
  }
}

/** Current-state changes at a stream position: current state, its log, memberships. */
function writeStateRows(tx: WriteTx, roomId: string, streamPos: number, changes: Map<string, [string | undefined, string | undefined]>, memberships: Map<string, string>): void {
  for (const [sk, [prev, id]] of changes) {
    // key = roomId|type|stateKey → eventId
    if (id === undefined) tx.delete("room_state", key(roomId, sk));
    else tx.put("room_state", key(roomId, sk), id);
    // key = roomId|pos|type|stateKey → { id?, prev? }
    tx.put("room_state_log", key(roomId, pos(streamPos), sk), { ...(id !== undefined ? { id } : {}), ...(prev !== undefined ? { prev } : {}) } satisfies StateLogEntry);
  }
  for (const [sk, [, id]] of changes) {
    if (!sk.startsWith(MEMBER_PREFIX)) continue;
    const userId = sk.slice(MEMBER_PREFIX.length);
    // key = userId|roomId → { membership, eventId, streamPos }
    const membership = memberships.get(sk);
    if (id === undefined || membership === undefined) tx.delete("memberships", key(userId, roomId));
    else tx.put("memberships", key(userId, roomId), { membership, eventId: id, streamPos } satisfies MembershipRecord);
  }
}

/**
 * The relation an event declares (`m.relates_to` with a string `rel_type` and `event_id`), which gets
 * a `relations` row. Values with control characters are not indexed: the key separator is one, and
 * `"$x\u001fm.replace"` would file the event as an edit of `$x`.
 */
export function relationOf(pdu: Pdu): { rel_type: string; event_id: string; key?: unknown } | undefined {
  const rel = pdu.content["m.relates_to"] as Record<string, unknown> | undefined;
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  const clean = (v: unknown): v is string => typeof v === "string" && v.length > 0 && !/[\u0000-\u001f\u007f]/.test(v);
  if (rel && typeof rel === "object" && clean(rel.rel_type) && clean(rel.event_id)) {
    return { rel_type: rel.rel_type, event_id: rel.event_id, key: rel.key };
  }
  return undefined;
}

/** Marks `targetId` redacted by `redactionId` and drops it from relation aggregations. */
async function applyRedaction(tx: WriteTx, targetId: string, redactionId: string): Promise<void> {
  const target = await tx.get<StoredEvent>("events", targetId);
  if (!target || target.redactedBy) return;
  tx.put("events", targetId, { ...target, redactedBy: redactionId } satisfies StoredEvent);
  const rel = relationOf(target.pdu);
  // A redacted event no longer counts towards aggregations ("Relationships", redactions).
  if (rel) tx.delete("relations", key(rel.event_id, rel.rel_type, targetId));
}

/** The publish stage: what the batch committed goes on the output stream, in stream order. */
function publish(hs: Services, plan: Plan): void {
  for (const p of plan.events) {
    const e = p.stored;
    if (!p.timeline || e.streamPos === undefined) continue;
    const users = e.pdu.type === "m.room.member" && e.pdu.state_key !== undefined ? [e.pdu.state_key] : [];
    hs.output.publish({ kind: "room_event", streamPos: e.streamPos, roomId: plan.roomId, event: e, origin: p.input.kind === "local" ? "local" : "new", users });
  }
}
