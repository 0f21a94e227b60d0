/**
 * Serving a room's events and state to other servers (server-server API "Retrieving events",
 * "Backfilling and retrieving missing events", "Retrieving event authorisation information"):
 * `/event`, `/state`, `/state_ids`, `/event_auth`, `/backfill`, `/get_missing_events`,
 * `/timestamp_to_event`. Every room endpoint first checks that the origin may read the room
 * (federation/access.ts: ACL, in the room or world-readable); events the origin may not see by
 * history visibility are served redacted. Rejected events are never served.
 */
import type { ReadTx } from "../../storage/store.ts";
import { prefix } from "../../storage/store.ts";
import type { RequestContext } from "../context.ts";
import { badJson, invalidParam, missingParam, notFound } from "../errors.ts";
import type { Pdu, RoomRecord, StoredEvent } from "../events/types.ts";
import { isTimelineEvent, refIds } from "../events/types.ts";
import { authChain } from "../rooms/authChain.ts";
import { getEvent, rulesOf, stateBefore } from "../roomserver/state.ts";
import { pduFor, requireServerAccess, serverCanSee } from "./access.ts";

/** The most PDUs one `/backfill` or `/get_missing_events` answer carries, whatever the limit asked. */
const MAX_EVENTS = 100;

/** A PDU transaction answer (`unlimited_pdu_transaction`). */
function pduTransaction(ctx: RequestContext, pdus: Pdu[]): Record<string, unknown> {
  return { origin: ctx.hs.serverName, origin_server_ts: ctx.hs.clock(), pdus };
}

/** An event that may be served at all: known and not rejected. */
async function servable(tx: ReadTx, eventId: string, roomId?: string): Promise<StoredEvent | undefined> {
  const e = await getEvent(tx, eventId);
  if (!e || e.rejected || (roomId !== undefined && e.roomId !== roomId)) return undefined;
  return e;
}

/** `GET /_matrix/federation/v1/event/{eventId}` */
export async function getEventPdu(ctx: RequestContext, params: Record<string, string>, origin: string): Promise<Record<string, unknown>> {
  const pdu = await ctx.hs.store.read(async (tx) => {
    const e = await servable(tx, params.eventId!);
    if (!e) throw notFound("Event not found");
    const room = await requireServerAccess(tx, e.roomId, origin);
    return pduFor(tx, room, origin, e);
  });
  return pduTransaction(ctx, [pdu]);
}

/** The state before `event_id` and its auth chain, for `/state` and `/state_ids`. */
async function stateAt(ctx: RequestContext, roomId: string, origin: string): Promise<{ room: RoomRecord; state: StoredEvent[]; chain: StoredEvent[] }> {
  const eventId = ctx.query("event_id");
  if (eventId === undefined) throw missingParam("event_id is required");
  return ctx.hs.store.read(async (tx) => {
    const room = await requireServerAccess(tx, roomId, origin);
    const e = await servable(tx, eventId, roomId);
    // Outliers have no state here: "doesn't know about the state at that event".
    if (!e || e.outlier || !(await tx.get("event_state", eventId))) throw notFound("Unknown event, or no state known at it");
    const ids = await stateBefore(tx, e);
    const state: StoredEvent[] = [];
    for (const id of ids.values()) {
      const s = await getEvent(tx, id);
      if (s) state.push(s);
    }
    const chain = await authChainOf(tx, room, ids.values());
    return { room, state, chain };
  });
}

/**
 * The auth chain of `ids`. In v12 the create event is in no `auth_events` (the room ID names it),
 * yet a server checking the chain needs it, so it is always included (MSC4291).
 */
async function authChainOf(tx: ReadTx, room: RoomRecord, ids: Iterable<string>): Promise<StoredEvent[]> {
  const chain = await authChain(ids, (id) => getEvent(tx, id));
  if (rulesOf(room).roomIdFromCreate) chain.add("$" + room.roomId.slice(1));
  return loadAll(tx, chain);
}

async function loadAll(tx: ReadTx, ids: Iterable<string>): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  for (const id of ids) {
    const e = await getEvent(tx, id);
    if (e) out.push(e);
  }
  return out;
}

/** State and auth events go out whole: a server that may read the room may read its state. */
function statePdu(e: StoredEvent): Pdu {
  const { unsigned: _unsigned, ...pdu } = e.pdu;
  return pdu as Pdu;
}

/** `GET /_matrix/federation/v1/state/{roomId}` */
export async function getRoomState(ctx: RequestContext, params: Record<string, string>, origin: string): Promise<Record<string, unknown>> {
  const { state, chain } = await stateAt(ctx, params.roomId!, origin);
  return { pdus: state.map(statePdu), auth_chain: chain.map(statePdu) };
}

/** `GET /_matrix/federation/v1/state_ids/{roomId}` */
export async function getRoomStateIds(ctx: RequestContext, params: Record<string, string>, origin: string): Promise<Record<string, unknown>> {
  const { state, chain } = await stateAt(ctx, params.roomId!, origin);
  return { pdu_ids: state.map((e) => e.eventId), auth_chain_ids: chain.map((e) => e.eventId) };
}

/** `GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}` */
export async function getEventAuth(ctx: RequestContext, params: Record<string, string>, origin: string): Promise<Record<string, unknown>> {
  const roomId = params.roomId!;
  const chain = await ctx.hs.store.read(async (tx) => {
    const room = await requireServerAccess(tx, roomId, origin);
    const e = await servable(tx, params.eventId!, roomId);
    if (!e) throw notFound("Event not found");
    const chain = await authChainOf(tx, room, [e.eventId]);
    return chain.filter((x) => x.eventId !== e.eventId);
  });
  return { auth_chain: chain.map(statePdu) };
}

/**
 * A breadth-first walk of `prev_events` from `start`, newest (deepest) first: the events
 * `include` keeps, up to `limit`. Unknown and rejected events end their branch; soft-failed
 * ones are walked only because a requested event references them.
 */
async function walkBack(tx: ReadTx, roomId: string, start: StoredEvent[], limit: number, skip: Set<string>, include: (e: StoredEvent) => boolean): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  const seen = new Set<string>(start.map((e) => e.eventId));
  let frontier = start;
  while (frontier.length && out.length < limit) {
    const next: StoredEvent[] = [];
    for (const e of frontier) {
      if (out.length >= limit) break;
      if (include(e)) out.push(e);
      for (const id of refIds(e.pdu.prev_events ?? [])) {
        if (seen.has(id) || skip.has(id)) continue;
        seen.add(id);
        const p = await servable(tx, id, roomId);
        if (p && !p.outlier) next.push(p);
      }
    }
    next.sort((a, b) => b.pdu.depth - a.pdu.depth);
    frontier = next;
  }
  return out;
}

function parseLimit(raw: unknown, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = typeof raw === "string" ? Number(raw) : raw;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0) throw invalidParam("limit must be a non-negative integer");
  return Math.min(n, MAX_EVENTS);
}

/** `GET /_matrix/federation/v1/backfill/{roomId}` */
export async function getBackfill(ctx: RequestContext, params: Record<string, string>, origin: string): Promise<Record<string, unknown>> {
  const roomId = params.roomId!;
  const from = ctx.queryAll("v");
  if (from.length === 0) throw missingParam("v is required");
  const limitRaw = ctx.query("limit");
  if (limitRaw === undefined) throw missingParam("limit is required");
  const limit = parseLimit(limitRaw, 0);
  const pdus = await ctx.hs.store.read(async (tx) => {
    const room = await requireServerAccess(tx, roomId, origin);
    const start = await timelineEventsOf(tx, from, roomId);
    start.sort((a, b) => b.pdu.depth - a.pdu.depth);
    const events = await walkBack(tx, roomId, start, limit, new Set(), () => true);
    return Promise.all(events.map((e) => pduFor(tx, room, origin, e)));
  });
  return pduTransaction(ctx, pdus);
}

/** The events of `ids` that this room may serve and that are in its DAG (not outliers): where a walk back starts. */
async function timelineEventsOf(tx: ReadTx, ids: readonly string[], roomId: string): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  for (const id of ids) {
    const e = await servable(tx, id, roomId);
    if (e && !e.outlier) out.push(e);
  }
  return out;
}

/** `POST /_matrix/federation/v1/get_missing_events/{roomId}` */
export async function postGetMissingEvents(ctx: RequestContext, params: Record<string, string>, origin: string): Promise<Record<string, unknown>> {
  const roomId = params.roomId!;
  const body = await ctx.json();
  const ids = (v: unknown, name: string): string[] => {
    if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) throw badJson(`${name} must be a list of event IDs`);
    return v as string[];
  };
  const earliest = new Set(ids(body.earliest_events, "earliest_events"));
  const latest = ids(body.latest_events, "latest_events");
  const limit = parseLimit(body.limit, 10);
  const minDepth = body.min_depth === undefined ? 0 : body.min_depth;
  if (typeof minDepth !== "number" || !Number.isInteger(minDepth)) throw badJson("min_depth must be an integer");
  const events = await ctx.hs.store.read(async (tx) => {
    const room = await requireServerAccess(tx, roomId, origin);
    const start = await timelineEventsOf(tx, latest, roomId);
    const latestIds = new Set(latest);
    // The latest events themselves are what the requester has; their ancestors are what it lacks.
    const found = await walkBack(tx, roomId, start, limit + start.length, earliest, (e) => !latestIds.has(e.eventId) && e.pdu.depth >= minDepth);
    const picked = found.slice(0, limit).sort((a, b) => a.pdu.depth - b.pdu.depth);
    return Promise.all(picked.map((e) => pduFor(tx, room, origin, e)));
  });
  return { events };
}

/** `GET /_matrix/federation/v1/timestamp_to_event/{roomId}` */
export async function getTimestampToEvent(ctx: RequestContext, params: Record<string, string>, origin: string): Promise<Record<string, unknown>> {
  const roomId = params.roomId!;
  const tsRaw = ctx.query("ts");
  const dir = ctx.query("dir");
  if (tsRaw === undefined || !/^\d+$/.test(tsRaw)) throw invalidParam("ts must be a timestamp in milliseconds");
  if (dir !== "f" && dir !== "b") throw invalidParam("dir must be f or b");
  const ts = Number(tsRaw);
  return ctx.hs.store.read(async (tx) => {
    await requireServerAccess(tx, roomId, origin);
    const rows = await tx.range<string>("timeline", { prefix: prefix(roomId), ...(dir === "b" ? { reverse: true } : {}) });
    let best: StoredEvent | undefined;
    for (const row of rows) {
      const e = await getEvent(tx, row.value);
      if (!e || !isTimelineEvent(e)) continue;
      const t = e.pdu.origin_server_ts;
      if (dir === "f" ? t < ts : t > ts) continue;
      const better = !best || (dir === "f" ? t < best.pdu.origin_server_ts : t > best.pdu.origin_server_ts);
      if (better && (await serverCanSee(tx, origin, e))) best = e;
    }
    if (!best) throw notFound("No event found");
    return { event_id: best.eventId, origin_server_ts: best.pdu.origin_server_ts };
  });
}
