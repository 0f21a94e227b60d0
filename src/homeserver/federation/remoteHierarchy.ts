/**
 * The client side of spaces across servers: a space's hierarchy from the servers a child's `via`
 * names (`GET /_matrix/federation/v1/hierarchy/{roomId}`), cached for a few minutes as the spec
 * suggests, and the child ordering both sides share.
 */
import type { Services } from "../context.ts";
import type { StoredEvent } from "../events/types.ts";
import { isObject } from "../validate.ts";
import { FederationError } from "./client.ts";

/** An `m.space.child` event as hierarchy answers carry it: stripped state plus `origin_server_ts`. */
export type ChildState = Record<string, unknown> & { state_key: string; content: Record<string, unknown>; origin_server_ts: number };

/** A stored child event in that form. */
export function childState(e: StoredEvent): ChildState {
  return { type: e.pdu.type, state_key: e.pdu.state_key!, content: e.pdu.content, sender: e.pdu.sender, origin_server_ts: e.pdu.origin_server_ts };
}

/**
 * The children of a space (`m.space.child` entries with a non-empty `via`; only suggested ones when
 * asked) in the spec's "Ordering of children within a space": `order` (printable ASCII, at most 50
 * characters) first, then the oldest, then by room ID. Takes stored state or a remote answer's
 * `children_state` alike.
 */
export function orderedChildren(entries: Iterable<unknown>, suggestedOnly: boolean): ChildState[] {
  const children: ChildState[] = [];
  for (const e of entries) {
    if (!isObject(e) || e.type !== "m.space.child" || typeof e.state_key !== "string" || !e.state_key || !isObject(e.content)) continue;
    const via = e.content.via;
    if (!Array.isArray(via) || via.length === 0) continue; // no via: not a child
    if (suggestedOnly && e.content.suggested !== true) continue;
    children.push({ ...e, state_key: e.state_key, content: e.content, origin_server_ts: typeof e.origin_server_ts === "number" ? e.origin_server_ts : 0 });
  }
  const order = (e: ChildState): string => {
    const o = e.content.order;
    return typeof o === "string" && o.length <= 50 && /^[\x20-\x7E]*$/.test(o) ? o : "\u{10FFFF}";
  };
  return children.sort((a, b) => (order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0) || a.origin_server_ts - b.origin_server_ts || a.state_key.localeCompare(b.state_key));
}

/** The ordered children of a space from its stored state. */
export function spaceChildren(state: Map<string, StoredEvent>, suggestedOnly: boolean): ChildState[] {
  return orderedChildren([...state.values()].filter((e) => e.pdu.type === "m.space.child").map(childState), suggestedOnly);
}

/** A room summary from another server, with its `children_state` when the server gave it. */
export type RemoteRoom = Record<string, unknown> & { room_id: string; children_state?: Record<string, unknown>[] };

/** One remote `/hierarchy` answer, as kept in the cache. */
interface RemoteAnswer {
  room: RemoteRoom;
  children: RemoteRoom[];
  inaccessible: string[];
  fetchedAt: number;
}

const CACHE_MS = 5 * 60_000;
const caches = new WeakMap<Services, Map<string, RemoteAnswer>>();

function validRoom(value: unknown): value is RemoteRoom {
  return isObject(value) && typeof value.room_id === "string" && (value.children_state === undefined || Array.isArray(value.children_state));
}

/**
 * A space's hierarchy from the first of `via` that answers (cached five minutes per room and
 * `suggested_only`); undefined when none does. Never called inside a store transaction.
 */
export async function remoteHierarchy(hs: Services, roomId: string, via: string[], suggestedOnly: boolean): Promise<RemoteAnswer | undefined> {
  let cache = caches.get(hs);
  if (!cache) caches.set(hs, (cache = new Map()));
  const cacheKey = `${roomId}|${suggestedOnly}`;
  const cached = cache.get(cacheKey);
  if (cached && hs.clock() - cached.fetchedAt < CACHE_MS) return cached;
  if (!hs.federation) return undefined;
  for (const server of via.slice(0, 5)) {
    if (server === hs.serverName || !hs.federation.mayContact(server)) continue;
    try {
      const answer = await hs.federation.json(server, "GET", `/_matrix/federation/v1/hierarchy/${encodeURIComponent(roomId)}`, {
        query: [["suggested_only", String(suggestedOnly)]],
      });
      if (!validRoom(answer.room) || answer.room.room_id !== roomId) continue;
      const result: RemoteAnswer = {
        room: answer.room,
        children: Array.isArray(answer.children) ? answer.children.filter(validRoom) : [],
        inaccessible: Array.isArray(answer.inaccessible_children) ? answer.inaccessible_children.filter((x): x is string => typeof x === "string") : [],
        fetchedAt: hs.clock(),
      };
      cache.set(cacheKey, result);
      return result;
    } catch (err) {
      if (!(err instanceof FederationError)) throw err;
      hs.logger.debug(`hierarchy of ${roomId} from ${server}: ${err.message}`);
    }
  }
  return undefined;
}
