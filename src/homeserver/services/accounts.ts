/**
 * Accounts (client-server API "Account registration", "Account management", admin flags): the
 * `accounts` table and everything that creates, changes or reads an account record. Handlers in
 * client/ (account.ts, login.ts, admin.ts), admin/ and appservice/ call these.
 */
import type { Requester, Services } from "../context.ts";
import { streamPosIn, userLocked, userSuspended } from "../context.ts";
import { MatrixError, forbidden, notFound, userInUse } from "../errors.ts";
import { hashPassword } from "../auth/password.ts";
import { validateLocalpart } from "../auth/identifiers.ts";
import { completeRegistrationToken } from "../admin/registrationTokens.ts";
import { prefix } from "../../storage/store.ts";
import { logLine } from "../log.ts";
import { getEvent } from "../roomserver/state.ts";
import { sendEvent } from "../roomserver/send.ts";
import { deleteDevicesAndNotify, startSession } from "./devices.ts";
import type { DeviceRecord, SessionRequest, SessionResult } from "./devices.ts";
import { deletePushersExcept } from "./pushers.ts";

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
  /** Custom profile fields (`m.tz`, namespaced keys): key → any JSON value (services/profiles.ts). */
  profileFields?: Record<string, unknown>;
  /** Set by admin registration (`user_type`). */
  userType?: string;
}

/** A random localpart for a registration that names none. */
export function generateLocalpart(hs: Services): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  return Array.from(hs.random(12), (b) => alphabet[b % alphabet.length]).join("");
}

/** Whether an account (also a deactivated one: user IDs are never reused) exists. */
export async function accountExists(hs: Services, userId: string): Promise<boolean> {
  return (await hs.store.read((tx) => tx.get("accounts", userId))) !== undefined;
}

/** Options for creating an account outside the `/register` exchange (admin registration). */
export interface CreateAccountOptions {
  localpart: string;
  password?: string;
  displayname?: string;
  admin?: boolean;
  userType?: string;
  /** Log the new account in on a device; omitted = no device, no token. */
  login?: Omit<SessionRequest, "userId">;
  /** A guest account ("Guest access"): no password, limited to the guest endpoints. */
  guest?: boolean;
  /** The registration token that admitted this registration: counted as used in the same transaction. */
  registrationToken?: string;
}

/** Creates an account (and optionally its first session) in one transaction. */
export async function createAccount(
  hs: Services,
  options: CreateAccountOptions,
): Promise<{ userId: string; session?: SessionResult }> {
  validateLocalpart(options.localpart, hs.serverName);
  const userId = `@${options.localpart}:${hs.serverName}`;
  // Hash before the transaction: never await crypto inside one.
  const passwordHash = options.password !== undefined ? await hashPassword(options.password, hs.config.passwordIterations, hs.random) : undefined;
  const result = await hs.store.write(async (tx) => {
    if (await tx.get("accounts", userId)) throw userInUse();
    const account: AccountRecord = { userId, createdAt: hs.clock(), displayname: options.displayname ?? options.localpart };
    if (passwordHash !== undefined) account.passwordHash = passwordHash;
    if (options.admin) account.admin = true;
    if (options.guest) account.isGuest = true;
    if (options.userType) account.userType = options.userType;
    tx.put("accounts", userId, account);
    if (options.registrationToken !== undefined) await completeRegistrationToken(tx, options.registrationToken);
    return options.login ? startSession(tx, hs, { userId, ...options.login }) : undefined;
  });
  if (result?.streamPos !== undefined) hs.notifier.notify(result.streamPos);
  hs.logger.info(logLine("registered", { user: userId, device: result?.deviceId, admin: options.admin === true ? true : undefined, user_type: options.userType }));
  return { userId, session: result };
}

/**
 * A new login session for the account a retried registration created, in its own transaction;
 * wakes `/sync` for a new device. The account may have been deactivated or locked since: then, as
 * for any login, no token.
 */
export async function startSessionAndNotify(hs: Services, req: SessionRequest): Promise<SessionResult> {
  const session = await hs.store.write(async (tx) => {
    const account = await tx.get<AccountRecord>("accounts", req.userId);
    if (!account || account.deactivated) throw new MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated");
    if (account.locked) throw userLocked();
    return startSession(tx, hs, req);
  });
  if (session.streamPos !== undefined) hs.notifier.notify(session.streamPos);
  return session;
}

/**
 * Suspended users may redact their own events but not other users' ("Account suspension": the
 * forbidden set includes "Redacting other users' events").
 */
export async function refuseSuspendedRedaction(hs: Services, me: Requester, eventId: string): Promise<void> {
  if (!me.suspended) return;
  const event = await hs.store.read((tx) => getEvent(tx, eventId));
  if (event?.pdu.sender !== me.userId) throw userSuspended();
}

/** Whether the requester is a server admin. */
export async function isServerAdmin(hs: Services, userId: string): Promise<boolean> {
  const account = await hs.store.read((tx) => tx.get<AccountRecord>("accounts", userId));
  return account?.admin === true && account.deactivated !== true;
}

/** The account record of a user, if the account exists (deactivated ones included). */
export async function getAccount(hs: Services, userId: string): Promise<AccountRecord | undefined> {
  return hs.store.read((tx) => tx.get<AccountRecord>("accounts", userId));
}

/**
 * Sets a new password hash. Synapse's rule on a password change: pushers other than those of the
 * current access token are deleted (the other sessions may belong to whoever knew the old password).
 */
export async function changePassword(hs: Services, userId: string, passwordHash: string, keepDeviceId: string): Promise<void> {
  await hs.store.write(async (tx) => {
    const account = await tx.get<AccountRecord>("accounts", userId);
    if (!account) throw forbidden("No such account");
    tx.put("accounts", userId, { ...account, passwordHash });
    await deletePushersExcept(tx, userId, keepDeviceId);
  });
}

/**
 * Deactivates an account: leaves every room, forgets the password (and with `erase` the profile),
 * deletes pushers, devices and tokens.
 */
export async function deactivateAccount(hs: Services, userId: string, erase: boolean): Promise<void> {
  // Leave every room first, while the account can still send (Synapse does the same).
  const rooms = await hs.store.read((tx) => tx.range<{ membership: string }>("memberships", { prefix: prefix(userId) }));
  for (const row of rooms) {
    if (!["join", "invite", "knock"].includes(row.value.membership)) continue;
    const roomId = row.key.slice(prefix(userId).length);
    try {
      await sendEvent(hs, { roomId, sender: userId, type: "m.room.member", stateKey: userId, content: { membership: "leave" } });
    } catch (err) {
      // One room refusing the leave must not keep the account alive.
      hs.logger.warn("deactivation: could not leave", roomId, err);
    }
  }

  await hs.store.write(async (tx) => {
    const account = await tx.get<AccountRecord>("accounts", userId);
    if (!account) return;
    const { passwordHash: _gone, ...rest } = account;
    const updated: AccountRecord = { ...rest, deactivated: true };
    if (erase) {
      // "erase": forget what the account published about itself; its messages stay for those who
      // saw them and are served pruned to anyone who joins later (roomserver/serve.ts).
      delete updated.displayname;
      delete updated.avatar_url;
      updated.erasedAt = await streamPosIn(tx);
    }
    tx.put("accounts", userId, updated);
    await deletePushersExcept(tx, userId);
  });
  await deleteDevicesAndNotify(hs, userId, "all");
}

/** An account flag a server admin sets ("Account locking", "Account suspension"). */
export type AccountFlag = "locked" | "suspended";

/** Sets or clears an admin flag on an account (404 if the account is gone). */
export async function setAccountFlag(hs: Services, userId: string, flag: AccountFlag, value: boolean): Promise<void> {
  await hs.store.write(async (tx) => {
    const account = await tx.get<AccountRecord>("accounts", userId);
    if (!account) throw notFound("User not found.");
    const updated: AccountRecord = { ...account };
    if (value) updated[flag] = true;
    else delete updated[flag];
    tx.put("accounts", userId, updated);
  });
}

/** A local account's devices, read in one transaction; undefined if there is no such account. */
export async function accountDevices(hs: Services, userId: string): Promise<DeviceRecord[] | undefined> {
  return hs.store.read(async (tx) => {
    const account = await tx.get<AccountRecord>("accounts", userId);
    if (!account) return undefined;
    return (await tx.range<DeviceRecord>("devices", { prefix: prefix(userId) })).map((r) => r.value);
  });
}
