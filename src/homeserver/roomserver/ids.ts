/** Grammar checks for identifiers (appendices "Identifier Grammar"). */

/** `@localpart:server` with a non-empty localpart and server name. */
export function isUserId(s: string): boolean {
  if (s.length > 255 || !s.startsWith("@")) return false;
  const i = s.indexOf(":");
  return i > 1 && i < s.length - 1;
}

/** `#alias:server`. */
export function isRoomAlias(s: string): boolean {
  if (s.length > 255 || !s.startsWith("#")) return false;
  const i = s.indexOf(":");
  return i > 1 && i < s.length - 1;
}

/** `!opaque:server` (v1–v11) or `!opaque` (v12). */
export function isRoomId(s: string): boolean {
  return s.length <= 255 && s.startsWith("!") && s.length > 1;
}

/** The localpart given as `room_alias_name`: no `:`, no whitespace, not empty. */
export function isRoomAliasLocalpart(s: string): boolean {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  return s.length > 0 && s.length < 200 && !/[:\s#\u0000-\u001f\u007f-\u009f]/.test(s);
}

/** The server part of a user ID or alias. */
export function serverOf(id: string): string {
  return id.slice(id.indexOf(":") + 1);
}
