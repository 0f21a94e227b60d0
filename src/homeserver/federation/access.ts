/**
 * Which server may see what of a room over federation: "in the room" (one of its users joined in
 * the current state), the room's server ACL, and history visibility for servers (an event is
 * visible to a server when the visibility at it is `shared`/`world_readable`, or one of that
 * server's users was joined — or invited, under `invited` — at that event; Synapse's
 * `filter_events_for_server`). Events a server may not see are served redacted, so the DAG it
 * walks stays whole.
 */
import type { ReadTx } from "../../storage/store.ts";
import { key, prefix } from "../../storage/store.ts";
import { forbidden, notFound } from "../errors.ts";
import { redact } from "../events/redaction.ts";
import type { Pdu, RoomRecord, StoredEvent } from "../events/types.ts";
import { stateKeyOf } from "../events/types.ts";
import { domainOf } from "../rooms/ids.ts";
import { currentStateContent, getEvent, getRoom, rulesOf, stateAfter, stateBefore } from "../roomserver/state.ts";
import type { MembershipRecord } from "../roomserver/state.ts";
import { serverAllowedInRoom } from "./acl.ts";

const MEMBER = "m.room.member";

/**
 * Whether one of `server`'s users is joined to `roomId` in its current state. Reads the member
 * keys and the membership records, never the member events themselves.
 */
export async function serverInRoom(tx: ReadTx, roomId: string, server: string): Promise<boolean> {
  const pre = prefix(roomId, MEMBER);
  for (const row of await tx.range<string>("room_state", { prefix: pre })) {
    const userId = row.key.slice(pre.length);
    if (domainOf(userId) !== server) continue;
    const rec = await tx.get<MembershipRecord>("memberships", key(userId, roomId));
    if (rec?.membership === "join") return true;
  }
  return false;
}

/**
 * The room, if `origin` may read it over federation: `404 M_NOT_FOUND` when this server does not
 * know the room, `403 M_FORBIDDEN` when the ACL denies `origin` or `origin` is neither in the room
 * nor reading a `world_readable` one.
 */
export async function requireServerAccess(tx: ReadTx, roomId: string, origin: string): Promise<RoomRecord> {
  const room = await getRoom(tx, roomId);
  if (!room) throw notFound("Unknown room");
  if (!(await serverAllowedInRoom(tx, roomId, origin))) throw forbidden("Server is denied by the room's server ACL");
  if (await serverInRoom(tx, roomId, origin)) return room;
  const vis = (await currentStateContent(tx, roomId, "m.room.history_visibility", ""))?.history_visibility;
  if (vis === "world_readable") return room;
  throw forbidden("Server is not in the room");
}

async function visibilityIn(tx: ReadTx, state: Map<string, string>): Promise<string> {
  const id = state.get(stateKeyOf("m.room.history_visibility", ""));
  const v = id ? (await getEvent(tx, id))?.pdu.content.history_visibility : undefined;
  return typeof v === "string" && ["world_readable", "shared", "invited", "joined"].includes(v) ? v : "shared";
}

/** Whether `server` may see `event` by the state at it (before or after, as for users' own events). */
async function allowedIn(tx: ReadTx, state: Map<string, string>, server: string): Promise<boolean> {
  const vis = await visibilityIn(tx, state);
  if (vis === "world_readable" || vis === "shared") return true;
  const pre = stateKeyOf(MEMBER, "");
  for (const [sk, id] of state) {
    if (!sk.startsWith(pre) || domainOf(sk.slice(pre.length)) !== server) continue;
    const m = (await getEvent(tx, id))?.pdu.content.membership;
    if (m === "join" || (m === "invite" && vis === "invited")) return true;
  }
  return false;
}

/** Whether `server` may see `event` in full (otherwise it gets the redacted copy). */
export async function serverCanSee(tx: ReadTx, server: string, event: StoredEvent): Promise<boolean> {
  if (event.outlier) return true; // auth and state events: part of the room's state, which the server reads anyway
  if (await allowedIn(tx, await stateAfter(tx, event.eventId), server)) return true;
  return allowedIn(tx, await stateBefore(tx, event), server);
}

/**
 * The PDU as sent to another server: without our local `unsigned` annotations (clients' view:
 * `replaces_state`, `transaction_id`…), and redacted when `server` may not see it or it was redacted.
 */
export async function pduFor(tx: ReadTx, room: RoomRecord, server: string, event: StoredEvent): Promise<Pdu> {
  const { unsigned: _unsigned, ...pdu } = event.pdu;
  if (event.redactedBy !== undefined || !(await serverCanSee(tx, server, event))) return redact(pdu, rulesOf(room)) as Pdu;
  return pdu as Pdu;
}
