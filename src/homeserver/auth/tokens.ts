/**
 * Access and refresh token records (client-server API "Refreshing access tokens"). Tokens are
 * minted by `startSession` (client/devices.ts); this module holds their shapes and the rotation
 * rule: "The old refresh token remains valid until the new access token or refresh token is used,
 * at which point the old refresh token is revoked."
 *
 * Tokens are stored only as hashes ({@link tokenHash}): a copy of the database (a backup, a stolen
 * disk) must not hand out working sessions. Every table and field below that says "token" holds
 * the hash; only the response that mints a token carries the token itself.
 */
import type { WriteTx } from "../../storage/store.ts";
import { key } from "../../storage/store.ts";
import { sha256Sync } from "../rooms/syncHash.ts";

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/**
 * The stored form of an access or refresh token: hex SHA-256. Tokens are 128+ random bits, so an
 * unsalted fast hash is enough (nothing to brute-force); synchronous, so a migration can rekey
 * rows inside its transaction.
 */
export function tokenHash(token: string): string {
  let out = "";
  for (const b of sha256Sync(new TextEncoder().encode(token))) out += HEX[b];
  return out;
}

/** A row of the `access_tokens` table (key = tokenHash(token)). */
export interface AccessTokenRecord {
  userId: string;
  deviceId: string;
  /** Absent: the token never expires (the client did not ask for refresh tokens). */
  expiresAt?: number;
  /** The refresh token this one was issued by; it is revoked on this token's first use. */
  supersedes?: string;
}

/** A row of the `refresh_tokens` table (key = tokenHash(token)); `accessToken`, `supersedes`, `next` are hashes too. */
export interface RefreshTokenRecord {
  userId: string;
  deviceId: string;
  /** The access token issued together with this refresh token. */
  accessToken: string;
  /** The refresh token this one replaces; revoked when this one (or its access token) is used. */
  supersedes?: string;
  /** The refresh token a `/refresh` with this one issued, until either of them is revoked. */
  next?: string;
}

/**
 * Inside a write: revokes a refresh token (by hash), the access token issued with it, and their
 * entries in the `device_tokens` index. A token that is already gone is ignored.
 */
export async function revokeRefreshToken(tx: WriteTx, refreshToken: string): Promise<void> {
  const r = await tx.get<RefreshTokenRecord>("refresh_tokens", refreshToken);
  if (!r) return;
  tx.delete("refresh_tokens", refreshToken);
  tx.delete("device_tokens", key(r.userId, r.deviceId, refreshToken));
  tx.delete("access_tokens", r.accessToken);
  tx.delete("device_tokens", key(r.userId, r.deviceId, r.accessToken));
}

/**
 * Inside a write: the first use of an access token (by hash) that came from `/refresh` revokes the
 * refresh token it replaced.
 */
export async function settleSupersededToken(tx: WriteTx, accessToken: string): Promise<void> {
  const t = await tx.get<AccessTokenRecord>("access_tokens", accessToken);
  if (!t?.supersedes) return;
  await revokeRefreshToken(tx, t.supersedes);
  const { supersedes: _done, ...rest } = t;
  tx.put("access_tokens", accessToken, rest);
}
