/** The server's published signing keys (server-server API "Publishing Keys"). */
import type { RequestContext } from "../context.ts";
import { notFound } from "../errors.ts";
import { encodeBase64 } from "../crypto/base64.ts";
import { signJson } from "../crypto/signing.ts";
import { publicKeyFromSeed } from "../crypto/ed25519.ts";

/**
 * The P2P server name of a signing seed: the lowercase hex of its ed25519 public key (docs/DESIGN.md
 * "Identity and naming"); the Node runner and the Service Worker both name themselves with it.
 */
export function serverNameFromSeed(seed: Uint8Array): string {
  return Array.from(publicKeyFromSeed(seed), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** How far ahead `valid_until_ts` lies; other servers may cache the key until then. */
export const KEY_VALIDITY_MS = 7 * 24 * 60 * 60 * 1000;

/** `GET /_matrix/key/v2/server` (also the deprecated `GET /_matrix/key/v2/server/{keyId}`) */
export async function getServerKeys(ctx: RequestContext, params: Record<string, string>): Promise<Record<string, unknown>> {
  const hs = ctx.hs;
  const { keyId, signer } = hs.signingKey;
  // The deprecated form names a key; servers answer with all their keys, or 404 for one they never had.
  if (params.keyId && params.keyId !== keyId) throw notFound("Unknown key ID");
  const response = {
    server_name: hs.serverName,
    verify_keys: { [keyId]: { key: encodeBase64(signer.publicKey) } },
    old_verify_keys: {},
    valid_until_ts: hs.clock() + KEY_VALIDITY_MS,
  };
  return signJson(response, hs.signingKey);
}
