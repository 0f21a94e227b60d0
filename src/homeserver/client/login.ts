/** Login, login tokens and logout (client-server API "Login", "Client Authentication"). */
import type { RequestContext, Services } from "../context.ts";
import { MatrixError, badJson, forbidden } from "../errors.ts";
import { verifyPassword } from "../auth/password.ts";
import { readIdentifier, resolveUserId } from "../auth/identifiers.ts";
import { clientAddress, limitAddress, limitKey, recordKey } from "../auth/rateLimit.ts";
import { logLine } from "../log.ts";
import { encodeBase64Url } from "../crypto/base64.ts";
import { deleteDevicesAndNotify, sessionTokens, startSession } from "./devices.ts";
import { userLocked } from "../context.ts";
import { identityFlows, requireUserInteractiveAuth } from "./uia.ts";
import { APPSERVICE_LOGIN_TYPE, appServiceLoginUser } from "../appservice/client.ts";
import { tokenHash } from "../auth/tokens.ts";

/** How long a login token from `/login/get_token` stays valid (the spec recommends 2 minutes). */
export const LOGIN_TOKEN_LIFETIME_MS = 120_000;

/** A row of the `accounts` table (CONTRACTS.md). */
export interface AccountRecord {
  userId: string;
  passwordHash?: string;
  displayname?: string;
  avatar_url?: string;
  createdAt: number;
  isGuest?: boolean;
  deactivated?: boolean;
  /** Deactivated with `erase: true` at this stream position: its messages are served redacted to users who join later. */
  erasedAt?: number;
  admin?: boolean;
  /** Locked by a server admin ("Account locking"). */
  locked?: boolean;
  /** Suspended by a server admin ("Account suspension"). */
  suspended?: boolean;
}

/** A row of the `login_tokens` table. */
interface LoginTokenRecord {
  userId: string;
  expiresAt: number;
}

/** `GET /_matrix/client/v3/login` */
export async function getLogin(ctx: RequestContext): Promise<Record<string, unknown>> {
  const flows: Record<string, unknown>[] = [{ type: "m.login.password" }, { type: "m.login.token", get_login_token: true }];
  // Application services log their users in with their as_token (only offered when some are configured).
  if (ctx.hs.appservices) flows.push({ type: APPSERVICE_LOGIN_TYPE });
  return { flows };
}

/** The optional device fields of `/login` and `/register` (and `refresh_token`, "Refreshing access tokens"). */
export function readDeviceFields(body: Record<string, unknown>): { deviceId?: string; initialDisplayName?: string; refreshable: boolean } {
  if (body.device_id !== undefined && (typeof body.device_id !== "string" || body.device_id === "")) throw badJson("device_id must be a non-empty string");
  if (body.initial_device_display_name !== undefined && typeof body.initial_device_display_name !== "string") {
    throw badJson("initial_device_display_name must be a string");
  }
  if (body.refresh_token !== undefined && typeof body.refresh_token !== "boolean") throw badJson("refresh_token must be a boolean");
  return {
    deviceId: body.device_id as string | undefined,
    initialDisplayName: body.initial_device_display_name as string | undefined,
    refreshable: body.refresh_token === true,
  };
}

/** The requesting client's User-Agent, recorded on its device for admin `whois`. */
export function userAgentOf(ctx: RequestContext): string | undefined {
  return ctx.request.headers.get("User-Agent") ?? undefined;
}

/** The `well_known` a login response may carry, when the deployment configured its public URL. */
export function wellKnown(hs: Services): Record<string, unknown> {
  return hs.config.publicBaseUrl ? { well_known: { "m.homeserver": { base_url: hs.config.publicBaseUrl } } } : {};
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
      const account = resolved ? await hs.store.read((tx) => tx.get<AccountRecord>("accounts", resolved)) : undefined;
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
      const token = body.token;
      // Single use: the token is deleted in the same transaction that reads it.
      const record = await hs.store.write(async (tx) => {
        const r = await tx.get<LoginTokenRecord>("login_tokens", token);
        if (r) tx.delete("login_tokens", token);
        return r;
      });
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

  const result = await hs.store.write(async (tx) => {
    const account = await tx.get<AccountRecord>("accounts", userId);
    if (!account || account.deactivated) throw new MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated");
    // A locked account "cannot obtain a new access token until the account has been unlocked".
    if (account.locked) throw userLocked();
    return startSession(tx, hs, { userId, ...device, ip: clientAddress(ctx), userAgent: userAgentOf(ctx) });
  });
  if (result.streamPos !== undefined) hs.notifier.notify(result.streamPos);
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
  const token = `hyl_${encodeBase64Url(hs.random(32))}`;
  const expiresAt = hs.clock() + LOGIN_TOKEN_LIFETIME_MS;
  await hs.store.write(async (tx) => {
    // Expired tokens are removed opportunistically so the table does not grow.
    const now = hs.clock();
    for (const row of await tx.range<LoginTokenRecord>("login_tokens")) if (row.value.expiresAt <= now) tx.delete("login_tokens", row.key);
    tx.put("login_tokens", token, { userId, expiresAt } satisfies LoginTokenRecord);
  });
  return { login_token: token, expires_in_ms: LOGIN_TOKEN_LIFETIME_MS };
}

/** `POST /_matrix/client/v3/logout` */
export async function postLogout(ctx: RequestContext): Promise<Record<string, unknown>> {
  // Logout stays open to locked accounts ("Account locking").
  const { userId, deviceId, accessToken } = await ctx.requireAuth({ allowLocked: true });
  // "The device associated with the access token is also deleted."
  await deleteDevicesAndNotify(ctx.hs, userId, [deviceId]);
  // The presented token goes in any case, even if it was minted without the device_tokens index.
  await ctx.hs.store.write(async (tx) => tx.delete("access_tokens", tokenHash(accessToken)));
  return {};
}

/** `POST /_matrix/client/v3/logout/all` */
export async function postLogoutAll(ctx: RequestContext): Promise<Record<string, unknown>> {
  const { userId } = await ctx.requireAuth({ allowLocked: true });
  await deleteDevicesAndNotify(ctx.hs, userId, "all");
  return {};
}
