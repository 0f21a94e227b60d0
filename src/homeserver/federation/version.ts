/** `GET /_matrix/federation/v1/version` (server-server API "Server Implementation"). */
import type { RequestContext } from "../context.ts";

/** The implementation's name and version; needs no authentication. */
export async function getFederationVersion(_ctx: RequestContext): Promise<Record<string, unknown>> {
  return { server: { name: "Hyphae", version: HYPHAE_VERSION } };
}

/** This implementation's version, as `package.json` says. */
export const HYPHAE_VERSION = "0.1.0";
