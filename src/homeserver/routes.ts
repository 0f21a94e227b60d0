/**
 * The route table: every endpoint this homeserver serves, in one list. Each area of the spec
 * adds its entries in its own section below. What is not here answers `404 M_UNRECOGNIZED`.
 */
import type { HsRoute } from "./routeHelpers.ts";
import { at, client } from "./routeHelpers.ts";
import { getVersions, getWellKnownClient } from "./client/versions.ts";
import { getHealth } from "./health.ts";
import * as account from "./client/account.ts";
import * as login from "./client/login.ts";
import * as devices from "./client/devices.ts";
import { getAdminRegisterNonce, postAdminRegister } from "./admin/register.ts";
import * as registrationTokens from "./admin/registrationTokens.ts";
import * as refresh from "./client/refresh.ts";
import * as admin from "./client/admin.ts";
import * as openid from "./client/openid.ts";
import { getOpenIdUserInfo } from "./federation/openid.ts";
import { getWellKnownSupport } from "./client/support.ts";
import { getKeyQuery, getServerKeys, postKeyQuery } from "./keys/server.ts";
import { FEDERATION_ROUTES } from "./federation/routes.ts";
import * as keys from "./client/keys.ts";
import * as toDevice from "./client/toDevice.ts";
import * as backup from "./client/backup.ts";
import * as media from "./media/media.ts";

import * as rooms from "./client/rooms.ts";
import * as membership from "./client/membership.ts";
import * as messages from "./client/messages.ts";
import * as relations from "./client/relations.ts";
import * as directory from "./client/directory.ts";
import * as upgrade from "./client/upgrade.ts";
import * as hierarchy from "./client/hierarchy.ts";
import * as mutualRooms from "./client/mutualRooms.ts";
import * as roomSummary from "./client/roomSummary.ts";
import * as events from "./client/events.ts";
import * as thirdparty from "./client/thirdparty.ts";
import * as search from "./client/search.ts";
import * as report from "./client/report.ts";
import * as sync from "./client/sync.ts";
import * as filters from "./client/filters.ts";
import * as profile from "./client/profile.ts";
import * as presence from "./client/presence.ts";
import * as typing from "./client/typing.ts";
import * as receipts from "./client/receipts.ts";
import * as accountData from "./client/accountData.ts";
import * as pushRules from "./client/pushRules.ts";
import * as pushers from "./client/pushers.ts";
import * as notifications from "./client/notifications.ts";
import * as capabilities from "./client/capabilities.ts";
import * as voip from "./client/voip.ts";
import { postAppservicePing } from "./appservice/client.ts";
export const ROUTES: HsRoute[] = [
  // --- discovery ---
  ...at("GET", "/_matrix/client/versions", getVersions),
  ...at("GET", "/.well-known/matrix/client", getWellKnownClient),
  // Operators' health check (health.ts), as Synapse serves it.
  ...at("GET", "/health", getHealth),

  // --- accounts, login, devices (client/account.ts, client/login.ts) ---
  ...client("POST", "/register", account.postRegister),
  ...client("GET", "/register/available", account.getRegisterAvailable),
  ...at("GET", "/_matrix/client/v1/register/m.login.registration_token/validity", account.getRegistrationTokenValidity),
  ...client("POST", "/register/email/requestToken", account.postRequestToken),
  ...client("POST", "/register/msisdn/requestToken", account.postRequestToken),
  ...client("GET", "/login", login.getLogin),
  ...client("POST", "/login", login.postLogin),
  ...at("POST", "/_matrix/client/v1/login/get_token", login.postLoginGetToken),
  ...client("POST", "/logout", login.postLogout),
  ...client("POST", "/logout/all", login.postLogoutAll),
  ...client("POST", "/refresh", refresh.postRefresh),
  ...client("GET", "/account/whoami", account.getWhoami),
  ...client("POST", "/account/password", account.postAccountPassword),
  ...client("POST", "/account/password/email/requestToken", account.postRequestToken),
  ...client("POST", "/account/password/msisdn/requestToken", account.postRequestToken),
  ...client("POST", "/account/deactivate", account.postAccountDeactivate),
  ...client("GET", "/account/3pid", account.getAccount3pids),
  ...client("POST", "/account/3pid", account.postAccount3pids),
  ...client("POST", "/account/3pid/add", account.postAccount3pidAdd),
  ...client("POST", "/account/3pid/bind", account.postAccount3pidBind),
  ...client("POST", "/account/3pid/delete", account.postAccount3pidDelete),
  ...client("POST", "/account/3pid/unbind", account.postAccount3pidDelete),
  ...client("POST", "/account/3pid/email/requestToken", account.postRequestToken),
  ...client("POST", "/account/3pid/msisdn/requestToken", account.postRequestToken),
  ...client("GET", "/devices", devices.getDevices),
  ...client("GET", "/devices/{deviceId}", devices.getDevice),
  ...client("PUT", "/devices/{deviceId}", devices.putDevice),
  ...client("DELETE", "/devices/{deviceId}", devices.deleteDevice),
  ...client("POST", "/delete_devices", devices.postDeleteDevices),
  ...client("POST", "/user/{userId}/openid/request_token", openid.postOpenIdRequestToken),
  ...at("GET", "/_matrix/federation/v1/openid/userinfo", getOpenIdUserInfo),

  // --- admin (admin/register.ts) ---
  ...at("GET", "/_synapse/admin/v1/register", getAdminRegisterNonce),
  ...at("POST", "/_synapse/admin/v1/register", postAdminRegister),
  ...at("GET", "/_synapse/admin/v1/registration_tokens", registrationTokens.getRegistrationTokens),
  ...at("POST", "/_synapse/admin/v1/registration_tokens/new", registrationTokens.postRegistrationToken),
  ...at("GET", "/_synapse/admin/v1/registration_tokens/{token}", registrationTokens.getRegistrationToken),
  ...at("PUT", "/_synapse/admin/v1/registration_tokens/{token}", registrationTokens.putRegistrationToken),
  ...at("DELETE", "/_synapse/admin/v1/registration_tokens/{token}", registrationTokens.deleteRegistrationToken),
  // Server administration module (client/admin.ts) and support discovery (client/support.ts).
  ...client("GET", "/admin/whois/{userId}", admin.getWhois),
  ...at("GET", "/_matrix/client/v1/admin/lock/{userId}", admin.getAdminLock),
  ...at("PUT", "/_matrix/client/v1/admin/lock/{userId}", admin.putAdminLock),
  ...at("GET", "/_matrix/client/v1/admin/suspend/{userId}", admin.getAdminSuspend),
  ...at("PUT", "/_matrix/client/v1/admin/suspend/{userId}", admin.putAdminSuspend),
  ...at("GET", "/.well-known/matrix/support", getWellKnownSupport),

  // --- server keys (keys/server.ts) ---
  ...at("GET", "/_matrix/key/v2/server", getServerKeys),
  ...at("GET", "/_matrix/key/v2/server/{keyId}", getServerKeys),
  // The notary API: other servers' keys, countersigned (keys/server.ts).
  ...at("GET", "/_matrix/key/v2/query/{serverName}", getKeyQuery),
  ...at("POST", "/_matrix/key/v2/query", postKeyQuery),

  // --- the Server-Server API (federation/routes.ts) ---
  ...FEDERATION_ROUTES,

  // --- rooms, membership, events (client/rooms.ts, client/membership.ts, client/messages.ts) ---
  ...client("POST", "/createRoom", rooms.postCreateRoom),
  ...client("PUT", "/rooms/{roomId}/send/{eventType}/{txnId}", rooms.putSend),
  ...client("PUT", "/rooms/{roomId}/state/{eventType}/{stateKey?}", rooms.putState),
  ...client("GET", "/rooms/{roomId}/state/{eventType}/{stateKey?}", rooms.getStateEvent),
  ...client("GET", "/rooms/{roomId}/state", rooms.getState),
  ...client("PUT", "/rooms/{roomId}/redact/{eventId}/{txnId}", rooms.putRedact),
  ...client("GET", "/rooms/{roomId}/event/{eventId}", rooms.getRoomEvent),
  ...client("POST", "/join/{roomIdOrAlias}", membership.postJoin),
  ...client("POST", "/rooms/{roomId}/join", membership.postRoomJoin),
  ...client("POST", "/knock/{roomIdOrAlias}", membership.postKnock),
  ...client("POST", "/rooms/{roomId}/invite", membership.postInvite),
  ...client("POST", "/rooms/{roomId}/leave", membership.postLeave),
  ...client("POST", "/rooms/{roomId}/forget", membership.postForget),
  ...client("POST", "/rooms/{roomId}/kick", membership.postKick),
  ...client("POST", "/rooms/{roomId}/ban", membership.postBan),
  ...client("POST", "/rooms/{roomId}/unban", membership.postUnban),
  ...client("GET", "/joined_rooms", membership.getJoinedRooms),
  ...client("GET", "/rooms/{roomId}/members", membership.getMembers),
  ...client("GET", "/rooms/{roomId}/joined_members", membership.getJoinedMembers),
  ...client("GET", "/rooms/{roomId}/messages", messages.getMessages),
  ...client("GET", "/rooms/{roomId}/context/{eventId}", messages.getContext),
  ...at("GET", "/_matrix/client/v1/rooms/{roomId}/timestamp_to_event", messages.getTimestampToEvent),
  ...at("GET", "/_matrix/client/v1/rooms/{roomId}/relations/{eventId}", relations.getRelations),
  ...at("GET", "/_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}", relations.getRelations),
  ...at("GET", "/_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}", relations.getRelations),
  ...at("GET", "/_matrix/client/v1/rooms/{roomId}/threads", relations.getThreads),
  ...client("POST", "/rooms/{roomId}/upgrade", upgrade.postUpgrade),
  ...at("GET", "/_matrix/client/v1/rooms/{roomId}/hierarchy", hierarchy.getHierarchy),
  ...at("GET", "/_matrix/client/v1/mutual_rooms", mutualRooms.getMutualRooms),
  ...client("GET", "/events/{eventId}", events.getOneEvent),
  ...client("POST", "/search", search.postSearch),
  ...client("POST", "/rooms/{roomId}/report/{eventId}", report.postReportEvent),
  ...client("POST", "/rooms/{roomId}/report", report.postReportRoom),
  ...client("POST", "/users/{userId}/report", report.postReportUser),

  // --- sync, filters (client/sync.ts, client/filters.ts) ---
  ...client("GET", "/sync", sync.getSync),
  ...client("GET", "/rooms/{roomId}/initialSync", sync.getRoomInitialSync),
  ...client("GET", "/initialSync", sync.getInitialSync),
  ...client("GET", "/events", sync.getEvents),
  ...client("POST", "/user/{userId}/filter", filters.postFilter),
  ...client("GET", "/user/{userId}/filter/{filterId}", filters.getFilter),

  // --- ephemeral, account data, profile, presence, push (client/*.ts) ---
  ...client("PUT", "/rooms/{roomId}/typing/{userId}", typing.putTyping),
  ...client("POST", "/rooms/{roomId}/receipt/{receiptType}/{eventId}", receipts.postReceipt),
  ...client("POST", "/rooms/{roomId}/read_markers", receipts.postReadMarkers),
  ...client("GET", "/user/{userId}/account_data/{type}", accountData.getGlobalAccountData),
  ...client("PUT", "/user/{userId}/account_data/{type}", accountData.putGlobalAccountData),
  ...client("GET", "/user/{userId}/rooms/{roomId}/account_data/{type}", accountData.getRoomAccountData),
  ...client("PUT", "/user/{userId}/rooms/{roomId}/account_data/{type}", accountData.putRoomAccountData),
  ...client("GET", "/user/{userId}/rooms/{roomId}/tags", accountData.getTags),
  ...client("PUT", "/user/{userId}/rooms/{roomId}/tags/{tag}", accountData.putTag),
  ...client("DELETE", "/user/{userId}/rooms/{roomId}/tags/{tag}", accountData.deleteTag),
  ...client("GET", "/profile/{userId}", profile.getProfile),
  ...client("GET", "/profile/{userId}/{keyName}", profile.getProfileField),
  ...client("PUT", "/profile/{userId}/{keyName}", profile.putProfileField),
  ...client("DELETE", "/profile/{userId}/{keyName}", profile.deleteProfileField),
  ...client("GET", "/presence/{userId}/status", presence.getPresence),
  ...client("PUT", "/presence/{userId}/status", presence.putPresence),
  ...client("GET", "/pushrules/", pushRules.getPushRules),
  ...client("GET", "/pushrules/{scope}/", pushRules.getGlobalPushRules),
  ...client("GET", "/pushrules/{scope}/{kind}/", pushRules.getPushRulesOfKind),
  ...client("GET", "/pushrules/{scope}/{kind}/{ruleId}", pushRules.getPushRule),
  ...client("PUT", "/pushrules/{scope}/{kind}/{ruleId}", pushRules.putPushRule),
  ...client("DELETE", "/pushrules/{scope}/{kind}/{ruleId}", pushRules.deletePushRule),
  ...client("GET", "/pushrules/{scope}/{kind}/{ruleId}/enabled", (c, p) => pushRules.getPushRuleAttr(c, { ...p, attr: "enabled" })),
  ...client("PUT", "/pushrules/{scope}/{kind}/{ruleId}/enabled", (c, p) => pushRules.putPushRuleAttr(c, { ...p, attr: "enabled" })),
  ...client("GET", "/pushrules/{scope}/{kind}/{ruleId}/actions", (c, p) => pushRules.getPushRuleAttr(c, { ...p, attr: "actions" })),
  ...client("PUT", "/pushrules/{scope}/{kind}/{ruleId}/actions", (c, p) => pushRules.putPushRuleAttr(c, { ...p, attr: "actions" })),
  ...client("GET", "/pushrules/{scope}/{kind}/{ruleId}/{attr}", pushRules.unknownPushRuleAttr),
  ...client("PUT", "/pushrules/{scope}/{kind}/{ruleId}/{attr}", pushRules.unknownPushRuleAttr),
  ...client("GET", "/pushers", pushers.getPushers),
  ...client("POST", "/pushers/set", pushers.postPushersSet),
  ...client("GET", "/notifications", notifications.getNotifications),
  ...client("GET", "/capabilities", capabilities.getCapabilities),
  ...client("GET", "/voip/turnServer", voip.getTurnServer),

  // --- directory, aliases, user directory (client/directory.ts) ---
  ...client("PUT", "/directory/room/{roomAlias}", directory.putAlias),
  ...client("GET", "/directory/room/{roomAlias}", directory.getAlias),
  ...client("DELETE", "/directory/room/{roomAlias}", directory.deleteAlias),
  ...client("GET", "/rooms/{roomId}/aliases", directory.getRoomAliases),
  ...client("GET", "/directory/list/room/{roomId}", directory.getDirectoryVisibility),
  ...client("PUT", "/directory/list/room/{roomId}", directory.putDirectoryVisibility),
  ...client("GET", "/publicRooms", directory.getPublicRooms),
  ...client("POST", "/publicRooms", directory.postPublicRooms),
  ...client("POST", "/user_directory/search", directory.postUserDirectorySearch),
  ...at("GET", "/_matrix/client/v1/room_summary/{roomIdOrAlias}", roomSummary.getRoomSummary),
  ...client("GET", "/thirdparty/protocols", thirdparty.getProtocols),
  ...client("GET", "/thirdparty/protocol/{protocol}", thirdparty.getProtocol),
  ...client("GET", "/thirdparty/location/{protocol}", thirdparty.getLocationsForProtocol),
  ...client("GET", "/thirdparty/user/{protocol}", thirdparty.getUsersForProtocol),
  ...client("GET", "/thirdparty/location", thirdparty.getLocationsByAlias),
  ...client("GET", "/thirdparty/user", thirdparty.getUsersByUserId),

  // --- application services (appservice/client.ts) ---
  ...at("POST", "/_matrix/client/v1/appservice/{appserviceId}/ping", postAppservicePing),

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
  ...at("POST", "/_matrix/media/v3/upload", media.postUpload),
  ...at("POST", "/_matrix/media/r0/upload", media.postUpload),
  ...at("POST", "/_matrix/media/v1/create", media.postCreate),
  ...at("PUT", "/_matrix/media/v3/upload/{serverName}/{mediaId}", media.putUpload),
  ...at("GET", "/_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName?}", media.getDownloadAuthed),
  ...at("GET", "/_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}", media.getThumbnailAuthed),
  ...at("GET", "/_matrix/client/v1/media/config", media.getConfig),
  ...at("GET", "/_matrix/client/v1/media/preview_url", media.getPreviewUrl),
  // Deprecated since v1.11 (content_repo.md); kept for clients that predate authenticated media.
  ...at("GET", "/_matrix/media/v3/download/{serverName}/{mediaId}/{fileName?}", media.getDownloadLegacy),
  ...at("GET", "/_matrix/media/r0/download/{serverName}/{mediaId}/{fileName?}", media.getDownloadLegacy),
  ...at("GET", "/_matrix/media/v3/thumbnail/{serverName}/{mediaId}", media.getThumbnailLegacy),
  ...at("GET", "/_matrix/media/r0/thumbnail/{serverName}/{mediaId}", media.getThumbnailLegacy),
  ...at("GET", "/_matrix/media/v3/config", media.getConfig),
  ...at("GET", "/_matrix/media/r0/config", media.getConfig),
  ...at("GET", "/_matrix/media/v3/preview_url", media.getPreviewUrl),
  ...at("GET", "/_matrix/media/r0/preview_url", media.getPreviewUrl),
];
