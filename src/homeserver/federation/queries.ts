/**
 * What other servers may ask about this server's users and directory (server-server API "Querying
 * for information", "Device Management", "End-to-End Encryption", "Published Room Directory").
 * Every handler runs after the `X-Matrix` signature verified; questions about users of other
 * servers are refused or left out, as the spec says they "MUST be local".
 */
import type { RequestContext } from "../context.ts";
import { MatrixError, badJson, missingParam, notFound } from "../errors.ts";
import { isObject } from "../validate.ts";
import { isValidUserId, serverOf } from "../rooms/ids.ts";
import { claimLocalKeys, queryLocalKeys, userDeviceList } from "../services/e2ee.ts";
import { localProfile } from "../services/profiles.ts";
import { listPublicRooms } from "../services/directory.ts";

/** A user ID parameter that must name one of our users (`400 M_INVALID_PARAM` otherwise). */
function localUser(ctx: RequestContext, userId: string | undefined, what: string): string {
  if (userId === undefined) throw missingParam(`${what} is required`);
  if (!isValidUserId(userId)) throw new MatrixError(400, "M_INVALID_PARAM", `${what} is not a valid user ID`);
  if (serverOf(userId) !== ctx.hs.serverName) throw new MatrixError(400, "M_INVALID_PARAM", "User is not hosted on this homeserver");
  return userId;
}

/** `GET /_matrix/federation/v1/query/profile` */
export async function getQueryProfile(ctx: RequestContext): Promise<Record<string, unknown>> {
  const userId = localUser(ctx, ctx.query("user_id"), "user_id");
  const field = ctx.query("field");
  const profile = await localProfile(ctx.hs, userId);
  if (!profile) throw notFound("User does not exist");
  if (field === undefined) return profile;
  // "If a field is specified in the request, the response MUST only include the specified field";
  // a field that is not set is 404 ("the queried field does not exist").
  if (!Object.hasOwn(profile, field)) throw notFound(`No ${field} set`);
  return { [field]: profile[field] };
}

/** `GET /_matrix/federation/v1/user/devices/{userId}` */
export async function getUserDevices(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const userId = localUser(ctx, p.userId, "userId");
  return userDeviceList(ctx.hs, userId);
}

/** `POST /_matrix/federation/v1/user/keys/query` */
export async function postUserKeysQuery(ctx: RequestContext): Promise<Record<string, unknown>> {
  const body = await ctx.json();
  if (!isObject(body.device_keys)) throw badJson("device_keys must be an object");
  const wanted: [string, string[]][] = [];
  for (const [userId, devices] of Object.entries(body.device_keys)) {
    if (!Array.isArray(devices) || !devices.every((d) => typeof d === "string")) throw badJson("device_keys values must be lists of device IDs");
    // "Requested users must be local to the receiving homeserver": others are left out.
    if (isValidUserId(userId) && serverOf(userId) === ctx.hs.serverName) wanted.push([userId, devices as string[]]);
  }
  const { device_keys, master_keys, self_signing_keys } = await queryLocalKeys(ctx.hs, wanted);
  return { device_keys, master_keys, self_signing_keys };
}

/** `POST /_matrix/federation/v1/user/keys/claim` */
export async function postUserKeysClaim(ctx: RequestContext): Promise<Record<string, unknown>> {
  const body = await ctx.json();
  if (!isObject(body.one_time_keys)) throw badJson("one_time_keys must be an object");
  const requests: [string, string, string][] = [];
  for (const [userId, devices] of Object.entries(body.one_time_keys)) {
    if (!isObject(devices)) throw badJson("one_time_keys values must be objects");
    for (const [deviceId, alg] of Object.entries(devices)) {
      if (typeof alg !== "string" || alg === "" || alg.includes(":")) throw badJson("one_time_keys must map device IDs to algorithms");
      if (isValidUserId(userId) && serverOf(userId) === ctx.hs.serverName) requests.push([userId, deviceId, alg]);
    }
  }
  const one_time_keys = requests.length > 0 ? await claimLocalKeys(ctx.hs, requests) : {};
  return { one_time_keys };
}

/** A boolean query parameter (`true`/`false`), or undefined. */
function boolParam(ctx: RequestContext, name: string): boolean | undefined {
  const v = ctx.query(name);
  if (v === undefined) return undefined;
  if (v !== "true" && v !== "false") throw new MatrixError(400, "M_INVALID_PARAM", `${name} must be true or false`);
  return v === "true";
}

/** `GET /_matrix/federation/v1/publicRooms` */
export async function getFederationPublicRooms(ctx: RequestContext): Promise<Record<string, unknown>> {
  const raw = ctx.query("limit");
  let limit: number | undefined;
  if (raw !== undefined) {
    if (!/^\d{1,9}$/.test(raw)) throw new MatrixError(400, "M_INVALID_PARAM", "limit must be a non-negative integer");
    // "Defaults to 0 (no limit)".
    limit = Number(raw) === 0 ? undefined : Number(raw);
  }
  const all = boolParam(ctx, "include_all_networks") === true;
  return listPublicRooms(ctx.hs, limit, ctx.query("since"), undefined, all ? undefined : ctx.query("third_party_instance_id"));
}

/** `POST /_matrix/federation/v1/publicRooms` */
export async function postFederationPublicRooms(ctx: RequestContext): Promise<Record<string, unknown>> {
  const body = await ctx.json({ allowEmpty: true });
  if (body.include_all_networks !== undefined && typeof body.include_all_networks !== "boolean") throw badJson("include_all_networks must be a boolean");
  const limit = body.limit === 0 ? undefined : body.limit;
  return listPublicRooms(ctx.hs, limit, body.since, body.filter, body.include_all_networks === true ? undefined : body.third_party_instance_id);
}
