/**
 * The route table: every endpoint this homeserver serves, in one list. Each area of the spec
 * adds its entries in its own section below. What is not here answers `404 M_UNRECOGNIZED`.
 */
import type { HsRoute } from "./routeHelpers.ts";
import { at, client } from "./routeHelpers.ts";
import { getVersions, getWellKnownClient } from "./client/versions.ts";
import * as keys from "./client/keys.ts";
import * as toDevice from "./client/toDevice.ts";
import * as backup from "./client/backup.ts";

export const ROUTES: HsRoute[] = [
  // --- discovery ---
  ...at("GET", "/_matrix/client/versions", getVersions),
  ...at("GET", "/.well-known/matrix/client", getWellKnownClient),

  // --- accounts, login, devices (client/account.ts, client/login.ts) ---

  // --- admin (admin/register.ts) ---

  // --- server keys (keys/server.ts) ---

  // --- rooms, membership, events (client/rooms.ts, client/membership.ts, client/messages.ts) ---

  // --- sync, filters (client/sync.ts, client/filters.ts) ---

  // --- ephemeral, account data, profile, presence, push (client/*.ts) ---

  // --- directory, aliases, user directory (client/directory.ts) ---

  // --- end-to-end encryption (client/keys.ts, client/toDevice.ts, client/backup.ts) ---
  ...client("POST", "/keys/upload", keys.postKeysUpload),
  ...client("POST", "/keys/query", keys.postKeysQuery),
  ...client("POST", "/keys/claim", keys.postKeysClaim),
  ...client("GET", "/keys/changes", keys.getKeysChanges),
  ...client("POST", "/keys/device_signing/upload", keys.postDeviceSigningUpload),
  ...client("POST", "/keys/signatures/upload", keys.postSignaturesUpload),
  ...client("PUT", "/sendToDevice/{eventType}/{txnId}", toDevice.putSendToDevice),
  ...client("POST", "/room_keys/version", backup.postRoomKeysVersion),
  ...client("GET", "/room_keys/version", backup.getRoomKeysVersion),
  ...client("GET", "/room_keys/version/{version}", backup.getRoomKeysVersion),
  ...client("PUT", "/room_keys/version/{version}", backup.putRoomKeysVersion),
  ...client("DELETE", "/room_keys/version/{version}", backup.deleteRoomKeysVersion),
  ...client("GET", "/room_keys/keys", backup.getRoomKeys),
  ...client("PUT", "/room_keys/keys", backup.putRoomKeys),
  ...client("DELETE", "/room_keys/keys", backup.deleteRoomKeys),
  ...client("GET", "/room_keys/keys/{roomId}", backup.getRoomKeys),
  ...client("PUT", "/room_keys/keys/{roomId}", backup.putRoomKeys),
  ...client("DELETE", "/room_keys/keys/{roomId}", backup.deleteRoomKeys),
  ...client("GET", "/room_keys/keys/{roomId}/{sessionId}", backup.getRoomKeys),
  ...client("PUT", "/room_keys/keys/{roomId}/{sessionId}", backup.putRoomKeys),
  ...client("DELETE", "/room_keys/keys/{roomId}/{sessionId}", backup.deleteRoomKeys),

  // --- media (media/*.ts) ---
];
