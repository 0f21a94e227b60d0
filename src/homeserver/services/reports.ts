/**
 * Reports of events, rooms and users (Client-Server "Reporting content"), kept for the server's
 * administrators. key reports = pos(seq) → report; `settings|report_seq` holds the last seq.
 */
import type { Services } from "../context.ts";
import { notFound } from "../errors.ts";
import type { WriteTx } from "../../storage/store.ts";
import { pos } from "../../storage/store.ts";
import { getEvent, membershipRecord } from "../roomserver/state.ts";

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

/** Reports an event (404 unless it is in the room and the reporter is joined to it). */
export async function reportEvent(hs: Services, roomId: string, eventId: string, reporter: string, reason: string | undefined, score: number | undefined): Promise<void> {
  await hs.store.write(async (tx) => {
    const e = await getEvent(tx, eventId);
    // 404 "The event was not found or you are not joined to the room where the event resides."
    if (!e || e.roomId !== roomId || (await membershipRecord(tx, roomId, reporter))?.membership !== "join") {
      throw notFound("Event not found");
    }
    await store(tx, {
      kind: "event", reporter, roomId, eventId, ts: hs.clock(),
      ...(reason !== undefined ? { reason } : {}), ...(score !== undefined ? { score } : {}),
    });
  });
}

/** Reports a room (404 if it is unknown here). */
export async function reportRoom(hs: Services, roomId: string, reporter: string, reason: string | undefined): Promise<void> {
  await hs.store.write(async (tx) => {
    if (!(await tx.get("rooms", roomId))) throw notFound("The room was not found.");
    await store(tx, { kind: "room", reporter, roomId, ts: hs.clock(), ...(reason !== undefined ? { reason } : {}) });
  });
}

/** Reports a user (404 unless it is a local account). */
export async function reportUser(hs: Services, userId: string, reporter: string, reason: string | undefined): Promise<void> {
  await hs.store.write(async (tx) => {
    if (!(await tx.get("accounts", userId))) throw notFound("The user was not found.");
    await store(tx, { kind: "user", reporter, userId, ts: hs.clock(), ...(reason !== undefined ? { reason } : {}) });
  });
}
