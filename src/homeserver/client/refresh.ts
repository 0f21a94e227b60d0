/** Refreshing access tokens (client-server API "Refreshing access tokens", refresh.yaml). */
import type { RequestContext } from "../context.ts";
import { badJson, missingParam } from "../errors.ts";
import { refreshSession } from "../services/devices.ts";

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
  return refreshSession(hs, presented);
}
