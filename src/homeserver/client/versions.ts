/** Server discovery and version negotiation (client-server API "Server discovery", "API standards"). */
import type { RequestContext } from "../context.ts";

/**
 * Spec versions this server implements. v1.11+ makes clients use authenticated media; v1.15 the
 * stable `/room_summary`; v1.16 extended profiles and `use_state_after`. What v1.19 has and this
 * server does not (SSO, OAuth 2.0 metadata, application services, policy servers) is optional and
 * listed in docs/STATUS.md.
 */
export const SPEC_VERSIONS = [
  "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10",
  "v1.11", "v1.12", "v1.13", "v1.14", "v1.15", "v1.16", "v1.17", "v1.18", "v1.19",
];

/** `GET /_matrix/client/versions` */
export async function getVersions(): Promise<Record<string, unknown>> {
  return { versions: SPEC_VERSIONS, unstable_features: {} };
}

/** `GET /.well-known/matrix/client` */
export async function getWellKnownClient(ctx: RequestContext): Promise<Record<string, unknown>> {
  const base = ctx.hs.config.publicBaseUrl ?? ctx.url.origin;
  return { "m.homeserver": { base_url: base } };
}
