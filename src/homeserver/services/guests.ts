/**
 * Guest accounts (client-server API "Guest access"): what `POST /register` (client/account.ts) needs
 * for `kind=guest` and for upgrading a guest to a full account with `guest_access_token`. Which
 * endpoints guests may call is decided in auth/guestAccess.ts.
 */
import type { Services } from "../context.ts";
import type { MatrixError } from "../errors.ts";
import { badJson, forbidden, guestAccessForbidden, missingParam } from "../errors.ts";
import type { AccessTokenRecord } from "../auth/tokens.ts";
import { tokenHash } from "../auth/tokens.ts";
import { hashPassword } from "../auth/password.ts";
import { startSession } from "./devices.ts";
import type { SessionRequest, SessionResult } from "./devices.ts";
import type { AccountRecord } from "./accounts.ts";
import { currentStateContent } from "../roomserver/state.ts";

/** What a client's `/register?kind=guest` body contributes: only the device's display name. */
export function guestDeviceName(body: Record<string, unknown>): string | undefined {
  // "all parameters in the request body with the exception of initial_device_display_name MUST BE
  // ignored by the server"
  const name = body.initial_device_display_name;
  if (name !== undefined && typeof name !== "string") throw badJson("initial_device_display_name must be a string");
  return name;
}

/** Refuses guest registration unless the operator turned guest access on (`allow_guest_access`). */
export function requireGuestRegistration(hs: Services): void {
  if (!hs.config.allowGuestAccess) throw guestAccessForbidden();
}

const notThisGuest = (): MatrixError => forbidden("Cannot register taken user ID without valid guest credentials for that user.");

/**
 * The guest a `/register` body upgrades, checked before User-Interactive Authentication: the
 * `guest_access_token` must belong to a live guest account, and `username` (required then, "to the
 * value of the local part of their username") must name that account. Returns its user ID.
 */
export async function guestToUpgrade(hs: Services, body: Record<string, unknown>, localpart: string | undefined): Promise<string> {
  const token = body.guest_access_token;
  if (typeof token !== "string") throw badJson("guest_access_token must be a string");
  if (localpart === undefined) throw missingParam("username is required to upgrade a guest account");
  const account = await hs.store.read(async (tx) => {
    const t = await tx.get<AccessTokenRecord>("access_tokens", tokenHash(token));
    return t ? tx.get<AccountRecord>("accounts", t.userId) : undefined;
  });
  if (!account?.isGuest || account.deactivated || account.userId !== `@${localpart}:${hs.serverName}`) throw notThisGuest();
  return account.userId;
}

/**
 * Turns a guest into a full account, keeping its user ID, rooms, devices and data: the account
 * gets the password (if any) and loses `isGuest`; `login` starts a new session as for any
 * registration. Rechecked inside the write, so two concurrent upgrades cannot both win.
 */
export async function upgradeGuest(
  hs: Services,
  userId: string,
  password: string | undefined,
  login: Omit<SessionRequest, "userId"> | undefined,
): Promise<SessionResult | undefined> {
  // Hash before the transaction: never await crypto inside one.
  const passwordHash = password !== undefined ? await hashPassword(password, hs.config.passwordIterations, hs.random) : undefined;
  const result = await hs.store.write(async (tx) => {
    const account = await tx.get<AccountRecord>("accounts", userId);
    if (!account?.isGuest || account.deactivated) throw notThisGuest();
    const { isGuest: _wasGuest, ...full } = account;
    tx.put("accounts", userId, passwordHash !== undefined ? { ...full, passwordHash } : full);
    return login ? startSession(tx, hs, { userId, ...login }) : undefined;
  });
  if (result?.streamPos !== undefined) hs.notifier.notify(result.streamPos);
  hs.logger.info("guest upgraded to a full account", userId);
  return result;
}

/**
 * A guest's own membership through `PUT /rooms/{roomId}/state/m.room.member/{stateKey}`: the state
 * API is open to guests, but only for what their join and leave endpoints allow, so it is no way
 * around "Servers MUST only allow guest users to join rooms if the m.room.guest_access state event
 * is present on the room, and has the guest_access value can_join" (nor to invite, kick or ban).
 */
export async function checkGuestMembership(hs: Services, roomId: string, userId: string, stateKey: string, content: Record<string, unknown>): Promise<void> {
  if (stateKey !== userId) throw guestAccessForbidden();
  if (content.membership === "leave") return;
  if (content.membership !== "join") throw guestAccessForbidden();
  const guestAccess = await hs.store.read((tx) => currentStateContent(tx, roomId, "m.room.guest_access"));
  if (guestAccess?.guest_access !== "can_join") throw guestAccessForbidden();
}
