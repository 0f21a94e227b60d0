/**
 * Matrix canonical JSON (appendix "Canonical JSON"): keys sorted by code point, no insignificant
 * whitespace, UTF-8, integers only in ±(2^53−1), lowercase `\u00xx` escapes only for control
 * characters without a short escape. The `canonicaljson` npm package implements another spec
 * (uppercase escapes, floats as `1.5E0`), see docs/notes/CANONICAL-JSON.md, so it is not used here.
 */

/** Thrown for values that have no canonical JSON form (floats, huge integers, undefined, …). */
export class CanonicalJsonError extends Error {
  override readonly name = "CanonicalJsonError";
}

const MAX_SAFE = 2 ** 53 - 1;
const HEX = "0123456789abcdef";

function escapeString(s: string): string {
  let out = '"';
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c !== 0x22 && c !== 0x5c) continue;
    out += s.slice(start, i);
    start = i + 1;
    switch (c) {
      case 0x22: out += '\\"'; break;
      case 0x5c: out += "\\\\"; break;
      case 0x08: out += "\\b"; break;
      case 0x09: out += "\\t"; break;
      case 0x0a: out += "\\n"; break;
      case 0x0c: out += "\\f"; break;
      case 0x0d: out += "\\r"; break;
      default: out += "\\u00" + HEX[c >> 4]! + HEX[c & 15]!;
    }
  }
  return out + s.slice(start) + '"';
}

/** Compares strings by Unicode code point (JS `<` compares UTF-16 code units, which differs above U+FFFF). */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // A surrogate (0xD800–0xDFFF) encodes a code point above 0xFFFF, so it sorts after 0xE000–0xFFFF.
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs !== ys) return xs ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}

function write(value: unknown, path: string): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "number":
      if (!Number.isInteger(value)) throw new CanonicalJsonError(`${path}: non-integer number ${value}`);
      if (Math.abs(value) > MAX_SAFE) throw new CanonicalJsonError(`${path}: integer out of range`);
      return value === 0 ? "0" : String(value);
    case "string":
      return escapeString(value);
    case "object": {
      if (Array.isArray(value)) return "[" + value.map((v, i) => write(v, `${path}[${i}]`)).join(",") + "]";
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj).sort(compareCodePoints);
      let out = "{";
      let first = true;
      for (const k of keys) {
        const v = obj[k];
        if (v === undefined) continue;
        out += (first ? "" : ",") + escapeString(k) + ":" + write(v, `${path}.${k}`);
        first = false;
      }
      return out + "}";
    }
    default:
      throw new CanonicalJsonError(`${path}: ${typeof value} has no JSON form`);
  }
}

/** The canonical JSON text of a value. Object properties that are `undefined` are omitted, as JSON.stringify does. */
export function canonicalJson(value: unknown): string {
  return write(value, "$");
}

const encoder = new TextEncoder();
/** The canonical JSON of a value as UTF-8 bytes: what is hashed and signed. */
export function canonicalJsonBytes(value: unknown): Uint8Array {
  return encoder.encode(canonicalJson(value));
}

/**
 * Whether a parsed value is acceptable under the strict canonical JSON rules (room versions ≥ 6
 * reject events with floats or out-of-range integers).
 */
export function isCanonicalValue(value: unknown): boolean {
  try {
    write(value, "$");
    return true;
  } catch (e) {
    if (e instanceof CanonicalJsonError) return false;
    throw e;
  }
}
