/**
 * Presence ("Presence" module, `presence.yaml`). key presence = userId → PresenceRow. Every change
 * takes a stream position so `/sync` delivers `m.presence` to users sharing a room.
 */
import type { RequestContext } from "../context.ts";
import { MatrixError, forbidden, notFound } from "../errors.ts";
import { limitUser } from "../auth/rateLimit.ts";
import { presenceContent, presenceFor, setPresence } from "../services/edus.ts";

const STATES = new Set(["online", "offline", "unavailable"]);

/** `GET /_matrix/client/v3/presence/{userId}/status` */
export async function getPresence(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const userId = p.userId!;
  const { exists, row, allowed } = await presenceFor(ctx.hs, me.userId, userId);
  if (!exists) throw notFound("Unknown user");
  if (!allowed) throw forbidden("You are not allowed to see this user's presence");
  if (!row) return { presence: "offline" };
  return presenceContent(row, ctx.hs.clock());
}

/** `PUT /_matrix/client/v3/presence/{userId}/status` */
export async function putPresence(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  if (p.userId !== me.userId) throw forbidden("Cannot set presence of other users");
  const body = await ctx.json();
  if (typeof body.presence !== "string" || !STATES.has(body.presence)) throw new MatrixError(400, "M_INVALID_PARAM", "presence must be online, offline or unavailable");
  if (body.status_msg !== undefined && body.status_msg !== null && typeof body.status_msg !== "string") throw new MatrixError(400, "M_INVALID_PARAM", "status_msg must be a string");
  limitUser(ctx, me, "rc_presence.per_user");
  await setPresence(ctx.hs, me.userId, body.presence, typeof body.status_msg === "string" ? body.status_msg : undefined);
  return {};
}
