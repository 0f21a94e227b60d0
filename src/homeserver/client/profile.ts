/**
 * The profile endpoints ("Profiles" in the Client-Server API, `profile.yaml`), including custom
 * fields (v1.16); storage and propagation into rooms are services/profiles.ts's.
 */
import type { RequestContext } from "../context.ts";
import { refuseIfSuspended } from "../context.ts";
import { MatrixError, badJson, forbidden, missingParam, notFound } from "../errors.ts";
import { isValidUserId, serverOf } from "../rooms/ids.ts";
import { remoteProfile } from "../federation/remoteQueries.ts";
import { changeProfile, localProfile, utf8Length } from "../services/profiles.ts";

/** profile.yaml `keyName` pattern. */
const KEY_NAME = /^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$/;
const MAX_KEY_BYTES = 255;

/** The longest display name (Synapse's MAX_DISPLAYNAME_LEN) and avatar URL (MAX_AVATAR_URL_LEN). */
export const MAX_DISPLAYNAME_LENGTH = 256;
const MAX_AVATAR_URL_LENGTH = 1000;

function checkKey(keyName: string): void {
  if (utf8Length(keyName) > MAX_KEY_BYTES) throw new MatrixError(400, "M_KEY_TOO_LARGE", "Profile key is longer than 255 bytes");
  if (!KEY_NAME.test(keyName)) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid profile key");
}

/** A local profile, or a remote user's asked of their server (`field` only, when given). */
async function loadProfile(ctx: RequestContext, userId: string, field?: string): Promise<Record<string, unknown>> {
  if (isValidUserId(userId) && serverOf(userId) !== ctx.hs.serverName) return remoteProfile(ctx.hs, userId, field);
  const profile = await localProfile(ctx.hs, userId);
  if (!profile) throw notFound("Profile not found");
  return profile;
}

/** `GET /_matrix/client/v3/profile/{userId}` */
export async function getProfile(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  return loadProfile(ctx, p.userId!);
}

/** `GET /_matrix/client/v3/profile/{userId}/{keyName}` */
export async function getProfileField(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const keyName = p.keyName!;
  checkKey(keyName);
  const profile = await loadProfile(ctx, p.userId!, keyName);
  if (!Object.hasOwn(profile, keyName) || profile[keyName] === null) throw notFound(`No ${keyName} set`);
  return { [keyName]: profile[keyName] };
}

/** What both profile changes check first: the requester, the key, that the profile is theirs, not suspended. */
async function requireOwnProfile(ctx: RequestContext, p: Record<string, string>): Promise<{ userId: string; keyName: string }> {
  const me = await ctx.requireAuth();
  const keyName = p.keyName!;
  checkKey(keyName);
  if (p.userId !== me.userId) throw forbidden("Cannot change the profile of other users");
  // "Account suspension": changing profile data is refused.
  refuseIfSuspended(me);
  return { userId: me.userId, keyName };
}

/** `PUT /_matrix/client/v3/profile/{userId}/{keyName}` */
export async function putProfileField(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const { userId, keyName } = await requireOwnProfile(ctx, p);
  const body = await ctx.json();
  if (!Object.hasOwn(body, keyName)) throw missingParam(`The body must contain ${keyName}`);
  const v = body[keyName];
  let remove = false;
  if (keyName === "displayname" || keyName === "avatar_url") {
    // An empty or null name/avatar clears it (what clients have long sent to remove one).
    if (v !== null && typeof v !== "string") throw badJson(`${keyName} must be a string`);
    if (keyName === "avatar_url" && typeof v === "string" && v !== "" && !/^mxc:\/\/[^/]+\/[^/]+$/.test(v)) throw badJson("avatar_url must be an mxc:// URI");
    // Synapse's limits (MAX_DISPLAYNAME_LEN, MAX_AVATAR_URL_LEN): a name shows in every room and member list.
    if (keyName === "displayname" && typeof v === "string" && [...v].length > MAX_DISPLAYNAME_LENGTH) throw new MatrixError(400, "M_INVALID_PARAM", `displayname is longer than ${MAX_DISPLAYNAME_LENGTH} characters`);
    if (keyName === "avatar_url" && typeof v === "string" && v.length > MAX_AVATAR_URL_LENGTH) throw new MatrixError(400, "M_INVALID_PARAM", `avatar_url is longer than ${MAX_AVATAR_URL_LENGTH} characters`);
    remove = v === null || v === "";
  } else if (keyName === "m.tz" && typeof v !== "string") {
    throw badJson("m.tz must be a string");
  }
  await changeProfile(ctx.hs, userId, keyName, v, remove);
  return {};
}

/** `DELETE /_matrix/client/v3/profile/{userId}/{keyName}` */
export async function deleteProfileField(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const { userId, keyName } = await requireOwnProfile(ctx, p);
  await changeProfile(ctx.hs, userId, keyName, undefined, true);
  return {};
}
