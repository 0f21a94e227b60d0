/**
 * The Client-Server API as application services use it (Application Service API "Client-Server
 * API Extensions"): identity assertion with the `as_token` (`user_id` / `device_id` masquerading),
 * registration of namespaced users with `m.login.application_service`, and the ping endpoint.
 */
import type { RequestContext, Requester, Services } from "../context.ts";
import { MatrixError, badJson, forbidden, missingParam, missingToken, unknownToken, userInUse } from "../errors.ts";
import { key } from "../../storage/store.ts";
import { readIdentifier, resolveUserId, validateLocalpart } from "../auth/identifiers.ts";
import { isCompliantUserId } from "../rooms/ids.ts";
import { createAccount } from "../services/accounts.ts";
import { readDeviceFields, sessionTokens, userAgentOf, wellKnown } from "../services/devices.ts";
import { clientAddress } from "../auth/rateLimit.ts";
import type { AppService, AppServiceRegistry } from "./registration.ts";
import { exclusive } from "./registration.ts";
import type { AsHttpOptions } from "./http.ts";
import { callAppService } from "./http.ts";
import type { TransactionSender } from "./transactions.ts";
import type { AccountRecord } from "../services/accounts.ts";

/** The application service machinery a homeserver holds when services are configured. */
export interface AppServices {
  readonly registry: AppServiceRegistry;
  readonly http: AsHttpOptions;
  readonly sender: TransactionSender;
}

/** The login type of application service registration and login. */
export const APPSERVICE_LOGIN_TYPE = "m.login.application_service";

/**
 * The requester for an `as_token` ("Identity assertion"): the user named by `user_id` (which must
 * be the service's sender or in its users namespaces: `403 M_FORBIDDEN` otherwise, and must exist),
 * on the device named by `device_id` if given (`400 M_UNKNOWN_DEVICE` if the user has no such device).
 * Without `device_id` the request has no device (`deviceId` is empty).
 */
export async function appServiceRequester(ctx: RequestContext, as: AppService, token: string): Promise<Requester & { locked: boolean }> {
  const asserted = ctx.query("user_id");
  const userId = asserted ?? as.sender;
  if (asserted !== undefined) {
    if (!isCompliantUserId(asserted)) throw new MatrixError(400, "M_INVALID_PARAM", "user_id is not a valid user ID");
    if (!as.isInterestedInUser(asserted)) throw forbidden("Application service cannot masquerade as this user");
  }
  const deviceId = ctx.query("device_id");
  const found = await ctx.hs.store.read(async (tx) => {
    const account = await tx.get<AccountRecord>("accounts", userId);
    // key devices = userId|deviceId → Device
    const device = deviceId !== undefined ? await tx.get("devices", key(userId, deviceId)) : undefined;
    return { account, device };
  });
  if (!found.account || found.account.deactivated) throw forbidden(`Application service has not registered ${userId}`);
  if (deviceId !== undefined && !found.device) throw new MatrixError(400, "M_UNKNOWN_DEVICE", `Unknown device ${deviceId} for ${userId}`);
  return {
    userId,
    deviceId: deviceId ?? "",
    accessToken: token,
    isGuest: false,
    suspended: found.account.suspended === true,
    locked: found.account.locked === true,
    appserviceId: as.id,
    // rate_limited applies to masqueraded users; "The sender is excluded".
    appserviceRateLimited: as.registration.rateLimited && userId !== as.sender,
  };
}

/**
 * `POST /_matrix/client/v3/register` with `type: m.login.application_service` ("Server admin
 * style permissions"): creates a user in the service's namespace without password or flows, even
 * when registration is closed. Returns undefined for any other registration, which takes the
 * ordinary path.
 */
export async function registerAppServiceUser(ctx: RequestContext): Promise<Record<string, unknown> | undefined> {
  let body: Record<string, unknown>;
  try {
    body = await ctx.json();
  } catch {
    // The ordinary path reports the malformed body.
    return undefined;
  }
  if (body.type !== APPSERVICE_LOGIN_TYPE) return undefined;
  const hs = ctx.hs;
  const token = ctx.accessToken();
  if (!token) throw missingToken();
  const as = hs.appservices?.registry.byToken(token);
  if (!as) throw unknownToken();
  if (typeof body.username !== "string") throw missingParam("username is required");
  if (body.inhibit_login !== undefined && typeof body.inhibit_login !== "boolean") throw badJson("inhibit_login must be a boolean");
  const device = readDeviceFields(body);
  const localpart = body.username;
  validateLocalpart(localpart, hs.serverName);
  const userId = `@${localpart}:${hs.serverName}`;
  hs.appservices!.registry.checkUserId(userId, as);
  if (await hs.store.read((tx) => tx.get("accounts", userId))) throw userInUse();
  const inhibitLogin = body.inhibit_login === true;
  const created = await createAccount(hs, {
    localpart,
    login: inhibitLogin ? undefined : { ...device, ip: clientAddress(ctx), userAgent: userAgentOf(ctx) },
  });
  hs.logger.info(`appservice ${as.id} registered ${created.userId}`);
  if (inhibitLogin || !created.session) return { user_id: created.userId, home_server: hs.serverName };
  return { user_id: created.userId, ...sessionTokens(created.session), home_server: hs.serverName, ...wellKnown(hs) };
}

/**
 * The user a `POST /login` with `type: m.login.application_service` logs in (legacy
 * authentication API, "Server admin style permissions"): the request must carry the service's
 * `as_token` (401 otherwise), and the user must be its sender or in its users namespaces
 * (`400 M_EXCLUSIVE` otherwise) and exist (`403 M_FORBIDDEN`).
 */
export async function appServiceLoginUser(ctx: RequestContext, body: Record<string, unknown>): Promise<string> {
  const token = ctx.accessToken();
  if (!token) throw missingToken();
  const as = ctx.hs.appservices?.registry.byToken(token);
  if (!as) throw unknownToken();
  const identifier = readIdentifier(body);
  if (identifier.type !== "m.id.user") throw badJson("An application service logs in with an m.id.user identifier");
  const userId = resolveUserId(identifier.user, ctx.hs.serverName);
  if (!userId || !as.isInterestedInUser(userId)) throw exclusive("This user is not in the application service's namespace");
  const account = await ctx.hs.store.read((tx) => tx.get<AccountRecord>("accounts", userId));
  if (!account) throw forbidden(`Application service has not registered ${userId}`);
  return userId;
}

/** Creates the sender accounts (`sender_localpart`) that do not exist yet, so services can act as them at once. */
export async function ensureSenderAccounts(hs: Services, registry: AppServiceRegistry): Promise<void> {
  for (const as of registry.all) {
    if (await hs.store.read((tx) => tx.get("accounts", as.sender))) continue;
    await createAccount(hs, { localpart: as.registration.senderLocalpart });
    hs.logger.info(`appservice ${as.id}: created its sender ${as.sender}`);
  }
}

/** `POST /_matrix/client/v1/appservice/{appserviceId}/ping` */
export async function postAppservicePing(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const token = ctx.accessToken();
  if (!token) throw missingToken();
  const as = ctx.hs.appservices?.registry.byToken(token);
  if (!as) {
    // A valid user token is still not an application service's: 403; an unknown token is 401.
    await ctx.requireAuth();
    throw forbidden("Provided access token is not an application service's as_token");
  }
  if (as.id !== p.appserviceId) throw forbidden("Provided access token is not this application service's as_token");
  const body = await ctx.json();
  if (body.transaction_id !== undefined && typeof body.transaction_id !== "string") throw badJson("transaction_id must be a string");
  if (as.registration.url === null) throw new MatrixError(400, "M_URL_NOT_SET", "Application service doesn't have a URL configured");
  const started = ctx.hs.clock();
  const res = await callAppService(ctx.hs.appservices!.http, as, "POST", "/_matrix/app/v1/ping", {}, body.transaction_id !== undefined ? { transaction_id: body.transaction_id } : {});
  if (res.status === 0) {
    if (res.failure === "timeout") throw new MatrixError(504, "M_CONNECTION_TIMEOUT", "Connection to application service timed out");
    throw new MatrixError(502, "M_CONNECTION_FAILED", "Connection to application service failed");
  }
  if (!res.ok) throw new MatrixError(502, "M_BAD_STATUS", `Ping returned status ${res.status}`, { status: res.status, body: res.text });
  return { duration_ms: Math.max(0, ctx.hs.clock() - started) };
}
