/**
 * Client-Server "Room Summaries": `GET /_matrix/client/v1/room_summary/{roomIdOrAlias}`
 * (room_summary.yaml). The summary is the one the space hierarchy serves (hierarchy.ts), under the
 * same visibility rule; rooms this server does not hold would need federation (`via`), which is
 * not reached from here, so they are "not found".
 */
import type { RequestContext } from "../context.ts";
import { notFound } from "../errors.ts";
import { resolveRoom } from "../roomserver/membership.ts";
import { currentState, membershipRecord } from "../roomserver/state.ts";
import { canViewSummary, roomSummaryOf } from "../services/directory.ts";

/** `GET /_matrix/client/v1/room_summary/{roomIdOrAlias}` */
export async function getRoomSummary(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  // "Servers MAY allow unauthenticated access to this API if … public, knock or knock_restricted …
  // or world_readable": canViewSummary applies exactly that to a caller without a user. A token
  // that is given must still be valid.
  const me = await ctx.optionalAuth();
  const target = p.roomIdOrAlias!;
  return ctx.hs.store.read(async (tx) => {
    const roomId = await resolveRoom(tx, target);
    // A room the caller may not see answers like an unknown one (the yaml's only error is 404),
    // so the endpoint does not reveal which private rooms exist.
    const state = await currentState(tx, roomId);
    if (!(await canViewSummary(tx, roomId, me?.userId, state))) throw notFound("Room not found.");
    const summary = await roomSummaryOf(tx, roomId, state);
    // `membership`: "Absent if the API was called unauthenticated"; a user with no membership
    // event in the room is reported as `leave`.
    if (me) summary.membership = (await membershipRecord(tx, roomId, me.userId))?.membership ?? "leave";
    return summary;
  });
}
