/**
 * Devices, the access and refresh tokens bound to them, and login sessions (client-server API
 * "Device management", "Relationship between access tokens and devices", "Login"). Every access
 * token is minted here (`startSession`); deleting a device takes its tokens, keys, to-device
 * messages and pushers with it.
 */
import type { RequestContext, Services } from "../context.ts";
import { userLocked } from "../context.ts";
import { badJson, notFound, unknownToken } from "../errors.ts";
import type { WriteTx } from "../../storage/store.ts";
import { key, prefix } from "../../storage/store.ts";
import { encodeBase64Url } from "../crypto/base64.ts";
import type { AccessTokenRecord, RefreshTokenRecord } from "../auth/tokens.ts";
import { revokeRefreshToken, tokenHash } from "../auth/tokens.ts";
import type { AccountRecord } from "./accounts.ts";
import { recordDeviceListChange } from "./e2ee.ts";
import { deleteDevicePushers } from "./pushers.ts";

/** A row of the `devices` table. */
export interface DeviceRecord {
  userId: string;
  deviceId: string;
  displayName?: string;
  createdAt: number;
  lastSeenTs?: number;
  lastSeenIp?: string;
  /** The User-Agent of the login that last used the device (for admin `whois`). */
  lastSeenUserAgent?: string;
}

/** A fresh opaque access token (32 random bytes). */
export function newAccessToken(hs: Services): string {
  return `hyt_${encodeBase64Url(hs.random(32))}`;
}

/** A fresh opaque refresh token (32 random bytes). */
export function newRefreshToken(hs: Services): string {
  return `hyr_${encodeBase64Url(hs.random(32))}`;
}

/** A fresh device ID: 10 upper-case letters, like other homeservers hand out. */
export function newDeviceId(hs: Services): string {
  const bytes = hs.random(10);
  return Array.from(bytes, (b) => String.fromCharCode(65 + (b % 26))).join("");
}

/** Everything a new login session needs, decided before the write transaction. */
export interface SessionRequest {
  userId: string;
  /** The device the client asked for, or undefined to create a new one. */
  deviceId?: string;
  initialDisplayName?: string;
  ip?: string;
  userAgent?: string;
  /** The client sent `refresh_token: true`: issue a refresh token and an expiring access token. */
  refreshable?: boolean;
}

/** What a login or registration answers with. */
export interface SessionResult {
  deviceId: string;
  accessToken: string;
  /** Only for a refreshable session. */
  refreshToken?: string;
  /** Lifetime of the access token; only for a refreshable session. */
  expiresInMs?: number;
  /** Stream position of the device-list change, if a device was created. */
  streamPos?: number;
}

/** The token fields of a `/login` or `/register` response. */
export function sessionTokens(s: SessionResult): Record<string, unknown> {
  const out: Record<string, unknown> = { access_token: s.accessToken, device_id: s.deviceId };
  if (s.refreshToken !== undefined) out.refresh_token = s.refreshToken;
  if (s.expiresInMs !== undefined) out.expires_in_ms = s.expiresInMs;
  return out;
}

/** The longest device display name (Synapse's MAX_DEVICE_DISPLAY_NAME_LEN); an initial one is cut to it, as Synapse does. */
export const MAX_DEVICE_DISPLAY_NAME_LENGTH = 100;

/**
 * Inside a write: binds a new access token to the requested (or a new) device. Reusing a device ID
 * revokes the tokens that device had ("If the client sets the device_id, the server will
 * invalidate any access and refresh tokens previously assigned to that device").
 * Every access token must be minted here: the `device_tokens` index it keeps is how deleting a
 * device finds the device's tokens.
 */
export async function startSession(tx: WriteTx, hs: Services, req: SessionRequest): Promise<SessionResult> {
  const deviceId = req.deviceId ?? newDeviceId(hs);
  const accessToken = newAccessToken(hs);
  const now = hs.clock();
  const existing = await tx.get<DeviceRecord>("devices", key(req.userId, deviceId));
  let streamPos: number | undefined;
  const seen = { ...(req.ip ? { lastSeenIp: req.ip } : {}), ...(req.userAgent ? { lastSeenUserAgent: req.userAgent } : {}) };
  if (existing) {
    await revokeDeviceTokens(tx, req.userId, deviceId);
    tx.put("devices", key(req.userId, deviceId), { ...existing, lastSeenTs: now, ...seen });
  } else {
    const device: DeviceRecord = { userId: req.userId, deviceId, createdAt: now, lastSeenTs: now, ...seen };
    if (req.initialDisplayName !== undefined) device.displayName = [...req.initialDisplayName].slice(0, MAX_DEVICE_DISPLAY_NAME_LENGTH).join("");
    tx.put("devices", key(req.userId, deviceId), device);
    streamPos = await recordDeviceListChange(tx, req.userId, undefined, { deviceIds: [deviceId] });
  }
  // Stored by hash only (auth/tokens.ts); the device_tokens index holds the hashes too.
  const accessHash = tokenHash(accessToken);
  tx.put("device_tokens", key(req.userId, deviceId, accessHash), true);
  if (!req.refreshable) {
    tx.put("access_tokens", accessHash, { userId: req.userId, deviceId } satisfies AccessTokenRecord);
    return { deviceId, accessToken, streamPos };
  }
  const expiresInMs = hs.config.accessTokenLifetimeMs;
  const refreshToken = newRefreshToken(hs);
  const refreshHash = tokenHash(refreshToken);
  tx.put("access_tokens", accessHash, { userId: req.userId, deviceId, expiresAt: now + expiresInMs } satisfies AccessTokenRecord);
  tx.put("refresh_tokens", refreshHash, { userId: req.userId, deviceId, accessToken: accessHash } satisfies RefreshTokenRecord);
  // Indexed by device like access tokens, so deleting the device revokes the refresh token too.
  tx.put("device_tokens", key(req.userId, deviceId, refreshHash), true);
  return { deviceId, accessToken, refreshToken, expiresInMs, streamPos };
}

async function revokeDeviceTokens(tx: WriteTx, userId: string, deviceId: string): Promise<void> {
  const rows = await tx.range("device_tokens", { prefix: prefix(userId, deviceId) });
  // The index holds both kinds of token (hashes of `hyt_…` access and `hyr_…` refresh tokens); delete from both tables.
  for (const row of rows) {
    const token = row.key.slice(prefix(userId, deviceId).length);
    tx.delete("access_tokens", token);
    tx.delete("refresh_tokens", token);
  }
  tx.deleteRange("device_tokens", { prefix: prefix(userId, deviceId) });
}

/**
 * Inside a write: deletes devices with their tokens, end-to-end keys, pending to-device
 * messages and the pushers they set, and records one device-list change. Returns its stream
 * position (undefined if none of the devices existed).
 */
export async function deleteDevices(tx: WriteTx, userId: string, deviceIds: readonly string[]): Promise<number | undefined> {
  const deleted: string[] = [];
  for (const deviceId of deviceIds) {
    if (await tx.get("devices", key(userId, deviceId))) deleted.push(deviceId);
    await revokeDeviceTokens(tx, userId, deviceId);
    tx.delete("devices", key(userId, deviceId));
    tx.delete("device_keys", key(userId, deviceId));
    tx.deleteRange("one_time_keys", { prefix: prefix(userId, deviceId) });
    tx.deleteRange("fallback_keys", { prefix: prefix(userId, deviceId) });
    tx.deleteRange("to_device", { prefix: prefix(userId, deviceId) });
    await deleteDevicePushers(tx, userId, deviceId);
  }
  if (deleted.length === 0) return undefined;
  return recordDeviceListChange(tx, userId, undefined, { deviceIds: deleted });
}

/** The IDs of all of a user's devices. */
export async function deviceIdsOf(tx: WriteTx, userId: string): Promise<string[]> {
  const rows = await tx.range<DeviceRecord>("devices", { prefix: prefix(userId) });
  return rows.map((r) => r.value.deviceId);
}

/** Deletes devices in one transaction and wakes `/sync` after the commit. */
export async function deleteDevicesAndNotify(hs: Services, userId: string, deviceIds: readonly string[] | "all", keep?: string): Promise<void> {
  const streamPos = await hs.store.write(async (tx) => {
    const ids = deviceIds === "all" ? await deviceIdsOf(tx, userId) : deviceIds;
    return deleteDevices(tx, userId, ids.filter((d) => d !== keep));
  });
  if (streamPos !== undefined) hs.notifier.notify(streamPos);
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

/** A user's devices. */
export async function listDevices(hs: Services, userId: string): Promise<DeviceRecord[]> {
  const rows = await hs.store.read((tx) => tx.range<DeviceRecord>("devices", { prefix: prefix(userId) }));
  return rows.map((r) => r.value);
}

/** One device of a user, if it exists. */
export async function getDeviceRecord(hs: Services, userId: string, deviceId: string): Promise<DeviceRecord | undefined> {
  return hs.store.read((tx) => tx.get<DeviceRecord>("devices", key(userId, deviceId)));
}

/**
 * Renames an existing device (404 if there is none: regular clients may only update existing
 * devices; creation is for application services) and wakes `/sync` when the name changed.
 */
export async function renameDevice(hs: Services, userId: string, deviceId: string, displayName: string | undefined): Promise<void> {
  const streamPos = await hs.store.write(async (tx) => {
    const k = key(userId, deviceId);
    const device = await tx.get<DeviceRecord>("devices", k);
    if (!device) throw notFound("Device not found");
    if (displayName === undefined || displayName === device.displayName) return undefined;
    tx.put("devices", k, { ...device, displayName });
    // Other users see display names in /keys/query, so a rename is a device-list change.
    return recordDeviceListChange(tx, userId, undefined, { deviceIds: [deviceId] });
  });
  if (streamPos !== undefined) hs.notifier.notify(streamPos);
}

/** How long a login token from `/login/get_token` stays valid (the spec recommends 2 minutes). */
export const LOGIN_TOKEN_LIFETIME_MS = 120_000;

/** A row of the `login_tokens` table. */
export interface LoginTokenRecord {
  userId: string;
  expiresAt: number;
}

/** Takes a login token: single use, so it is deleted in the same transaction that reads it. */
export async function consumeLoginToken(hs: Services, token: string): Promise<LoginTokenRecord | undefined> {
  return hs.store.write(async (tx) => {
    const r = await tx.get<LoginTokenRecord>("login_tokens", token);
    if (r) tx.delete("login_tokens", token);
    return r;
  });
}

/** Mints a login token for `userId`, valid for LOGIN_TOKEN_LIFETIME_MS. */
export async function issueLoginToken(hs: Services, userId: string): Promise<string> {
  const token = `hyl_${encodeBase64Url(hs.random(32))}`;
  const expiresAt = hs.clock() + LOGIN_TOKEN_LIFETIME_MS;
  await hs.store.write(async (tx) => {
    // Expired tokens are removed opportunistically so the table does not grow.
    const now = hs.clock();
    for (const row of await tx.range<LoginTokenRecord>("login_tokens")) if (row.value.expiresAt <= now) tx.delete("login_tokens", row.key);
    tx.put("login_tokens", token, { userId, expiresAt } satisfies LoginTokenRecord);
  });
  return token;
}

/** Revokes one access token (logout: the presented token goes even if no device index names it). */
export async function revokeAccessToken(hs: Services, accessToken: string): Promise<void> {
  await hs.store.write(async (tx) => tx.delete("access_tokens", tokenHash(accessToken)));
}

/**
 * Rotates a refreshable session (`POST /refresh`): a new access token and a new refresh token. The
 * old refresh token "remains valid until the new access token or refresh token is used", so a
 * client that lost the response can repeat the refresh; doing so discards the unused tokens of
 * the lost one. Unknown, rotated-away or revoked tokens, and deactivated accounts: `M_UNKNOWN_TOKEN`.
 */
export async function refreshSession(hs: Services, presented: string): Promise<Record<string, unknown>> {
  // Minted before the transaction: nothing but the store is awaited inside one.
  const accessToken = newAccessToken(hs);
  const refreshToken = newRefreshToken(hs);
  const expiresInMs = hs.config.accessTokenLifetimeMs;
  const presentedHash = tokenHash(presented);
  const accessHash = tokenHash(accessToken);
  const refreshHash = tokenHash(refreshToken);
  await hs.store.write(async (tx) => {
    const r = await tx.get<RefreshTokenRecord>("refresh_tokens", presentedHash);
    // Unknown, already rotated away, or revoked with its device: the session is over.
    if (!r) throw unknownToken();
    const account = await tx.get<AccountRecord>("accounts", r.userId);
    if (!account || account.deactivated) throw unknownToken();
    // "cannot obtain a new access token until the account has been unlocked" (Soft logout).
    if (account.locked) throw userLocked();
    // Using this token retires the one it replaced …
    if (r.supersedes !== undefined) await revokeRefreshToken(tx, r.supersedes);
    // … and a repeated refresh retires the tokens of the earlier, never-used one.
    if (r.next !== undefined) await revokeRefreshToken(tx, r.next);
    tx.put("access_tokens", accessHash, {
      userId: r.userId,
      deviceId: r.deviceId,
      expiresAt: hs.clock() + expiresInMs,
      supersedes: presentedHash,
    } satisfies AccessTokenRecord);
    tx.put("refresh_tokens", refreshHash, { userId: r.userId, deviceId: r.deviceId, accessToken: accessHash, supersedes: presentedHash } satisfies RefreshTokenRecord);
    tx.put("device_tokens", key(r.userId, r.deviceId, accessHash), true);
    tx.put("device_tokens", key(r.userId, r.deviceId, refreshHash), true);
    const { supersedes: _gone, ...kept } = r;
    tx.put("refresh_tokens", presentedHash, { ...kept, next: refreshHash } satisfies RefreshTokenRecord);
  });
  return { access_token: accessToken, refresh_token: refreshToken, expires_in_ms: expiresInMs };
}
