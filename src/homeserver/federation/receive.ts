/**
 * Remote PDUs into the room (server-server API "PDUs", "Checks performed on receipt of a PDU",
 * "Backfilling and retrieving missing events"). Each PDU of a transaction goes through
 * rooms/receive.ts (format, signatures, hashes → redacted copy, auth events) and then the
 * persistence pipeline (state before, rejection, soft failure, state resolution on forks):
 *
 * - auth events this server lacks are fetched with `/event_auth` and stored as outliers, each
 *   checked against its own auth events first;
 * - missing `prev_events` are asked of the origin with `/get_missing_events`; when the gap is
 *   larger than that fetches, the state before the event comes from `/state_ids` (its unknown
 *   events through `/event`, or `/state` when there are many) and the event is stored on it;
 * - PDUs whose prevs are all known are persisted together in one pipeline batch.
 *
 * Network requests are never made inside a store transaction; one transaction's PDUs for a room
 * are handled under a per-room lock so two transactions do not fetch the same gap twice.
 */
import type { Services } from "../context.ts";
import type { JsonObject } from "../crypto/signing.ts";
import { eventIdOf } from "../events/hashes.ts";
import type { EventWithId, Pdu, StateMap } from "../events/types.ts";
import { refIds, stateKeyOf } from "../events/types.ts";
import type { ResolvableEvent } from "../rooms/authChain.ts";
import { receivePdu } from "../rooms/receive.ts";
import type { ReceiveVerdict } from "../rooms/receive.ts";
import type { RoomVersionRules } from "../rooms/versions.ts";
import { roomVersion } from "../rooms/versions.ts";
import { withRoomLock } from "../roomserver/lock.ts";
import { persist } from "../roomserver/persist.ts";
import type { PersistInput, PersistOutcome } from "../roomserver/persist.ts";
import { getEvent, getRoom, rulesOf } from "../roomserver/state.ts";
import { prefix } from "../../storage/store.ts";
import { serverAllowedInRoom } from "./acl.ts";
import { serverInRoom } from "./access.ts";

/** One PDU's entry in the `/send` answer: no `error` means it was handled. */
export interface PduResult {
  error?: string;
}

/** How many events one `/get_missing_events` asks for before falling back to `/state_ids`. */
const MISSING_EVENTS_LIMIT = 20;
/** Up to this many unknown state/auth events are fetched one by one with `/event`; more take one `/state`. */
const FETCH_ONE_BY_ONE = 10;
/** Room versions from 4 on name events by their reference hash alike: used to name PDUs of rooms we do not know. */
const MODERN_RULES = roomVersion("10")!;

const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);
const enc = encodeURIComponent;

/** Locks of inbound processing, per homeserver store (local sends take their own lock). */
const receiveLocks = new WeakMap<object, object>();
function lockOwner(hs: Services): object {
  let owner = receiveLocks.get(hs.store);
  if (!owner) receiveLocks.set(hs.store, (owner = {}));
  return owner;
}

/**
 * Handles the PDUs of one transaction from `origin`; returns the per-PDU results keyed by event ID.
 * PDUs for rooms this server is not in, or whose room's ACL denies `origin`, are refused with an
 * error and nothing of them is stored.
 */
export async function receivePdus(hs: Services, origin: string, pdus: readonly unknown[]): Promise<Record<string, PduResult>> {
  const results: Record<string, PduResult> = {};
  const byRoom = new Map<string, { rules: RoomVersionRules; items: { raw: JsonObject; eventId: string }[] }>();
  const verdicts = new Map<string, string | undefined>(); // roomId → refusal, undefined = admitted
  for (const raw of pdus) {
    if (!isObject(raw) || typeof raw.room_id !== "string") {
      hs.logger.debug(`PDU from ${origin} without a room_id ignored`);
      continue;
    }
    const roomId = raw.room_id;
    let refusal = verdicts.get(roomId);
    let rules = byRoom.get(roomId)?.rules;
    if (!verdicts.has(roomId)) {
      const seen = await hs.store.read(async (tx) => {
        const room = await getRoom(tx, roomId);
        if (!room) return { refusal: "This server is not in the room" };
        if (!(await serverInRoom(tx, roomId, hs.serverName))) return { room, refusal: "This server is not in the room" };
        if (!(await serverAllowedInRoom(tx, roomId, origin))) return { room, refusal: "Server is denied by the room's server ACL" };
        return { room };
      });
      refusal = seen.refusal;
      verdicts.set(roomId, refusal);
      if (seen.room) rules = rulesOf(seen.room);
      if (!refusal) byRoom.set(roomId, { rules: rules!, items: [] });
    }
    let eventId: string | undefined;
    try {
      eventId = (rules ?? MODERN_RULES).referencePairs ? (typeof raw.event_id === "string" ? raw.event_id : undefined) : await eventIdOf(raw, rules ?? MODERN_RULES);
    } catch {
      eventId = undefined; // not canonical JSON: no ID to answer under, and dropped below anyway
    }
    if (refusal) {
      if (eventId) results[eventId] = { error: refusal };
      continue;
    }
    if (!eventId) {
      hs.logger.debug(`PDU from ${origin} in ${roomId} has no computable event ID; dropped`);
      continue;
    }
    byRoom.get(roomId)!.items.push({ raw, eventId });
  }
  for (const [roomId, { rules, items }] of byRoom) {
    // Older events first, so a transaction carrying a chain needs no fetch for its own members.
    items.sort((a, b) => (Number(a.raw.depth) || 0) - (Number(b.raw.depth) || 0));
    await withRoomLock(lockOwner(hs), roomId, async () => {
      const receiver = new RoomReceiver(hs, origin, roomId, rules);
      Object.assign(results, await receiver.receiveAll(items));
    });
  }
  return results;
}

/**
 * Stores history `origin` sent in a `/backfill` answer (federation/backfill.ts): every PDU through
 * the checks on receipt (its auth chain fetched when missing), then the pipeline as backfilled;
 * the oldest ones, none of whose prevs this server has, get the state before them from
 * `/state_ids`. Under the room's receive lock. Returns what became of each stored event.
 */
export async function receiveBackfill(hs: Services, origin: string, roomId: string, pdus: readonly unknown[]): Promise<PersistOutcome[]> {
  const room = await hs.store.read((tx) => getRoom(tx, roomId));
  if (!room) return [];
  const rules = rulesOf(room);
  return withRoomLock(lockOwner(hs), roomId, () => new RoomReceiver(hs, origin, roomId, rules).receiveBackfill(pdus));
}

/** Inbound processing for one room. */
export class RoomReceiver {
  /** Events checked in this run but maybe not yet stored (auth events of later ones, the pending batch). */
  private readonly overlay = new Map<string, ResolvableEvent>();
  private pending: PersistInput[] = [];
  /** What became of batched events, once their batch was persisted. */
  private readonly flushed = new Map<string, PersistOutcome>();

  private readonly hs: Services;
  private readonly origin: string;
  private readonly roomId: string;
  private readonly rules: RoomVersionRules;

  constructor(hs: Services, origin: string, roomId: string, rules: RoomVersionRules) {
    this.hs = hs;
    this.origin = origin;
    this.roomId = roomId;
    this.rules = rules;
  }

  /** Handles `items` in order; returns their results. */
  async receiveAll(items: { raw: JsonObject; eventId: string }[]): Promise<Record<string, PduResult>> {
    const results: Record<string, PduResult> = {};
    const waiting: string[] = [];
    for (const { raw, eventId } of items) {
      try {
        const r = await this.receive(raw, eventId, true);
        if (r === "pending") waiting.push(eventId);
        else results[eventId] = r;
      } catch (err) {
        this.hs.logger.warn(`PDU ${eventId} from ${this.origin}:`, err instanceof Error ? err.message : err);
        results[eventId] = { error: `Could not process the event: ${err instanceof Error ? err.message : String(err)}` };
      }
    }
    try {
      await this.flush();
    } catch (err) {
      this.hs.logger.warn(`PDUs from ${this.origin}:`, err instanceof Error ? err.message : err);
    }
    for (const id of waiting) {
      const o = this.flushed.get(id);
      results[id] = o ? resultOf(o) : { error: "Could not store the event" };
    }
    return results;
  }

  /** Backfilled history (see `receiveBackfill`), persisted in one batch, oldest first. */
  async receiveBackfill(raws: readonly unknown[]): Promise<PersistOutcome[]> {
    const items: { raw: JsonObject; eventId: string }[] = [];
    for (const raw of raws) {
      if (!isObject(raw)) continue;
      try {
        items.push({ raw, eventId: this.rules.referencePairs ? String(raw.event_id) : await eventIdOf(raw, this.rules) });
      } catch {
        // not canonical JSON: dropped
      }
    }
    items.sort((a, b) => (Number(a.raw.depth) || 0) - (Number(b.raw.depth) || 0));
    for (const { raw, eventId } of items) {
      if (this.overlay.has(eventId)) continue;
      const known = await this.hs.store.read((tx) => getEvent(tx, eventId));
      if (known && !known.outlier) continue;
      try {
        let verdict = await this.check(raw, eventId);
        if (verdict.outcome === "drop" && verdict.missingAuthEvents) {
          await this.fetchAuthChain(eventId);
          verdict = await this.check(raw, eventId);
        }
        if (verdict.outcome === "drop" || !verdict.event || verdict.event.roomId !== this.roomId) {
          this.hs.logger.debug(`backfilled ${eventId} from ${this.origin} dropped: ${verdict.reason ?? "not in this room"}`);
          continue;
        }
        const event = verdict.event;
        const prevIds = refIds(event.pdu.prev_events ?? []);
        const missing = await this.missingPrevs(event.pdu);
        // None of its prevs is here: the state before it comes from the server that sent it.
        const stateBefore = prevIds.length > 0 && missing.length === prevIds.length ? await this.fetchStateBefore(eventId) : undefined;
        const rejected = verdict.outcome === "reject" ? (verdict.reason ?? "rejected") : undefined;
        this.pending.push({ kind: "backfill", event, ...(stateBefore ? { stateBefore } : {}), ...(rejected ? { rejected } : {}) });
        this.overlay.set(eventId, { eventId, pdu: event.pdu, ...(rejected ? { rejected } : {}) });
      } catch (err) {
        this.hs.logger.debug(`backfilled ${eventId} from ${this.origin}:`, err instanceof Error ? err.message : err);
      }
    }
    return this.flush();
  }

  /**
   * One remote event. "pending" when it joined the batch that `flush` persists. `fetchMissing`:
   * whether missing prevs may be asked for with `/get_missing_events` (not for events that call
   * returned, so the fetching stays bounded).
   */
  private async receive(raw: JsonObject, eventId: string, fetchMissing: boolean): Promise<PduResult | "pending"> {
    if (this.overlay.has(eventId)) return {};
    const known = await this.hs.store.read((tx) => getEvent(tx, eventId));
    // An outlier goes on: arriving as a new event, it joins the timeline now.
    if (known && !known.outlier) return {};
    let verdict = await this.check(raw);
    if (verdict.outcome === "drop" && verdict.missingAuthEvents) {
      await this.fetchAuthChain(eventId);
      verdict = await this.check(raw);
    }
    if (verdict.outcome === "drop" || !verdict.event) return { error: verdict.reason ?? "dropped" };
    const event = verdict.event;
    if (event.roomId !== this.roomId) return { error: "The event is not in this room" };
    if (event.eventId !== eventId) return { error: "The event ID does not match" };
    let missing = await this.missingPrevs(event.pdu);
    if (verdict.outcome === "reject") {
      // Rejected by its own auth events (step 4): stored as rejected, never state; with its prevs
      // unknown it has no place in the DAG here, so it is kept as a rejected outlier.
      const [o] = await this.persistNow([{ kind: missing.length ? "outlier" : "new", event, rejected: verdict.reason ?? "rejected" }]);
      return o ? resultOf(o) : {};
    }
    if (missing.length === 0) {
      this.pending.push({ kind: "new", event });
      this.overlay.set(eventId, { eventId, pdu: event.pdu });
      return "pending";
    }
    await this.flush();
    if (fetchMissing) {
      await this.fetchMissingEvents(event);
      missing = await this.missingPrevs(event.pdu);
    }
    let stateBefore: StateMap | undefined;
    if (missing.length) stateBefore = await this.fetchStateBefore(eventId);
    const [o] = await this.persistNow([{ kind: "new", event, ...(stateBefore ? { stateBefore } : {}) }]);
    return o ? resultOf(o) : {};
  }

  /** The checks on receipt (steps 1–4) against the events known so far. */
  private check(raw: JsonObject, expectedEventId?: string): Promise<ReceiveVerdict> {
    return receivePdu(raw, this.rules, {
      // The origin verified these signatures itself: it is asked for keys their servers cannot give.
      keys: (server, keyId, validAt) => this.hs.keyring.key(server, keyId, validAt, this.origin),
      verifier: this.hs.verifier,
      fetchEvent: (id) => this.fetchEvent(id),
      ...(expectedEventId !== undefined ? { expectedEventId } : {}),
    });
  }

  private async fetchEvent(id: string): Promise<ResolvableEvent | undefined> {
    const mine = this.overlay.get(id);
    if (mine) return mine;
    const e = await this.hs.store.read((tx) => getEvent(tx, id));
    return e && e.roomId === this.roomId ? { eventId: e.eventId, pdu: e.pdu, ...(e.rejected ? { rejected: e.rejected } : {}) } : undefined;
  }

  /** The `prev_events` with no state here (unknown, or only known as outliers), batch members excluded. */
  private async missingPrevs(pdu: Pdu): Promise<string[]> {
    const ids = refIds(pdu.prev_events ?? []).filter((id) => !this.pending.some((p) => p.event.eventId === id));
    if (ids.length === 0) return [];
    return this.hs.store.read(async (tx) => {
      const out: string[] = [];
      for (const id of ids) if (!(await tx.get("event_state", id))) out.push(id);
      return out;
    });
  }

  /** Persists the pending batch (events whose prevs are known or earlier in the batch). */
  private async flush(): Promise<PersistOutcome[]> {
    if (this.pending.length === 0) return [];
    const batch = this.pending;
    this.pending = [];
    const outcomes = await this.persistNow(batch);
    for (const o of outcomes) this.flushed.set(o.eventId, o);
    return outcomes;
  }

  private async persistNow(inputs: PersistInput[]): Promise<PersistOutcome[]> {
    const outcomes = await persist(this.hs, this.roomId, inputs);
    for (const i of inputs) this.overlay.delete(i.event.eventId);
    return outcomes;
  }

  private client() {
    const client = this.hs.federation;
    if (!client) throw new Error("no federation transport to fetch missing events with");
    return client;
  }

  /** Fetches the auth chain of `eventId` from the origin and stores what is missing as outliers. */
  private async fetchAuthChain(eventId: string): Promise<void> {
    const answer = await this.client().json<{ auth_chain?: unknown }>(this.origin, "GET", `/_matrix/federation/v1/event_auth/${enc(this.roomId)}/${enc(eventId)}`);
    await this.storeOutliers(Array.isArray(answer.auth_chain) ? answer.auth_chain : []);
  }

  /**
   * Checks and stores events known only as auth or state events (outliers): oldest first, each
   * against its own auth events (step 4), rejected ones kept as rejected. `wanted`: when given, only
   * those IDs are taken (events fetched by ID).
   */
  private async storeOutliers(raws: readonly unknown[], wanted?: Set<string>): Promise<void> {
    const candidates: { raw: JsonObject; eventId: string }[] = [];
    for (const raw of raws) {
      if (!isObject(raw)) continue;
      let id: string;
      try {
        id = this.rules.referencePairs ? String(raw.event_id) : await eventIdOf(raw, this.rules);
      } catch {
        continue;
      }
      if (wanted && !wanted.has(id)) continue;
      candidates.push({ raw, eventId: id });
    }
    candidates.sort((a, b) => (Number(a.raw.depth) || 0) - (Number(b.raw.depth) || 0));
    const inputs: PersistInput[] = [];
    const seen = new Set<string>();
    for (const { raw, eventId } of candidates) {
      if (seen.has(eventId) || (await this.fetchEvent(eventId))) continue;
      seen.add(eventId);
      const v = await this.check(raw, eventId);
      if (v.outcome === "drop" || !v.event || v.event.roomId !== this.roomId) {
        this.hs.logger.debug(`outlier ${eventId} from ${this.origin} dropped: ${v.reason ?? "not in this room"}`);
        continue;
      }
      const rejected = v.outcome === "reject" ? (v.reason ?? "rejected") : undefined;
      this.overlay.set(eventId, { eventId, pdu: v.event.pdu, ...(rejected ? { rejected } : {}) });
      inputs.push({ kind: "outlier", event: v.event, ...(rejected ? { rejected } : {}) });
    }
    if (inputs.length) await this.persistNow(inputs);
  }

  /** Asks the origin for the events between the room's forward extremities and `event`, and handles them. */
  private async fetchMissingEvents(event: EventWithId): Promise<void> {
    const earliest = await this.hs.store.read(async (tx) => {
      const pre = prefix(this.roomId);
      return (await tx.range<true>("extremities", { prefix: pre })).map((r) => r.key.slice(pre.length));
    });
    let answer: { events?: unknown };
    try {
      answer = await this.client().json(this.origin, "POST", `/_matrix/federation/v1/get_missing_events/${enc(this.roomId)}`, {
        body: { earliest_events: earliest, latest_events: [event.eventId], limit: MISSING_EVENTS_LIMIT, min_depth: 0 },
      });
    } catch (err) {
      this.hs.logger.debug(`get_missing_events from ${this.origin} failed:`, err instanceof Error ? err.message : err);
      return;
    }
    const items: { raw: JsonObject; eventId: string }[] = [];
    for (const raw of Array.isArray(answer.events) ? answer.events : []) {
      if (!isObject(raw)) continue;
      try {
        items.push({ raw, eventId: this.rules.referencePairs ? String(raw.event_id) : await eventIdOf(raw, this.rules) });
      } catch {
        // not canonical JSON: dropped
      }
    }
    items.sort((a, b) => (Number(a.raw.depth) || 0) - (Number(b.raw.depth) || 0));
    for (const { raw, eventId } of items) {
      if (eventId === event.eventId) continue;
      const r = await this.receive(raw, eventId, false);
      if (r === "pending") await this.flush();
    }
  }

  /**
   * The state before `eventId` as the origin has it (`/state_ids`); state and auth events this
   * server lacks are fetched (`/event` one by one, or `/state` for many) and stored as outliers.
   * Events that fail their checks are left out of the state.
   */
  private async fetchStateBefore(eventId: string): Promise<StateMap> {
    const client = this.client();
    const path = `/_matrix/federation/v1/state_ids/${enc(this.roomId)}`;
    const ids = await client.json<{ pdu_ids?: unknown; auth_chain_ids?: unknown }>(this.origin, "GET", path, { query: [["event_id", eventId]] });
    const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);
    const stateIds = strings(ids.pdu_ids);
    const all = [...new Set([...strings(ids.auth_chain_ids), ...stateIds])];
    const unknown: string[] = [];
    for (const id of all) if (!(await this.fetchEvent(id))) unknown.push(id);
    if (unknown.length > FETCH_ONE_BY_ONE) {
      const full = await client.json<{ pdus?: unknown; auth_chain?: unknown }>(this.origin, "GET", `/_matrix/federation/v1/state/${enc(this.roomId)}`, { query: [["event_id", eventId]] });
      const raws = [...(Array.isArray(full.auth_chain) ? full.auth_chain : []), ...(Array.isArray(full.pdus) ? full.pdus : [])];
      await this.storeOutliers(raws, new Set(unknown));
    } else if (unknown.length) {
      const raws: unknown[] = [];
      for (const id of unknown) {
        try {
          const one = await client.json<{ pdus?: unknown }>(this.origin, "GET", `/_matrix/federation/v1/event/${enc(id)}`);
          if (Array.isArray(one.pdus)) raws.push(...one.pdus);
        } catch (err) {
          this.hs.logger.debug(`event ${id} from ${this.origin}:`, err instanceof Error ? err.message : err);
        }
      }
      await this.storeOutliers(raws, new Set(unknown));
    }
    const state: StateMap = new Map();
    for (const id of stateIds) {
      const e = await this.fetchEvent(id);
      if (e && !e.rejected && e.pdu.state_key !== undefined) state.set(stateKeyOf(e.pdu.type, e.pdu.state_key), id);
    }
    return state;
  }
}

function resultOf(o: PersistOutcome): PduResult {
  // Rejected and soft-failed events were handled ("If an event in an incoming transaction is
  // rejected, this should not cause the transaction request to be responded to with an error").
  return o.outcome === "missing-prevs" ? { error: o.reason ?? "prev_events unknown" } : {};
}
