/**
 * The deprecated room-less event lookup `GET /_matrix/client/v3/events/{eventId}` (old_sync.yaml,
 * `getOneEvent`, deprecated since r0 in favour of `/rooms/{roomId}/event/{eventId}`). Event IDs are
 * unique across rooms, so the event is found by ID alone and served under the same rule as the
 * room-scoped endpoint.
 */
import type { RequestContext } from "../context.ts";
import { EventServer } from "../roomserver/serve.ts";
import { requireVisibleEvent } from "../roomserver/visibility.ts";

/** `GET /_matrix/client/v3/events/{eventId}` */
export async function getOneEvent(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  return ctx.hs.store.read(async (tx) => {
    // "404: The event was not found or you do not have permission to read this event" — one answer
    // for both, so the endpoint does not reveal events in rooms the user cannot read.
    const e = await requireVisibleEvent(tx, me.userId, p.eventId!);
    return { ...(await new EventServer(tx, me, ctx.hs.clock()).serve(e)) };
  });
}
