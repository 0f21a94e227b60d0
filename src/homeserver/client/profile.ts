/**
 * Profiles ("Profiles" in the Client-Server API, `profile.yaml`). A change is also sent as a new
 * `m.room.member` event into every room the user has joined ("Events on Change of Profile
 * Information").
 */
import type { RequestContext, Services } from "../context.ts";
import { MatrixError, badJson, forbidden, notFound } from "../errors.ts";
import { prefix } from "../../storage/store.ts";
import type { MembershipRecord } from "../roomserver/state.ts";
import { currentStateContent } from "../roomserver/state.ts";
import { sendEvent } from "../roomserver/send.ts";

interface AccountProfile {
  userId: string;
  displayname?: string;
  avatar_url?: string;
  deactivated?: boolean;
}

type Field = "displayname" | "avatar_url";
/** Longest display name / avatar URL accepted. */
const MAX_FIELD_LENGTH = 1024;

async function loadProfile(ctx: RequestContext, userId: string): Promise<AccountProfile> {
  const account = await ctx.hs.store.read((tx) => tx.get<AccountProfile>("accounts", userId));
  if (!account) throw notFound("Profile not found");
  return account;
}

/** `GET /_matrix/client/v3/profile/{userId}` */
export async function getProfile(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const account = await loadProfile(ctx, p.userId!);
  const out: Record<string, unknown> = {};
  if (account.displayname !== undefined) out.displayname = account.displayname;
  if (account.avatar_url !== undefined) out.avatar_url = account.avatar_url;
  return out;
}

function getField(field: Field) {
  /** `GET /_matrix/client/v3/profile/{userId}/{displayname|avatar_url}` */
  return async (ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> => {
    const account = await loadProfile(ctx, p.userId!);
    const v = account[field];
    if (v === undefined) throw notFound(`No ${field} set`);
    return { [field]: v };
  };
}

function putField(field: Field) {
  /** `PUT /_matrix/client/v3/profile/{userId}/{displayname|avatar_url}` */
  return async (ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> => {
    const me = await ctx.requireAuth();
    if (p.userId !== me.userId) throw forbidden("Cannot change the profile of other users");
    const body = await ctx.json();
    const v = body[field];
    if (v !== undefined && v !== null && typeof v !== "string") throw badJson(`${field} must be a string`);
    if (typeof v === "string" && v.length > MAX_FIELD_LENGTH) throw new MatrixError(400, "M_TOO_LARGE", `${field} is too long`);
    if (field === "avatar_url" && typeof v === "string" && v !== "" && !v.startsWith("mxc://")) throw badJson("avatar_url must be an mxc:// URI");
    const value = typeof v === "string" && v !== "" ? v : undefined;
    const rooms = await ctx.hs.store.write(async (tx) => {
      const account = await tx.get<AccountProfile>("accounts", me.userId);
      if (!account) throw notFound("Profile not found");
      const updated = { ...account };
      if (value === undefined) delete updated[field];
      else updated[field] = value;
      tx.put("accounts", me.userId, updated);
      const rows = await tx.range<MembershipRecord>("memberships", { prefix: prefix(me.userId) });
      return rows.filter((r) => r.value.membership === "join").map((r) => r.key.slice(prefix(me.userId).length));
    });
    await propagate(ctx.hs, me.userId, field, value, rooms);
    return {};
  };
}

/** Sends the updated member event into each joined room; a room that refuses is skipped. */
async function propagate(hs: Services, userId: string, field: Field, value: string | undefined, rooms: string[]): Promise<void> {
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

/** `GET /_matrix/client/v3/profile/{userId}/displayname` */
export const getDisplayName = getField("displayname");
/** `PUT /_matrix/client/v3/profile/{userId}/displayname` */
export const putDisplayName = putField("displayname");
/** `GET /_matrix/client/v3/profile/{userId}/avatar_url` */
export const getAvatarUrl = getField("avatar_url");
/** `PUT /_matrix/client/v3/profile/{userId}/avatar_url` */
export const putAvatarUrl = putField("avatar_url");
