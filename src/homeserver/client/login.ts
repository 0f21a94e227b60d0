/** Login, login tokens and logout (client-server API "Login", "Client Authentication"). */
import type { RequestContext } from "../context.ts";
import { MatrixError, badJson, forbidden } from "../errors.ts";
import { verifyPassword } from "../auth/password.ts";
import { readIdentifier, resolveUserId } from "../auth/identifiers.ts";
import { clientAddress, limitAddress, limitKey, recordKey } from "../auth/rateLimit.ts";
import { logLine } from "../log.ts";
import { identityFlows, requireUserInteractiveAuth } from "../services/uia.ts";
import { APPSERVICE_LOGIN_TYPE, appServiceLoginUser } from "../appservice/client.ts";
import { getAccount, startSessionAndNotify } from "../services/accounts.ts";
import {
  LOGIN_TOKEN_LIFETIME_MS,
  consumeLoginToken,
  deleteDevicesAndNotify,
  issueLoginToken,
  readDeviceFields,
  revokeAccessToken,
  sessionTokens,
  userAgentOf,
  wellKnown,
} from "../services/devices.ts";

/** `GET /_matrix/client/v3/login` */
export async function getLogin(ctx: RequestContext): Promise<Record<string, unknown>> {
  const flows: Record<string, unknown>[] = [{ type: "m.login.password" }, { type: "m.login.token", get_login_token: true }];
  // Application services log their users in with their as_token (only offered when some are configured).
  if (ctx.hs.appservices) flows.push({ type: APPSERVICE_LOGIN_TYPE });
  return { flows };
}

/** `POST /_matrix/client/v3/login` */
export async function postLogin(ctx: RequestContext): Promise<Record<string, unknown>> {
  const hs = ctx.hs;
  // Synapse's three login limiters: every well-formed attempt per client address, failed attempts
  // per (login type, user), and successful logins per account.
  const body = await ctx.json();
  if (typeof body.type !== "string") throw badJson("Missing login type");
  const device = readDeviceFields(body);
  const failedKey = (user: string): string => `${body.type as string}|${user.toLowerCase()}`;
  const failed = (err: MatrixError, user?: string): MatrixError => {
    if (user !== undefined) recordKey(ctx, "rc_login.failed_attempts", failedKey(user));
    hs.logger.info(logLine("login_failed", { type: String(body.type), user, client: clientAddress(ctx) }));
    return err;
  };

  let userId: string;
  switch (body.type) {
    case "m.login.password": {
      const identifier = readIdentifier(body);
      if (typeof body.password !== "string") throw badJson("Missing password");
      // "In the case that the homeserver does not know about the supplied 3PID, the homeserver
      // must respond with 403 Forbidden." No 3PID is ever bound here.
      if (identifier.type !== "m.id.user") throw failed(forbidden("Unknown third-party identifier"));
      const resolved = resolveUserId(identifier.user, hs.serverName);
      const who = resolved ?? identifier.user;
      limitAddress(ctx, "rc_login.address");
      limitKey(ctx, "rc_login.failed_attempts", failedKey(who), "check");
      const account = resolved ? await getAccount(hs, resolved) : undefined;
      if (!resolved || !account?.passwordHash || !(await verifyPassword(body.password, account.passwordHash))) {
        throw failed(forbidden("Invalid username or password"), who);
      }
      if (account.deactivated) throw new MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated");
      userId = resolved;
      break;
    }
    case "m.login.token": {
      if (typeof body.token !== "string") throw badJson("Missing token");
      limitAddress(ctx, "rc_login.address");
      const record = await consumeLoginToken(hs, body.token);
      if (!record || record.expiresAt <= hs.clock()) throw failed(forbidden("Invalid or expired login token"));
      userId = record.userId;
      break;
    }
    case APPSERVICE_LOGIN_TYPE:
      userId = await appServiceLoginUser(ctx, body);
      break;
    default:
      throw new MatrixError(400, "M_UNKNOWN", "Unknown login type");
  }
  // "It is reasonable to login with a bunch of devices at once, but not to continually log into new ones."
  limitKey(ctx, "rc_login.account", userId.toLowerCase());

  const result = await startSessionAndNotify(hs, { userId, ...device, ip: clientAddress(ctx), userAgent: userAgentOf(ctx) });
  hs.logger.info(logLine("login", { user: userId, device: result.deviceId, type: body.type, client: clientAddress(ctx) }));
  return { user_id: userId, ...sessionTokens(result), home_server: hs.serverName, ...wellKnown(hs) };
}

/** `POST /_matrix/client/v1/login/get_token` */
export async function postLoginGetToken(ctx: RequestContext): Promise<Record<string, unknown>> {
  const hs = ctx.hs;
  const { userId, isGuest } = await ctx.requireAuth();
  if (isGuest) throw new MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guests cannot create login tokens");
  const body = await ctx.json({ allowEmpty: true });
  await requireUserInteractiveAuth(ctx, body, { flows: await identityFlows(hs, userId), userId });
  const token = await issueLoginToken(hs, userId);
  return { login_token: token, expires_in_ms: LOGIN_TOKEN_LIFETIME_MS };
}

/** `POST /_matrix/client/v3/logout` */
export async function postLogout(ctx: RequestContext): Promise<Record<string, unknown>> {
  // Logout stays open to locked accounts ("Account locking").
  const { userId, deviceId, accessToken } = await ctx.requireAuth({ allowLocked: true });
  // "The device associated with the access token is also deleted."
  await deleteDevicesAndNotify(ctx.hs, userId, [deviceId]);
  // The presented token goes in any case, even if it was minted without the device_tokens index.
  await revokeAccessToken(ctx.hs, accessToken);
  return {};
}

/** `POST /_matrix/client/v3/logout/all` */
export async function postLogoutAll(ctx: RequestContext): Promise<Record<string, unknown>> {
  const { userId } = await ctx.requireAuth({ allowLocked: true });
  await deleteDevicesAndNotify(ctx.hs, userId, "all");
  return {};
}
