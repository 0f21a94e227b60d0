/**
 * Request authentication between servers (server-server API "Request Authentication"): the
 * `Authorization: X-Matrix …` header, written for outbound requests and checked on inbound ones.
 */
import { encodeBase64, tryDecodeBase64 } from "../crypto/base64.ts";
import { canonicalJsonBytes } from "../crypto/canonicalJson.ts";
import type { Ed25519Verifier } from "../crypto/ed25519.ts";
import type { SigningKey } from "../crypto/signing.ts";
import { isValidServerName } from "../rooms/ids.ts";

/** The parameters of one `X-Matrix` header. */
export interface XMatrixParams {
  origin: string;
  /** Absent from servers older than v1.3; the receiver then assumes itself. */
  destination?: string;
  key: string;
  sig: string;
}

/** What the signature covers: the request's method, target (path and query), both names and body. */
export function signedRequestJson(method: string, uri: string, origin: string, destination: string, content: unknown): Record<string, unknown> {
  return { method, uri, origin, destination, ...(content !== undefined ? { content } : {}) };
}

/** The `Authorization` header value for an outbound request (the spec's compatible spelling). */
export async function authorizationHeader(key: SigningKey, destination: string, method: string, uri: string, content?: unknown): Promise<string> {
  const json = signedRequestJson(method, uri, key.entity, destination, content);
  const sig = encodeBase64(await key.signer.sign(canonicalJsonBytes(json)));
  return `X-Matrix origin="${key.entity}",destination="${destination}",key="${key.keyId}",sig="${sig}"`;
}

// RFC 9110 `token` characters.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/;

/**
 * Parses an `X-Matrix` Authorization header (RFC 9110 §11.4: case-insensitive names in any order,
 * token or quoted values with backslash escapes, optional whitespace around commas; colons allowed
 * unquoted for older servers). Undefined when it is not a well-formed X-Matrix header.
 */
export function parseXMatrix(header: string): XMatrixParams | undefined {
  const m = /^X-Matrix +/i.exec(header);
  if (!m) return undefined;
  let rest = header.slice(m[0].length);
  const params: Record<string, string> = {};
  while (rest.length > 0) {
    const name = TOKEN.exec(rest);
    if (!name || rest[name[0].length] !== "=") return undefined;
    rest = rest.slice(name[0].length + 1);
    let value: string;
    if (rest.startsWith('"')) {
      let i = 1;
      value = "";
      for (; i < rest.length && rest[i] !== '"'; i++) {
        if (rest[i] === "\\") i++;
        if (i < rest.length) value += rest[i];
      }
      if (i >= rest.length) return undefined;
      rest = rest.slice(i + 1);
    } else {
      const v = /^[!#$%&'*+\-.^_`|~0-9A-Za-z:]+/.exec(rest);
      if (!v) return undefined;
      value = v[0];
      rest = rest.slice(v[0].length);
    }
    const lower = name[0].toLowerCase();
    if (!(lower in params)) params[lower] = value;
    const sep = /^[ \t]*(,[ \t]*)?/.exec(rest)!;
    if (!sep[1] && sep[0].length !== rest.length) return undefined;
    rest = rest.slice(sep[0].length);
  }
  const { origin, destination, key, sig } = params;
  if (!origin || !key || !sig) return undefined;
  return { origin, key, sig, ...(destination !== undefined ? { destination } : {}) };
}

/** Why an inbound request's authentication failed (answered `401 M_UNAUTHORIZED`). */
export type XMatrixFailure = "missing" | "malformed" | "wrong-destination" | "unknown-key" | "bad-signature";

/**
 * Checks one inbound request's `X-Matrix` header against `ourName`; resolves with the origin, or
 * with the failure. `lookupKey` finds the origin's key valid now (fetching it if need be).
 */
export async function verifyXMatrix(
  header: string | null,
  request: { method: string; uri: string; content: unknown },
  ourName: string,
  lookupKey: (server: string, keyId: string) => Promise<Uint8Array | undefined>,
  verifier: Ed25519Verifier,
): Promise<{ origin: string } | { failure: XMatrixFailure }> {
  if (!header) return { failure: "missing" };
  // Several X-Matrix headers arrive joined by ", " through fetch's Headers; the first one decides.
  const params = parseXMatrix(header.split(/,[ \t]*(?=X-Matrix )/i)[0]!);
  if (!params || !isValidServerName(params.origin) || !params.key.startsWith("ed25519:")) return { failure: "malformed" };
  if (params.destination !== undefined && params.destination !== ourName) return { failure: "wrong-destination" };
  const sig = tryDecodeBase64(params.sig);
  if (!sig) return { failure: "malformed" };
  const publicKey = await lookupKey(params.origin, params.key);
  if (!publicKey) return { failure: "unknown-key" };
  const json = signedRequestJson(request.method, request.uri, params.origin, params.destination ?? ourName, request.content);
  return (await verifier.verify(publicKey, canonicalJsonBytes(json), sig)) ? { origin: params.origin } : { failure: "bad-signature" };
}
