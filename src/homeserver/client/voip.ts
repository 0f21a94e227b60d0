/** VoIP ("Voice over IP" module, `voip.yaml`). */
import type { RequestContext } from "../context.ts";

/**
 * `GET /_matrix/client/v3/voip/turnServer`
 *
 * No TURN server is configured, so there are no credentials to hand out. An empty object is how
 * homeservers say so (clients then fall back to direct/STUN connectivity); the 200 fields of
 * `voip.yaml` describe a server that has one.
 */
export async function getTurnServer(ctx: RequestContext): Promise<Record<string, unknown>> {
  await ctx.requireAuth();
  return {};
}
