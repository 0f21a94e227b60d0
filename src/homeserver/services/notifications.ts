/**
 * The notifications list (`GET /notifications`, "Push Notifications"): the events of the user's
 * joined rooms that their push rules say notify, newest first, with whether they are read.
 */
import type { Requester, Services } from "../context.ts";
import { SEP, pos as posKey, prefix, unpos } from "../../storage/store.ts";
import type { StoredEvent } from "../events/types.ts";
import { isTimelineEvent } from "../events/types.ts";
import type { MembershipRecord } from "../roomserver/state.ts";
import { currentState, getEvent, pdusOf, getRoom, rulesOf } from "../roomserver/state.ts";
import { canSeeEvent } from "../roomserver/visibility.ts";
import { EventServer } from "../roomserver/serve.ts";
import { userPowerLevel } from "../rooms/powerLevels.ts";
import { evaluatePushRules, loadPushRules, roomPushContext, toPushEvent } from "./pushRules.ts";
import type { PushContext } from "./pushRules.ts";
import type { ReceiptRow } from "./edus.ts";

/** How many stream rows one request looks at before it answers with what it found. */
const MAX_SCAN = 2000;

/** One page of notifications before stream position `from` (the newest when undefined). */
export async function notificationsFor(hs: Services, me: Requester, from: number | undefined, limit: number, onlyHighlight: boolean): Promise<Record<string, unknown>> {
  const now = hs.clock();
  return hs.store.read(async (tx) => {
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
