/**
 * The Client-Server API's questions about other servers' users and directories, asked over
 * federation (server-server API "Querying for information", "Published Room Directory"): a remote
 * user's profile (`/query/profile`) and a remote server's published rooms (`/publicRooms`). The
 * answers are checked before they are handed to a client.
 */
import type { Services } from "../context.ts";
import { MatrixError, notFound } from "../errors.ts";
import { isObject } from "../validate.ts";
import { serverOf } from "../rooms/ids.ts";
import { FederationError } from "./client.ts";

/** How long a client waits for another server's answer to a query. */
const QUERY_TIMEOUT_MS = 10_000;

/**
 * The client-facing error for a failed request to another server: its own 404 and 403 are passed
 * on (the user, room list or field does not exist, or the server will not say); anything else,
 * unreachable included, is `502` (as Synapse answers "Failed to fetch …").
 */
function clientError(err: unknown, what: string): MatrixError {
  if (!(err instanceof FederationError)) return err instanceof MatrixError ? err : new MatrixError(502, "M_UNKNOWN", `Failed to fetch ${what}`);
  if (err.status === 404) return notFound(`${what} not found on ${err.destination}`);
  if (err.status === 403) return new MatrixError(403, "M_FORBIDDEN", `${err.destination} refused to disclose ${what}`);
  return new MatrixError(502, "M_UNKNOWN", `Failed to fetch ${what} from ${err.destination}${err.unreachable ? " (unreachable)" : ` (status ${err.status})`}`);
}

function federationOf(hs: Services, what: string): NonNullable<Services["federation"]> {
  // A homeserver without a transport knows of no other server's data.
  if (!hs.federation) throw notFound(`${what} is on another server, and this homeserver does not federate`);
  return hs.federation;
}

/**
 * A remote user's profile: `GET /_matrix/federation/v1/query/profile` on their server, with
 * `field` when only one is wanted. Only string values are kept for `displayname` and `avatar_url`
 * (an `mxc://` URI); a `null` field means "not set" and is dropped.
 */
export async function remoteProfile(hs: Services, userId: string, field?: string): Promise<Record<string, unknown>> {
  const server = serverOf(userId);
  const client = federationOf(hs, "The profile");
  let answer: Record<string, unknown>;
  try {
    answer = await client.json(server, "GET", "/_matrix/federation/v1/query/profile", {
      query: [["user_id", userId], ...(field !== undefined ? [["field", field] as [string, string]] : [])],
      timeoutMs: QUERY_TIMEOUT_MS,
    });
  } catch (err) {
    throw clientError(err, "the profile");
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(answer)) {
    if (v === null || v === undefined) continue;
    if (field !== undefined && k !== field) continue;
    if (k === "displayname" && typeof v !== "string") continue;
    if (k === "avatar_url" && (typeof v !== "string" || !v.startsWith("mxc://"))) continue;
    out[k] = v;
  }
  return out;
}

/** What a `/publicRooms` request to another server carries. */
export interface PublicRoomsQuery {
  limit?: number;
  since?: string;
  filter?: Record<string, unknown>;
  includeAllNetworks?: boolean;
  thirdPartyInstanceId?: string;
}

/**
 * Another server's published rooms: `GET /_matrix/federation/v1/publicRooms` without a filter,
 * `POST` with one (as Synapse asks). Entries that are not well-formed room chunks are dropped.
 */
export async function remotePublicRooms(hs: Services, server: string, q: PublicRoomsQuery): Promise<Record<string, unknown>> {
  const client = federationOf(hs, "The room directory");
  const path = "/_matrix/federation/v1/publicRooms";
  let answer: Record<string, unknown>;
  try {
    if (q.filter !== undefined) {
      const body: Record<string, unknown> = { filter: q.filter };
      if (q.limit !== undefined) body.limit = q.limit;
      if (q.since !== undefined) body.since = q.since;
      if (q.includeAllNetworks !== undefined) body.include_all_networks = q.includeAllNetworks;
      if (q.thirdPartyInstanceId !== undefined) body.third_party_instance_id = q.thirdPartyInstanceId;
      answer = await client.json(server, "POST", path, { body, timeoutMs: QUERY_TIMEOUT_MS });
    } else {
      const query: [string, string][] = [];
      if (q.limit !== undefined) query.push(["limit", String(q.limit)]);
      if (q.since !== undefined) query.push(["since", q.since]);
      if (q.includeAllNetworks !== undefined) query.push(["include_all_networks", String(q.includeAllNetworks)]);
      if (q.thirdPartyInstanceId !== undefined) query.push(["third_party_instance_id", q.thirdPartyInstanceId]);
      answer = await client.json(server, "GET", path, { query, timeoutMs: QUERY_TIMEOUT_MS });
    }
  } catch (err) {
    throw clientError(err, "the room directory");
  }
  const chunk = (Array.isArray(answer.chunk) ? answer.chunk : []).filter(
    (r): r is Record<string, unknown> =>
      isObject(r) && typeof r.room_id === "string" && r.room_id.startsWith("!") && typeof r.num_joined_members === "number" && typeof r.world_readable === "boolean" && typeof r.guest_can_join === "boolean",
  );
  const out: Record<string, unknown> = { chunk };
  if (typeof answer.next_batch === "string") out.next_batch = answer.next_batch;
  if (typeof answer.prev_batch === "string") out.prev_batch = answer.prev_batch;
  if (typeof answer.total_room_count_estimate === "number") out.total_room_count_estimate = answer.total_room_count_estimate;
  return out;
}
