/** Small helpers for building responses and reading requests, shared by every handler. */
import { MatrixError, badJson, notJson, tooLarge } from "./errors.ts";
import { MAX_JSON_DEPTH, jsonNestingDepth } from "./validate.ts";

/** Headers the spec requires on every Client-Server response ("Web Browser Clients"). */
export const CORS_HEADERS: Readonly<Record<string, string>> = {
  "Access-Control-Allow-Origin": "*",
  "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
  "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization",
};

/** A JSON response with CORS headers. */
export function jsonResponse(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...CORS_HEADERS, ...headers },
  });
}

/** The response for a MatrixError. */
export function errorResponse(err: MatrixError): Response {
  return jsonResponse(err.toJSON(), err.status, err.headers);
}

/**
 * The largest JSON body an endpoint reads unless {@link jsonBodyLimit} names a larger one: a PDU is
 * at most 64 KiB ("Size limits" in the server-server API), so no event content, and no other small
 * request (account data, filters…), needs more.
 */
export const JSON_BODY_LIMIT = 64 * 1024;
const MiB = 1024 * 1024;
/**
 * Endpoints whose bodies legitimately carry many items: key uploads and queries (one-time keys,
 * every device of many users), to-device fan-out, key backup batches, and room creation with
 * initial state. Profile fields get twice the profile limit, so that an oversized one is answered
 * with the spec's `M_PROFILE_TOO_LARGE` rather than a bare 413. key = regex on the path → byte limit.
 */
const LARGER_JSON_BODIES: readonly [RegExp, number][] = [
  [/\/keys\/(upload|query|claim|device_signing\/upload|signatures\/upload)$/, MiB],
  [/\/sendToDevice\//, MiB],
  [/\/room_keys\/keys(\/|$)/, 16 * MiB],
  [/\/createRoom$/, MiB],
  [/\/profile\//, 128 * 1024],
  // A federation transaction carries up to 50 PDUs of 64 KiB and 100 EDUs.
  [/^\/_matrix\/federation\//, 8 * MiB],
  [/^\/_matrix\/key\/v2\/query/, MiB],
];
/** The largest JSON body any endpoint accepts (the Node listener's cap for non-media requests). */
export const MAX_JSON_BODY_LIMIT = Math.max(JSON_BODY_LIMIT, ...LARGER_JSON_BODIES.map(([, n]) => n));

/** The JSON body limit of the endpoint at `path`. */
export function jsonBodyLimit(path: string): number {
  return LARGER_JSON_BODIES.find(([re]) => re.test(path))?.[1] ?? JSON_BODY_LIMIT;
}

/** Whether `path` is a media upload, whose raw body may be as large as the upload limit. */
export function isMediaUpload(path: string): boolean {
  return /^\/_matrix\/media\/(v3|r0)\/upload(\/|$)/.test(path);
}

/**
 * Refuses (`413 M_TOO_LARGE`) a body whose declared length is over `max`, before anything reads
 * it; the reader below catches an undeclared (chunked) one.
 */
export function checkDeclaredLength(request: Request | Response, max: number): void {
  const declared = request.headers.get("Content-Length");
  if (declared !== null && Number(declared) > max) throw tooLarge(`Request body is larger than the ${max} byte limit`);
}

/**
 * Reads the request body (or another server's response body), refusing (413 M_TOO_LARGE) past
 * `max` bytes without buffering more.
 */
export async function readBodyBytes(request: Request | Response, max: number): Promise<Uint8Array> {
  checkDeclaredLength(request, max);
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      // Not awaited: on a cloned request (ctx.json reads a copy) cancelling one branch of the tee
      // settles only once the other branch is cancelled too.
      reader.cancel().catch(() => {});
      throw tooLarge(`Request body is larger than the ${max} byte limit`);
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.byteLength;
  }
  return out;
}

/** Decodes UTF-8 strictly: JSON text must be valid UTF-8 (RFC 8259 §8.1), not silently repaired. */
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Parses a JSON object body of at most `maxBytes`: `413 M_TOO_LARGE` past that (checked before
 * parsing), `M_NOT_JSON` if it isn't UTF-8 JSON, `M_BAD_JSON` if it isn't an object.
 */
export async function readJsonObject(request: Request, { allowEmpty = false, maxBytes = JSON_BODY_LIMIT } = {}): Promise<Record<string, unknown>> {
  return parseJsonObject(await readBodyBytes(request, maxBytes), { allowEmpty });
}

/** `readJsonObject` of a body already read: `M_NOT_JSON` if it isn't UTF-8 JSON, `M_BAD_JSON` if it isn't an object. */
export function parseJsonObject(bytes: Uint8Array, { allowEmpty = false } = {}): Record<string, unknown> {
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    throw notJson("Request body is not valid UTF-8");
  }
  if (text.trim() === "") {
    if (allowEmpty) return {};
    throw notJson("Request body is empty");
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw notJson();
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw badJson("Request body must be a JSON object");
  if (jsonNestingDepth(text) > MAX_JSON_DEPTH) throw badJson(`Request body nests deeper than ${MAX_JSON_DEPTH} levels`);
  return parsed as Record<string, unknown>;
}

/** A URL for a log line: the `access_token` query parameter (deprecated, but clients send it) is masked. */
export function redactUrl(url: string): string {
  return url.replace(/([?&]access_token=)[^&#]*/gi, "$1<redacted>");
}

export { MatrixError };
