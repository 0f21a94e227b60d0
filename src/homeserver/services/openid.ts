/**
 * OpenID tokens (client-server API "OpenID", openid.yaml): minted for a user by the client API,
 * checked by the federation's `/openid/userinfo`. A separate table: an OpenID token "is only valid
 * for the OpenID API", never as an access token.
 */
import type { Services } from "../context.ts";
import { encodeBase64Url } from "../crypto/base64.ts";

/** How long an OpenID token is valid, seconds (Synapse uses an hour too). */
export const OPENID_TOKEN_LIFETIME_S = 3600;

/** A row of the `openid_tokens` table (key = token). */
export interface OpenIdTokenRecord {
  userId: string;
  expiresAt: number;
}

/** The user an OpenID token belongs to, if it is known and not expired. */
export async function openIdTokenOwner(hs: Services, token: string): Promise<string | undefined> {
  const r = await hs.store.read((tx) => tx.get<OpenIdTokenRecord>("openid_tokens", token));
  return r && r.expiresAt > hs.clock() ? r.userId : undefined;
}

/** Mints an OpenID token for `userId`, valid for OPENID_TOKEN_LIFETIME_S. */
export async function issueOpenIdToken(hs: Services, userId: string): Promise<string> {
  const token = `hyo_${encodeBase64Url(hs.random(32))}`;
  const now = hs.clock();
  await hs.store.write(async (tx) => {
    // Expired tokens are removed opportunistically so the table does not grow.
    for (const row of await tx.range<OpenIdTokenRecord>("openid_tokens")) if (row.value.expiresAt <= now) tx.delete("openid_tokens", row.key);
    tx.put("openid_tokens", token, { userId, expiresAt: now + OPENID_TOKEN_LIFETIME_S * 1000 } satisfies OpenIdTokenRecord);
  });
  return token;
}
