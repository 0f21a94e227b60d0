/**
 * Account registration and management (client-server API "Account registration", "Account
 * management", "Current account information", "Adding Account Administrative Contact Information").
 */
import type { RequestContext, Services } from "../context.ts";
import { MatrixError, badJson, forbidden, guestAccessForbidden, invalidParam, missingParam, userInUse } from "../errors.ts";
import { hashPassword } from "../auth/password.ts";
import { validateLocalpart } from "../auth/identifiers.ts";
import { clientAddress, limitAddress } from "../auth/rateLimit.ts";
import { checkRegistrationToken } from "../admin/registrationTokens.ts";
import { deleteDevicesAndNotify, readDeviceFields, sessionTokens, userAgentOf, wellKnown } from "../services/devices.ts";
import type { SessionResult } from "../services/devices.ts";
import { accountExists, changePassword, createAccount, deactivateAccount, generateLocalpart, startSessionAndNotify } from "../services/accounts.ts";
import { identityFlows, recordRegistration, registeredBySession, requireUserInteractiveAuth, uiaRequestBody } from "../services/uia.ts";
import { isObject } from "../validate.ts";
import { guestDeviceName, guestToUpgrade, requireGuestRegistration, upgradeGuest } from "../services/guests.ts";
import { registerAppServiceUser } from "../appservice/client.ts";

/**
 * Registration offers one flow: the dummy stage (anyone may register when registration is on),
 * after the registration token stage when the server requires one ("Token-authenticated
 * registration"; Synapse's flow too, so the token is a pending use while the dummy stage remains).
 */
function registrationFlows(hs: Services): string[][] {
  return hs.config.registrationRequiresToken ? [["m.login.registration_token", "m.login.dummy"]] : [["m.login.dummy"]];
}

/** Synapse's limit on password length; longer ones are refused rather than silently hashed. */
const MAX_PASSWORD_LENGTH = 512;

const registrationDisabled = (): MatrixError => forbidden("Registration is not enabled on this homeserver.");

/** Reads an optional password field (`M_BAD_JSON` if it is not a string or too long). */
export function readPassword(body: Record<string, unknown>, field: string): string | undefined {
  const value = body[field];
  if (value === undefined) return undefined;
  if (typeof value !== "string") throw badJson(`${field} must be a string`);
  if (value.length > MAX_PASSWORD_LENGTH) throw badJson(`${field} is too long`);
  // An empty password is no secret at all ("Password management": the weak-password error).
  if (value === "") throw new MatrixError(400, "M_WEAK_PASSWORD", `${field} must not be empty`);
  return value;
}

/** `POST /_matrix/client/v3/register` */
export async function postRegister(ctx: RequestContext): Promise<Record<string, unknown>> {
  const hs = ctx.hs;
  // Application services register namespaced users with their as_token, bypassing the flows.
  const registeredByAppService = await registerAppServiceUser(ctx);
  if (registeredByAppService) return registeredByAppService;
  const kind = ctx.query("kind") ?? "user";
  if (kind === "guest") return registerGuest(ctx);
  if (kind !== "user") throw invalidParam("kind must be 'user' or 'guest'");
  if (!hs.config.enableRegistration) throw registrationDisabled();
  // rc_registration counts registrations per client address: checked now, taken on creation.
  limitAddress(ctx, "rc_registration", "check");
  // A request with only `auth` takes the parameters its session remembers (sytest "registration
  // remembers parameters").
  const body = uiaRequestBody(ctx, await ctx.json());

  // Check the request itself before authentication, so a client learns about a taken username
  // before it walks through the stages.
  if (body.username !== undefined && typeof body.username !== "string") throw badJson("username must be a string");
  const password = readPassword(body, "password");
  const device = readDeviceFields(body);
  if (body.inhibit_login !== undefined && typeof body.inhibit_login !== "boolean") throw badJson("inhibit_login must be a boolean");
  const inhibitLogin = body.inhibit_login === true;
  const login = inhibitLogin ? undefined : { ...device, ip: clientAddress(ctx), userAgent: userAgentOf(ctx) };
  // Registration is idempotent per session: a retry of a session that already created an account
  // (the client lost the response) answers with that account, logged in anew, not a second one.
  const registered = registeredBySession(ctx, body);
  if (registered !== undefined) {
    await requireUserInteractiveAuth(ctx, body, { flows: registrationFlows(hs) });
    return registrationResponse(hs, registered, login && (await startSessionAndNotify(hs, { userId: registered, ...login })));
  }
  let localpart = body.username !== undefined ? (body.username as string).toLowerCase() : undefined;
  // Guest access: a guest upgrading to a full account names its own (taken) user ID.
  const upgrading = body.guest_access_token !== undefined ? await guestToUpgrade(hs, body, localpart) : undefined;
  if (localpart !== undefined && upgrading === undefined) {
    validateLocalpart(localpart, hs.serverName);
    hs.appservices?.registry.checkUserId(`@${localpart}:${hs.serverName}`);
    if (await accountExists(hs, `@${localpart}:${hs.serverName}`)) throw userInUse();
  }

  const { registrationToken, session: uiaSession } = await requireUserInteractiveAuth(ctx, body, { flows: registrationFlows(hs) });

  localpart ??= generateLocalpart(hs);
  if (upgrading !== undefined) {
    const session = await upgradeGuest(hs, upgrading, password, login);
    recordRegistration(hs, uiaSession, upgrading);
    return registrationResponse(hs, upgrading, session);
  }
  limitAddress(ctx, "rc_registration");
  const created = await createAccount(hs, { localpart, password, registrationToken, login });
  recordRegistration(hs, uiaSession, created.userId);
  return registrationResponse(hs, created.userId, created.session);
}

/** The body of a successful registration: tokens only with a session ("inhibit_login" leaves them out, device_id included). */
function registrationResponse(hs: Services, userId: string, session: SessionResult | undefined): Record<string, unknown> {
  if (!session) return { user_id: userId, home_server: hs.serverName };
  return { user_id: userId, ...sessionTokens(session), home_server: hs.serverName, ...wellKnown(hs) };
}

/**
 * `POST /_matrix/client/v3/register?kind=guest` ("Guest access"): no User-Interactive
 * Authentication, no password; a server-chosen user ID and device, and a token that never expires.
 */
async function registerGuest(ctx: RequestContext): Promise<Record<string, unknown>> {
  const hs = ctx.hs;
  requireGuestRegistration(hs);
  const initialDisplayName = guestDeviceName(await ctx.json({ allowEmpty: true }));
  // Guests count against rc_registration like everyone else (as in Synapse).
  limitAddress(ctx, "rc_registration");
  const created = await createAccount(hs, {
    localpart: generateLocalpart(hs),
    guest: true,
    login: { initialDisplayName, refreshable: false, ip: clientAddress(ctx), userAgent: userAgentOf(ctx) },
  });
  hs.logger.info("guest registered", created.userId);
  return { user_id: created.userId, ...sessionTokens(created.session!), home_server: hs.serverName, ...wellKnown(hs) };
}

/** `GET /_matrix/client/v3/register/available` */
export async function getRegisterAvailable(ctx: RequestContext): Promise<Record<string, unknown>> {
  const hs = ctx.hs;
  if (!hs.config.enableRegistration) throw registrationDisabled();
  const username = ctx.query("username");
  if (username === undefined) throw missingParam("Missing username");
  const localpart = username.toLowerCase();
  validateLocalpart(localpart, hs.serverName);
  hs.appservices?.registry.checkUserId(`@${localpart}:${hs.serverName}`);
  if (await accountExists(hs, `@${localpart}:${hs.serverName}`)) throw userInUse();
  return { available: true };
}

/** `GET /_matrix/client/v1/register/m.login.registration_token/validity` */
export async function getRegistrationTokenValidity(ctx: RequestContext): Promise<Record<string, unknown>> {
  // "403: The homeserver does not permit registration and thus all tokens are considered invalid."
  if (!ctx.hs.config.enableRegistration) throw registrationDisabled();
  limitAddress(ctx, "rc_registration_token_validity");
  const token = ctx.query("token");
  if (token === undefined) throw missingParam("Missing token");
  return { valid: await checkRegistrationToken(ctx.hs, token) };
}

/** `GET /_matrix/client/v3/account/whoami` */
export async function getWhoami(ctx: RequestContext): Promise<Record<string, unknown>> {
  const { userId, deviceId, isGuest } = await ctx.requireAuth();
  // An application service acting without `device_id` has no device: the field is left out.
  return { user_id: userId, ...(deviceId !== "" ? { device_id: deviceId } : {}), is_guest: isGuest };
}

/** `POST /_matrix/client/v3/account/password` */
export async function postAccountPassword(ctx: RequestContext): Promise<Record<string, unknown>> {
  const hs = ctx.hs;
  const { userId, deviceId, isGuest } = await ctx.requireAuth();
  if (isGuest) throw guestAccessForbidden();
  const body = uiaRequestBody(ctx, await ctx.json());
  const newPassword = readPassword(body, "new_password");
  if (newPassword === undefined) throw missingParam("Missing new_password");
  if (body.logout_devices !== undefined && typeof body.logout_devices !== "boolean") throw badJson("logout_devices must be a boolean");
  await requireUserInteractiveAuth(ctx, body, { flows: await identityFlows(hs, userId), userId });
  const passwordHash = await hashPassword(newPassword, hs.config.passwordIterations, hs.random);
  await changePassword(hs, userId, passwordHash, deviceId);
  // "Whether the user's other access tokens, and their associated devices, should be revoked."
  if (body.logout_devices !== false) await deleteDevicesAndNotify(hs, userId, "all", deviceId);
  return {};
}

/** `POST /_matrix/client/v3/account/deactivate` */
export async function postAccountDeactivate(ctx: RequestContext): Promise<Record<string, unknown>> {
  const hs = ctx.hs;
  const { userId } = await ctx.requireAuth();
  const body = uiaRequestBody(ctx, await ctx.json({ allowEmpty: true }));
  if (body.erase !== undefined && typeof body.erase !== "boolean") throw badJson("erase must be a boolean");
  await requireUserInteractiveAuth(ctx, body, { flows: await identityFlows(hs, userId), userId });

  await deactivateAccount(hs, userId, body.erase === true);
  // No identity server is ever involved here, so nothing could be unbound.
  return { id_server_unbind_result: "no-support" };
}

/** `GET /_matrix/client/v3/account/3pid` */
export async function getAccount3pids(ctx: RequestContext): Promise<Record<string, unknown>> {
  await ctx.requireAuth();
  // This homeserver never validates or stores third-party identifiers.
  return { threepids: [] };
}

const threepidDenied = (): MatrixError =>
  new MatrixError(403, "M_THREEPID_DENIED", "Third-party identifiers (email, phone) are not supported on this homeserver");

/**
 * `POST /_matrix/client/v3/account/3pid`
 * Deprecated form of `/3pid/bind`: the credentials would have to be checked with an identity
 * server, and this homeserver talks to none; it answers as `/3pid/add` and `/3pid/bind` do.
 */
export async function postAccount3pids(ctx: RequestContext): Promise<Record<string, unknown>> {
  await ctx.requireAuth();
  const body = await ctx.json();
  const creds = body.three_pid_creds;
  if (creds === undefined) throw missingParam("three_pid_creds is required");
  if (!isObject(creds)) throw badJson("three_pid_creds must be an object");
  for (const field of ["client_secret", "sid"]) {
    if (typeof creds[field] !== "string") throw missingParam(`three_pid_creds.${field} is required`);
  }
  throw threepidDenied();
}

/** `POST /_matrix/client/v3/account/3pid/add` */
export async function postAccount3pidAdd(ctx: RequestContext): Promise<Record<string, unknown>> {
  await ctx.requireAuth();
  const body = await ctx.json();
  if (typeof body.client_secret !== "string" || typeof body.sid !== "string") throw missingParam("client_secret and sid are required");
  // No validation session can exist: this server never hands out a `sid`.
  throw threepidDenied();
}

/** `POST /_matrix/client/v3/account/3pid/bind` */
export async function postAccount3pidBind(ctx: RequestContext): Promise<Record<string, unknown>> {
  await ctx.requireAuth();
  const body = await ctx.json();
  for (const field of ["client_secret", "id_server", "id_access_token", "sid"]) {
    if (typeof body[field] !== "string") throw missingParam(`${field} is required`);
  }
  // Binding goes through an identity server; this homeserver does not talk to one.
  throw threepidDenied();
}

/**
 * `POST /_matrix/client/v3/account/3pid/delete` (and `/unbind`): the account has no 3PIDs, so
 * there is nothing to remove, and no identity server to unbind from ("no-support").
 */
export async function postAccount3pidDelete(ctx: RequestContext): Promise<Record<string, unknown>> {
  await ctx.requireAuth();
  const body = await ctx.json();
  if (typeof body.medium !== "string" || typeof body.address !== "string") throw missingParam("medium and address are required");
  return { id_server_unbind_result: "no-support" };
}

/**
 * `POST /_matrix/client/v3/register/email/requestToken` and the other `requestToken` endpoints
 * (register, account/3pid, account/password × email, msisdn): no email or SMS is ever sent here.
 */
export async function postRequestToken(ctx: RequestContext): Promise<Record<string, unknown>> {
  await ctx.json();
  throw threepidDenied();
}
