/**
 * Client-Server "Room aliases", "Room directory" (published rooms, `/publicRooms`) and the user
 * directory (`/user_directory/search`).
 * key aliases = alias → { roomId, creator }; key room_directory = roomId → { visibility }
 */
import type { RequestContext } from "../context.ts";
import { refuseIfSuspended } from "../context.ts";
import { MatrixError, badJson, forbidden, missingParam, notFound } from "../errors.ts";
import { MAX_LIMIT, limitParam } from "../validate.ts";
import type { ReadTx } from "../../storage/store.ts";
import { eventPowerLevel, userPowerLevel } from "../rooms/powerLevels.ts";
import { isRoomAlias, isRoomId, isValidServerName, serverOf } from "../rooms/ids.ts";
import { remotePublicRooms } from "../federation/remoteQueries.ts";
import { isWorldReadable } from "../roomserver/access.ts";
import { currentState, currentStateContent, getRoom, membershipRecord, pdusOf, requireRoom, rulesOf } from "../roomserver/state.ts";
import { joinedRooms } from "../roomserver/membership.ts";
import { sendEvent } from "../roomserver/send.ts";
import { queryAliasIfUnknown } from "../appservice/queries.ts";
import { aliasServers, queryRemoteAlias } from "../federation/remoteMembership.ts";
import type { DirectoryScope } from "../services/directory.ts";
import { listPublicRooms } from "../services/directory.ts";
import type { AccountRecord } from "../services/accounts.ts";

/** An alias row. */
interface AliasRow {
  roomId: string;
  creator: string;
}

function checkAlias(ctx: RequestContext, alias: string): void {
  if (!isRoomAlias(alias)) throw new MatrixError(400, "M_INVALID_PARAM", "Room alias invalid");
  // Control characters and whitespace in an alias are invisible or break lines wherever it is shown.
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\s\u0000-\u001f\u007f-\u009f]/.test(alias)) throw new MatrixError(400, "M_INVALID_PARAM", "Room alias contains control characters or whitespace");
  if (serverOf(alias) !== ctx.hs.serverName) throw new MatrixError(400, "M_INVALID_PARAM", "Room alias must be on this server");
}

/** `PUT /_matrix/client/v3/directory/room/{roomAlias}` */
export async function putAlias(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  // "Account suspension": publishing (aliases, directory entries) is refused like other new activity.
  refuseIfSuspended(me);
  const alias = p.roomAlias!;
  checkAlias(ctx, alias);
  ctx.hs.appservices?.registry.checkAlias(alias, ctx.hs.appservices.registry.byId(me.appserviceId ?? ""));
  const body = await ctx.json();
  if (typeof body.room_id !== "string" || !isRoomId(body.room_id)) throw badJson("room_id must be a room ID");
  const roomId = body.room_id;
  await ctx.hs.store.write(async (tx) => {
    await requireRoom(tx, roomId);
    if (await tx.get("aliases", alias)) throw new MatrixError(409, "M_UNKNOWN", `Room alias ${alias} already exists.`);
    tx.put("aliases", alias, { roomId, creator: me.userId } satisfies AliasRow);
  });
  return {};
}

/** `GET /_matrix/client/v3/directory/room/{roomAlias}` */
export async function getAlias(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const alias = p.roomAlias!;
  if (!isRoomAlias(alias)) throw new MatrixError(400, "M_INVALID_PARAM", "Room alias invalid");
  // Another server's alias is asked of that server (server-server `/query/directory`).
  if (serverOf(alias) !== ctx.hs.serverName && ctx.hs.federation) {
    const remote = await queryRemoteAlias(ctx.hs, alias);
    return { room_id: remote.roomId, servers: remote.servers };
  }
  await queryAliasIfUnknown(ctx.hs, alias);
  return ctx.hs.store.read(async (tx) => {
    const row = await tx.get<AliasRow>("aliases", alias);
    if (!row) throw notFound(`Room alias ${alias} not found.`);
    return { room_id: row.roomId, servers: await aliasServers(tx, row.roomId, ctx.hs.serverName) };
  });
}

/** `DELETE /_matrix/client/v3/directory/room/{roomAlias}` */
export async function deleteAlias(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const alias = p.roomAlias!;
  if (!isRoomAlias(alias)) throw new MatrixError(400, "M_INVALID_PARAM", "Room alias invalid");
  // Exclusive alias namespaces: only their service may delete ("Server admin style permissions").
  ctx.hs.appservices?.registry.checkAlias(alias, ctx.hs.appservices.registry.byId(me.appserviceId ?? ""));
  const roomId = await ctx.hs.store.write(async (tx) => {
    const row = await tx.get<AliasRow>("aliases", alias);
    if (!row) throw notFound(`Room alias ${alias} not found.`);
    // Access control (directory.yaml leaves it to the server): the alias's creator, an admin, or
    // a member who may change the room's canonical alias.
    if (row.creator !== me.userId && !(await isAdmin(tx, me.userId)) && !(await mayEdit(tx, row.roomId, me.userId, "m.room.canonical_alias"))) {
      throw forbidden("You may not delete this alias");
    }
    tx.delete("aliases", alias);
    return row.roomId;
  });
  await dropFromCanonicalAlias(ctx, roomId, alias, me.userId);
  return {};
}

/**
 * A deleted alias no longer belongs in the room's `m.room.canonical_alias` (which must only name
 * aliases that point at the room); the deleting user updates it if they may.
 */
async function dropFromCanonicalAlias(ctx: RequestContext, roomId: string, alias: string, userId: string): Promise<void> {
  const content = await ctx.hs.store.read((tx) => currentStateContent(tx, roomId, "m.room.canonical_alias"));
  if (!content) return;
  const alt = Array.isArray(content.alt_aliases) ? (content.alt_aliases as unknown[]) : undefined;
  if (content.alias !== alias && !alt?.includes(alias)) return;
  const next: Record<string, unknown> = { ...content };
  if (next.alias === alias) delete next.alias;
  if (alt) next.alt_aliases = alt.filter((a) => a !== alias);
  try {
    await sendEvent(ctx.hs, { roomId, sender: userId, type: "m.room.canonical_alias", stateKey: "", content: next });
  } catch (err) {
    ctx.hs.logger.info("could not update the canonical alias after deleting", alias, err);
  }
}

async function isAdmin(tx: ReadTx, userId: string): Promise<boolean> {
  return (await tx.get<AccountRecord>("accounts", userId))?.admin === true;
}

/** Whether a joined user has the power to send the given state event type. */
async function mayEdit(tx: ReadTx, roomId: string, userId: string, type: string): Promise<boolean> {
  const room = await getRoom(tx, roomId);
  if (!room) return false;
  if ((await membershipRecord(tx, roomId, userId))?.membership !== "join") return false;
  const state = pdusOf(await currentState(tx, roomId));
  return userPowerLevel(userId, state, rulesOf(room)) >= eventPowerLevel(type, true, state);
}

/** The local aliases of a room. */
async function aliasesOf(tx: ReadTx, roomId: string): Promise<string[]> {
  const rows = await tx.range<AliasRow>("aliases");
  return rows.filter((r) => r.value.roomId === roomId).map((r) => r.key);
}

/** `GET /_matrix/client/v3/rooms/{roomId}/aliases` */
export async function getRoomAliases(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  return ctx.hs.store.read(async (tx) => {
    await requireRoom(tx, p.roomId!);
    const m = await membershipRecord(tx, p.roomId!, me.userId);
    if (m?.membership !== "join" && !(await isWorldReadable(tx, p.roomId!))) throw forbidden("You are not in this room");
    return { aliases: await aliasesOf(tx, p.roomId!) };
  });
}

/** `GET /_matrix/client/v3/directory/list/room/{roomId}` */
export async function getDirectoryVisibility(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  return ctx.hs.store.read(async (tx) => {
    await requireRoom(tx, p.roomId!);
    const row = await tx.get<{ visibility: string }>("room_directory", p.roomId!);
    return { visibility: row?.visibility ?? "private" };
  });
}

/** `PUT /_matrix/client/v3/directory/list/room/{roomId}` */
export async function putDirectoryVisibility(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  refuseIfSuspended(me);
  const body = await ctx.json({ allowEmpty: true });
  const visibility = body.visibility ?? "public";
  if (visibility !== "public" && visibility !== "private") throw new MatrixError(400, "M_INVALID_PARAM", "visibility must be public or private");
  await ctx.hs.store.write(async (tx) => {
    await requireRoom(tx, p.roomId!);
    // Publishing is a room-wide decision: require the power to change the canonical alias.
    if (!(await isAdmin(tx, me.userId)) && !(await mayEdit(tx, p.roomId!, me.userId, "m.room.canonical_alias"))) {
      throw forbidden("You may not change this room's directory visibility");
    }
    tx.put("room_directory", p.roomId!, { visibility });
  });
  return {};
}

/**
 * The `server` query parameter: another server's checked name (its directory is asked directly),
 * or which list of this server's: without it the global one (every reachable server's rooms, from
 * the cache), with this server's own name only the rooms this server publishes (what other servers
 * see when they ask it).
 */
function serverParam(ctx: RequestContext): { remote: string } | { scope: DirectoryScope } {
  const server = ctx.query("server");
  if (server === undefined) return { scope: "global" };
  if (server === ctx.hs.serverName) return { scope: "server" };
  if (!isValidServerName(server)) throw new MatrixError(400, "M_INVALID_PARAM", "server is not a valid server name");
  return { remote: server };
}

/** `GET /_matrix/client/v3/publicRooms` */
export async function getPublicRooms(ctx: RequestContext): Promise<Record<string, unknown>> {
  const server = serverParam(ctx);
  const limit = ctx.query("limit") === undefined ? undefined : limitParam(ctx, 0, Infinity);
  // An empty since is no token (as Synapse reads it).
  const since = ctx.query("since") || undefined;
  if ("remote" in server) return remotePublicRooms(ctx.hs, server.remote, { ...(limit !== undefined ? { limit } : {}), ...(since !== undefined ? { since } : {}) });
  if ("scope" in server && server.scope === "global") ctx.hs.directory?.looked();
  return listPublicRooms(ctx.hs, limit, since, undefined, undefined, server.scope);
}

/** `POST /_matrix/client/v3/publicRooms` */
export async function postPublicRooms(ctx: RequestContext): Promise<Record<string, unknown>> {
  await ctx.requireAuth();
  const server = serverParam(ctx);
  const body = await ctx.json({ allowEmpty: true });
  if ("scope" in server && server.scope === "global") ctx.hs.directory?.looked();
  if (!("remote" in server)) return listPublicRooms(ctx.hs, body.limit, body.since, body.filter, body.include_all_networks === true ? undefined : body.third_party_instance_id, server.scope);
  // Checked here so that a malformed request never leaves the server.
  if (body.limit !== undefined && (typeof body.limit !== "number" || !Number.isInteger(body.limit) || body.limit < 0)) throw new MatrixError(400, "M_INVALID_PARAM", "limit must be a non-negative integer");
  if (body.since !== undefined && typeof body.since !== "string") throw new MatrixError(400, "M_INVALID_PARAM", "Malformed since token");
  if (body.filter !== undefined && (body.filter === null || typeof body.filter !== "object" || Array.isArray(body.filter))) throw badJson("filter must be an object");
  if (body.include_all_networks !== undefined && typeof body.include_all_networks !== "boolean") throw badJson("include_all_networks must be a boolean");
  if (body.third_party_instance_id !== undefined && typeof body.third_party_instance_id !== "string") throw badJson("third_party_instance_id must be a string");
  return remotePublicRooms(ctx.hs, server.remote, {
    ...(body.limit !== undefined ? { limit: body.limit as number } : {}),
    ...(body.since !== undefined ? { since: body.since as string } : {}),
    filter: (body.filter as Record<string, unknown> | undefined) ?? {},
    ...(body.include_all_networks !== undefined ? { includeAllNetworks: body.include_all_networks as boolean } : {}),
    ...(body.third_party_instance_id !== undefined ? { thirdPartyInstanceId: body.third_party_instance_id as string } : {}),
  });
}

/** `POST /_matrix/client/v3/user_directory/search` */
export async function postUserDirectorySearch(ctx: RequestContext): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const body = await ctx.json();
  if (body.search_term === undefined) throw missingParam("search_term is required");
  if (typeof body.search_term !== "string") throw badJson("search_term must be a string");
  let limit = 10;
  if (body.limit !== undefined) {
    if (typeof body.limit !== "number" || !Number.isInteger(body.limit) || body.limit < 0) throw badJson("limit must be a non-negative integer");
    limit = Math.min(body.limit, MAX_LIMIT);
  }
  const term = body.search_term.toLowerCase();
  return ctx.hs.store.read(async (tx) => {
    // Candidates (users.yaml): users who share a room with the requester, and users in public rooms.
    const profiles = new Map<string, { displayname?: string; avatar_url?: string }>();
    const addMembers = async (roomId: string): Promise<void> => {
      for (const e of (await currentState(tx, roomId)).values()) {
        if (e.pdu.type !== "m.room.member" || e.pdu.content.membership !== "join" || !e.pdu.state_key) continue;
        const c = e.pdu.content;
        profiles.set(e.pdu.state_key, {
          ...(typeof c.displayname === "string" ? { displayname: c.displayname } : {}),
          ...(typeof c.avatar_url === "string" ? { avatar_url: c.avatar_url } : {}),
        });
      }
    };
    // Rooms that make their members visible to everyone (users.yaml): a `public` join rule or
    // `world_readable` history, as the room is now; being published in the room directory does not
    // count (Synapse's rule too), so a member drops out once the room stops being either.
    const open: string[] = [];
    for (const r of await tx.range<unknown>("rooms", {})) {
      const jr = (await currentStateContent(tx, r.key, "m.room.join_rules"))?.join_rule;
      const hv = jr === "public" ? undefined : (await currentStateContent(tx, r.key, "m.room.history_visibility"))?.history_visibility;
      if (jr === "public" || hv === "world_readable") open.push(r.key);
    }
    // A joined room that is also public is read once, in the second pass (the later pass, whose
    // profiles win, as when it was read in both).
    const openSet = new Set(open);
    for (const roomId of await joinedRooms(tx, me.userId)) if (!openSet.has(roomId)) await addMembers(roomId);
    for (const roomId of open) await addMembers(roomId);
    const results: Record<string, unknown>[] = [];
    for (const [userId, prof] of [...profiles].sort((a, b) => a[0].localeCompare(b[0]))) {
      const localpart = userId.slice(1, userId.indexOf(":"));
      const hit = userId.toLowerCase().includes(term) || localpart.toLowerCase().includes(term) || (prof.displayname?.toLowerCase().includes(term) ?? false);
      if (!hit) continue;
      results.push({ user_id: userId, ...(prof.displayname ? { display_name: prof.displayname } : {}), ...(prof.avatar_url ? { avatar_url: prof.avatar_url } : {}) });
    }
    return { results: results.slice(0, limit), limited: results.length > limit };
  });
}


