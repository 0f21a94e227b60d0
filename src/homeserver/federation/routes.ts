/**
 * The Server-Server API's route table (`/_matrix/federation/*`), one section per area. Entries made
 * with `federation()` verify the `X-Matrix` signature before the handler runs and pass the origin.
 */
import type { HsRoute } from "../routeHelpers.ts";
import { at, federation } from "../routeHelpers.ts";
import * as events from "./events.ts";
import { putTransaction } from "./transactions.ts";
import { getFederationVersion } from "./version.ts";
import * as queries from "./queries.ts";
import * as fedMedia from "./media.ts";
import * as joins from "./joins.ts";
import { getFederationHierarchy } from "./hierarchy.ts";

export const FEDERATION_ROUTES: HsRoute[] = [
  // --- discovery (version.ts) ---
  ...at("GET", "/_matrix/federation/v1/version", getFederationVersion),

  // --- queries, device lists, keys, directory, media (fedquery: queries.ts, media.ts) ---
  ...federation("GET", "/v1/query/profile", (ctx) => queries.getQueryProfile(ctx)),
  ...federation("GET", "/v1/user/devices/{userId}", (ctx, p) => queries.getUserDevices(ctx, p)),
  ...federation("POST", "/v1/user/keys/query", (ctx) => queries.postUserKeysQuery(ctx)),
  ...federation("POST", "/v1/user/keys/claim", (ctx) => queries.postUserKeysClaim(ctx)),
  ...federation("GET", "/v1/publicRooms", (ctx) => queries.getFederationPublicRooms(ctx)),
  ...federation("POST", "/v1/publicRooms", (ctx) => queries.postFederationPublicRooms(ctx)),
  ...federation("GET", "/v1/media/download/{mediaId}", (ctx, p) => fedMedia.getFederationMediaDownload(ctx, p)),
  ...federation("GET", "/v1/media/thumbnail/{mediaId}", (ctx, p) => fedMedia.getFederationMediaThumbnail(ctx, p)),

  // --- joining, leaving, knocking, inviting; the directory query (joins.ts; fedjoin) ---
  ...federation("GET", "/v1/make_join/{roomId}/{userId}", joins.getMakeJoin),
  ...federation("PUT", "/v2/send_join/{roomId}/{eventId}", joins.putSendJoin),
  ...federation("GET", "/v1/make_leave/{roomId}/{userId}", joins.getMakeLeave),
  ...federation("PUT", "/v2/send_leave/{roomId}/{eventId}", joins.putSendLeave),
  ...federation("PUT", "/v1/send_join/{roomId}/{eventId}", joins.putSendJoinV1),
  ...federation("PUT", "/v1/send_leave/{roomId}/{eventId}", joins.putSendLeaveV1),
  ...federation("GET", "/v1/make_knock/{roomId}/{userId}", joins.getMakeKnock),
  ...federation("PUT", "/v1/send_knock/{roomId}/{eventId}", joins.putSendKnock),
  ...federation("PUT", "/v2/invite/{roomId}/{eventId}", joins.putInvite),
  ...federation("PUT", "/v1/invite/{roomId}/{eventId}", joins.putInviteV1),
  ...federation("GET", "/v1/query/directory", joins.getQueryDirectory),

  // --- spaces (hierarchy.ts) ---
  ...federation("GET", "/v1/hierarchy/{roomId}", getFederationHierarchy),

  // --- PDUs: receiving (transactions.ts, receive.ts) and serving (events.ts) ---
  ...federation("PUT", "/v1/send/{txnId}", putTransaction),
  ...federation("GET", "/v1/event/{eventId}", events.getEventPdu),
  ...federation("GET", "/v1/state/{roomId}", events.getRoomState),
  ...federation("GET", "/v1/state_ids/{roomId}", events.getRoomStateIds),
  ...federation("GET", "/v1/event_auth/{roomId}/{eventId}", events.getEventAuth),
  ...federation("GET", "/v1/backfill/{roomId}", events.getBackfill),
  ...federation("POST", "/v1/get_missing_events/{roomId}", events.postGetMissingEvents),
  ...federation("GET", "/v1/timestamp_to_event/{roomId}", events.getTimestampToEvent),
];
