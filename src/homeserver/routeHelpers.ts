/** Builders for route table entries. */
import type { Method, Route, HandlerResult } from "./router.ts";
import type { RequestContext } from "./context.ts";
import { limitFederation } from "./federation/rateLimit.ts";

export type Handler = (ctx: RequestContext, params: Record<string, string>) => Promise<HandlerResult>;
export type HsRoute = Route<RequestContext>;

/** A Client-Server endpoint served on both `/r0` and `/v3` (clients in the wild still use r0). */
export function client(method: Method, path: string, handler: Handler): HsRoute[] {
  return [
    { method, path: `/_matrix/client/v3${path}`, handler },
    { method, path: `/_matrix/client/r0${path}`, handler },
  ];
}

/** An endpoint at an exact path (v1 client endpoints, federation, media, keys). */
export function at(method: Method, path: string, handler: Handler): HsRoute[] {
  return [{ method, path, handler }];
}

/**
 * A federation endpoint (`path` after `/_matrix/federation`, with its version, e.g. `/v1/send/{txnId}`):
 * the handler runs only for a request whose `X-Matrix` signature verified, and receives the origin;
 * `rc_federation` applies per origin (federation/rateLimit.ts).
 */
export function federation(method: Method, path: string, handler: (ctx: RequestContext, params: Record<string, string>, origin: string) => Promise<HandlerResult>): HsRoute[] {
  return [
    {
      method,
      path: `/_matrix/federation${path}`,
      handler: async (ctx, params) => {
        const origin = await ctx.requireServer();
        return limitFederation(ctx, origin, () => handler(ctx, params, origin));
      },
    },
  ];
}
