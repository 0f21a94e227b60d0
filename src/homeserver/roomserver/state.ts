/**
 * Reading room state from storage: the current state (`room_state`), the state after any event
 * (`state_snapshots`), memberships and room records. Every read takes a transaction so callers can
 * combine them in one consistent view.
 */
import type { ReadTx } from "../../storage/store.ts";
import { key, prefix, pos as posKey, SEP_END } from "../../storage/store.ts";
import { StateGroupCache, readGroupState } from "./stateGroups.ts";
import type { Pdu, RoomRecord, StoredEvent } from "../events/types.ts";
import { refIds, stateKeyOf } from "../events/types.ts";
import { roomVersion } from "../rooms/versions.ts";
import type { RoomVersionRules } from "../rooms/versions.ts";
import { notFound, unknown } from "../errors.ts";

export type { RoomRecord };

/** The room's record, or undefined if this server does not know the room. */
export function getRoom(tx: ReadTx, roomId: string): Promise<RoomRecord | undefined> {
  return tx.get<RoomRecord>("rooms", roomId);
}

/** The room's record; `404 M_NOT_FOUND` if unknown. */
export async function requireRoom(tx: ReadTx, roomId: string): Promise<RoomRecord> {
  const room = await getRoom(tx, roomId);
  if (!room) throw notFound(`Unknown room ${roomId}`);
  return room;
}

/** The version rules of a room record (a stored room always has a known version). */
export function rulesOf(room: RoomRecord): RoomVersionRules {
  const rules = roomVersion(room.roomVersion);
  if (!rules) throw unknown(`Room ${room.roomId} has unknown version ${room.roomVersion}`);
  return rules;
}

/** One stored event, or undefined. */
export function getEvent(tx: ReadTx, eventId: string): Promise<StoredEvent | undefined> {
  return tx.get<StoredEvent>("events", eventId);
}

/** The current state of a room: SK → stored event. */
export async function currentState(tx: ReadTx, roomId: string): Promise<Map<string, StoredEvent>> {
  // key = roomId|type|stateKey → eventId
  const rows = await tx.range<string>("room_state", { prefix: prefix(roomId) });
  const out = new Map<string, StoredEvent>();
  for (const row of rows) {
    const e = await getEvent(tx, row.value);
    if (e) out.set(stateKeyOf(e.pdu.type, e.pdu.state_key ?? ""), e);
  }
  return out;
}

/** The current state event of one (type, stateKey), or undefined. */
export async function currentStateEvent(tx: ReadTx, roomId: string, type: string, stateKey: string): Promise<StoredEvent | undefined> {
  const id = await tx.get<string>("room_state", key(roomId, type, stateKey));
  return id ? getEvent(tx, id) : undefined;
}

/** The content of a current state event, or undefined. */
export async function currentStateContent(tx: ReadTx, roomId: string, type: string, stateKey = ""): Promise<Record<string, unknown> | undefined> {
  return (await currentStateEvent(tx, roomId, type, stateKey))?.pdu.content;
}

/** The `event_state` value. key = eventId. */
export interface EventStateRecord {
  /** The group holding the state after the event. */
  after: string;
  /** The group holding the state before it, when that is not the state after its one prev event. */
  before?: string;
}

/** Materialized state groups (immutable, and named by event IDs, so one cache serves every store). */
const groupCache = new StateGroupCache();

/** The state after an event: SK → event ID (empty if the event is unknown or an outlier). */
export async function stateAfter(tx: ReadTx, eventId: string): Promise<Map<string, string>> {
  const rec = await tx.get<EventStateRecord>("event_state", eventId);
  return rec ? readGroupState(tx, rec.after, groupCache) : new Map();
}

/** The state of one stored group (see stateGroups.ts). */
export function stateOfGroup(tx: ReadTx, groupId: string): Promise<Map<string, string>> {
  return readGroupState(tx, groupId, groupCache);
}

/** The state before an event: recorded for merges, else the state after its (first known) prev event. */
export async function stateBefore(tx: ReadTx, event: StoredEvent): Promise<Map<string, string>> {
  const rec = await tx.get<EventStateRecord>("event_state", event.eventId);
  if (rec?.before !== undefined) return readGroupState(tx, rec.before, groupCache);
  for (const id of refIds(event.pdu.prev_events ?? [])) {
    const prev = await tx.get<EventStateRecord>("event_state", id);
    if (prev) return readGroupState(tx, prev.after, groupCache);
  }
  return new Map();
}

/** The `room_state_log` value. key = roomId|pos(streamPos)|type|stateKey. */
export interface StateLogEntry {
  /** The current state event of the key from this position on (absent: the key was removed). */
  id?: string;
  /** The one it replaced (absent: the key was new). */
  prev?: string;
}

/**
 * The current state of a room as it was at stream position `at`: today's current state with the
 * logged changes after `at` undone, newest first. Reads O(changes since `at`).
 */
export async function stateAtPos(tx: ReadTx, roomId: string, at: number): Promise<Map<string, string>> {
  const state = new Map<string, string>();
  const pre = prefix(roomId);
  for (const row of await tx.range<string>("room_state", { prefix: pre })) state.set(row.key.slice(pre.length), row.value);
  const later = await tx.range<StateLogEntry>("room_state_log", { prefix: pre, gt: key(roomId, posKey(at)) + SEP_END, reverse: true });
  for (const row of later) {
    const sk = row.key.slice(pre.length + posKey(0).length + 1);
    if (row.value.prev === undefined) state.delete(sk);
    else state.set(sk, row.value.prev);
  }
  return state;
}

/**
 * The state keys whose current-state entry changed after stream position `after` (up to and
 * including `upTo` when given), each with the event it held at `after` (undefined: unset); with
 * `type`, only keys of that event type. Reads O(changes in the range).
 */
export async function stateChangesIn(tx: ReadTx, roomId: string, after: number, upTo?: number, type?: string): Promise<Map<string, string | undefined>> {
  const pre = prefix(roomId);
  const rows = await tx.range<StateLogEntry>("room_state_log", {
    prefix: pre,
    gt: key(roomId, posKey(after)) + SEP_END,
    ...(upTo !== undefined ? { lt: key(roomId, posKey(upTo)) + SEP_END } : {}),
  });
  const out = new Map<string, string | undefined>();
  const typePrefix = type !== undefined ? key(type, "") : "";
  for (const row of rows) {
    const sk = row.key.slice(pre.length + posKey(0).length + 1);
    // The oldest change in the range names what the key held at `after`.
    if (sk.startsWith(typePrefix) && !out.has(sk)) out.set(sk, row.value.prev);
  }
  return out;
}

/** Loads the events of a state map (SK → event ID, e.g. from `stateAfter`): SK → stored event; unknown IDs are left out. */
export async function loadState(tx: ReadTx, state: Map<string, string>): Promise<Map<string, StoredEvent>> {
  const out = new Map<string, StoredEvent>();
  for (const [sk, id] of state) {
    const e = await getEvent(tx, id);
    if (e) out.set(sk, e);
  }
  return out;
}

/** SK → PDU view of a current-state map. */
export function pdusOf(state: Map<string, StoredEvent>): Map<string, Pdu> {
  return new Map([...state].map(([sk, e]) => [sk, e.pdu]));
}

/** A user's current membership in a room (`join`, `invite`, `leave`, `ban`, `knock`), or undefined. */
export async function membershipOf(tx: ReadTx, roomId: string, userId: string): Promise<string | undefined> {
  // key = userId|roomId → { membership, eventId, streamPos }
  const m = await tx.get<MembershipRecord>("memberships", key(userId, roomId));
  return m?.membership;
}

/** The `memberships` value. key = userId|roomId. */
export interface MembershipRecord {
  membership: string;
  eventId: string;
  streamPos: number;
  /** Set by `POST /rooms/{roomId}/forget`; cleared by the next membership change. */
  forgotten?: boolean;
}

/** A user's membership record in a room. */
export function membershipRecord(tx: ReadTx, roomId: string, userId: string): Promise<MembershipRecord | undefined> {
  return tx.get<MembershipRecord>("memberships", key(userId, roomId));
}

/** The membership named by a member event's content (`leave` when absent or malformed). */
export function membershipIn(e: StoredEvent | Pdu | undefined): string | undefined {
  if (!e) return undefined;
  const pdu: Pdu = "pdu" in e && typeof e.pdu === "object" ? (e as StoredEvent).pdu : (e as Pdu);
  const m = pdu.content?.membership;
  return typeof m === "string" ? m : undefined;
}

/**
 * Whether the membership history ending at `eventId` (a user's member event, walked back through
 * `unsigned.replaces_state`) holds a join; with `newerThan`, only among events after that stream
 * position (older or position-less events end the walk).
 */
export async function joinedInHistory(tx: ReadTx, eventId: string | undefined, newerThan?: number): Promise<boolean> {
  let id = eventId;
  for (let hops = 0; id && hops < 1000; hops++) {
    const e = await getEvent(tx, id);
    if (!e) return false;
    if (newerThan !== undefined && (e.streamPos === undefined || e.streamPos <= newerThan)) return false;
    if (membershipIn(e) === "join") return true;
    const prev: unknown = e.pdu.unsigned?.replaces_state;
    id = typeof prev === "string" ? prev : undefined;
  }
  return false;
}

/** The membership of `userId` in a state map, or undefined. */
export async function membershipInState(tx: ReadTx, state: Map<string, string>, userId: string): Promise<string | undefined> {
  const id = state.get(stateKeyOf("m.room.member", userId));
  if (!id) return undefined;
  return membershipIn(await getEvent(tx, id));
}

/** The newest timeline event of a room with stream position ≤ `upTo` (or the newest overall). */
export async function latestEventAt(tx: ReadTx, roomId: string, upTo?: number): Promise<StoredEvent | undefined> {
  // key = roomId|pos(streamPos) → eventId
  const rows = await tx.range<string>("timeline", {
    prefix: prefix(roomId),
    ...(upTo !== undefined ? { lte: key(roomId, posKey(upTo)) } : {}),
    reverse: true,
    limit: 1,
  });
  return rows[0] ? getEvent(tx, rows[0].value) : undefined;
}


/** The user IDs whose membership in the room's current state is `membership`. */
export async function membersWith(tx: ReadTx, roomId: string, membership: string): Promise<string[]> {
  const rows = await tx.range<string>("room_state", { prefix: prefix(roomId, "m.room.member") });
  const out: string[] = [];
  for (const row of rows) {
    const e = await getEvent(tx, row.value);
    if (e && membershipIn(e) === membership && e.pdu.state_key !== undefined) out.push(e.pdu.state_key);
  }
  return out;
}

/**
 * Where the user's current run of `join` memberships began: their member events are walked back
 * (`unsigned.replaces_state`) past profile changes to the join.
 */
export async function joinedSince(tx: ReadTx, userId: string, rec: MembershipRecord): Promise<number> {
  let at = rec.streamPos;
  let id: unknown = rec.eventId;
  for (let hops = 0; typeof id === "string" && hops < 100; hops++) {
    const e = await getEvent(tx, id);
    if (!e || membershipIn(e) !== "join" || e.pdu.state_key !== userId) break;
    at = e.streamPos ?? at;
    id = e.pdu.unsigned?.replaces_state;
  }
  return at;
}

/**
 * The servers in a room: those of the members joined in its current state (server-server API:
 * where a room's events are sent, and who may ask for its history), sorted.
 */
export async function serversInRoom(tx: ReadTx, roomId: string): Promise<string[]> {
  const servers = new Set<string>();
  for (const userId of await membersWith(tx, roomId, "join")) servers.add(userId.slice(userId.indexOf(":") + 1));
  return [...servers].sort();
}
