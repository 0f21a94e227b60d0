/**
 * Who may read what in a room, for the Client-Server handlers: membership checks and the state a
 * user is allowed to see (current state while joined, the state when they left afterwards, the
 * current state of a `world_readable` room for anyone).
 */
import type { ReadTx } from "../../storage/store.ts";
import { forbidden } from "../errors.ts";
import type { StoredEvent } from "../events/types.ts";
import { currentState, currentStateContent, joinedInHistory, loadState, membershipRecord, requireRoom, stateAfter } from "./state.ts";
import type { RoomRecord } from "./state.ts";

/** Whether the room's current history visibility is `world_readable`. */
export async function isWorldReadable(tx: ReadTx, roomId: string): Promise<boolean> {
  return (await currentStateContent(tx, roomId, "m.room.history_visibility"))?.history_visibility === "world_readable";
}

/** 404 for an unknown room, 403 unless the user is joined. */
export async function requireJoined(tx: ReadTx, roomId: string, userId: string): Promise<RoomRecord> {
  const room = await requireRoom(tx, roomId);
  const m = await membershipRecord(tx, roomId, userId);
  if (m?.membership !== "join") throw forbidden(`${userId} is not in room ${roomId}`);
  return room;
}

/**
 * The point up to which a user may read a room's timeline and state: `Infinity` while joined (or for
 * a world-readable room), the stream position of their leave/ban afterwards; 403 if they were never
 * in it.
 */
export async function readableUpTo(tx: ReadTx, roomId: string, userId: string): Promise<{ upTo: number; atEvent?: string }> {
  await requireRoom(tx, roomId);
  const m = await membershipRecord(tx, roomId, userId);
  if (m?.membership === "join") return { upTo: Infinity };
  if (await isWorldReadable(tx, roomId)) return { upTo: Infinity };
  if (m && (m.membership === "leave" || m.membership === "ban") && (await joinedInHistory(tx, m.eventId))) {
    return { upTo: m.streamPos, atEvent: m.eventId };
  }
  throw forbidden(`${userId} is not in room ${roomId}`);
}

/** The room state a user may read, SK → event (see `readableUpTo`). */
export async function readableState(tx: ReadTx, roomId: string, userId: string): Promise<Map<string, StoredEvent>> {
  const { atEvent } = await readableUpTo(tx, roomId, userId);
  if (!atEvent) return currentState(tx, roomId);
  return loadState(tx, await stateAfter(tx, atEvent));
}
