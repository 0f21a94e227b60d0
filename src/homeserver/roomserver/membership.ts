/**
 * Membership changes of local users (Client-Server "Room membership"): the member events and the
 * checks that give clearer errors than the auth rules alone. The auth rules (checkAuth, via
 * sendEvent) remain the authority on what is allowed.
 */
import type { ReadTx } from "../../storage/store.ts";
import { key, prefix } from "../../storage/store.ts";
import type { Services } from "../context.ts";
import { forbidden, notFound, MatrixError } from "../errors.ts";
import { stateKeyOf } from "../events/types.ts";
import type { Pdu } from "../events/types.ts";
import type { RoomVersionRules } from "../rooms/versions.ts";
import { requiredPowerLevel, userPowerLevel } from "../rooms/powerLevels.ts";
import { sendEvent } from "./send.ts";
import type { SendRequest, SendResult } from "./send.ts";
import { currentState, getRoom, membershipRecord, pdusOf, requireRoom, rulesOf, membershipIn } from "./state.ts";
import type { MembershipRecord } from "./state.ts";
import { isRoomAlias, serverOf } from "../rooms/ids.ts";

/** A room ID, or the room an alias points to; 404 M_NOT_FOUND for an unknown alias. */
export async function resolveRoom(tx: ReadTx, roomIdOrAlias: string): Promise<string> {
  if (isRoomAlias(roomIdOrAlias)) {
    const row = await tx.get<{ roomId: string }>("aliases", roomIdOrAlias);
    if (!row) throw notFound(`Room alias ${roomIdOrAlias} not found`);
    return row.roomId;
  }
  if (!roomIdOrAlias.startsWith("!")) throw new MatrixError(400, "M_INVALID_PARAM", "Expected a room ID or alias");
  return roomIdOrAlias;
}

/** The profile fields a local user's member events carry. */
export async function profileOf(hs: Services, userId: string): Promise<Record<string, unknown>> {
  const a = await hs.store.read((tx) => tx.get<{ displayname?: string; avatar_url?: string }>("accounts", userId));
  return { ...(a?.displayname ? { displayname: a.displayname } : {}), ...(a?.avatar_url ? { avatar_url: a.avatar_url } : {}) };
}

const withReason = (content: Record<string, unknown>, reason?: string): Record<string, unknown> =>
  reason !== undefined ? { ...content, reason } : content;

/**
 * Joins a local room. A room this server does not know would need a federated join, which is not
 * available here: 404 M_NOT_FOUND.
 */
export async function joinRoom(hs: Services, userId: string, roomId: string, opts: { reason?: string; isGuest?: boolean } = {}): Promise<SendResult | undefined> {
  const info = await hs.store.read(async (tx) => {
    const room = await getRoom(tx, roomId);
    if (!room) throw notFound(`Room ${roomId} is not known to this server (joining over federation is not available)`);
    const state = await currentState(tx, roomId);
    const mine = await membershipRecord(tx, roomId, userId);
    return { room, state, mine };
  });
  if (info.mine?.membership === "join") return undefined; // already joined: nothing to change
  const content: Record<string, unknown> = withReason({ membership: "join", ...(await profileOf(hs, userId)) }, opts.reason);
  if (opts.isGuest) {
    // Guest access: guests may join only rooms whose guest_access is can_join.
    const ga = info.state.get(stateKeyOf("m.room.guest_access", ""))?.pdu.content.guest_access;
    if (ga !== "can_join") throw new MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guests may not join this room");
    content.kind = "guest";
  }
  const joinRule = info.state.get(stateKeyOf("m.room.join_rules", ""))?.pdu.content;
  const rules = rulesOf(info.room);
  if (
    joinRule && (joinRule.join_rule === "restricted" || joinRule.join_rule === "knock_restricted") && rules.restrictedJoins &&
    info.mine?.membership !== "invite"
  ) {
    const via = await hs.store.read((tx) => restrictedAuthoriser(tx, hs, roomId, userId, joinRule.allow, pdusOf(info.state), rules));
    if (via) content.join_authorised_via_users_server = via;
  }
  return sendEvent(hs, { roomId, sender: userId, type: "m.room.member", stateKey: userId, content });
}

/**
 * Restricted rooms ("Restricted rooms", server behaviour): if the user is joined to one of the
 * `allow` rooms, a local member who may invite signs off the join. Undefined if none qualifies
 * (the auth rules then refuse the join).
 */
async function restrictedAuthoriser(
  tx: ReadTx, hs: Services, roomId: string, userId: string, allow: unknown,
  state: Map<string, Pdu>, rules: RoomVersionRules,
): Promise<string | undefined> {
  if (!Array.isArray(allow)) return undefined;
  let qualifies = false;
  for (const a of allow as Record<string, unknown>[]) {
    if (a?.type === "m.room_membership" && typeof a.room_id === "string") {
      const m = await membershipRecord(tx, a.room_id, userId);
      if (m?.membership === "join") qualifies = true;
    }
  }
  if (!qualifies) return undefined;
  const invite = requiredPowerLevel("invite", state);
  for (const [sk, pdu] of state) {
    if (!sk.startsWith(stateKeyOf("m.room.member", "")) || membershipIn(pdu) !== "join" || !pdu.state_key) continue;
    if (serverOf(pdu.state_key) !== hs.serverName) continue;
    if (userPowerLevel(pdu.state_key, state, rules) >= invite) return pdu.state_key;
  }
  return undefined;
}

/** A membership change by `sender` on `target` (invite, kick, ban, unban, leave, knock). */
export async function changeMembership(
  hs: Services,
  sender: string,
  roomId: string,
  target: string,
  action: "invite" | "kick" | "ban" | "unban" | "leave" | "knock",
  opts: { reason?: string; isDirect?: boolean; countersign?: SendRequest["countersign"] } = {},
): Promise<SendResult | undefined> {
  const current = await hs.store.read(async (tx) => {
    await requireRoom(tx, roomId);
    return (await membershipRecord(tx, roomId, target))?.membership;
  });
  let content: Record<string, unknown>;
  switch (action) {
    case "invite":
      if (current === "join") throw forbidden(`${target} is already in the room`);
      if (current === "ban") throw forbidden(`${target} is banned from the room`);
      content = { membership: "invite", ...(serverOf(target) === hs.serverName ? await profileOf(hs, target) : {}), ...(opts.isDirect ? { is_direct: true } : {}) };
      break;
    case "kick":
      if (current !== "join" && current !== "invite" && current !== "knock") throw forbidden(`${target} is not in the room`);
      content = { membership: "leave" };
      break;
    case "ban":
      content = { membership: "ban" };
      break;
    case "unban":
      if (current !== "ban") throw forbidden(`${target} is not banned`);
      content = { membership: "leave" };
      break;
    case "leave":
      // Leaving a room one is not in changes nothing.
      if (current === undefined || current === "leave") return undefined;
      content = { membership: "leave" };
      break;
    case "knock":
      if (current === "join") throw forbidden("You are already in the room");
      if (current === "ban") throw forbidden("You are banned from the room");
      content = { membership: "knock", ...(await profileOf(hs, target)) };
      break;
  }
  return sendEvent(hs, { roomId, sender, type: "m.room.member", stateKey: target, content: withReason(content, opts.reason), ...(opts.countersign ? { countersign: opts.countersign } : {}) });
}

/** The rooms a user is joined to. */
export async function joinedRooms(tx: ReadTx, userId: string): Promise<string[]> {
  // key = userId|roomId → { membership, … }
  const rows = await tx.range<{ membership: string }>("memberships", { prefix: prefix(userId) });
  return rows.filter((r) => r.value.membership === "join").map((r) => r.key.slice(prefix(userId).length));
}

/**
 * `/forget`: marks a room the user has left as forgotten (`/sync` leaves it out); 400 while they
 * are still joined, invited or knocking, 404 for an unknown room.
 */
export async function forgetRoom(hs: Services, userId: string, roomId: string): Promise<void> {
  await hs.store.write(async (tx) => {
    const rec = await membershipRecord(tx, roomId, userId);
    if (!rec) {
      await requireRoom(tx, roomId);
      return;
    }
    // leaving.yaml: 400 "The user has not left the room".
    if (rec.membership === "join" || rec.membership === "invite" || rec.membership === "knock") {
      throw new MatrixError(400, "M_UNKNOWN", `User ${userId} is in room ${roomId}`);
    }
    // key = userId|roomId; /sync leaves forgotten rooms out.
    tx.put("memberships", key(userId, roomId), { ...rec, forgotten: true } satisfies MembershipRecord);
  });
}
