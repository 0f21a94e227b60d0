/** Refreshing access tokens (client-server API "Refreshing access tokens", refresh.yaml). */
import type { RequestContext } from "../context.ts";
import { userLocked } from "../context.ts";
import { badJson, missingParam, unknownToken } from "../errors.ts";
import { key } from "../../storage/store.ts";
import type { AccessTokenRecord, RefreshTokenRecord } from "../auth/tokens.ts";
import { revokeRefreshToken, tokenHash } from "../auth/tokens.ts";
import { newAccessToken, newRefreshToken } from "../services/devices.ts";
import type { AccountRecord } from "../services/accounts.ts";

/**
 * `POST /_matrix/client/v3/refresh`
 * Authenticated by the refresh token alone (an expired access token may come along and is
 * ignored). Every refresh rotates: a new access token and a new refresh token. The old refresh
 * token "remains valid until the new access token or refresh token is used", so a client that
 * lost the response can repeat the refresh; doing so discards the unused tokens of the lost one.
 */
export async function postRefresh(ctx: RequestContext): Promise<Record<string, unknown>> {
  const hs = ctx.hs;
  const body = await ctx.json();
  if (body.refresh_token === undefined) throw missingParam("Missing refresh_token");
  if (typeof body.refresh_token !== "string") throw badJson("refresh_token must be a string");
  const presented = body.refresh_token;
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
