/**
 * `multipart/mixed` (RFC 2046 §5.1) as the federation media endpoints use it: exactly two parts, a
 * JSON metadata object, then the media (or a `Location` to fetch it from). Written here rather than
 * taken from a library because the multipart parsers on npm read `multipart/form-data` into Node
 * streams (busboy, formidable) and this must run in a Service Worker too; the format is small.
 */

/** One part: its headers (names lower-cased) and body bytes. */
export interface Part {
  headers: Map<string, string>;
  body: Uint8Array;
}

const CRLF = "\r\n";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A fresh boundary: 32 hex characters, which cannot occur in JSON text or collide by chance. */
export function newBoundary(random: (n: number) => Uint8Array): string {
  return [...random(16)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Joins parts into a body; `boundary` must not occur in any part (callers use `newBoundary`). */
export function encodeMultipart(boundary: string, parts: { headers: Record<string, string>; body: Uint8Array }[]): Uint8Array {
  const chunks: Uint8Array[] = [];
  for (const p of parts) {
    const head = `--${boundary}${CRLF}${Object.entries(p.headers).map(([k, v]) => `${k}: ${v}${CRLF}`).join("")}${CRLF}`;
    chunks.push(encoder.encode(head), p.body, encoder.encode(CRLF));
  }
  chunks.push(encoder.encode(`--${boundary}--${CRLF}`));
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** The `boundary` parameter of a `multipart/mixed` Content-Type, or undefined for any other type. */
export function multipartBoundary(contentType: string | null): string | undefined {
  if (!contentType) return undefined;
  const [type, ...params] = contentType.split(";");
  if (type!.trim().toLowerCase() !== "multipart/mixed") return undefined;
  for (const p of params) {
    const eq = p.indexOf("=");
    if (eq < 0 || p.slice(0, eq).trim().toLowerCase() !== "boundary") continue;
    let v = p.slice(eq + 1).trim();
    if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1);
    // RFC 2046: 1 to 70 characters.
    return v.length >= 1 && v.length <= 70 ? v : undefined;
  }
  return undefined;
}

function indexOf(haystack: Uint8Array, needle: Uint8Array, from: number): number {
  const first = needle[0];
  outer: for (let i = haystack.indexOf(first!, from); i >= 0 && i + needle.length <= haystack.length; i = haystack.indexOf(first!, i + 1)) {
    for (let j = 1; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/**
 * Splits a multipart body into its parts; undefined when it is not well-formed (no closing
 * delimiter, a part without the blank line after its headers). The preamble and epilogue are
 * ignored, as RFC 2046 says.
 */
export function parseMultipart(body: Uint8Array, boundary: string): Part[] | undefined {
  const dash = encoder.encode(`--${boundary}`);
  const delimiter = encoder.encode(`${CRLF}--${boundary}`);
  // The first delimiter may open the body (no CRLF before it).
  let at = body.length >= dash.length && indexOf(body.subarray(0, dash.length), dash, 0) === 0 ? 0 : indexOf(body, delimiter, 0);
  if (at < 0) return undefined;
  at += at === 0 && body[0] === 0x2d ? dash.length : delimiter.length;
  const parts: Part[] = [];
  for (;;) {
    // After a delimiter: "--" closes; else optional whitespace, then CRLF starts the part.
    if (body[at] === 0x2d && body[at + 1] === 0x2d) return parts;
    while (body[at] === 0x20 || body[at] === 0x09) at++;
    if (body[at] !== 0x0d || body[at + 1] !== 0x0a) return undefined;
    at += 2;
    const next = indexOf(body, delimiter, at);
    if (next < 0) return undefined;
    const part = body.subarray(at, next);
    const blank = indexOf(part, encoder.encode(CRLF + CRLF), 0);
    let headerText: string;
    let content: Uint8Array;
    if (part.length >= 2 && part[0] === 0x0d && part[1] === 0x0a) {
      headerText = "";
      content = part.subarray(2);
    } else {
      if (blank < 0) return undefined;
      headerText = decoder.decode(part.subarray(0, blank));
      content = part.subarray(blank + 4);
    }
    const headers = new Map<string, string>();
    for (const line of headerText.split(CRLF)) {
      const colon = line.indexOf(":");
      if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    parts.push({ headers, body: content });
    at = next + delimiter.length;
  }
}

/** The file name of a `Content-Disposition` value (RFC 6266: `filename*` wins over `filename`). */
export function dispositionFilename(value: string | null | undefined): string | undefined {
  if (!value) return undefined;
  const star = /filename\*\s*=\s*([^']*)'[^']*'([^;]+)/i.exec(value);
  if (star) {
    try {
      return decodeURIComponent(star[2]!.trim());
    } catch {
      // A malformed encoding: fall back to the plain parameter.
    }
  }
  const quoted = /filename\s*=\s*"((?:[^"\\]|\\.)*)"/i.exec(value);
  if (quoted) return quoted[1]!.replace(/\\(.)/g, "$1");
  const plain = /filename\s*=\s*([^;\s]+)/i.exec(value);
  return plain ? plain[1] : undefined;
}
