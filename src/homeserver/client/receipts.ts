/**
 * Receipts ("Receipts" module, threaded receipts from "Threading") and read markers
 * ("Fully read markers").
 * key receipts = roomId|receiptType|userId|threadId or "" → { eventId, ts, streamPos }
 */
import type { RequestContext } from "../context.ts";
import { MatrixError, badJson } from "../errors.ts";
import type { Marker } from "../services/edus.ts";
import { writeMarkers } from "../services/edus.ts";

const RECEIPT_TYPES = new Set(["m.read", "m.read.private", "m.fully_read"]);

/** `POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}` */
export async function postReceipt(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const body = await ctx.json({ allowEmpty: true });
  const type = p.receiptType!;
  if (!RECEIPT_TYPES.has(type)) throw new MatrixError(400, "M_INVALID_PARAM", `Unknown receipt type ${type}`);
  let threadId: string | undefined;
  if (body.thread_id !== undefined) {
    // receipts.yaml 400: not a string, empty, or given for an incompatible receipt type.
    if (typeof body.thread_id !== "string" || body.thread_id === "") throw new MatrixError(400, "M_INVALID_PARAM", "thread_id must be a non-empty string");
    if (type === "m.fully_read") throw new MatrixError(400, "M_INVALID_PARAM", "thread_id is not allowed for m.fully_read");
    if (body.thread_id !== "main" && !body.thread_id.startsWith("$")) throw new MatrixError(400, "M_INVALID_PARAM", "thread_id must be 'main' or an event ID");
    threadId = body.thread_id;
  }
  await writeMarkers(ctx.hs, p.roomId!, me.userId, [{ type, eventId: p.eventId!, threadId }]);
  return {};
}

/** `POST /_matrix/client/v3/rooms/{roomId}/read_markers` */
export async function postReadMarkers(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const body = await ctx.json();
  const markers: Marker[] = [];
  for (const type of ["m.fully_read", "m.read", "m.read.private"]) {
    const v = body[type];
    if (v === undefined) continue;
    if (typeof v !== "string" || !v.startsWith("$")) throw badJson(`${type} must be an event ID`);
    markers.push({ type, eventId: v });
  }
  if (markers.length > 0) await writeMarkers(ctx.hs, p.roomId!, me.userId, markers);
  return {};
}

