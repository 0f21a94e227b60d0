/**
 * Which endpoints a guest account may call (client-server API "Guest access", Client behaviour).
 * One allow-list checked where an access token is resolved, so a new endpoint is closed to guests
 * until someone adds it here; everything else answers `403 M_GUEST_ACCESS_FORBIDDEN`.
 */
import { Router } from "../router.ts";
import type { Method, Route } from "../router.ts";

/** One allowed endpoint; `when` narrows it by query (peeking `/events` needs `room_id`). */
interface GuestEndpoint {
  method: Method;
  /** Path below `/_matrix/client/{v3,r0}`, or a full path starting with `/_matrix/`. */
  path: string;
  when?: (url: URL) => boolean;
}

const GUEST_ENDPOINTS: readonly GuestEndpoint[] = [
  // "for retrieving events and associated media"
  { method: "GET", path: "/rooms/{roomId}/state" },
  { method: "GET", path: "/rooms/{roomId}/context/{eventId}" },
  { method: "GET", path: "/rooms/{roomId}/event/{eventId}" },
  { method: "GET", path: "/rooms/{roomId}/state/{eventType}/{stateKey?}" },
  { method: "GET", path: "/rooms/{roomId}/messages" },
  { method: "GET", path: "/rooms/{roomId}/members" },
  { method: "GET", path: "/rooms/{roomId}/initialSync" },
  { method: "GET", path: "/sync" },
  // "GET /events as used for room previews": the peekEvents form, which names the room.
  { method: "GET", path: "/events", when: (url) => url.searchParams.has("room_id") },
  { method: "GET", path: "/_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName?}" },
  { method: "GET", path: "/_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}" },
  // "for sending events"
  { method: "POST", path: "/rooms/{roomId}/join" },
  // The same join by room ID or alias. Not in the module's list, but it is the join the spec
  // lists reached by another path (matrix-js-sdk's joinRoom uses only this one; Synapse allows it).
  { method: "POST", path: "/join/{roomIdOrAlias}" },
  { method: "POST", path: "/rooms/{roomId}/leave" },
  { method: "PUT", path: "/rooms/{roomId}/send/{eventType}/{txnId}" },
  { method: "PUT", path: "/rooms/{roomId}/state/{eventType}/{stateKey?}" },
  { method: "PUT", path: "/sendToDevice/{eventType}/{txnId}" },
  // "for their own account maintenance": of the profile, only the display name.
  { method: "PUT", path: "/profile/{userId}/displayname" },
  { method: "DELETE", path: "/profile/{userId}/displayname" },
  { method: "GET", path: "/devices" },
  { method: "GET", path: "/devices/{deviceId}" },
  { method: "PUT", path: "/devices/{deviceId}" },
  { method: "GET", path: "/account/whoami" },
  // "for end-to-end encryption"
  { method: "POST", path: "/keys/upload" },
  { method: "POST", path: "/keys/query" },
  { method: "POST", path: "/keys/claim" },
];

/** A route of the allow-list; the router keeps extra fields, so `when` comes back with a match. */
interface GuestRoute extends Route<unknown> {
  when?: (url: URL) => boolean;
}

/** The allow-list never dispatches; it only matches. */
const neverCalled = (): Promise<never> => Promise.reject(new Error("the guest allow-list only matches routes"));

/** The allow-list as a route table (the main router's matching, `v3` and `r0` alike). */
const guestRouter = new Router<unknown>(
  GUEST_ENDPOINTS.flatMap(({ method, path, when }) => {
    const paths = path.startsWith("/_matrix/") ? [path] : [`/_matrix/client/v3${path}`, `/_matrix/client/r0${path}`];
    return paths.map((p): GuestRoute => ({ method, path: p, handler: neverCalled, when }));
  }),
);

/** Whether a guest may make this request (method and URL as received). */
export function guestMayUse(method: string, url: URL): boolean {
  let found: ReturnType<typeof guestRouter.match>;
  try {
    found = guestRouter.match(method, url.pathname);
  } catch {
    return false; // a malformed path; the main router answers it
  }
  if (found === undefined || found === "wrong-method") return false;
  return (found.route as GuestRoute).when?.(url) ?? true;
}
