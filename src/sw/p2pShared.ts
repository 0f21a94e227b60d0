/**
 * The core modules the libp2p script (`hyphae-p2p.js`) uses from the core worker script, by their
 * paths in {@link P2P_SHARED_PATHS}. The worker build marks them external in the libp2p script and
 * reads them from `globalThis.hyphaeCore`, which {@link exposeCore} fills before the script is
 * imported (vite.config.ts fails the build if the script needs any other core module).
 */
import * as context from "../homeserver/context.ts";
import * as errors from "../homeserver/errors.ts";
import * as keyring from "../homeserver/federation/keyring.ts";
import * as federationTransport from "../homeserver/federation/transport.ts";
import * as http from "../homeserver/http.ts";
import { CORE_GLOBAL } from "./p2pCore.ts";
import type { P2P_SHARED_PATHS } from "./p2pCore.ts";

/** Each shared module by its path under `src/`. */
export const P2P_SHARED_MODULES: Readonly<Record<(typeof P2P_SHARED_PATHS)[number], object>> = {
  "homeserver/context.ts": context,
  "homeserver/errors.ts": errors,
  "homeserver/federation/keyring.ts": keyring,
  "homeserver/federation/transport.ts": federationTransport,
  "homeserver/http.ts": http,
};

/** Makes the shared modules visible to the libp2p script (before `importScripts`). */
export function exposeCore(): void {
  (globalThis as Record<string, unknown>)[CORE_GLOBAL] = P2P_SHARED_MODULES;
}
