/**
 * The one event-filter engine ("Filtering" in the Client-Server API): the shape checks and the
 * matching of `EventFilter` / `RoomEventFilter` used by `/sync` (client/filters.ts), `/messages`,
 * `/context` and search. Keeping one engine keeps them agreeing on what `types: ["m.*.message"]`
 * selects.
 */
import { MatrixError } from "../errors.ts";
import type { StoredEvent } from "../events/types.ts";

/** `EventFilter`. */
export interface EventFilter {
  limit?: number;
  types?: string[];
  not_types?: string[];
  senders?: string[];
  not_senders?: string[];
}

/** `RoomEventFilter` (also used for state). */
export interface RoomEventFilter extends EventFilter {
  rooms?: string[];
  not_rooms?: string[];
  contains_url?: boolean;
  lazy_load_members?: boolean;
  include_redundant_members?: boolean;
  unread_thread_notifications?: boolean;
}

/** How a caller reports a malformed filter: `/user/{userId}/filter` bodies are M_BAD_JSON, query parameters M_INVALID_PARAM. */
export type FilterError = (message: string) => MatrixError;

const invalidFilter: FilterError = (msg) => new MatrixError(400, "M_INVALID_PARAM", msg);

const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === "string");

const LIST_FIELDS = ["types", "not_types", "senders", "not_senders"] as const;
const ROOM_LIST_FIELDS = ["rooms", "not_rooms"] as const;
const ROOM_FLAG_FIELDS = ["contains_url", "lazy_load_members", "include_redundant_members", "unread_thread_notifications"] as const;

const isUserIdLike = (s: string): boolean => /^@[^:]+:.+$/.test(s);
const isRoomIdLike = (s: string): boolean => /^![^\s]+$/.test(s);

/**
 * Checks an `EventFilter` (`room` false) or `RoomEventFilter` (`room` true) at `where` and returns
 * only its known fields; `undefined` stays `undefined`.
 */
export function checkEventFilter(raw: unknown, where: string, room: boolean, err: FilterError = invalidFilter): RoomEventFilter | undefined {
  if (raw === undefined) return undefined;
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw err(`${where} must be an object`);
  const o = raw as Record<string, unknown>;
  const f: RoomEventFilter = {};
  for (const k of room ? [...LIST_FIELDS, ...ROOM_LIST_FIELDS] : LIST_FIELDS) {
    const v = o[k];
    if (v === undefined) continue;
    if (!isStringList(v)) throw err(`${where}.${k} must be a list of strings`);
    // filter.yaml (and Synapse's schema): senders are user IDs, rooms are room IDs.
    if ((k === "senders" || k === "not_senders") && !v.every(isUserIdLike)) throw err(`${where}.${k} must be a list of user IDs`);
    if ((k === "rooms" || k === "not_rooms") && !v.every(isRoomIdLike)) throw err(`${where}.${k} must be a list of room IDs`);
    f[k] = v;
  }
  if (o.limit !== undefined) {
    if (typeof o.limit !== "number" || !Number.isInteger(o.limit) || o.limit < 0) throw err(`${where}.limit must be a non-negative integer`);
    f.limit = o.limit;
  }
  if (room) {
    for (const k of ROOM_FLAG_FIELDS) {
      const v = o[k];
      if (v === undefined) continue;
      if (typeof v !== "boolean") throw err(`${where}.${k} must be a boolean`);
      f[k] = v;
    }
  }
  return f;
}

/** Validates a RoomEventFilter object (search's `filter`); 400 M_INVALID_PARAM for wrong types. */
export function parseRoomEventFilter(raw: unknown): RoomEventFilter {
  if (raw === null) return {};
  return checkEventFilter(raw, "filter", true) ?? {};
}

/** The filter of a `filter` query parameter (JSON text), or an empty filter. */
export function filterFromQuery(text: string | undefined): RoomEventFilter {
  if (text === undefined || text === "") return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw invalidFilter("filter is not valid JSON");
  }
  return parseRoomEventFilter(parsed);
}

/**
 * Glob match for `types` / `not_types`: "A '*' can be used as a wildcard to match any sequence of
 * characters"; nothing else is special. Linear: the first and last pieces are anchored, each middle
 * piece is taken at its leftmost place (a later place only leaves less room for the rest).
 */
export function typeMatches(pattern: string, type: string): boolean {
  const star = pattern.indexOf("*");
  if (star < 0) return pattern === type;
  const pieces = pattern.split("*");
  const first = pieces[0]!;
  const last = pieces[pieces.length - 1]!;
  if (type.length < first.length + last.length || !type.startsWith(first) || !type.endsWith(last)) return false;
  let pos = first.length;
  const end = type.length - last.length;
  for (let i = 1; i < pieces.length - 1; i++) {
    const piece = pieces[i]!;
    if (piece === "") continue;
    const at = type.indexOf(piece, pos);
    if (at < 0 || at + piece.length > end) return false;
    pos = at + piece.length;
  }
  return true;
}

/** The parts of an event a filter looks at. */
export interface FilterableEvent {
  type: string;
  sender: string;
  content?: Record<string, unknown>;
}

/** Whether an event passes an event filter ("Filtering": not_* wins over the allow lists). */
export function eventPasses(f: RoomEventFilter | undefined, e: FilterableEvent, roomId?: string): boolean {
  if (!f) return true;
  if (f.not_types?.some((p) => typeMatches(p, e.type))) return false;
  if (f.types && !f.types.some((p) => typeMatches(p, e.type))) return false;
  if (f.not_senders?.includes(e.sender)) return false;
  if (f.senders && !f.senders.includes(e.sender)) return false;
  if (roomId !== undefined) {
    if (f.not_rooms?.includes(roomId)) return false;
    if (f.rooms && !f.rooms.includes(roomId)) return false;
  }
  if (f.contains_url !== undefined) {
    const hasUrl = typeof e.content?.url === "string";
    if (hasUrl !== f.contains_url) return false;
  }
  return true;
}

/** Whether a stored room event passes the filter. */
export function matchesFilter(f: RoomEventFilter, e: StoredEvent): boolean {
  return eventPasses(f, e.pdu, e.roomId);
}
