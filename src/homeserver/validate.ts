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

/** Whether `v` is a JSON object (not null, not an array). */
export function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** `v` if it is a JSON object (not null, not an array), else undefined: for reading untrusted nested fields. */
export function asObject(v: unknown): Record<string, unknown> | undefined {
  return isObject(v) ? v : undefined;
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

/**
 * How deep a request body may nest objects and arrays. Deeper input would overflow the stack of the
 * recursive walks it meets later (canonical JSON, structured clone, JSON.stringify) and answer 500;
 * 128 is serde_json's limit, so Ruma-based servers refuse the same bodies.
 */
export const MAX_JSON_DEPTH = 128;

/** The deepest nesting of objects and arrays in JSON text (brackets inside strings do not count); iterative. */
export function jsonNestingDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (++depth > max) max = depth;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    }
  }
  return max;
}

/** The optional `reason` of a request body (membership changes, reports, redactions): 400 M_BAD_JSON unless a string. */
export function reasonOf(body: Record<string, unknown>): string | undefined {
  if (body.reason === undefined) return undefined;
  if (typeof body.reason !== "string") throw badJson("reason must be a string");
  return body.reason;
}
