/**
 * Helpers for untrusted input: checks that throw the Matrix error a client should see (400
 * `M_BAD_JSON` naming what is wrong) instead of letting a bad value reach code that assumes a good
 * one, and maps safe to key by client-chosen strings.
 */
import { CanonicalJsonError, canonicalJson } from "./crypto/canonicalJson.ts";
import { badJson, invalidParam } from "./errors.ts";
import type { RequestContext } from "./context.ts";

/**
 * Requires a value that has a canonical JSON form (no floats, integers within ±(2^53−1)): signed
 * JSON (device keys, cross-signing keys, events) is compared and verified in that form
 * ("Canonical JSON" appendix), so anything else is `400 M_BAD_JSON`.
 */
export function requireCanonicalJson(value: unknown, what = "Request body"): void {
  try {
    canonicalJson(value);
  } catch (e) {
    if (e instanceof CanonicalJsonError) throw badJson(`${what} is not canonical JSON: ${e.message}`);
    throw e;
  }
}

/**
 * An empty map with no prototype, for building responses keyed by client-chosen strings: with a
 * plain `{}`, the key `__proto__` reads Object.prototype and assigning it replaces the prototype.
 * JSON.stringify serialises it like any object.
 */
export function dict<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

/** The largest page a `limit` asks for unless an endpoint sets its own cap. */
export const MAX_LIMIT = 1000;

/** Reads a `limit` query parameter: the default when absent, capped at `max`, 400 M_INVALID_PARAM unless a non-negative integer. */
export function limitParam(ctx: RequestContext, def: number, max = MAX_LIMIT): number {
  const raw = ctx.query("limit");
  if (raw === undefined) return def;
  if (!/^\d+$/.test(raw)) throw invalidParam("limit must be a non-negative integer");
  return Math.min(Number(raw), max);
}
