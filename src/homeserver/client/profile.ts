/**
 * Profiles ("Profiles" in the Client-Server API, `profile.yaml`), including custom fields (v1.16).
 * `displayname` and `avatar_url` live on the account record as before; other fields in its
 * `profileFields`. A change of name or avatar is also sent as a new `m.room.member` event into
 * every room the user has joined ("Events on Change of Profile Information").
 */
import type { RequestContext, Services } from "../context.ts";
import { refuseIfSuspended } from "../context.ts";
import { MatrixError, badJson, forbidden, missingParam, notFound } from "../errors.ts";
import { currentStateContent } from "../roomserver/state.ts";
import { joinedRooms } from "../roomserver/membership.ts";
import { sendEvent } from "../roomserver/send.ts";
import { queryUserIfUnknown } from "../appservice/queries.ts";
import { isValidUserId, serverOf } from "../rooms/ids.ts";
import { remoteProfile } from "../federation/remoteQueries.ts";

/** The profile part of an `accounts` row. */
interface AccountProfile {
  userId: string;
  displayname?: string;
  avatar_url?: string;
  /** Custom profile fields (`m.tz`, namespaced keys): key → any JSON value. */
  profileFields?: Record<string, unknown>;
  deactivated?: boolean;
}

/** profile.yaml `keyName` pattern. */
const KEY_NAME = /^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$/;
/** "the total profile MUST be under 64 KiB". */
const MAX_PROFILE_BYTES = 64 * 1024;
const MAX_KEY_BYTES = 255;

const utf8Length = (s: string): number => new TextEncoder().encode(s).length;

/** The whole profile of an account as `GET /profile/{userId}` serves it. */
function profileOf(account: AccountProfile): Record<string, unknown> {
  const out: Record<string, unknown> = { ...(account.profileFields ?? {}) };
  if (account.displayname !== undefined) out.displayname = account.displayname;
  if (account.avatar_url !== undefined) out.avatar_url = account.avatar_url;
  return out;
}

/** The longest display name (Synapse's MAX_DISPLAYNAME_LEN) and avatar URL (MAX_AVATAR_URL_LEN). */
export const MAX_DISPLAYNAME_LENGTH = 256;
const MAX_AVATAR_URL_LENGTH = 1000;

function checkKey(keyName: string): void {
  if (utf8Length(keyName) > MAX_KEY_BYTES) throw new MatrixError(400, "M_KEY_TOO_LARGE", "Profile key is longer than 255 bytes");
  if (!KEY_NAME.test(keyName)) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid profile key");
}

/**
 * The whole profile of a local user, or undefined when there is no such (active) account. An
 * unknown user in an application service's namespace may be created on demand by the service.
 * The federation's `/query/profile` serves this too.
 */
export async function localProfile(hs: Services, userId: string): Promise<Record<string, unknown> | undefined> {
  const read = (): Promise<AccountProfile | undefined> => hs.store.read((tx) => tx.get<AccountProfile>("accounts", userId));
  const account = (await read()) ?? ((await queryUserIfUnknown(hs, userId)) ? await read() : undefined);
  return account ? profileOf(account) : undefined;
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

/** Applies a change to the account, then sends a name or avatar change into the joined rooms. */
async function changeProfile(ctx: RequestContext, userId: string, keyName: string, value: unknown, remove: boolean): Promise<void> {
  const rooms = await ctx.hs.store.write(async (tx) => {
    const account = await tx.get<AccountProfile>("accounts", userId);
    if (!account) throw notFound("Profile not found");
    const updated: AccountProfile = { ...account, profileFields: { ...(account.profileFields ?? {}) } };
    if (keyName === "displayname" || keyName === "avatar_url") {
      if (remove) delete updated[keyName];
      else updated[keyName] = value as string;
    } else if (remove) {
      delete updated.profileFields![keyName];
    } else {
      updated.profileFields![keyName] = value;
    }
    if (Object.keys(updated.profileFields!).length === 0) delete updated.profileFields;
    if (utf8Length(JSON.stringify(profileOf(updated))) >= MAX_PROFILE_BYTES) {
      throw new MatrixError(400, "M_PROFILE_TOO_LARGE", "The profile would exceed 64 KiB");
    }
    tx.put("accounts", userId, updated);
    if (keyName !== "displayname" && keyName !== "avatar_url") return [];
    return joinedRooms(tx, userId);
  });
  if (keyName === "displayname" || keyName === "avatar_url") await propagate(ctx.hs, userId, keyName, remove ? undefined : (value as string), rooms);
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
  await changeProfile(ctx, userId, keyName, v, remove);
  return {};
}

/** `DELETE /_matrix/client/v3/profile/{userId}/{keyName}` */
export async function deleteProfileField(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const { userId, keyName } = await requireOwnProfile(ctx, p);
  await changeProfile(ctx, userId, keyName, undefined, true);
  return {};
}

/** Sends the updated member event into each joined room; a room that refuses is skipped. */
async function propagate(hs: Services, userId: string, field: "displayname" | "avatar_url", value: string | undefined, rooms: string[]): Promise<void> {
  for (const roomId of rooms) {
    try {
      const content = await hs.store.read((tx) => currentStateContent(tx, roomId, "m.room.member", userId));
      if (!content || content.membership !== "join") continue;
      if (content[field] === value) continue;
      const next: Record<string, unknown> = { ...content };
      if (value === undefined) delete next[field];
      else next[field] = value;
      await sendEvent(hs, { roomId, sender: userId, type: "m.room.member", stateKey: userId, content: next });
    } catch (err) {
      // e.g. the power levels forbid member changes: the profile itself has changed regardless.
      hs.logger.warn("profile update not sent to room", roomId, err);
    }
  }
}
