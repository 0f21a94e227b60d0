/**
 * Spaces across servers (server-server API "Spaces"): `GET /_matrix/federation/v1/hierarchy/{roomId}`.
 * The client side (remoteHierarchy.ts) lets `/_matrix/client/v1/rooms/{roomId}/hierarchy` walk into
 * rooms this server is not in.
 *
 * The federation answer does not paginate: it gives the space and every child the requesting
 * server could peek or join (the requesting server filters for its user). A child this server
 * knows but the requester could not reach is listed in `inaccessible_children`; one it does not
 * know is left out.
 */
import type { RequestContext } from "../context.ts";
import { notFound } from "../errors.ts";
import type { ReadTx } from "../../storage/store.ts";
import { key, prefix } from "../../storage/store.ts";
import type { StoredEvent } from "../events/types.ts";
import { stateKeyOf } from "../events/types.ts";
import { domainOf } from "../rooms/ids.ts";
import { currentState, getRoom } from "../roomserver/state.ts";
import type { MembershipRecord } from "../roomserver/state.ts";
import { roomSummaryOf } from "../services/directory.ts";
import { serverAllowedInRoom } from "./acl.ts";
import { serverInRoom } from "./access.ts";
import { spaceChildren } from "./remoteHierarchy.ts";

/**
 * Whether `server` could peek or join `roomId` (Synapse's `_is_remote_room_accessible`): the ACL
 * lets it in, and the room is world-readable, joinable by anyone or by knocking, restricted (the
 * requester checks `allowed_room_ids` for its user), or one of its users is joined or invited.
 */
async function accessibleToServer(tx: ReadTx, roomId: string, server: string, state: Map<string, StoredEvent>): Promise<boolean> {
  if (!(await serverAllowedInRoom(tx, roomId, server))) return false;
  const hv = state.get(stateKeyOf("m.room.history_visibility", ""))?.pdu.content.history_visibility;
  const jr = state.get(stateKeyOf("m.room.join_rules", ""))?.pdu.content.join_rule;
  if (hv === "world_readable") return true;
  if (jr === "public" || jr === "knock" || jr === "knock_restricted" || jr === "restricted") return true;
  if (await serverInRoom(tx, roomId, server)) return true;
  const pre = prefix(roomId, "m.room.member");
  for (const row of await tx.range<string>("room_state", { prefix: pre })) {
    const userId = row.key.slice(pre.length);
    if (domainOf(userId) !== server) continue;
    if ((await tx.get<MembershipRecord>("memberships", key(userId, roomId)))?.membership === "invite") return true;
  }
  return false;
}

/** `GET /_matrix/federation/v1/hierarchy/{roomId}` */
export async function getFederationHierarchy(ctx: RequestContext, p: Record<string, string>, origin: string): Promise<Record<string, unknown>> {
  const suggestedRaw = ctx.query("suggested_only") ?? "false";
  const suggestedOnly = suggestedRaw === "true";
  const roomId = p.roomId!;
  return ctx.hs.store.read(async (tx) => {
    const state = await currentState(tx, roomId);
    if (!(await getRoom(tx, roomId)) || state.size === 0 || !(await accessibleToServer(tx, roomId, origin, state))) {
      throw notFound("Room does not exist or is not accessible to the requesting server");
    }
    const childEvents = spaceChildren(state, suggestedOnly);
    const children: Record<string, unknown>[] = [];
    const inaccessible: string[] = [];
    for (const c of childEvents) {
      const childId = c.state_key;
      if (!(await getRoom(tx, childId))) continue;
      const childStateMap = await currentState(tx, childId);
      if (childStateMap.size === 0) continue;
      if (!(await accessibleToServer(tx, childId, origin, childStateMap))) {
        inaccessible.push(childId);
        continue;
      }
      children.push({ ...(await roomSummaryOf(tx, childId, childStateMap)), children_state: spaceChildren(childStateMap, false) });
    }
    return {
      room: { ...(await roomSummaryOf(tx, roomId, state)), children_state: childEvents },
      children,
      inaccessible_children: inaccessible,
    };
  });
}
