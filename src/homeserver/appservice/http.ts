/**
 * Requests from the homeserver to an application service (Application Service API "Homeserver ->
 * Application Service API"): the `hs_token` as a Bearer token, JSON bodies, a timeout on every
 * call. Goes through the injected `fetch`, so the core needs no Node API.
 */
import type { AppService } from "./registration.ts";

/** The outcome of one call: the status and parsed JSON body, or (status 0) why no answer came. */
export interface AsResponse {
  ok: boolean;
  /** The HTTP status; 0 when no response came (see `failure`). */
  status: number;
  body: unknown;
  text: string;
  failure?: "timeout" | "connection";
}

/** A short description of a failed call for log lines. */
export function describeFailure(res: AsResponse): string {
  return res.status === 0 ? `${res.failure ?? "connection"}: ${res.text}` : `HTTP ${res.status}`;
}

/** How the homeserver reaches application services. */
export interface AsHttpOptions {
  fetch: typeof fetch;
  /**
   * Also send the token as the `access_token` query parameter, as specs before v1.4 required
   * (Synapse's `use_appservice_legacy_authorization`). Off by default: query strings end up in logs.
   */
  legacyAuth: boolean;
}

/** Calls `method path` on a service (which must have a `url`), with an optional JSON body. */
export async function callAppService(
  opts: AsHttpOptions,
  as: AppService,
  method: "GET" | "PUT" | "POST",
  path: string,
  query: Record<string, string> | URLSearchParams = {},
  body?: unknown,
  timeoutMs = 30_000,
  signal?: AbortSignal,
): Promise<AsResponse> {
  const base = as.registration.url;
  if (base === null) return { ok: false, status: 0, body: undefined, text: "the application service has no url", failure: "connection" };
  const params = new URLSearchParams(query);
  if (opts.legacyAuth) params.set("access_token", as.registration.hsToken);
  const qs = params.toString();
  const url = `${base}${path}${qs ? `?${qs}` : ""}`;
  let res: Response;
  try {
    res = await opts.fetch(url, {
      method,
      headers: { Authorization: `Bearer ${as.registration.hsToken}`, ...(body !== undefined ? { "Content-Type": "application/json" } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    const timeout = err instanceof Error && (err.name === "TimeoutError" || err.name === "AbortError");
    return { ok: false, status: 0, body: undefined, text: err instanceof Error ? err.message : String(err), failure: timeout ? "timeout" : "connection" };
  }
  let text = "";
  try {
    text = await res.text();
  } catch {
    // A body cut off midway is reported as an empty one; the status still tells the outcome.
  }
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  return { ok: res.ok, status: res.status, body: parsed, text };
}
