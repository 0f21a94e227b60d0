/**
 * The one identifier grammar (appendices, "Identifier Grammar"): server names, user IDs, room IDs,
 * room aliases, event IDs. Pure; the room rules, the client handlers and the directory all use it.
 */

const utf8Len = (s: string): number => new TextEncoder().encode(s).length;

/** Appendices "Server Name": `hostname [":" port]`, hostname = IPv4 / "[" IPv6 "]" / dns-name. */
export function isValidServerName(name: string): boolean {
  let host = name;
  let port: string | undefined;
  if (name.startsWith("[")) {
    const end = name.indexOf("]");
    if (end < 0) return false;
    host = name.slice(0, end + 1);
    const rest = name.slice(end + 1);
    if (rest !== "") {
      if (!rest.startsWith(":")) return false;
      port = rest.slice(1);
    }
    // "IPv6address = 2*45IPv6char", IPv6char = DIGIT / A-F / a-f / ":" / "."
    if (!/^\[[0-9A-Fa-f:.]{2,45}\]$/.test(host)) return false;
  } else {
    const i = name.lastIndexOf(":");
    if (i >= 0) {
      host = name.slice(0, i);
      port = name.slice(i + 1);
    }
    if (host.length === 0 || host.length > 255) return false;
    if (/^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)) {
      // "IPv4 literals must be a sequence of four decimal numbers in the range 0 to 255"
      if (host.split(".").some((p) => Number(p) > 255)) return false;
    } else if (!/^[0-9A-Za-z.-]+$/.test(host)) return false;
  }
  if (port !== undefined && !/^\d{1,5}$/.test(port)) return false;
  return true;
}

/** The server name after the first `:` of an identifier (`@user:server`, `!room:server`, `$id:server`). */
export function domainOf(id: string): string | undefined {
  const i = id.indexOf(":");
  return i < 0 ? undefined : id.slice(i + 1);
}

/**
 * Whether `id` is a user ID events may carry. Appendices "Historical User IDs": servers "MUST accept
 * user IDs with localparts consisting of any legal non-surrogate Unicode code points except for `:`
 * and `NUL`", including the empty string; the whole ID "MUST NOT exceed 255 bytes".
 */
export function isValidUserId(id: string): boolean {
  if (typeof id !== "string" || !id.startsWith("@") || utf8Len(id) > 255) return false;
  const i = id.indexOf(":");
  if (i < 0) return false;
  const local = id.slice(1, i);
  if (local.includes("\u0000") || /[\uD800-\uDFFF]/.test(local)) return false;
  return isValidServerName(id.slice(i + 1));
}

/** Whether a localpart is in the strict (non-historical) grammar: `a-z 0-9 . _ = - / +`, non-empty. */
export function isCompliantLocalpart(localpart: string): boolean {
  return /^[a-z0-9._=\-/+]+$/.test(localpart);
}

/** Whether `id` is a room ID of the given shape: `!opaque:domain`, or (v12) `!` + 43 URL-safe base64 chars. */
export function isValidRoomId(id: string, withDomain: boolean): boolean {
  if (typeof id !== "string" || !id.startsWith("!") || utf8Len(id) > 255) return false;
  if (!withDomain) return /^![A-Za-z0-9_-]{43}$/.test(id);
  const i = id.indexOf(":");
  return i > 0 && !id.slice(1, i).includes("\u0000") && isValidServerName(id.slice(i + 1));
}

/** Whether `id` is an event ID: `$` sigil, at most 255 bytes (appendices "Event IDs"). */
export function isValidEventId(id: unknown): id is string {
  return typeof id === "string" && id.startsWith("$") && id.length > 1 && utf8Len(id) <= 255;
}

/** Whether `id` is a user ID in the current grammar: a compliant, non-empty localpart and a server name. */
export function isCompliantUserId(id: string): boolean {
  if (!isValidUserId(id)) return false;
  return isCompliantLocalpart(id.slice(1, id.indexOf(":")));
}

/**
 * Whether `s` is a user ID a client may name (invites, upgrades): the historical grammar of
 * `isValidUserId` with a non-empty localpart.
 */
export function isUserId(s: string): boolean {
  return isValidUserId(s) && !s.startsWith("@:");
}

/**
 * `#alias:server` (appendices "Room Aliases"): a non-empty localpart without NUL, then a server
 * name; at most 255 bytes.
 */
export function isRoomAlias(s: string): boolean {
  if (typeof s !== "string" || !s.startsWith("#") || utf8Len(s) > 255) return false;
  const i = s.indexOf(":");
  return i > 1 && !s.slice(1, i).includes("\u0000") && isValidServerName(s.slice(i + 1));
}

/**
 * Whether `s` can name a room in a client request: `!` and something, at most 255 bytes. Room IDs
 * are opaque to clients ("Room IDs"), so any such string is looked up and an unknown one is a 404,
 * not a 400; `isValidRoomId` is the strict check for events.
 */
export function isRoomId(s: string): boolean {
  return typeof s === "string" && s.startsWith("!") && s.length > 1 && utf8Len(s) <= 255;
}

/** The localpart given as `room_alias_name`: no `:`, no whitespace, not empty. */
export function isRoomAliasLocalpart(s: string): boolean {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  return s.length > 0 && s.length < 200 && !/[:\s#\u0000-\u001f\u007f-\u009f]/.test(s);
}

/** The server part of a user ID or alias (everything after the first `:`; the whole string without one). */
export function serverOf(id: string): string {
  return domainOf(id) ?? id;
}
