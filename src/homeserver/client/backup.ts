/**
 * Server-side key backups (client-server API "End-to-End Encryption" → "Server-side key backups"):
 * the requests, checked; versions and keys are services/backup.ts's.
 */
import type { RequestContext } from "../context.ts";
import { badJson, invalidParam, missingParam } from "../errors.ts";
import { isObject } from "../validate.ts";
import type { KeyBackupData } from "../services/backup.ts";
import { backupKeys, backupVersionInfo, createBackupVersion, deleteBackupKeys, deleteBackupVersion, storeBackupKeys, updateBackupVersion } from "../services/backup.ts";

function readVersionBody(body: Record<string, unknown>): { algorithm: string; auth_data: Record<string, unknown> } {
  if (typeof body.algorithm !== "string") throw badJson("algorithm must be a string");
  if (!isObject(body.auth_data)) throw badJson("auth_data must be an object");
  return { algorithm: body.algorithm, auth_data: body.auth_data };
}

/** `POST /_matrix/client/v3/room_keys/version` */
export async function postRoomKeysVersion(ctx: RequestContext): Promise<Record<string, unknown>> {
  const { userId } = await ctx.requireAuth();
  const { algorithm, auth_data } = readVersionBody(await ctx.json());
  const version = await createBackupVersion(ctx.hs, userId, algorithm, auth_data);
  return { version };
}

/** `GET /_matrix/client/v3/room_keys/version` and `GET /_matrix/client/v3/room_keys/version/{version}` */
export async function getRoomKeysVersion(ctx: RequestContext, params: Record<string, string>): Promise<Record<string, unknown>> {
  const { userId } = await ctx.requireAuth();
  return backupVersionInfo(ctx.hs, userId, params.version || undefined);
}

/** `PUT /_matrix/client/v3/room_keys/version/{version}` */
export async function putRoomKeysVersion(ctx: RequestContext, params: Record<string, string>): Promise<Record<string, unknown>> {
  const { userId } = await ctx.requireAuth();
  const body = await ctx.json();
  const { algorithm, auth_data } = readVersionBody(body);
  if (body.version !== undefined && body.version !== params.version) throw invalidParam("version in the body does not match the path");
  await updateBackupVersion(ctx.hs, userId, params.version!, algorithm, auth_data);
  return {};
}

/** `DELETE /_matrix/client/v3/room_keys/version/{version}` */
export async function deleteRoomKeysVersion(ctx: RequestContext, params: Record<string, string>): Promise<Record<string, unknown>> {
  const { userId } = await ctx.requireAuth();
  await deleteBackupVersion(ctx.hs, userId, params.version!);
  return {};
}

// ---------------------------------------------------------------------------------------------
// Keys

function readKeyBackupData(v: unknown, where: string): KeyBackupData {
  if (!isObject(v)) throw badJson(`${where} must be an object`);
  if (!Number.isInteger(v.first_message_index)) throw badJson(`${where}.first_message_index must be an integer`);
  if (!Number.isInteger(v.forwarded_count)) throw badJson(`${where}.forwarded_count must be an integer`);
  if (typeof v.is_verified !== "boolean") throw badJson(`${where}.is_verified must be a boolean`);
  if (!isObject(v.session_data)) throw badJson(`${where}.session_data must be an object`);
  return v as unknown as KeyBackupData;
}

/** What a keys endpoint addresses: the requester, the `version` query parameter (required) and the path's room and session. */
async function keysRequest(ctx: RequestContext, params: Record<string, string>): Promise<{ userId: string; version: string; roomId?: string; sessionId?: string }> {
  const { userId } = await ctx.requireAuth();
  const version = ctx.query("version");
  if (version === undefined) throw missingParam("version is required");
  return { userId, version, roomId: params.roomId || undefined, sessionId: params.sessionId || undefined };
}

/** The sessions of a PUT at any level, flattened to [roomId, sessionId, data]. */
function sessionsOfBody(body: Record<string, unknown>, roomId?: string, sessionId?: string): [string, string, KeyBackupData][] {
  if (roomId !== undefined && sessionId !== undefined) return [[roomId, sessionId, readKeyBackupData(body, "body")]];
  const roomLevel = (rid: string, room: unknown): [string, string, KeyBackupData][] => {
    if (!isObject(room) || !isObject(room.sessions)) throw badJson("sessions must be an object");
    return Object.entries(room.sessions).map(([sid, data]) => [rid, sid, readKeyBackupData(data, `sessions.${sid}`)]);
  };
  if (roomId !== undefined) return roomLevel(roomId, body);
  if (!isObject(body.rooms)) throw badJson("rooms must be an object");
  return Object.entries(body.rooms).flatMap(([rid, room]) => roomLevel(rid, room));
}

/**
 * `PUT /_matrix/client/v3/room_keys/keys`, `PUT /_matrix/client/v3/room_keys/keys/{roomId}` and
 * `PUT /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
 */
export async function putRoomKeys(ctx: RequestContext, params: Record<string, string>): Promise<Record<string, unknown>> {
  const { userId, version, roomId, sessionId } = await keysRequest(ctx, params);
  const sessions = sessionsOfBody(await ctx.json(), roomId, sessionId);
  return storeBackupKeys(ctx.hs, userId, version, sessions);
}

/**
 * `GET /_matrix/client/v3/room_keys/keys`, `GET /_matrix/client/v3/room_keys/keys/{roomId}` and
 * `GET /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
 */
export async function getRoomKeys(ctx: RequestContext, params: Record<string, string>): Promise<Record<string, unknown>> {
  const { userId, version, roomId, sessionId } = await keysRequest(ctx, params);
  return backupKeys(ctx.hs, userId, version, roomId, sessionId);
}

/**
 * `DELETE /_matrix/client/v3/room_keys/keys`, `DELETE /_matrix/client/v3/room_keys/keys/{roomId}` and
 * `DELETE /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
 */
export async function deleteRoomKeys(ctx: RequestContext, params: Record<string, string>): Promise<Record<string, unknown>> {
  const { userId, version, roomId, sessionId } = await keysRequest(ctx, params);
  return deleteBackupKeys(ctx.hs, userId, version, roomId, sessionId);
}
