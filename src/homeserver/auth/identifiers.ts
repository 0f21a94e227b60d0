/** User identifiers (client-server API "Identifier types") and localpart rules ("User Identifiers"). */
import { MatrixError, badJson, invalidUsername } from "../errors.ts";
import { isCompliantLocalpart } from "../rooms/ids.ts";
import { isObject } from "../validate.ts";

/** What an `identifier` (or the legacy `user` / `medium`+`address` fields) names. */
export type Identifier = { type: "m.id.user"; user: string } | { type: "m.id.thirdparty" | "m.id.phone" };

/** Reads the identifier of a login or `m.login.password` auth dict. */
export function readIdentifier(body: Record<string, unknown>): Identifier {
  const id = body.identifier;
  if (id !== undefined) {
    if (!isObject(id)) throw badJson("identifier must be an object");
    const i = id;
    switch (i.type) {
      case "m.id.user":
        if (typeof i.user !== "string") throw badJson("identifier.user must be a string");
        return { type: "m.id.user", user: i.user };
      case "m.id.thirdparty":
      case "m.id.phone":
        return { type: i.type };
      default:
        throw new MatrixError(400, "M_UNKNOWN", "Unknown identifier type");
    }
  }
  // Deprecated forms: a top-level `user`, or `medium` + `address`.
  if (typeof body.user === "string") return { type: "m.id.user", user: body.user };
  if (typeof body.medium === "string" && typeof body.address === "string") return { type: "m.id.thirdparty" };
  throw badJson("Missing identifier");
}

/** The full user ID for a localpart or a user ID on this server; undefined for other servers or junk. */
export function resolveUserId(user: string, serverName: string): string | undefined {
  let localpart = user;
  if (user.startsWith("@")) {
    const colon = user.indexOf(":");
    if (colon < 0 || user.slice(colon + 1) !== serverName) return undefined;
    localpart = user.slice(1, colon);
  }
  // Logins are case-insensitive on the localpart: registration only creates lowercase IDs.
  localpart = localpart.toLowerCase();
  return isCompliantLocalpart(localpart) ? `@${localpart}:${serverName}` : undefined;
}

/** The user ID named by an auth dict, or undefined. */
export function userIdFromIdentifier(body: Record<string, unknown>, serverName: string): string | undefined {
  let id: Identifier;
  try {
    id = readIdentifier(body);
  } catch {
    return undefined;
  }
  return id.type === "m.id.user" ? resolveUserId(id.user, serverName) : undefined;
}

/** Checks a localpart chosen at registration; `M_INVALID_USERNAME` otherwise. */
export function validateLocalpart(localpart: string, serverName: string): void {
  if (localpart === "") throw invalidUsername("User ID cannot be empty");
  // appendices "User Identifiers": user_id_char = DIGIT / %x61-7A / "-" / "." / "=" / "_" / "/" / "+"
  if (!isCompliantLocalpart(localpart)) throw invalidUsername("User ID can only contain characters a-z, 0-9, or '=_-./+'");
  // "The length of a user ID, including the @ sigil and the domain, MUST NOT exceed 255 bytes."
  if (new TextEncoder().encode(`@${localpart}:${serverName}`).length > 255) throw invalidUsername("User ID is too long");
}
