/**
 * Typed readers for request bodies: each throws the Matrix error a client should see (400
 * `M_BAD_JSON` naming the field) instead of letting a wrong type reach code that assumes the right one.
 */
import { CanonicalJsonError, canonicalJson } from "./crypto/canonicalJson.ts";
import { badJson } from "./errors.ts";

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
