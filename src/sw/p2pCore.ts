/**
 * What the two worker scripts agree on (the core `hyphae-sw.js` and the libp2p side
 * `hyphae-p2p.js`), without importing either: the build (vite.config.ts) reads it.
 */

/** The global the libp2p script reads the shared core modules from (src/sw/p2pShared.ts). */
export const CORE_GLOBAL = "hyphaeCore";

/** The global the libp2p script defines (src/sw/p2pScript.ts). */
export const P2P_GLOBAL = "hyphaeP2P";

/** The libp2p script's file name, next to the worker script. */
export const P2P_SCRIPT = "hyphae-p2p.js";

/**
 * The core modules (paths under `src/`) the libp2p script takes from the core script instead of
 * carrying copies: one `MatrixError` and one `UnreachableError` class on both sides of `instanceof`.
 */
export const P2P_SHARED_PATHS = [
  "homeserver/context.ts",
  "homeserver/errors.ts",
  "homeserver/federation/keyring.ts",
  "homeserver/federation/transport.ts",
  "homeserver/http.ts",
] as const;
