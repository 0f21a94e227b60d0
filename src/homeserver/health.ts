/**
 * The health check load balancers and orchestrators poll (Synapse's `GET /health`): `200 OK` in
 * plain text while the homeserver can read its store, `503` when it cannot.
 */
import type { RequestContext } from "./context.ts";

const text = (status: number, body: string): Response =>
  new Response(body, { status, headers: { "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store" } });

/** `GET /health` */
export async function getHealth(ctx: RequestContext): Promise<Response> {
  try {
    await ctx.hs.store.read((tx) => tx.get("settings", "stream_pos"));
  } catch (err) {
    ctx.hs.logger.error("health check: the store cannot be read", err);
    return text(503, "Store unavailable");
  }
  return text(200, "OK");
}
