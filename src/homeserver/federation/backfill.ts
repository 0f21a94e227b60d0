/**
 * `/messages` backfill from other servers (server-server API "Backfilling and retrieving missing
 * events"; issue 9 item 6). When a client paginates backwards past the oldest event this server
 * has in a room (a server that joined late, or that only has part of the history), the room's
 * other servers are asked with `/backfill` from the events this server lacks at the old end of its
 * history (the prevs of its oldest events: the backward extremities), `limit` bounded. What comes
 * back goes through the checks on receipt and the pipeline as backfilled history
 * (receive.ts `receiveBackfill`): state and auth like any event, no stream position, ordered in
 * the `backfill` table from the newest backfilled event back to the room's creation, which
 * `/messages` walks after the timeline (tokens `b<K>`, roomserver/tokens.ts). An unreachable
 * server is skipped; events a server will not show (history visibility) simply do not come, or
 * come redacted and stay invisible to users who may not see them.
 */
import type { ReadTx } from "../../storage/store.ts";
import { prefix, unpos } from "../../storage/store.ts";
import type { Services } from "../context.ts";
import type { StoredEvent } from "../events/types.ts";
import { refIds } from "../events/types.ts";
import { logLine } from "../log.ts";
import { getEvent, serversInRoom } from "../roomserver/state.ts";
import { walkIndex } from "../roomserver/timeline.ts";
import { FederationError } from "./client.ts";
import type { FederationClient } from "./client.ts";
import { activitiesOf } from "../activity.ts";
import type { ActivityHandle } from "../activity.ts";
import { receiveBackfill } from "./receive.ts";

/** The most events one `/backfill` request asks for. */
export const BACKFILL_REQUEST_LIMIT = 100;
/** Servers tried per backfill before giving up. */
const MAX_SERVERS = 3;
/** Backward extremities sent as `v` in one request. */
const MAX_FROM = 20;
/** Events looked at, at each old end (timeline, backfill table), for backward extremities. */
const OLD_END_SCAN = 20;

/** One walk over the `backfill` table, like roomserver/timeline.ts `walkTimeline` over the timeline. */
export interface BackfillWalk {
  roomId: string;
  dir: "b" | "f";
  /** A backfill token's ordinal: backwards, ordinals ≥ from; forwards, ordinals < from. */
  from: number;
  /** Stop before crossing this point (backwards: ordinals < to; forwards: ordinals ≥ to). */
  to?: number;
  keep: (e: StoredEvent) => Promise<boolean> | boolean;
  limit: number;
  maxScan?: number;
}

/**
 * The kept backfilled events in walk order (backwards: newest first), the token ordinal the walk
 * stopped at, and whether nothing lies beyond it in the table.
 */
export async function walkBackfill(tx: ReadTx, o: BackfillWalk): Promise<{ events: StoredEvent[]; last: number; exhausted: boolean }> {
  if (o.dir === "b") {
    // Rising ordinals from `from` inclusive, below `to`; the token is the next ordinal to read.
    const walk = await walkIndex(tx, { ...o, table: "backfill", ascending: true, after: o.from - 1, until: o.to === undefined ? undefined : o.to - 1 });
    return { ...walk, last: walk.last + 1 };
  }
  if (o.from <= 1 && o.limit > 0) return { events: [], last: 1, exhausted: true };
  const walk = await walkIndex(tx, { ...o, table: "backfill", ascending: false, after: o.from, until: o.to });
  // Forwards past ordinal 1 the timeline follows; a bounded walk ends at its bound.
  return walk.exhausted ? { events: walk.events, last: o.to ?? 1, exhausted: o.to === undefined } : walk;
}

/** The token ordinal just past the oldest backfilled event of a room (where the next backfill continues). */
export async function backfillEnd(tx: ReadTx, roomId: string): Promise<number> {
  const pre = prefix(roomId);
  const [last] = await tx.range<string>("backfill", { prefix: pre, reverse: true, limit: 1 });
  return last ? unpos(last.key.slice(pre.length)) + 1 : 1;
}

/**
 * The events this server lacks at the old end of its history of the room: prevs of its oldest
 * timeline and backfilled events that it has no state for. Empty once it holds the room's creation.
 */
export async function backwardExtremities(tx: ReadTx, roomId: string): Promise<string[]> {
  const pre = prefix(roomId);
  const oldest = [
    ...(await tx.range<string>("timeline", { prefix: pre, limit: OLD_END_SCAN })),
    ...(await tx.range<string>("backfill", { prefix: pre, reverse: true, limit: OLD_END_SCAN })),
  ];
  const out = new Set<string>();
  for (const row of oldest) {
    const e = await getEvent(tx, row.value);
    for (const id of refIds(e?.pdu.prev_events ?? [])) {
      if (out.has(id) || (await tx.get("event_state", id))) continue;
      out.add(id);
      if (out.size >= MAX_FROM) return [...out];
    }
  }
  return [...out];
}

/** Backfills in flight, per homeserver store and room: concurrent paginations share one. */
const inFlight = new WeakMap<object, Map<string, Promise<number>>>();

/**
 * Asks the room's other servers (up to three, skipping unreachable ones) for the history before
 * this server's oldest events and stores it as backfilled. Returns how many events were added to
 * the history (0: none available, or no server answered). Never throws; never inside a transaction.
 */
export function backfillFromServers(hs: Services, roomId: string, limit: number): Promise<number> {
  let rooms = inFlight.get(hs.store);
  if (!rooms) inFlight.set(hs.store, (rooms = new Map()));
  const running = rooms.get(roomId);
  if (running) return running;
  const work = backfillOnce(hs, roomId, Math.max(1, Math.min(limit, BACKFILL_REQUEST_LIMIT)))
    .catch((err: unknown) => {
      hs.logger.warn(logLine("backfill_failed", { room: roomId, error: err instanceof Error ? err.message : String(err) }));
      return 0;
    })
    .finally(() => rooms.delete(roomId));
  rooms.set(roomId, work);
  return work;
}

async function backfillOnce(hs: Services, roomId: string, limit: number): Promise<number> {
  const client = hs.federation;
  if (!client) return 0;
  const { from, servers } = await hs.store.read(async (tx) => ({ from: await backwardExtremities(tx, roomId), servers: await serversInRoom(tx, roomId) }));
  if (from.length === 0) return 0;
  const candidates = servers.filter((s) => s !== hs.serverName && client.mayContact(s)).slice(0, MAX_SERVERS);
  // The status view's progress indicator (a client's /messages waits on this).
  const progress = activitiesOf(hs.store).start("backfill", roomId, "asking other servers");
  try {
    return await backfillFrom(hs, client, roomId, limit, from, candidates, progress);
  } finally {
    progress.end();
  }
}

async function backfillFrom(hs: Services, client: FederationClient, roomId: string, limit: number, from: string[], candidates: string[], progress: ActivityHandle): Promise<number> {
  for (const server of candidates) {
    progress.update(`asking ${server}`);
    let pdus: unknown[];
    try {
      const answer = await client.json<{ pdus?: unknown }>(server, "GET", `/_matrix/federation/v1/backfill/${encodeURIComponent(roomId)}`, {
        query: [...from.map((id): [string, string] => ["v", id]), ["limit", String(limit)]],
      });
      pdus = Array.isArray(answer.pdus) ? answer.pdus.slice(0, limit) : [];
    } catch (err) {
      const line = logLine("backfill_unavailable", { room: roomId, server, error: err instanceof Error ? err.message : String(err) });
      if (err instanceof FederationError && err.status === 0) hs.logger.debug(line);
      else hs.logger.info(line);
      continue;
    }
    progress.update(`storing ${pdus.length} events`);
    const outcomes = await receiveBackfill(hs, server, roomId, pdus);
    const added = outcomes.filter((o) => o.outcome === "backfilled").length;
    hs.logger.info(logLine("backfill", { room: roomId, server, offered: pdus.length, added }));
    if (added > 0) return added;
  }
  return 0;
}
