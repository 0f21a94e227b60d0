/**
 * `/sync` ("Syncing" in the Client-Server API, `sync.yaml`) and the deprecated `/initialSync` and
 * `/events`: the query parameters, parsed. Building the responses is services/sync.ts's.
 */
import type { RequestContext } from "../context.ts";
import { MatrixError } from "../errors.ts";
import { limitParam } from "../validate.ts";
import { readToken } from "../roomserver/tokens.ts";
import { resolveSyncFilter } from "../services/filters.ts";
import { ROOM_INITIAL_SYNC_LIMIT, eventStream, initialSync, roomInitialSync, sync } from "../services/sync.ts";

/** `GET /_matrix/client/v3/sync` */
export async function getSync(ctx: RequestContext): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const filterParam = ctx.query("filter");
  const filter = await resolveSyncFilter(ctx.hs, me.userId, filterParam);
  const sinceParam = ctx.query("since");
  const since = sinceParam !== undefined ? readToken(sinceParam) : undefined;
  if (sinceParam !== undefined && !since) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid since token");
  const fullState = ctx.query("full_state") === "true";
  const timeoutParam = ctx.query("timeout");
  const timeout = timeoutParam === undefined ? 0 : Number(timeoutParam);
  if (!Number.isFinite(timeout) || timeout < 0) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid timeout");
  // `use_state_after` (v1.16); the unstable MSC4222 name is what matrix-js-sdk sends, and it
  // expects the answer under the unstable key.
  const stateAfterKey = ctx.query("use_state_after") === "true" ? "state_after" : ctx.query("org.matrix.msc4222.use_state_after") === "true" ? "org.matrix.msc4222.state_after" : undefined;
  const setPresence = ctx.query("set_presence") ?? "online";
  if (!["online", "offline", "unavailable"].includes(setPresence)) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid set_presence");
  return sync(ctx.hs, me, { filter, filterParam, since, fullState, timeoutMs: timeout, stateAfterKey, setPresence }, ctx.request.signal);
}

/**
 * `GET /_matrix/client/v3/rooms/{roomId}/initialSync`
 *
 * Deprecated except for peeking ("Room Previews").
 */
export async function getRoomInitialSync(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  return roomInitialSync(ctx.hs, me, p.roomId!);
}

/** `GET /_matrix/client/v3/initialSync` (deprecated since r0; old_sync.yaml) */
export async function getInitialSync(ctx: RequestContext): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const limit = limitParam(ctx, ROOM_INITIAL_SYNC_LIMIT);
  const archived = ctx.query("archived") === "true";
  return initialSync(ctx.hs, me, limit, archived);
}

/**
 * `GET /_matrix/client/v3/events` (deprecated `getEvents`, and `peekEvents` with `room_id`)
 *
 * The timeline events after `from` in the user's joined rooms (or in one `world_readable` room
 * being peeked at), long-polling up to `timeout`.
 */
export async function getEvents(ctx: RequestContext): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const fromParam = ctx.query("from");
  const from = fromParam !== undefined ? readToken(fromParam) : undefined;
  if (fromParam !== undefined && !from) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid from token");
  const timeout = Number(ctx.query("timeout") ?? "30000");
  if (!Number.isFinite(timeout) || timeout < 0) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid timeout");
  return eventStream(ctx.hs, me, from, timeout, ctx.query("room_id"), ctx.request.signal);
}
