/**
 * Filters ("Filtering" in the Client-Server API, `filter.yaml`): validation, storage, and applying
 * a filter to events. Sync asks `resolveSyncFilter` for the filter of one request.
 */
import type { RequestContext } from "../context.ts";
import { MatrixError, badJson, forbidden, notFound } from "../errors.ts";
import { key } from "../../storage/store.ts";
import type { ClientEvent } from "../events/types.ts";

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

/** `Filter` as a client uploads it. */
export interface Filter {
  event_fields?: string[];
  event_format?: "client" | "federation";
  presence?: EventFilter;
  account_data?: EventFilter;
  room?: {
    rooms?: string[];
    not_rooms?: string[];
    include_leave?: boolean;
    ephemeral?: RoomEventFilter;
    state?: RoomEventFilter;
    timeline?: RoomEventFilter;
    account_data?: RoomEventFilter;
  };
}

const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === "string");
const isUserIdLike = (s: string): boolean => /^@[^:]+:.+$/.test(s);
const isRoomIdLike = (s: string): boolean => /^![^\s]+$/.test(s);

function checkEventFilter(f: unknown, where: string, room: boolean): void {
  if (f === undefined) return;
  if (f === null || typeof f !== "object" || Array.isArray(f)) throw badJson(`${where} must be an object`);
  const o = f as Record<string, unknown>;
  for (const k of ["types", "not_types", "senders", "not_senders", ...(room ? ["rooms", "not_rooms"] : [])]) {
    if (o[k] !== undefined && !isStringList(o[k])) throw badJson(`${where}.${k} must be a list of strings`);
  }
  // filter.yaml (and Synapse's schema): senders are user IDs, rooms are room IDs.
  for (const k of ["senders", "not_senders"]) if (o[k] !== undefined && !(o[k] as string[]).every(isUserIdLike)) throw badJson(`${where}.${k} must be a list of user IDs`);
  for (const k of room ? ["rooms", "not_rooms"] : []) if (o[k] !== undefined && !(o[k] as string[]).every(isRoomIdLike)) throw badJson(`${where}.${k} must be a list of room IDs`);
  if (o.limit !== undefined && (typeof o.limit !== "number" || !Number.isInteger(o.limit) || o.limit < 0)) {
    throw badJson(`${where}.limit must be a non-negative integer`);
  }
  if (room) {
    for (const k of ["contains_url", "lazy_load_members", "include_redundant_members", "unread_thread_notifications"]) {
      if (o[k] !== undefined && typeof o[k] !== "boolean") throw badJson(`${where}.${k} must be a boolean`);
    }
  }
}

/** Checks a filter's shape; `400 M_BAD_JSON` on anything malformed. */
export function validateFilter(body: unknown): Filter {
  if (body === null || typeof body !== "object" || Array.isArray(body)) throw badJson("Filter must be an object");
  const f = body as Record<string, unknown>;
  if (f.event_fields !== undefined && !isStringList(f.event_fields)) throw badJson("event_fields must be a list of strings");
  if (f.event_format !== undefined && f.event_format !== "client" && f.event_format !== "federation") {
    throw badJson("event_format must be 'client' or 'federation'");
  }
  checkEventFilter(f.presence, "presence", false);
  checkEventFilter(f.account_data, "account_data", false);
  if (f.room !== undefined) {
    if (f.room === null || typeof f.room !== "object" || Array.isArray(f.room)) throw badJson("room must be an object");
    const r = f.room as Record<string, unknown>;
    for (const k of ["rooms", "not_rooms"]) if (r[k] !== undefined && !(isStringList(r[k]) && r[k].every(isRoomIdLike))) throw badJson(`room.${k} must be a list of room IDs`);
    if (r.include_leave !== undefined && typeof r.include_leave !== "boolean") throw badJson("room.include_leave must be a boolean");
    for (const k of ["ephemeral", "state", "timeline", "account_data"]) checkEventFilter(r[k], `room.${k}`, true);
  }
  return f as Filter;
}

/** Compiled `types` wildcards: a filter is applied to every event a /sync scans. */
const typePatterns = new Map<string, RegExp>();

/** Glob match for filter `types` (only `*` is a wildcard there). */
function typeMatches(pattern: string, type: string): boolean {
  if (!pattern.includes("*")) return pattern === type;
  let re = typePatterns.get(pattern);
  if (!re) {
    re = new RegExp("^" + pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$");
    if (typePatterns.size > 1000) typePatterns.clear();
    typePatterns.set(pattern, re);
  }
  return re.test(type);
}

/** Whether an event passes an event filter ("Filtering": not_* wins over the allow lists). */
export function eventPasses(f: RoomEventFilter | undefined, e: { type: string; sender: string; content?: Record<string, unknown> }, roomId?: string): boolean {
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

/** Whether the room-level `rooms` / `not_rooms` of a filter allow a room. */
export function roomAllowed(filter: Filter, roomId: string): boolean {
  const r = filter.room;
  if (!r) return true;
  if (r.not_rooms?.includes(roomId)) return false;
  if (r.rooms && !r.rooms.includes(roomId)) return false;
  return true;
}

/** Splits a dot-separated field path (`content.m\.relates_to`), honouring `\.` and `\\` escapes. */
export function splitPath(path: string): string[] {
  const parts: string[] = [];
  let cur = "";
  for (let i = 0; i < path.length; i++) {
    const c = path[i]!;
    if (c === "\\" && i + 1 < path.length && (path[i + 1] === "." || path[i + 1] === "\\")) {
      cur += path[++i];
    } else if (c === ".") {
      parts.push(cur);
      cur = "";
    } else {
      cur += c;
    }
  }
  parts.push(cur);
  return parts;
}

/** Keeps only the `event_fields` of an event (Filter.event_fields). */
export function applyEventFields<T extends object>(event: T, fields: string[] | undefined): T {
  if (!fields) return event;
  const out: Record<string, unknown> = {};
  for (const field of fields) {
    const path = splitPath(field);
    let src: unknown = event;
    for (const p of path) {
      src = src !== null && typeof src === "object" && !Array.isArray(src) ? (src as Record<string, unknown>)[p] : undefined;
    }
    if (src === undefined) continue;
    let dst = out;
    for (const p of path.slice(0, -1)) {
      const next = dst[p];
      dst = (next !== null && typeof next === "object" ? next : (dst[p] = {})) as Record<string, unknown>;
    }
    dst[path[path.length - 1]!] = structuredClone(src);
  }
  return out as T;
}

/** Formats a client event per the filter (`event_format: federation` serves the PDU as is). */
export function formatForFilter(event: ClientEvent, pdu: Record<string, unknown>, filter: Filter): Record<string, unknown> {
  const base = filter.event_format === "federation" ? pdu : (event as unknown as Record<string, unknown>);
  return applyEventFields(base, filter.event_fields);
}

const filterCounter = "filter_counter";

/** `POST /_matrix/client/v3/user/{userId}/filter` */
export async function postFilter(ctx: RequestContext, params: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  if (params.userId !== me.userId) throw forbidden("Cannot create filters for other users");
  const filter = validateFilter(await ctx.json());
  const filterId = await ctx.hs.store.write(async (tx) => {
    // key settings|filter_counter → number; IDs are per server, short and never reused.
    const n = ((await tx.get<number>("settings", filterCounter)) ?? 0) + 1;
    tx.put("settings", filterCounter, n);
    tx.put("filters", key(me.userId, String(n)), filter);
    return String(n);
  });
  return { filter_id: filterId };
}

/** `GET /_matrix/client/v3/user/{userId}/filter/{filterId}` */
export async function getFilter(ctx: RequestContext, params: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  if (params.userId !== me.userId) throw forbidden("Cannot read filters of other users");
  const filter = await ctx.hs.store.read((tx) => tx.get<Filter>("filters", key(me.userId, params.filterId!)));
  if (!filter) throw notFound("No such filter");
  return filter as Record<string, unknown>;
}

/** The filter of a `/sync` request: inline JSON (starts with `{`) or a stored filter ID. */
export async function resolveSyncFilter(ctx: RequestContext, userId: string, param: string | undefined): Promise<Filter> {
  if (param === undefined || param === "") return {};
  if (param.trimStart().startsWith("{")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(param);
    } catch {
      throw new MatrixError(400, "M_INVALID_PARAM", "filter is not valid JSON");
    }
    return validateFilter(parsed);
  }
  const stored = await ctx.hs.store.read((tx) => tx.get<Filter>("filters", key(userId, param)));
  if (!stored) throw new MatrixError(400, "M_INVALID_PARAM", "No such filter");
  return stored;
}
