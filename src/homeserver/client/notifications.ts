/**
 * `GET /notifications` ("Listing Notifications", `notifications.yaml`): the events of the user's
 * rooms that the push rules say notify, newest first. Computed from the stream on demand (no push
 * actions are stored at send time, services/notifications.ts), so a request reads a bounded
 * number of stream rows.
 */
import type { RequestContext } from "../context.ts";
import { MatrixError } from "../errors.ts";
import { limitParam } from "../validate.ts";
import { notificationsFor } from "../services/notifications.ts";

/** `GET /_matrix/client/v3/notifications` */
export async function getNotifications(ctx: RequestContext): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const fromParam = ctx.query("from");
  const from = fromParam === undefined ? undefined : /^\d+$/.test(fromParam) ? Number(fromParam) : NaN;
  if (Number.isNaN(from)) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid from token");
  const limit = limitParam(ctx, 20);
  const onlyHighlight = ctx.query("only") === "highlight";
  return notificationsFor(ctx.hs, me, from, limit, onlyHighlight);
}

