/** Small helpers for building responses and reading requests, shared by every handler. */
import { MatrixError, badJson, notJson } from "./errors.ts";
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

/** Parses a JSON object body; `M_NOT_JSON` if it isn't JSON, `M_BAD_JSON` if it isn't an object. */
export async function readJsonObject(request: Request, { allowEmpty = false } = {}): Promise<Record<string, unknown>> {
  const text = await request.text();
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

export { MatrixError };
