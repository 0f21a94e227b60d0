/**
 * Client-Server "Mutual Rooms" (modules/mutual_rooms.md, added in v1.19):
 * `GET /_matrix/client/v1/mutual_rooms`, the rooms the requester and another user are both joined
 * to, in batches.
 * key memberships = userId|roomId → { membership, … } (CONTRACTS.md)
 */
import type { RequestContext } from "../context.ts";
import { invalidParam, missingParam } from "../errors.ts";
import { isCompliantUserId } from "../rooms/ids.ts";
import { decodeBase64, encodeBase64Url } from "../crypto/base64.ts";
import { sharedRooms } from "../services/rooms.ts";
import type { TokenBucket } from "../auth/rateLimit.ts";
import { limitAddressFixed } from "../auth/rateLimit.ts";

/** How many room IDs one response carries at most ("The server MAY decide that the response … is too large"). */
export const MUTUAL_ROOMS_BATCH = 100;

/**
 * Requests per client address (mutual_rooms.yaml lists a 429): each request walks all the
 * requester's rooms. Like the other limits (auth/rateLimit.ts) it applies to network clients only.
 */
export const MUTUAL_ROOMS_REQUESTS: TokenBucket = { perSecond: 1, burstCount: 60 };

/** The user ID check of this endpoint (its test imports it from here). */
export { isCompliantUserId };

const TOKEN_PREFIX = "mr1";

/** The opaque `next_batch` token: the asked-about user and the last room ID returned. */
function encodeToken(userId: string, lastRoomId: string): string {
  return `${TOKEN_PREFIX}_${encodeBase64Url(new TextEncoder().encode(JSON.stringify([userId, lastRoomId])))}`;
}

/** The last room ID a token stands for; 400 M_INVALID_PARAM if malformed or issued for another user. */
function decodeToken(token: string, userId: string): string {
  const bad = invalidParam("The from token is invalid");
  if (!token.startsWith(`${TOKEN_PREFIX}_`)) throw bad;
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(decodeBase64(token.slice(TOKEN_PREFIX.length + 1))));
  } catch {
    throw bad;
  }
  // "the client can then supply the identifier … along with the original user_id".
  if (!Array.isArray(parsed) || parsed.length !== 2 || parsed[0] !== userId || typeof parsed[1] !== "string") throw bad;
  return parsed[1];
}

/** `GET /_matrix/client/v1/mutual_rooms` */
export async function getMutualRooms(ctx: RequestContext): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  limitAddressFixed(ctx, "mutual_rooms", MUTUAL_ROOMS_REQUESTS);
  const values = ctx.queryAll("user_id");
  if (values.length === 0) throw missingParam("user_id is required");
  if (values.length > 1) throw invalidParam("user_id must be given once");
  const other = values[0]!;
  // 400: "the user_id parameter was missing, non-compliant, or was the sender's own user ID".
  if (!isCompliantUserId(other)) throw invalidParam("The user ID provided was invalid");
  if (other === me.userId) throw invalidParam("You cannot ask for the rooms you share with yourself");
  const from = ctx.query("from");
  const after = from === undefined ? undefined : decodeToken(from, other);
  // An unknown user simply shares no rooms: "If the provided user_id is not a valid user, the
  // server MUST return an empty list of rooms."
  const batch = await sharedRooms(ctx.hs, me.userId, other, after, MUTUAL_ROOMS_BATCH);
  const out: Record<string, unknown> = { joined: batch.joined, count: batch.count };
  if (batch.last !== undefined) out.next_batch = encodeToken(other, batch.last);
  return out;
}
