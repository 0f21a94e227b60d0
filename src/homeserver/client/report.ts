/**
 * Client-Server "Reporting content": reports of events, rooms and users, kept for the server's
 * administrators. key reports = pos(seq) → report; `settings|report_seq` holds the last seq.
 */
import type { RequestContext } from "../context.ts";
import { badJson, notFound } from "../errors.ts";
import type { WriteTx } from "../../storage/store.ts";
import { pos } from "../../storage/store.ts";
import { getEvent, membershipRecord } from "../roomserver/state.ts";
import { reasonOf } from "../validate.ts";

/** A stored report. */
export interface Report {
  kind: "event" | "room" | "user";
  reporter: string;
  roomId?: string;
  eventId?: string;
  userId?: string;
  reason?: string;
  score?: number;
  ts: number;
}

async function store(tx: WriteTx, report: Report): Promise<void> {
  const seq = ((await tx.get<number>("settings", "report_seq")) ?? 0) + 1;
  tx.put("settings", "report_seq", seq);
  tx.put("reports", pos(seq), report);
}

/** `POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}` */
export async function postReportEvent(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const body = await ctx.json({ allowEmpty: true });
  const reason = reasonOf(body);
  if (body.score !== undefined && typeof body.score !== "number") throw badJson("score must be a number");
  await ctx.hs.store.write(async (tx) => {
    const e = await getEvent(tx, p.eventId!);
    // 404 "The event was not found or you are not joined to the room where the event resides."
    if (!e || e.roomId !== p.roomId || (await membershipRecord(tx, p.roomId!, me.userId))?.membership !== "join") {
      throw notFound("Event not found");
    }
    await store(tx, {
      kind: "event", reporter: me.userId, roomId: p.roomId!, eventId: p.eventId!, ts: ctx.hs.clock(),
      ...(reason !== undefined ? { reason } : {}), ...(typeof body.score === "number" ? { score: body.score } : {}),
    });
  });
  return {};
}

/** `POST /_matrix/client/v3/rooms/{roomId}/report` */
export async function postReportRoom(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const body = await ctx.json({ allowEmpty: true });
  const reason = reasonOf(body);
  await ctx.hs.store.write(async (tx) => {
    if (!(await tx.get("rooms", p.roomId!))) throw notFound("The room was not found.");
    await store(tx, { kind: "room", reporter: me.userId, roomId: p.roomId!, ts: ctx.hs.clock(), ...(reason !== undefined ? { reason } : {}) });
  });
  return {};
}

/** `POST /_matrix/client/v3/users/{userId}/report` */
export async function postReportUser(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const body = await ctx.json({ allowEmpty: true });
  const reason = reasonOf(body);
  await ctx.hs.store.write(async (tx) => {
    if (!(await tx.get("accounts", p.userId!))) throw notFound("The user was not found.");
    await store(tx, { kind: "user", reporter: me.userId, userId: p.userId!, ts: ctx.hs.clock(), ...(reason !== undefined ? { reason } : {}) });
  });
  return {};
}
