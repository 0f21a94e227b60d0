/**
 * The Server-Server API's route table (`/_matrix/federation/*`), one section per area. Entries made
 * with `federation()` verify the `X-Matrix` signature before the handler runs and pass the origin.
 */
import type { HsRoute } from "../routeHelpers.ts";
import { at } from "../routeHelpers.ts";
import { getFederationVersion } from "./version.ts";

export const FEDERATION_ROUTES: HsRoute[] = [
  // --- discovery (version.ts) ---
  ...at("GET", "/_matrix/federation/v1/version", getFederationVersion),
];
