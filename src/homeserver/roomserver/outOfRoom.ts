/**
 * Memberships of local users in rooms this server is not in (server-server API "Inviting to a
 * room", "Leaving Rooms (Rejecting Invites)", "Knocking upon a room"): a remote invite, a knock
 * sent through a resident server, the rejection of either. The event is not part of any room DAG
 * this server holds, so it is stored as an outlier and only the user's membership row moves, at a
 * fresh stream position, so `/sync` shows the invite (with the stripped state the event carries in
 * `unsigned`) or the leave.
 */
import type { ReadTx } from "../../storage/store.ts";
import { key, prefix } from "../../storage/store.ts";
import type { Services } from "../context.ts";
import { nextStreamPos } from "../context.ts";
import type { EventWithId, StoredEvent } from "../events/types.ts";
import { getEvent, membershipIn } from "./state.ts";
import type { MembershipRecord } from "./state.ts";

/**
 * Whether `server` has a member joined to the room in this server's current state: whether this
 * server is "in the room" and can build events in it itself. Reads only that server's members.
 */
export async function serverInRoom(tx: ReadTx, roomId: string, server: string): Promise<boolean> {
  // key = roomId|m.room.member|userId → eventId
  const pre = prefix(roomId, "m.room.member");
  for (const row of await tx.range<string>("room_state", { prefix: pre })) {
    const userId = row.key.slice(pre.length);
    if (userId.slice(userId.indexOf(":") + 1) !== server) continue;
    if (membershipIn(await getEvent(tx, row.value)) === "join") return true;
  }
  return false;
}

/**
 * Records `event` (a member event about local user `state_key`, already verified) as an outlier
 * and makes it the user's membership in its room. Returns the stream position.
 */
export async function storeOutOfRoomMembership(hs: Services, event: EventWithId): Promise<number> {
  const userId = event.pdu.state_key!;
  const membership = membershipIn(event.pdu) ?? "leave";
  const streamPos = await hs.store.write(async (tx) => {
    const known = await getEvent(tx, event.eventId);
    // key = eventId; an outlier: not in the timeline, no state of its own.
    if (!known) tx.put("events", event.eventId, { ...event, outlier: true } satisfies StoredEvent);
    const pos = await nextStreamPos(tx);
    // key = userId|roomId → { membership, eventId, streamPos }
    tx.put("memberships", key(userId, event.roomId), { membership, eventId: event.eventId, streamPos: pos } satisfies MembershipRecord);
    return pos;
  });
  hs.output.publish({ kind: "user_data", streamPos, users: [userId] });
  return streamPos;
}
