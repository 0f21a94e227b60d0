/** Server discovery and version negotiation (client-server API "Server discovery", "API standards"). */
import type { RequestContext } from "../context.ts";

/** Spec versions this server implements; v1.11+ makes clients use authenticated media. */
export const SPEC_VERSIONS = ["r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12"];

/** `GET /_matrix/client/versions` */
export async function getVersions(): Promise<Record<string, unknown>> {
  return { versions: SPEC_VERSIONS, unstable_features: {} };
}

/** `GET /.well-known/matrix/client` */
export async function getWellKnownClient(ctx: RequestContext): Promise<Record<string, unknown>> {
  const base = ctx.hs.config.publicBaseUrl ?? ctx.url.origin;
  return { "m.homeserver": { base_url: base } };
}
