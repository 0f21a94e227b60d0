/** The server's published signing keys (server-server API "Publishing Keys"). */
import type { RequestContext } from "../context.ts";
import { badJson, invalidParam, notFound } from "../errors.ts";
import { isValidServerName } from "../rooms/ids.ts";
import { encodeBase64 } from "../crypto/base64.ts";
import { signJson } from "../crypto/signing.ts";
import { publicKeyFromSeed, publicKeyFromSeedAsync } from "../crypto/ed25519.ts";

/**
 * The P2P server name of a signing seed: the lowercase hex of its ed25519 public key (docs/DESIGN.md
 * "Identity and naming"); the Node runner and the Service Worker both name themselves with it.
 */
export function serverNameFromSeed(seed: Uint8Array): string {
  return hex(publicKeyFromSeed(seed));
}

/** {@link serverNameFromSeed} through WebCrypto where the runtime has it (the Service Worker's start-up). */
export async function serverNameFromSeedAsync(seed: Uint8Array): Promise<string> {
  return hex(await publicKeyFromSeedAsync(seed));
}

const hex = (bytes: Uint8Array): string => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

/** How far ahead `valid_until_ts` lies; other servers may cache the key until then. */
export const KEY_VALIDITY_MS = 7 * 24 * 60 * 60 * 1000;

/** `GET /_matrix/key/v2/server` (also the deprecated `GET /_matrix/key/v2/server/{keyId}`) */
export async function getServerKeys(ctx: RequestContext, params: Record<string, string>): Promise<Record<string, unknown>> {
  // The deprecated form names a key; servers answer with all their keys, or 404 for one they never had.
  if (params.keyId && params.keyId !== ctx.hs.signingKey.keyId) throw notFound("Unknown key ID");
  return ownKeyResponse(ctx.hs);
}

/** Our own `/key/v2/server` answer, signed. */
export async function ownKeyResponse(hs: RequestContext["hs"]): Promise<Record<string, unknown>> {
  const { keyId, signer } = hs.signingKey;
  return signJson(
    {
      server_name: hs.serverName,
      verify_keys: { [keyId]: { key: encodeBase64(signer.publicKey) } },
      old_verify_keys: {},
      valid_until_ts: hs.clock() + KEY_VALIDITY_MS,
    },
    hs.signingKey,
  );
}

/**
 * The notary answer for `servers` (server-server API "Querying Keys Through Another Server"): each
 * server's own signed answer (fetched when the cache holds none valid at the requested time),
 * countersigned by us. Servers whose keys cannot be found are left out.
 */
async function notaryAnswer(hs: RequestContext["hs"], servers: [string, number][]): Promise<Record<string, unknown>> {
  const out: Record<string, unknown>[] = [];
  for (const [server, minValid] of servers) {
    if (server === hs.serverName) {
      out.push(await ownKeyResponse(hs));
      continue;
    }
    for (const response of await hs.keyring.responsesFor(server, minValid, true)) out.push(await signJson(response, hs.signingKey));
  }
  return { server_keys: out };
}

/** The most servers one notary query may name (each may cost an outbound fetch). */
const MAX_NOTARY_SERVERS = 100;

/** `GET /_matrix/key/v2/query/{serverName}` */
export async function getKeyQuery(ctx: RequestContext, params: Record<string, string>): Promise<Record<string, unknown>> {
  const raw = ctx.query("minimum_valid_until_ts");
  const minValid = raw === undefined ? ctx.hs.clock() : Number(raw);
  if (!Number.isSafeInteger(minValid)) throw invalidParam("minimum_valid_until_ts must be an integer");
  if (!isValidServerName(params.serverName!)) throw invalidParam("Invalid server name");
  return notaryAnswer(ctx.hs, [[params.serverName!, minValid]]);
}

/** `POST /_matrix/key/v2/query` */
export async function postKeyQuery(ctx: RequestContext): Promise<Record<string, unknown>> {
  const body = await ctx.json();
  const serverKeys = body.server_keys;
  if (typeof serverKeys !== "object" || serverKeys === null || Array.isArray(serverKeys)) throw badJson("server_keys must be an object");
  const servers: [string, number][] = [];
  for (const [server, keys] of Object.entries(serverKeys as Record<string, unknown>)) {
    if (!isValidServerName(server)) throw badJson(`Invalid server name: ${server}`);
    if (typeof keys !== "object" || keys === null || Array.isArray(keys)) throw badJson(`server_keys.${server} must be an object`);
    let minValid = ctx.hs.clock();
    for (const criteria of Object.values(keys as Record<string, unknown>)) {
      const v = (criteria as { minimum_valid_until_ts?: unknown } | null)?.minimum_valid_until_ts;
      if (v !== undefined && !Number.isSafeInteger(v)) throw badJson("minimum_valid_until_ts must be an integer");
      if (typeof v === "number") minValid = Math.max(minValid, v);
    }
    servers.push([server, minValid]);
  }
  if (servers.length > MAX_NOTARY_SERVERS) throw badJson(`At most ${MAX_NOTARY_SERVERS} servers per query`);
  return notaryAnswer(ctx.hs, servers);
}
