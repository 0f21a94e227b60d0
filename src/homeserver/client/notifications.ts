/**
 * `GET /notifications` ("Listing Notifications", `notifications.yaml`): the events of the user's
 * rooms that the push rules say notify, newest first. Computed from the stream on demand (no push
 * actions are stored at send time), so a request reads at most `MAX_SCAN` stream rows.
 */
import type { RequestContext } from "../context.ts";
import { MatrixError } from "../errors.ts";
import { limitParam } from "../validate.ts";
import { SEP, pos as posKey, prefix, unpos } from "../../storage/store.ts";
import type { StoredEvent } from "../events/types.ts";
import type { MembershipRecord } from "../roomserver/state.ts";
import { currentState, getEvent, pdusOf, getRoom, rulesOf } from "../roomserver/state.ts";
import { canSeeEvent } from "../roomserver/visibility.ts";
import { EventServer } from "../roomserver/serve.ts";
import { userPowerLevel } from "../rooms/powerLevels.ts";
import { evaluatePushRules, loadPushRules, roomPushContext, toPushEvent } from "../services/pushRules.ts";
import type { PushContext } from "../services/pushRules.ts";
import type { ReceiptRow } from "../services/edus.ts";
import { isTimelineEvent } from "../events/types.ts";

const MAX_SCAN = 2000;

/** `GET /_matrix/client/v3/notifications` */
export async function getNotifications(ctx: RequestContext): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const fromParam = ctx.query("from");
  const from = fromParam === undefined ? undefined : /^\d+$/.test(fromParam) ? Number(fromParam) : NaN;
  if (Number.isNaN(from)) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid from token");
  const limit = limitParam(ctx, 20);
  const onlyHighlight = ctx.query("only") === "highlight";
  const now = ctx.hs.clock();

  return ctx.hs.store.read(async (tx) => {
    const rules = await loadPushRules(tx, me.userId);
    const memberships = await tx.range<MembershipRecord>("memberships", { prefix: prefix(me.userId) });
    const rooms = new Map<string, MembershipRecord>();
    for (const m of memberships) if (m.value.membership === "join") rooms.set(m.key.slice(prefix(me.userId).length), m.value);
    const roomCtx = new Map<string, { ctx: Omit<PushContext, "senderPowerLevel">; power: (u: string) => number; readPos: number }>();
    const server = new EventServer(tx, { userId: me.userId, deviceId: me.deviceId }, now);
    const rows = await tx.range<{ roomId: string; eventId: string }>("stream", {
      ...(from !== undefined ? { lt: posKey(from) } : {}),
      reverse: true,
      limit: MAX_SCAN,
    });
    const notifications: Record<string, unknown>[] = [];
    let nextToken: string | undefined;
    for (const row of rows) {
      if (notifications.length >= limit) {
        nextToken = String(unpos(row.key) + 1);
        break;
      }
      const room = rooms.get(row.value.roomId);
      if (!room) continue;
      const e = await getEvent(tx, row.value.eventId);
      if (!e || !isTimelineEvent(e) || e.pdu.sender === me.userId) continue;
      let rc = roomCtx.get(e.roomId);
      if (!rc) {
        const state = await currentState(tx, e.roomId);
        const record = await getRoom(tx, e.roomId);
        const version = record ? rulesOf(record) : undefined;
        const pdus = pdusOf(state);
        const receipts = await tx.range<ReceiptRow>("receipts", { prefix: prefix(e.roomId) });
        let readPos = 0;
        for (const r of receipts) {
          const [, type, uid] = r.key.split(SEP);
          if (uid !== me.userId || (type !== "m.read" && type !== "m.read.private")) continue;
          const re = await getEvent(tx, r.value.eventId);
          readPos = Math.max(readPos, re?.streamPos ?? 0);
        }
        rc = {
          ctx: roomPushContext(state, me.userId),
          power: (u) => (version ? userPowerLevel(u, pdus, version) : 0),
          readPos,
        };
        roomCtx.set(e.roomId, rc);
      }
      const outcome = evaluatePushRules(rules, toPushEvent(e), { ...rc.ctx, senderPowerLevel: rc.power(e.pdu.sender) });
      if (!outcome?.notify || (onlyHighlight && !outcome.highlight)) continue;
      if (!(await canSeeEvent(tx, me.userId, e as StoredEvent))) continue;
      notifications.push({
        actions: outcome.actions,
        event: await server.serve(e),
        read: (e.streamPos ?? 0) <= rc.readPos,
        room_id: e.roomId,
        ts: e.pdu.origin_server_ts,
      });
    }
    if (nextToken === undefined && rows.length === MAX_SCAN) nextToken = String(unpos(rows[rows.length - 1]!.key));
    return { notifications, ...(nextToken !== undefined ? { next_token: nextToken } : {}) };
  });
}

