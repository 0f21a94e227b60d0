/** Client-Server "Reporting content": the requests; services/reports.ts keeps the reports. */
import type { RequestContext } from "../context.ts";
import { badJson } from "../errors.ts";
import { reasonOf } from "../validate.ts";
import { reportEvent, reportRoom, reportUser } from "../services/reports.ts";

/** `POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}` */
export async function postReportEvent(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const body = await ctx.json({ allowEmpty: true });
  const reason = reasonOf(body);
  if (body.score !== undefined && typeof body.score !== "number") throw badJson("score must be a number");
  await reportEvent(ctx.hs, p.roomId!, p.eventId!, me.userId, reason, typeof body.score === "number" ? body.score : undefined);
  return {};
}

/** `POST /_matrix/client/v3/rooms/{roomId}/report` */
export async function postReportRoom(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const body = await ctx.json({ allowEmpty: true });
  const reason = reasonOf(body);
  await reportRoom(ctx.hs, p.roomId!, me.userId, reason);
  return {};
}

/** `POST /_matrix/client/v3/users/{userId}/report` */
export async function postReportUser(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const body = await ctx.json({ allowEmpty: true });
  const reason = reasonOf(body);
  await reportUser(ctx.hs, p.userId!, me.userId, reason);
  return {};
}
