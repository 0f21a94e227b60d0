/** OpenID (client-server API "OpenID", openid.yaml): tokens a third party checks with the homeserver. */
import type { RequestContext } from "../context.ts";
import { forbidden } from "../errors.ts";
import { OPENID_TOKEN_LIFETIME_S, issueOpenIdToken } from "../services/openid.ts";

/** `POST /_matrix/client/v3/user/{userId}/openid/request_token` */
export async function postOpenIdRequestToken(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const hs = ctx.hs;
  const me = await ctx.requireAuth();
  // The body is "an empty object, reserved for future expansion"; it must still be a JSON object.
  await ctx.json({ allowEmpty: true });
  if (p.userId !== me.userId) throw forbidden("Cannot request an OpenID token for another user");
  const token = await issueOpenIdToken(hs, me.userId);
  return { access_token: token, token_type: "Bearer", matrix_server_name: hs.serverName, expires_in: OPENID_TOKEN_LIFETIME_S };
}
