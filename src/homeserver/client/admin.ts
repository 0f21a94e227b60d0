/**
 * Server administration (client-server API "Server Administration" module, admin.yaml) and the
 * account moderation it drives ("Account locking", "Account suspension"). A server admin is an
 * account with `admin: true` (set by shared-secret registration, admin/register.ts).
 */
import type { RequestContext, Requester } from "../context.ts";
import { badJson, forbidden, invalidParam, missingParam, notFound } from "../errors.ts";
import type { AccountFlag as Flag, AccountRecord } from "../services/accounts.ts";
import { accountDevices, getAccount, isServerAdmin, setAccountFlag } from "../services/accounts.ts";

/** The server part of a user ID (`M_INVALID_PARAM` if it is not one). */
function serverOf(userId: string): string {
  const colon = userId.indexOf(":");
  if (!userId.startsWith("@") || colon < 2 || colon === userId.length - 1) throw invalidParam("Not a valid user ID");
  return userId.slice(colon + 1);
}

/** `GET /_matrix/client/v3/admin/whois/{userId}` */
export async function getWhois(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const hs = ctx.hs;
  const me = await ctx.requireAuth();
  const target = p.userId!;
  // "This API may be restricted to only be called by the user being looked up, or by a server admin."
  if (target !== me.userId && !(await isServerAdmin(hs, me.userId))) throw forbidden("You are not a server admin");
  if (serverOf(target) !== hs.serverName) throw invalidParam("User does not belong to the local server.");
  const found = await accountDevices(hs, target);
  if (!found) throw notFound("User not found.");
  // One session per device: a device holds one login's tokens at a time. Its record keeps the
  // address, time and User-Agent of the login that last used it.
  const devices: Record<string, unknown> = {};
  for (const d of found) {
    const connection: Record<string, unknown> = {};
    if (d.lastSeenIp !== undefined) connection.ip = d.lastSeenIp;
    connection.last_seen = d.lastSeenTs ?? d.createdAt;
    if (d.lastSeenUserAgent !== undefined) connection.user_agent = d.lastSeenUserAgent;
    devices[d.deviceId] = { sessions: [{ connections: [connection] }] };
  }
  return { user_id: target, devices };
}


/**
 * The checks every lock/suspend request goes through, in the order the spec requires: "servers
 * MUST ensure that authorisation is checked prior to trying to do account lookups."
 */
async function moderationTarget(ctx: RequestContext, target: string, changing: boolean): Promise<{ me: Requester; account: AccountRecord }> {
  const hs = ctx.hs;
  const me = await ctx.requireAuth();
  if (!(await isServerAdmin(hs, me.userId))) throw forbidden("Requesting user is not a server administrator.");
  if (serverOf(target) !== hs.serverName) throw invalidParam("User does not belong to the local server.");
  const account = await getAccount(hs, target);
  // "The user ID is not found, or is deactivated."
  if (!account || account.deactivated) throw notFound("User not found.");
  if (changing && target === me.userId) throw forbidden("You cannot change the moderation status of your own account.");
  if (target !== me.userId && account.admin) throw forbidden("The target user is another server administrator.");
  return { me, account };
}

async function getFlag(ctx: RequestContext, target: string, flag: Flag): Promise<Record<string, unknown>> {
  const { account } = await moderationTarget(ctx, target, false);
  return { [flag]: account[flag] === true };
}

async function putFlag(ctx: RequestContext, target: string, flag: Flag): Promise<Record<string, unknown>> {
  await ctx.requireAuth();
  const body = await ctx.json();
  if (body[flag] === undefined) throw missingParam(`Missing ${flag}`);
  if (typeof body[flag] !== "boolean") throw badJson(`${flag} must be a boolean`);
  const value = body[flag];
  await moderationTarget(ctx, target, true);
  await setAccountFlag(ctx.hs, target, flag, value);
  // Access tokens are kept: "Servers SHOULD NOT invalidate access tokens on locked accounts".
  return { [flag]: value };
}

/** `GET /_matrix/client/v1/admin/lock/{userId}` */
export async function getAdminLock(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  return getFlag(ctx, p.userId!, "locked");
}

/** `PUT /_matrix/client/v1/admin/lock/{userId}` */
export async function putAdminLock(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  return putFlag(ctx, p.userId!, "locked");
}

/** `GET /_matrix/client/v1/admin/suspend/{userId}` */
export async function getAdminSuspend(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  return getFlag(ctx, p.userId!, "suspended");
}

/** `PUT /_matrix/client/v1/admin/suspend/{userId}` */
export async function putAdminSuspend(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  return putFlag(ctx, p.userId!, "suspended");
}
