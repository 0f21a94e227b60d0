/** Client-Server "Room membership": joining, inviting, leaving, forgetting, kicking, banning, knocking, member lists. */
import type { RequestContext, Requester } from "../context.ts";
import { refuseIfSuspended } from "../context.ts";
import { MatrixError, badJson, missingParam } from "../errors.ts";
import { changeMembership, forgetRoom, joinRoom, joinedRooms, profileOf, resolveRoom } from "../roomserver/membership.ts";
import { queryAliasIfUnknown } from "../appservice/queries.ts";
import { isRoomAlias, isUserId, isValidServerName, serverOf } from "../rooms/ids.ts";
import {
  candidateServers, isResident, joinRemoteRoom, knockRemoteRoom, leaveRemoteRoom, outOfRoomServers, queryRemoteAlias, remoteInviteSigner, roomIdServer,
} from "../federation/remoteMembership.ts";
import { directoryServers } from "../federation/directory.ts";
import { readableUpTo, requireJoined } from "../roomserver/access.ts";
import { currentState, getEvent, latestEventAt, membershipIn, membershipRecord, stateAfter } from "../roomserver/state.ts";
import { EventServer } from "../roomserver/serve.ts";
import { parseToken } from "../roomserver/tokens.ts";
import type { StoredEvent } from "../events/types.ts";
import { stateKeyOf } from "../events/types.ts";
import { limitInvite, limitUser } from "../auth/rateLimit.ts";
import { aliasTarget, roomKnown } from "../services/rooms.ts";
import { reasonOf } from "../validate.ts";

/** The required `user_id` of a membership request body. */
function targetOf(body: Record<string, unknown>): string {
  if (body.user_id === undefined) throw missingParam("user_id is required");
  if (typeof body.user_id !== "string") throw badJson("user_id must be a string");
  if (!isUserId(body.user_id)) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid user ID");
  return body.user_id;
}

/**
 * The servers a client names to join or knock through: `via` (v1.12) and its deprecated spelling
 * `server_name`; 400 M_INVALID_PARAM for one that is not a server name.
 */
function viaServers(ctx: RequestContext): string[] {
  const list = [...ctx.queryAll("via"), ...ctx.queryAll("server_name")];
  for (const s of list) if (!isValidServerName(s)) throw new MatrixError(400, "M_INVALID_PARAM", `Invalid server name ${s}`);
  return list;
}

/** A room ID or alias: the room, and servers that know it (an alias of another server: `/query/directory`). */
async function resolveTarget(ctx: RequestContext, roomIdOrAlias: string): Promise<{ roomId: string; servers: string[] }> {
  if (isRoomAlias(roomIdOrAlias) && serverOf(roomIdOrAlias) !== ctx.hs.serverName && ctx.hs.federation) {
    if ((await aliasTarget(ctx.hs, roomIdOrAlias)) === undefined) return queryRemoteAlias(ctx.hs, roomIdOrAlias);
  }
  await queryAliasIfUnknown(ctx.hs, roomIdOrAlias);
  return { roomId: await ctx.hs.store.read((tx) => resolveRoom(tx, roomIdOrAlias)), servers: [] };
}

/**
 * Joins a local room, or — when this server is not in the room — joins over federation through the
 * named servers, the inviter's, (before v12) the room ID's (server-server "Joining Rooms"), and
 * those whose directory lists the room.
 */
async function join(ctx: RequestContext, me: Requester, roomId: string, servers: string[], reason: string | undefined): Promise<void> {
  const { hs } = ctx;
  if (hs.federation && !(await isResident(hs, roomId))) {
    // Last, the servers whose directory listed the room: a room picked from the global directory
    // comes without `via` (the client does not know where the entry came from).
    const candidates = candidateServers(hs, servers, await outOfRoomServers(hs, roomId, me.userId), [roomIdServer(roomId)], await directoryServers(hs, roomId));
    if (candidates.length > 0) {
      limitUser(ctx, me, "rc_joins.remote");
      const content = await profileOf(hs, me.userId);
      await joinRemoteRoom(hs, me.userId, roomId, candidates, reason !== undefined ? { ...content, reason } : content);
      return;
    }
  }
  limitUser(ctx, me, "rc_joins.local");
  await joinRoom(hs, me.userId, roomId, { reason, isGuest: me.isGuest });
}

/** `POST /_matrix/client/v3/join/{roomIdOrAlias}` */
export async function postJoin(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  // "Account suspension": joining, knocking and inviting are refused (accepting an invite is a join).
  refuseIfSuspended(me);
  const body = await ctx.json({ allowEmpty: true });
  const via = viaServers(ctx);
  const { roomId, servers } = await resolveTarget(ctx, p.roomIdOrAlias!);
  await join(ctx, me, roomId, [...via, ...servers], reasonOf(body));
  return { room_id: roomId };
}

/** `POST /_matrix/client/v3/rooms/{roomId}/join` */
export async function postRoomJoin(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  refuseIfSuspended(me);
  const body = await ctx.json({ allowEmpty: true });
  await join(ctx, me, p.roomId!, [], reasonOf(body));
  return { room_id: p.roomId };
}

/** `POST /_matrix/client/v3/knock/{roomIdOrAlias}` */
export async function postKnock(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  refuseIfSuspended(me);
  const body = await ctx.json({ allowEmpty: true });
  const via = viaServers(ctx);
  const { roomId, servers } = await resolveTarget(ctx, p.roomIdOrAlias!);
  const reason = reasonOf(body);
  if (ctx.hs.federation && !(await isResident(ctx.hs, roomId))) {
    const candidates = candidateServers(ctx.hs, via, servers, [roomIdServer(roomId)], await directoryServers(ctx.hs, roomId));
    if (candidates.length > 0) {
      const content = await profileOf(ctx.hs, me.userId);
      await knockRemoteRoom(ctx.hs, me.userId, roomId, candidates, reason !== undefined ? { ...content, reason } : content);
      return { room_id: roomId };
    }
  }
  await changeMembership(ctx.hs, me.userId, roomId, me.userId, "knock", { reason });
  return { room_id: roomId };
}

/** `POST /_matrix/client/v3/rooms/{roomId}/invite` */
export async function postInvite(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  refuseIfSuspended(me);
  const body = await ctx.json();
  if (body.id_server !== undefined || body.medium !== undefined) {
    throw new MatrixError(400, "M_UNRECOGNIZED", "Third-party invites are not supported by this server");
  }
  const target = targetOf(body);
  const reason = reasonOf(body);
  limitInvite(ctx, me, p.roomId!, target);
  // A remote invitee's server signs the invite first (server-server "Inviting to a room").
  const remote = serverOf(target) !== ctx.hs.serverName && ctx.hs.federation !== undefined;
  await changeMembership(ctx.hs, me.userId, p.roomId!, target, "invite", { reason, ...(remote ? { countersign: remoteInviteSigner(ctx.hs) } : {}) });
  return {};
}

/** `POST /_matrix/client/v3/rooms/{roomId}/leave` */
export async function postLeave(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const body = await ctx.json({ allowEmpty: true });
  const reason = reasonOf(body);
  const { hs } = ctx;
  // An invite or knock in a room this server is not in is rejected (retracted) through a resident
  // server ("Leaving Rooms (Rejecting Invites)").
  const mine = await hs.store.read((tx) => membershipRecord(tx, p.roomId!, me.userId));
  if ((mine?.membership === "invite" || mine?.membership === "knock") && hs.federation && !(await isResident(hs, p.roomId!))) {
    const candidates = candidateServers(hs, await outOfRoomServers(hs, p.roomId!, me.userId), [roomIdServer(p.roomId!)]);
    const known = await roomKnown(hs, p.roomId!);
    if (candidates.length > 0 || !known) {
      await leaveRemoteRoom(hs, me.userId, p.roomId!, candidates, reason !== undefined ? { reason } : {});
      return {};
    }
  }
  await changeMembership(hs, me.userId, p.roomId!, me.userId, "leave", { reason });
  return {};
}

/** `POST /_matrix/client/v3/rooms/{roomId}/kick` */
export async function postKick(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  // "Account suspension": moderating others is as much an action on the room as inviting them.
  refuseIfSuspended(me);
  const body = await ctx.json();
  await changeMembership(ctx.hs, me.userId, p.roomId!, targetOf(body), "kick", { reason: reasonOf(body) });
  return {};
}

/** `POST /_matrix/client/v3/rooms/{roomId}/ban` */
export async function postBan(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  refuseIfSuspended(me);
  const body = await ctx.json();
  await changeMembership(ctx.hs, me.userId, p.roomId!, targetOf(body), "ban", { reason: reasonOf(body) });
  return {};
}

/** `POST /_matrix/client/v3/rooms/{roomId}/unban` */
export async function postUnban(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  refuseIfSuspended(me);
  const body = await ctx.json();
  await changeMembership(ctx.hs, me.userId, p.roomId!, targetOf(body), "unban", { reason: reasonOf(body) });
  return {};
}

/** `POST /_matrix/client/v3/rooms/{roomId}/forget` */
export async function postForget(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  await forgetRoom(ctx.hs, me.userId, p.roomId!);
  return {};
}

/** `GET /_matrix/client/v3/joined_rooms` */
export async function getJoinedRooms(ctx: RequestContext): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  return { joined_rooms: await ctx.hs.store.read((tx) => joinedRooms(tx, me.userId)) };
}

const MEMBERSHIPS = new Set(["join", "invite", "knock", "leave", "ban"]);

/** `GET /_matrix/client/v3/rooms/{roomId}/members` */
export async function getMembers(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const at = ctx.query("at");
  const only = ctx.query("membership");
  const not = ctx.query("not_membership");
  for (const v of [only, not]) if (v !== undefined && !MEMBERSHIPS.has(v)) throw new MatrixError(400, "M_INVALID_PARAM", `Unknown membership ${v}`);
  const atPos = at !== undefined ? parseToken(at, "at") : undefined;
  return ctx.hs.store.read(async (tx) => {
    const roomId = p.roomId!;
    const { upTo } = await readableUpTo(tx, roomId, me.userId);
    const limit = Math.min(upTo, atPos ?? Infinity);
    let members: StoredEvent[];
    if (limit === Infinity) {
      members = [...(await currentState(tx, roomId)).values()].filter((e) => e.pdu.type === "m.room.member");
    } else {
      // The state at that point: after the newest room event at or before it.
      const last = await latestEventAt(tx, roomId, limit);
      const state = last ? await stateAfter(tx, last.eventId) : new Map<string, string>();
      members = [];
      for (const [sk, id] of state) {
        if (!sk.startsWith(stateKeyOf("m.room.member", ""))) continue;
        const e = await getEvent(tx, id);
        if (e) members.push(e);
      }
    }
    members = members.filter((e) => {
      const m = membershipIn(e) ?? "leave";
      return (only === undefined || m === only) && (not === undefined || m !== not);
    });
    return { chunk: await new EventServer(tx, me, ctx.hs.clock()).serveAll(members, { bundle: false }) };
  });
}

/** `GET /_matrix/client/v3/rooms/{roomId}/joined_members` */
export async function getJoinedMembers(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  return ctx.hs.store.read(async (tx) => {
    await requireJoined(tx, p.roomId!, me.userId);
    const joined: Record<string, Record<string, unknown>> = {};
    for (const e of (await currentState(tx, p.roomId!)).values()) {
      if (e.pdu.type !== "m.room.member" || membershipIn(e) !== "join" || e.pdu.state_key === undefined) continue;
      const c = e.pdu.content;
      joined[e.pdu.state_key] = {
        ...(typeof c.displayname === "string" ? { display_name: c.displayname } : {}),
        ...(typeof c.avatar_url === "string" ? { avatar_url: c.avatar_url } : {}),
      };
    }
    return { joined };
  });
}


