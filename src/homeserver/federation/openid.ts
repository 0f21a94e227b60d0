/** The federation side of OpenID (server-server API "OpenID", server-server/openid.yaml). */
import type { RequestContext } from "../context.ts";
import { MatrixError, missingParam } from "../errors.ts";
import { openIdTokenOwner } from "../services/openid.ts";

/**
 * `GET /_matrix/federation/v1/openid/userinfo`
 * Called by third-party services holding a token a user gave them, so it carries no X-Matrix
 * signature: the token itself is the credential.
 */
export async function getOpenIdUserInfo(ctx: RequestContext): Promise<Record<string, unknown>> {
  const token = ctx.query("access_token");
  if (token === undefined) throw missingParam("Missing access_token");
  const userId = await openIdTokenOwner(ctx.hs, token);
  if (userId === undefined) throw new MatrixError(401, "M_UNKNOWN_TOKEN", "Access token unknown or expired");
  return { sub: userId };
}
