/**
 * History visibility (Client-Server "Room History Visibility", server behaviour): whether a user
 * may see an event, decided by the room's state *at that event*.
 */
import type { ReadTx } from "../../storage/store.ts";
import { notFound } from "../errors.ts";
import type { StoredEvent } from "../events/types.ts";
import { stateKeyOf, isTimelineEvent } from "../events/types.ts";
import { getEvent, joinedInHistory, membershipInState, membershipRecord, stateAfter, stateBefore } from "./state.ts";

const KNOWN = new Set(["world_readable", "shared", "invited", "joined"]);

async function visibilityIn(tx: ReadTx, state: Map<string, string>): Promise<string> {
  const id = state.get(stateKeyOf("m.room.history_visibility", ""));
  const v = id ? (await getEvent(tx, id))?.pdu.content.history_visibility : undefined;
  // "if no history_visibility is set, or if the value is not understood, … shared".
  return typeof v === "string" && KNOWN.has(v) ? v : "shared";
}

/** Whether `userId` joined the room at any point after `event` (rule 3, `shared`). */
async function joinedAfter(tx: ReadTx, userId: string, event: StoredEvent): Promise<boolean> {
  // Backfilled history is older than every event with a stream position: any join in the
  // user's membership history here comes after it.
  const at = event.streamPos ?? (event.backfilled ? -1 : undefined);
  if (at === undefined) return false;
  const rec = await membershipRecord(tx, event.roomId, userId);
  // The user's membership history, newest first, while it is newer than the event.
  return joinedInHistory(tx, rec?.eventId, at);
}

async function allowedBy(tx: ReadTx, userId: string, event: StoredEvent, visibility: string, membership: string | undefined): Promise<boolean> {
  if (visibility === "world_readable") return true; // 1
  if (membership === "join") return true; // 2
  if (visibility === "shared" && (await joinedAfter(tx, userId, event))) return true; // 3
  if (membership === "invite" && visibility === "invited") return true; // 4
  return false; // 5
}

/** Whether `userId` may see `event` under the room's history visibility rules. */
export async function canSeeEvent(tx: ReadTx, userId: string, event: StoredEvent): Promise<boolean> {
  if (!isTimelineEvent(event)) return false;
  const after = await stateAfter(tx, event.eventId);
  const pdu = event.pdu;
  const visAfter = await visibilityIn(tx, after);
  const memAfter = await membershipInState(tx, after, userId);
  if (await allowedBy(tx, userId, event, visAfter, memAfter)) return true;
  // The visibility event itself and the user's own member events: before *or* after decides.
  const special = (pdu.type === "m.room.history_visibility" && pdu.state_key === "") || (pdu.type === "m.room.member" && pdu.state_key === userId);
  if (!special) return false;
  const before = await stateBefore(tx, event);
  return allowedBy(tx, userId, event, await visibilityIn(tx, before), await membershipInState(tx, before, userId));
}

/**
 * The event `eventId` if `userId` may see it (and, given `roomId`, it is in that room); otherwise
 * 404 M_NOT_FOUND, one answer for unknown and unseeable events so neither is revealed
 * (rooms.yaml getOneRoomEvent, old_sync.yaml getOneEvent, relations, /context).
 */
export async function requireVisibleEvent(tx: ReadTx, userId: string, eventId: string, roomId?: string): Promise<StoredEvent> {
  const e = await getEvent(tx, eventId);
  if (!e || (roomId !== undefined && e.roomId !== roomId) || !(await canSeeEvent(tx, userId, e))) throw notFound("Event not found");
  return e;
}

/** The events of `events` that `userId` may see, in order. */
export async function filterVisible(tx: ReadTx, userId: string, events: StoredEvent[]): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  for (const e of events) if (await canSeeEvent(tx, userId, e)) out.push(e);
  return out;
}
