/**
 * Client-Server "Syncing" pagination (`/messages`), `/context` and `/timestamp_to_event`.
 *
 * Pagination tokens (roomserver/tokens.ts): `s<N>` names the point just after global stream
 * position N, the same numbers `/sync` uses. Backwards from `s<N>` yields events at positions ≤ N
 * (newest first); forwards yields positions > N. A sync `next_batch` `s<N>` therefore works as a
 * forward `from`, and a sync timeline whose first event is at P has `prev_batch` `s<P-1>`. Tokens
 * that start with `s<N>` followed by `_…` (multi-part sync tokens), `t<N>` and a bare `N` are read
 * the same way.
 */
import type { RequestContext } from "../context.ts";
import { MatrixError, notFound } from "../errors.ts";
import { MAX_LIMIT, limitParam } from "../validate.ts";
import type { ReadTx } from "../../storage/store.ts";
import { key, pos, prefix } from "../../storage/store.ts";
import type { StoredEvent } from "../events/types.ts";
import { stateKeyOf, isTimelineEvent } from "../events/types.ts";
import { currentStreamPos } from "../context.ts";
import { withSnapshotCache } from "../../storage/snapshotCache.ts";

import { readableState, readableUpTo } from "../roomserver/access.ts";
import { canSeeEvent, requireVisibleEvent } from "../roomserver/visibility.ts";
import { EventServer } from "../roomserver/serve.ts";
import { filterFromQuery, matchesFilter } from "../roomserver/filter.ts";
import type { RoomEventFilter } from "../roomserver/filter.ts";
import { getEvent, loadState, requireRoom, stateAfter } from "../roomserver/state.ts";
import { makeBackfillToken, makeToken, parseToken, readBackfillToken } from "../roomserver/tokens.ts";
import { walkTimeline } from "../roomserver/timeline.ts";
import { backfillFromServers, backwardExtremities, walkBackfill } from "../federation/backfill.ts";

/** The member events lazy loading asks for: those of the given senders in the state the user may read. */
async function lazyMembers(tx: ReadTx, roomId: string, userId: string, senders: Set<string>, at?: string): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  if (at) {
    const state = await stateAfter(tx, at);
    for (const s of senders) {
      const id = state.get(stateKeyOf("m.room.member", s));
      const e = id ? await getEvent(tx, id) : undefined;
      if (e) out.push(e);
    }
    return out;
  }
  const state = await readableState(tx, roomId, userId);
  for (const s of senders) {
    const e = state.get(stateKeyOf("m.room.member", s));
    if (e) out.push(e);
  }
  return out;
}

/** Rounds of `/backfill` one `/messages` request may start when it runs out of history. */
const BACKFILL_ROUNDS = 3;

/** `GET /_matrix/client/v3/rooms/{roomId}/messages` */
export async function getMessages(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const dir = ctx.query("dir");
  if (dir !== "b" && dir !== "f") throw new MatrixError(400, "M_INVALID_PARAM", "dir must be b or f");
  // An empty `from`/`to` is no token at all (Synapse reads it so, and clients send it).
  const fromRaw = ctx.query("from") || undefined;
  const toRaw = ctx.query("to") || undefined;
  const filter = filterFromQuery(ctx.query("filter"));
  const limit = Math.min(limitParam(ctx, 10), filter.limit ?? MAX_LIMIT);
  // Tokens into the history backfilled from other servers (`b<K>`), before the whole timeline.
  const fromBackfill = fromRaw !== undefined ? readBackfillToken(fromRaw) : undefined;
  const toBackfill = toRaw !== undefined ? readBackfillToken(toRaw) : undefined;
  // Without `from`, backwards starts at the newest event (the stream head is read only then).
  const from = fromBackfill !== undefined ? 0 : fromRaw !== undefined ? parseToken(fromRaw, "from") : dir === "b" ? await currentStreamPos(ctx.hs.store) : 0;
  const to = toBackfill !== undefined ? (dir === "b" ? undefined : Infinity) : toRaw !== undefined ? parseToken(toRaw, "to") : undefined;
  const roomId = p.roomId!;
  const page = () => ctx.hs.store.read(async (snapshot) => {
    // Every event's visibility check and its serving read the same few state events and the
    // event's own state record: each row is read once (in IndexedDB each read is a round trip).
    const tx = withSnapshotCache(snapshot);
    const { upTo } = await readableUpTo(tx, roomId, me.userId);
    const keep = async (e: StoredEvent): Promise<boolean> => matchesFilter(filter, e) && isTimelineEvent(e) && (await canSeeEvent(tx, me.userId, e));
    let events: StoredEvent[] = [];
    let end: string | undefined;
    /** Backwards, the history ran out before `limit` and older history may exist on other servers. */
    let wantOlder = false;
    if (dir === "b") {
      // A user who left reads up to their leave and no further.
      const start = Math.min(from, upTo);
      // Into the backfilled history when the timeline runs out (unless `to` stops the walk first).
      let intoBackfill = fromBackfill;
      if (fromBackfill === undefined) {
        const walk = await walkTimeline(tx, { roomId, dir, from: start, ...(to !== undefined ? { to } : {}), limit, keep });
        events = walk.events;
        // "If no further events are available … this property is omitted": backwards, only when the
        // walk reached the start of the room; one that stopped at `to` has older events beyond it.
        if (!walk.exhausted) end = makeToken(walk.last);
        else if (to !== undefined) {
          if (to > 0) end = makeToken(to);
        } else intoBackfill = 1;
      }
      if (intoBackfill !== undefined) {
        const walk = await walkBackfill(tx, { roomId, dir, from: intoBackfill, ...(toBackfill !== undefined ? { to: toBackfill } : {}), limit: limit - events.length, keep });
        events = [...events, ...walk.events];
        if (!walk.exhausted) end = makeBackfillToken(walk.last);
        else if (toBackfill !== undefined) end = makeBackfillToken(toBackfill);
        else if (events.length < limit && (await backwardExtremities(tx, roomId)).length > 0) {
          wantOlder = true;
          end = makeBackfillToken(walk.last);
        }
      }
    } else {
      const stop = upTo !== Infinity ? Math.min(to ?? Infinity, upTo) : to;
      let timelineFrom: number | undefined = from;
      if (fromBackfill !== undefined) {
        // Forwards through the backfilled history towards the timeline's start.
        const walk = await walkBackfill(tx, { roomId, dir, from: fromBackfill, ...(toBackfill !== undefined ? { to: toBackfill } : {}), limit, keep });
        events = walk.events;
        end = makeBackfillToken(walk.last);
        timelineFrom = walk.exhausted ? 0 : undefined;
      }
      if (timelineFrom !== undefined) {
        const walk = await walkTimeline(tx, {
          roomId, dir, from: timelineFrom, ...(stop !== undefined && stop !== Infinity ? { to: stop } : {}), limit: limit - events.length, keep,
        });
        events = [...events, ...walk.events];
        // Forwards always gives a token so the client can continue from it later.
        end = makeToken(Math.max(walk.last, timelineFrom));
      }
    }
    const server = new EventServer(tx, me, ctx.hs.clock());
    const out: Record<string, unknown> = { chunk: await server.serveAll(events), start: fromBackfill !== undefined ? fromRaw! : makeToken(from) };
    if (end !== undefined) out.end = end;
    if (filter.lazy_load_members) {
      const senders = new Set(events.map((e) => e.pdu.sender));
      out.state = await server.serveAll(await lazyMembers(tx, roomId, me.userId, senders), { bundle: false });
    }
    return { out, wantOlder };
  });
  let { out, wantOlder } = await page();
  // Past the oldest event here: ask the room's other servers (outside any transaction), bounded.
  let added = 0;
  for (let round = 0; wantOlder && round < BACKFILL_ROUNDS; round++) {
    added = await backfillFromServers(ctx.hs, roomId, Math.max(limit, 20));
    if (added === 0) break;
    ({ out, wantOlder } = await page());
  }
  // Nothing more came from any server: the history available ends here.
  if (wantOlder && added === 0) delete out.end;
  return out;
}

/** `GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}` */
export async function getContext(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const limit = limitParam(ctx, 10, 100);
  const filter: RoomEventFilter = filterFromQuery(ctx.query("filter"));
  const roomId = p.roomId!;
  return ctx.hs.store.read(async (tx) => {
    await requireRoom(tx, roomId);
    const event = await requireVisibleEvent(tx, me.userId, p.eventId!, roomId);
    if (event.streamPos === undefined) throw notFound("Event not found");
    const { upTo } = await readableUpTo(tx, roomId, me.userId).catch(() => ({ upTo: event.streamPos! }));
    const keep = async (e: StoredEvent): Promise<boolean> => matchesFilter(filter, e) && (await canSeeEvent(tx, me.userId, e));
    const nBefore = Math.floor(limit / 2);
    const before = await walkTimeline(tx, { roomId, dir: "b", from: event.streamPos - 1, limit: nBefore, keep });
    const afterLimit = upTo === Infinity ? undefined : upTo;
    const after = await walkTimeline(tx, { roomId, dir: "f", from: event.streamPos, limit: limit - nBefore, keep, ...(afterLimit !== undefined ? { to: afterLimit } : {}) });
    const server = new EventServer(tx, me, ctx.hs.clock());
    const lastEvent = after.events[after.events.length - 1] ?? event;
    let stateEvents: StoredEvent[];
    if (filter.lazy_load_members) {
      const senders = new Set([event, ...before.events, ...after.events].map((e) => e.pdu.sender));
      stateEvents = await lazyMembers(tx, roomId, me.userId, senders, lastEvent.eventId);
    } else {
      stateEvents = [...(await loadState(tx, await stateAfter(tx, lastEvent.eventId))).values()];
    }
    return {
      event: await server.serve(event),
      events_before: await server.serveAll(before.events),
      events_after: await server.serveAll(after.events),
      start: makeToken(Math.max(0, before.last)),
      end: makeToken(after.last),
      state: await server.serveAll(stateEvents, { bundle: false }),
    };
  });
}

/** `GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event` */
export async function getTimestampToEvent(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const tsRaw = ctx.query("ts");
  const dir = ctx.query("dir");
  if (tsRaw === undefined || !/^\d+$/.test(tsRaw)) throw new MatrixError(400, "M_INVALID_PARAM", "ts must be a timestamp in milliseconds");
  if (dir !== "f" && dir !== "b") throw new MatrixError(400, "M_INVALID_PARAM", "dir must be f or b");
  const ts = Number(tsRaw);
  const roomId = p.roomId!;
  return ctx.hs.store.read(async (tx) => {
    const { upTo } = await readableUpTo(tx, roomId, me.userId);
    const rows = await tx.range<string>("timeline", {
      prefix: prefix(roomId), ...(upTo !== Infinity ? { lte: key(roomId, pos(upTo)) } : {}), ...(dir === "b" ? { reverse: true } : {}),
    });
    // The closest visible event at or after (f) / at or before (b) the timestamp.
    let best: StoredEvent | undefined;
    for (const row of rows) {

      const e = await getEvent(tx, row.value);
      if (!e || !isTimelineEvent(e)) continue;
      const t = e.pdu.origin_server_ts;
      const fits = dir === "f" ? t >= ts : t <= ts;
      if (!fits) continue;
      const better = !best || (dir === "f" ? t < best.pdu.origin_server_ts : t > best.pdu.origin_server_ts);
      if (better && (await canSeeEvent(tx, me.userId, e))) best = e;
    }
    if (!best) throw notFound("No event found");
    return { event_id: best.eventId, origin_server_ts: best.pdu.origin_server_ts };
  });
}


