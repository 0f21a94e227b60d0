/** The RoomEventFilter of `/messages`, `/context` and search (Client-Server "Filtering"). */
import { MatrixError } from "../errors.ts";
import type { StoredEvent } from "../events/types.ts";

/** A parsed RoomEventFilter (only the fields that select room events). */
export interface RoomEventFilter {
  limit?: number;
  types?: string[];
  not_types?: string[];
  senders?: string[];
  not_senders?: string[];
  rooms?: string[];
  not_rooms?: string[];
  contains_url?: boolean;
  lazy_load_members?: boolean;
  include_redundant_members?: boolean;
}

const bad = (msg: string): MatrixError => new MatrixError(400, "M_INVALID_PARAM", msg);

function strings(v: unknown, name: string): string[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) throw bad(`filter.${name} must be a list of strings`);
  return v as string[];
}

/** Validates a filter object; 400 M_INVALID_PARAM for wrong types. */
export function parseRoomEventFilter(raw: unknown): RoomEventFilter {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== "object" || Array.isArray(raw)) throw bad("filter must be an object");
  const o = raw as Record<string, unknown>;
  const f: RoomEventFilter = {};
  if (o.limit !== undefined) {
    if (typeof o.limit !== "number" || !Number.isInteger(o.limit) || o.limit < 0) throw bad("filter.limit must be a non-negative integer");
    f.limit = o.limit;
  }
  for (const k of ["types", "not_types", "senders", "not_senders", "rooms", "not_rooms"] as const) {
    const v = strings(o[k], k);
    if (v) f[k] = v;
  }
  for (const k of ["contains_url", "lazy_load_members", "include_redundant_members"] as const) {
    if (o[k] !== undefined) {
      if (typeof o[k] !== "boolean") throw bad(`filter.${k} must be a boolean`);
      f[k] = o[k];
    }
  }
  return f;
}

/** The filter of a `filter` query parameter (JSON text), or an empty filter. */
export function filterFromQuery(text: string | undefined): RoomEventFilter {
  if (text === undefined || text === "") return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw bad("filter is not valid JSON");
  }
  return parseRoomEventFilter(parsed);
}

/** Type patterns may end in `*` as a wildcard ("Filtering"). */
function typeMatches(pattern: string, type: string): boolean {
  return pattern.endsWith("*") ? type.startsWith(pattern.slice(0, -1)) : pattern === type;
}

/** Whether an event passes the filter. */
export function matchesFilter(f: RoomEventFilter, e: StoredEvent): boolean {
  const { type, sender, content } = e.pdu;
  if (f.not_types?.some((p) => typeMatches(p, type))) return false;
  if (f.types && !f.types.some((p) => typeMatches(p, type))) return false;
  if (f.not_senders?.includes(sender)) return false;
  if (f.senders && !f.senders.includes(sender)) return false;
  if (f.not_rooms?.includes(e.roomId)) return false;
  if (f.rooms && !f.rooms.includes(e.roomId)) return false;
  if (f.contains_url !== undefined) {
    const hasUrl = typeof content?.url === "string";
    if (hasUrl !== f.contains_url) return false;
  }
  return true;
}
