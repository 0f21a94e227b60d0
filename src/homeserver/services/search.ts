/**
 * Client-Server "Server Side Search" (`POST /search`, client/search.ts), category `room_events` only. A case-insensitive
 * match of every word of the search term against `content.body` (and/or `content.name`,
 * `content.topic` per `keys`) of events the user may see in rooms they are joined to, newest first
 * (`order_by: recent`) or by rank, the number of occurrences of the words (`order_by: rank`, the
 * default), newest first among equals. `next_batch` is `s<N>` for `recent` (the next page holds
 * matches at stream positions below N) and `r<offset>` for `rank`.
 */
import type { Services } from "../context.ts";
import { MatrixError, badJson } from "../errors.ts";
import { prefix } from "../../storage/store.ts";
import type { ReadTx } from "../../storage/store.ts";
import { withSnapshotCache } from "../../storage/snapshotCache.ts";
import type { ClientEvent, StoredEvent } from "../events/types.ts";
import { stateKeyOf, isTimelineEvent } from "../events/types.ts";
import { canSeeEvent } from "../roomserver/visibility.ts";
import { EventServer } from "../roomserver/serve.ts";
import type { Viewer } from "../roomserver/serve.ts";
import type { RoomEventFilter } from "../roomserver/filter.ts";
import { matchesFilter, parseRoomEventFilter } from "../roomserver/filter.ts";
import { joinedRooms } from "../roomserver/membership.ts";
import { currentState, getEvent } from "../roomserver/state.ts";
import { walkTimeline } from "../roomserver/timeline.ts";
import { parseToken } from "../roomserver/tokens.ts";
import { asObject } from "../validate.ts";

const KEYS = new Set(["content.body", "content.name", "content.topic"]);
const PAGE = 10;
/** The most events of context a result gets on each side: one search must not serve the whole room per hit. */
export const MAX_SEARCH_CONTEXT = 50;

/** A parsed, checked `room_events` search: plain data, so it can be handed to a worker thread. */
export interface SearchQuery {
  /** The search term's words, lower-cased. */
  words: string[];
  keys: string[];
  orderBy: "rank" | "recent";
  filter: RoomEventFilter;
  limit: number;
  /** `event_context`, limits already capped. */
  context?: { before: number; after: number; includeProfile: boolean };
  includeState: boolean;
  /** `order_by: recent` pages: only matches at stream positions below this. */
  below: number;
  /** `order_by: rank` pages: how many ranked matches to skip. */
  offset: number;
}

/** One search to run: the query, who asks, and the server's time. */
export interface SearchJob {
  viewer: Viewer;
  now: number;
  query: SearchQuery;
}

/** Checks a `/search` body; undefined when it asks for no `room_events` (the only category served). */
export function parseSearch(body: Record<string, unknown>, nextBatch: string | undefined): SearchQuery | undefined {
  const cats = asObject(body.search_categories);
  if (!cats) throw badJson("search_categories is required");
  const criteria = asObject(cats.room_events);
  if (!criteria) return undefined;
  if (typeof criteria.search_term !== "string") throw badJson("search_term is required");
  const keys = criteria.keys ?? [...KEYS];
  if (!Array.isArray(keys) || !keys.every((k) => typeof k === "string" && KEYS.has(k))) throw badJson("keys must be a subset of content.body, content.name, content.topic");
  const orderBy = criteria.order_by ?? "rank";
  if (orderBy !== "rank" && orderBy !== "recent") throw badJson("order_by must be rank or recent");
  const filter = parseRoomEventFilter(criteria.filter);
  const limit = Math.min(filter.limit ?? PAGE, 100);
  const context = asObject(criteria.event_context);
  const beforeAsked = context ? Number(context.before_limit ?? 5) : 0;
  const afterAsked = context ? Number(context.after_limit ?? 5) : 0;
  if (!Number.isInteger(beforeAsked) || !Number.isInteger(afterAsked) || beforeAsked < 0 || afterAsked < 0) throw badJson("event_context limits must be non-negative integers");
  let below = Infinity;
  let offset = 0;
  if (nextBatch !== undefined) {
    const r = /^r(\d+)$/.exec(nextBatch);
    if (r) offset = Number(r[1]);
    else below = parseToken(nextBatch, "next_batch");
  }
  const words = criteria.search_term.toLowerCase().split(/\s+/).filter((w) => w.length > 0);
  if (words.length === 0) throw new MatrixError(400, "M_INVALID_PARAM", "search_term is empty");
  return {
    words,
    keys: keys as string[],
    orderBy,
    filter,
    limit,
    ...(context ? { context: { before: Math.min(beforeAsked, MAX_SEARCH_CONTEXT), after: Math.min(afterAsked, MAX_SEARCH_CONTEXT), includeProfile: context.include_profile === true } } : {}),
    includeState: criteria.include_state === true,
    below,
    offset,
  };
}

/** The `/search` response body for `job`, read in `snapshot`. */
export async function searchRoomEvents(snapshot: ReadTx, job: SearchJob): Promise<Record<string, unknown>> {
  // Context windows of neighbouring hits overlap, and every visibility check reads the same state
  // events: each row is read once.
  const tx = withSnapshotCache(snapshot);
  const { viewer, query } = job;
  const { words, keys, orderBy, filter, limit, context, below, offset } = query;
  const textOf = (e: StoredEvent): string => {
    const c = e.pdu.content;
    return keys.map((k) => c[k.slice("content.".length)]).filter((v): v is string => typeof v === "string").join("\n").toLowerCase();
  };
  const matches = (e: StoredEvent): boolean => {
    if (e.redactedBy || !isTimelineEvent(e)) return false;
    const text = textOf(e);
    return text.length > 0 && words.every((w) => text.includes(w));
  };
  /** Occurrences of the search words in the event's text. */
  const rank = (e: StoredEvent): number => {
    const text = textOf(e);
    return words.reduce((n, w) => n + text.split(w).length - 1, 0);
  };

  const rooms = (await joinedRooms(tx, viewer.userId)).filter((r) => (!filter.rooms || filter.rooms.includes(r)) && !filter.not_rooms?.includes(r));
  // Every match across the user's rooms, newest first.
  const hits: StoredEvent[] = [];
  const server = new EventServer(tx, viewer, job.now);
  for (const roomId of rooms) {
    const rows = await tx.range<string>("timeline", { prefix: prefix(roomId) });
    for (const row of rows) {
      const e = await getEvent(tx, row.value);
      if (!e || !matches(e) || !matchesFilter(filter, e)) continue;
      if (!(await canSeeEvent(tx, viewer.userId, e))) continue;
      // A message of an erased account that this viewer is served redacted must not match by its text.
      if (await server.erasedFor(e)) continue;
      hits.push(e);
    }
  }
  const rankOf = new Map(hits.map((e) => [e.eventId, rank(e)]));
  hits.sort((a, b) => (orderBy === "rank" ? rankOf.get(b.eventId)! - rankOf.get(a.eventId)! : 0) || (b.streamPos ?? 0) - (a.streamPos ?? 0));
  const remaining = orderBy === "rank" ? hits.slice(offset) : hits.filter((e) => (e.streamPos ?? 0) < below);
  const page = remaining.slice(0, limit);
  // Current state per room, read once for profile_info and include_state however many hits share a room.
  const states = new Map<string, Map<string, StoredEvent>>();
  const stateOf = async (roomId: string): Promise<Map<string, StoredEvent>> => {
    let s = states.get(roomId);
    if (!s) states.set(roomId, (s = await currentState(tx, roomId)));
    return s;
  };
  // An event in the context of several hits is checked and served once (the response repeats it).
  const seen = new Map<string, Promise<boolean>>();
  const keep = (x: StoredEvent): Promise<boolean> => memo(seen, x.eventId, () => canSeeEvent(tx, viewer.userId, x));
  const served = new Map<string, Promise<ClientEvent>>();
  const serve = (x: StoredEvent): Promise<ClientEvent> => memo(served, x.eventId, () => server.serve(x));
  const serveAll = async (xs: StoredEvent[]): Promise<ClientEvent[]> => {
    const out: ClientEvent[] = [];
    for (const x of xs) out.push(await serve(x));
    return out;
  };
  const results: Record<string, unknown>[] = [];
  for (const e of page) {
    const r: Record<string, unknown> = { rank: rankOf.get(e.eventId), result: await serve(e) };
    if (context) {
      const before = await walkTimeline(tx, { roomId: e.roomId, dir: "b", from: e.streamPos! - 1, limit: context.before, keep });
      const after = await walkTimeline(tx, { roomId: e.roomId, dir: "f", from: e.streamPos!, limit: context.after, keep });
      const ctxOut: Record<string, unknown> = {
        events_before: await serveAll(before.events),
        events_after: await serveAll(after.events),
        start: `s${Math.max(0, before.last)}`,
        end: `s${after.last}`,
      };
      if (context.includeProfile) {
        const profileInfo: Record<string, unknown> = {};
        const state = await stateOf(e.roomId);
        for (const x of [e, ...before.events, ...after.events]) {
          const m = state.get(stateKeyOf("m.room.member", x.pdu.sender))?.pdu.content;
          if (m) profileInfo[x.pdu.sender] = { ...(typeof m.displayname === "string" ? { displayname: m.displayname } : {}), ...(typeof m.avatar_url === "string" ? { avatar_url: m.avatar_url } : {}) };
        }
        ctxOut.profile_info = profileInfo;
      }
      r.context = ctxOut;
    }
    results.push(r);
  }
  const out: Record<string, unknown> = { results, count: hits.length, highlights: words };
  const last = page[page.length - 1];
  if (last && remaining.length > page.length) out.next_batch = orderBy === "rank" ? `r${offset + page.length}` : `s${last.streamPos}`;
  if (query.includeState) {
    const state: Record<string, unknown[]> = {};
    for (const roomId of new Set(page.map((e) => e.roomId))) state[roomId] = await server.serveAll([...(await stateOf(roomId)).values()], { bundle: false });
    out.state = state;
  }
  return { search_categories: { room_events: out } };
}

/** `cache[k]`, computed by `f` the first time. */
function memo<T>(cache: Map<string, Promise<T>>, k: string, f: () => Promise<T>): Promise<T> {
  let p = cache.get(k);
  if (!p) cache.set(k, (p = f()));
  return p;
}

/** Runs a search on this thread, in one read. */
export async function runSearch(hs: Services, job: SearchJob): Promise<Record<string, unknown>> {
  return hs.store.read((tx) => searchRoomEvents(tx, job));
}
