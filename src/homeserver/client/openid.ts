/** OpenID (client-server API "OpenID", openid.yaml): tokens a third party checks with the homeserver. */
import type { RequestContext, Services } from "../context.ts";
import { forbidden } from "../errors.ts";
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

/** `POST /_matrix/client/v3/user/{userId}/openid/request_token` */
export async function postOpenIdRequestToken(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const hs = ctx.hs;
  const me = await ctx.requireAuth();
  // The body is "an empty object, reserved for future expansion"; it must still be a JSON object.
  await ctx.json({ allowEmpty: true });
  if (p.userId !== me.userId) throw forbidden("Cannot request an OpenID token for another user");
  // A separate table: an OpenID token "is only valid for the OpenID API", never as an access token.
  const token = `hyo_${encodeBase64Url(hs.random(32))}`;
  const now = hs.clock();
  await hs.store.write(async (tx) => {
    // Expired tokens are removed opportunistically so the table does not grow.
    for (const row of await tx.range<OpenIdTokenRecord>("openid_tokens")) if (row.value.expiresAt <= now) tx.delete("openid_tokens", row.key);
    tx.put("openid_tokens", token, { userId: me.userId, expiresAt: now + OPENID_TOKEN_LIFETIME_S * 1000 } satisfies OpenIdTokenRecord);
  });
  return { access_token: token, token_type: "Bearer", matrix_server_name: hs.serverName, expires_in: OPENID_TOKEN_LIFETIME_S };
}
