/**
 * Client-Server "Server Side Search": `POST /search`, category `room_events` only. A case-insensitive
 * match of every word of the search term against `content.body` (and/or `content.name`,
 * `content.topic` per `keys`) of events the user may see in rooms they are joined to, newest first
 * (`order_by: recent`) or by rank, the number of occurrences of the words (`order_by: rank`, the
 * default), newest first among equals. `next_batch` is `s<N>` for `recent` (the next page holds
 * matches at stream positions below N) and `r<offset>` for `rank`.
 */
import type { RequestContext } from "../context.ts";
import { MatrixError, badJson } from "../errors.ts";
import { prefix } from "../../storage/store.ts";
import type { StoredEvent } from "../events/types.ts";
import { stateKeyOf, isTimelineEvent } from "../events/types.ts";
import { canSeeEvent } from "../roomserver/visibility.ts";
import { EventServer } from "../roomserver/serve.ts";
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

/** `POST /_matrix/client/v3/search` */
export async function postSearch(ctx: RequestContext): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const body = await ctx.json();
  const cats = asObject(body.search_categories);
  if (!cats) throw badJson("search_categories is required");
  const criteria = asObject(cats.room_events);
  if (!criteria) return { search_categories: {} };
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
  const beforeLimit = Math.min(beforeAsked, MAX_SEARCH_CONTEXT);
  const afterLimit = Math.min(afterAsked, MAX_SEARCH_CONTEXT);
  const includeProfile = context?.include_profile === true;
  const nextBatch = ctx.query("next_batch");
  let below = Infinity;
  let offset = 0;
  if (nextBatch !== undefined) {
    const r = /^r(\d+)$/.exec(nextBatch);
    if (r) offset = Number(r[1]);
    else below = parseToken(nextBatch, "next_batch");
  }
  const words = criteria.search_term.toLowerCase().split(/\s+/).filter((w) => w.length > 0);
  if (words.length === 0) throw new MatrixError(400, "M_INVALID_PARAM", "search_term is empty");

  const textOf = (e: StoredEvent): string => {
    const c = e.pdu.content;
    return (keys as string[]).map((k) => c[k.slice("content.".length)]).filter((v): v is string => typeof v === "string").join("\n").toLowerCase();
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

  return ctx.hs.store.read(async (tx) => {
    const rooms = (await joinedRooms(tx, me.userId)).filter((r) => (!filter.rooms || filter.rooms.includes(r)) && !filter.not_rooms?.includes(r));
    // Every match across the user's rooms, newest first.
    const hits: StoredEvent[] = [];
    const server = new EventServer(tx, me, ctx.hs.clock());
    for (const roomId of rooms) {
      const rows = await tx.range<string>("timeline", { prefix: prefix(roomId) });
      for (const row of rows) {
        const e = await getEvent(tx, row.value);
        if (!e || !matches(e) || !matchesFilter(filter, e)) continue;
        if (!(await canSeeEvent(tx, me.userId, e))) continue;
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
    const results: Record<string, unknown>[] = [];
    for (const e of page) {
      const r: Record<string, unknown> = { rank: rankOf.get(e.eventId), result: await server.serve(e) };
      if (context) {
        const keep = (x: StoredEvent): Promise<boolean> => canSeeEvent(tx, me.userId, x);
        const before = await walkTimeline(tx, { roomId: e.roomId, dir: "b", from: e.streamPos! - 1, limit: beforeLimit, keep });
        const after = await walkTimeline(tx, { roomId: e.roomId, dir: "f", from: e.streamPos!, limit: afterLimit, keep });
        const ctxOut: Record<string, unknown> = {
          events_before: await server.serveAll(before.events),
          events_after: await server.serveAll(after.events),
          start: `s${Math.max(0, before.last)}`,
          end: `s${after.last}`,
        };
        if (includeProfile) {
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
    if (criteria.include_state === true) {
      const state: Record<string, unknown[]> = {};
      for (const roomId of new Set(page.map((e) => e.roomId))) state[roomId] = await server.serveAll([...(await stateOf(roomId)).values()], { bundle: false });
      out.state = state;
    }
    return { search_categories: { room_events: out } };
  });
}
