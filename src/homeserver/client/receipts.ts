/**
 * Receipts ("Receipts" module, threaded receipts from "Threading") and read markers
 * ("Fully read markers").
 * key receipts = roomId|receiptType|userId|threadId or "" → { eventId, ts, streamPos }
 */
import type { RequestContext } from "../context.ts";
import { nextStreamPos } from "../context.ts";
import { MatrixError, badJson, forbidden, notFound } from "../errors.ts";
import { key } from "../../storage/store.ts";
import type { WriteTx } from "../../storage/store.ts";
import type { StoredEvent } from "../events/types.ts";
import { membershipOf, serversInRoom } from "../roomserver/state.ts";
import { queueEdu } from "../federation/sender.ts";
import { putAccountDataTx } from "./accountData.ts";
import { isTimelineEvent } from "../events/types.ts";

/** A row of the `receipts` table. */
export interface ReceiptRow {
  eventId: string;
  ts: number;
  streamPos: number;
}

const RECEIPT_TYPES = new Set(["m.read", "m.read.private", "m.fully_read"]);

interface Marker {
  type: string;
  eventId: string;
  threadId?: string;
}

/** Checks and writes markers for one user in one room in one transaction; returns the last position. */
async function writeMarkers(ctx: RequestContext, roomId: string, userId: string, markers: Marker[]): Promise<void> {
  const now = ctx.hs.clock();
  const sender = ctx.hs.federationSender;
  let destinations: string[] = [];
  const pos = await ctx.hs.store.write(async (tx: WriteTx) => {
    const membership = await membershipOf(tx, roomId, userId);
    if (membership !== "join") throw forbidden("You are not joined to this room");
    let last = 0;
    for (const m of markers) {
      const ev = await tx.get<StoredEvent>("events", m.eventId);
      if (!ev || ev.roomId !== roomId || !isTimelineEvent(ev)) throw notFound(`Unknown event ${m.eventId}`);
      if (m.threadId !== undefined) {
        // receipts.yaml 400: "The event_id is not related to the thread_id".
        const rel = ev.pdu.content?.["m.relates_to"] as Record<string, unknown> | undefined;
        const threadOf = rel?.rel_type === "m.thread" && typeof rel.event_id === "string" ? rel.event_id : undefined;
        const related = m.threadId === "main" ? threadOf === undefined : threadOf === m.threadId || m.eventId === m.threadId;
        if (!related) throw new MatrixError(400, "M_INVALID_PARAM", "The event is not in that thread");
      }
      if (m.type === "m.fully_read") {
        last = await putAccountDataTx(tx, userId, roomId, "m.fully_read", { event_id: m.eventId });
        continue;
      }
      last = await nextStreamPos(tx);
      const row: ReceiptRow = { eventId: m.eventId, ts: now, streamPos: last };
      tx.put("receipts", key(roomId, m.type, userId, m.threadId ?? ""), row);
      // Read receipts go to the room's other servers, queued with the receipt itself ("Receipts",
      // server-server API); private ones stay here.
      if (m.type === "m.read" && sender) {
        destinations = sender.targets(await serversInRoom(tx, roomId));
        const data = { ts: now, ...(m.threadId !== undefined ? { thread_id: m.threadId } : {}) };
        await queueEdu(tx, destinations, { edu_type: "m.receipt", content: { [roomId]: { "m.read": { [userId]: { event_ids: [m.eventId], data } } } } });
      }
    }
    return last;
  }, { tables: ["memberships", "events", "settings", "account_data", "receipts", "room_state", "federation_queue"] });
  if (pos > 0) ctx.hs.notifier.notify(pos);
  for (const d of destinations) sender?.wake(d);
}

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
  await writeMarkers(ctx, p.roomId!, me.userId, [{ type, eventId: p.eventId!, threadId }]);
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
  if (markers.length > 0) await writeMarkers(ctx, p.roomId!, me.userId, markers);
  return {};
}

