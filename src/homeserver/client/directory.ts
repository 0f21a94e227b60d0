/**
 * Client-Server "Room aliases", "Room directory" (published rooms, `/publicRooms`) and the user
 * directory (`/user_directory/search`): the requests; aliases and listings are services/directory.ts's.
 */
import type { RequestContext } from "../context.ts";
import { refuseIfSuspended } from "../context.ts";
import { MatrixError, badJson, missingParam } from "../errors.ts";
import { MAX_LIMIT, limitParam } from "../validate.ts";
import { isRoomAlias, isRoomId, isValidServerName, serverOf } from "../rooms/ids.ts";
import { remotePublicRooms } from "../federation/remoteQueries.ts";
import { queryAliasIfUnknown } from "../appservice/queries.ts";
import { queryRemoteAlias } from "../federation/remoteMembership.ts";
import type { DirectoryScope } from "../services/directory.ts";
import {
  createAlias,
  directoryVisibility,
  listPublicRooms,
  localAlias,
  removeAlias,
  roomAliases,
  searchUserDirectory,
  setDirectoryVisibility,
} from "../services/directory.ts";

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
  await createAlias(ctx.hs, alias, roomId, me.userId);
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
  return localAlias(ctx.hs, alias);
}

/** `DELETE /_matrix/client/v3/directory/room/{roomAlias}` */
export async function deleteAlias(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const alias = p.roomAlias!;
  if (!isRoomAlias(alias)) throw new MatrixError(400, "M_INVALID_PARAM", "Room alias invalid");
  // Exclusive alias namespaces: only their service may delete ("Server admin style permissions").
  ctx.hs.appservices?.registry.checkAlias(alias, ctx.hs.appservices.registry.byId(me.appserviceId ?? ""));
  await removeAlias(ctx.hs, alias, me.userId);
  return {};
}

/** `GET /_matrix/client/v3/rooms/{roomId}/aliases` */
export async function getRoomAliases(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  return roomAliases(ctx.hs, p.roomId!, me.userId);
}

/** `GET /_matrix/client/v3/directory/list/room/{roomId}` */
export async function getDirectoryVisibility(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  return directoryVisibility(ctx.hs, p.roomId!);
}

/** `PUT /_matrix/client/v3/directory/list/room/{roomId}` */
export async function putDirectoryVisibility(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  refuseIfSuspended(me);
  const body = await ctx.json({ allowEmpty: true });
  const visibility = body.visibility ?? "public";
  if (visibility !== "public" && visibility !== "private") throw new MatrixError(400, "M_INVALID_PARAM", "visibility must be public or private");
  await setDirectoryVisibility(ctx.hs, p.roomId!, me.userId, visibility);
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
  return searchUserDirectory(ctx.hs, me.userId, term, limit);
}


