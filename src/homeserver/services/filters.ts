/**
 * Filters ("Filtering" in the Client-Server API, `filter.yaml`): validation and storage of whole
 * filters, `event_fields`. Sync asks `resolveSyncFilter` for the filter of one request. Matching
 * events is the one engine in roomserver/filter.ts, shared with `/messages`, `/context` and search.
 */
import type { Services } from "../context.ts";
import { MatrixError, badJson } from "../errors.ts";
import { key } from "../../storage/store.ts";
import type { ClientEvent } from "../events/types.ts";
import { checkEventFilter } from "../roomserver/filter.ts";
import type { EventFilter, RoomEventFilter } from "../roomserver/filter.ts";

export { eventPasses } from "../roomserver/filter.ts";
export type { EventFilter, RoomEventFilter } from "../roomserver/filter.ts";

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

const isRoomIdLike = (s: string): boolean => /^![^\s]+$/.test(s);

/** Checks a filter's shape; `400 M_BAD_JSON` on anything malformed. */
export function validateFilter(body: unknown): Filter {
  if (body === null || typeof body !== "object" || Array.isArray(body)) throw badJson("Filter must be an object");
  const f = body as Record<string, unknown>;
  if (f.event_fields !== undefined && !isStringList(f.event_fields)) throw badJson("event_fields must be a list of strings");
  if (f.event_format !== undefined && f.event_format !== "client" && f.event_format !== "federation") {
    throw badJson("event_format must be 'client' or 'federation'");
  }
  checkEventFilter(f.presence, "presence", false, badJson);
  checkEventFilter(f.account_data, "account_data", false, badJson);
  if (f.room !== undefined) {
    if (f.room === null || typeof f.room !== "object" || Array.isArray(f.room)) throw badJson("room must be an object");
    const r = f.room as Record<string, unknown>;
    for (const k of ["rooms", "not_rooms"]) if (r[k] !== undefined && !(isStringList(r[k]) && r[k].every(isRoomIdLike))) throw badJson(`room.${k} must be a list of room IDs`);
    if (r.include_leave !== undefined && typeof r.include_leave !== "boolean") throw badJson("room.include_leave must be a boolean");
    for (const k of ["ephemeral", "state", "timeline", "account_data"]) checkEventFilter(r[k], `room.${k}`, true, badJson);
  }
  return f as Filter;
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

/** The filter of a `/sync` request: inline JSON (starts with `{`) or a stored filter ID. */
export async function resolveSyncFilter(hs: Services, userId: string, param: string | undefined): Promise<Filter> {
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
  const stored = await hs.store.read((tx) => tx.get<Filter>("filters", key(userId, param)));
  if (!stored) throw new MatrixError(400, "M_INVALID_PARAM", "No such filter");
  return stored;
}

/** Stores a filter for a user; returns its new ID (per server, short and never reused). */
export async function storeFilter(hs: Services, userId: string, filter: Filter): Promise<string> {
  return hs.store.write(async (tx) => {
    // key settings|filter_counter → number
    const n = ((await tx.get<number>("settings", filterCounter)) ?? 0) + 1;
    tx.put("settings", filterCounter, n);
    tx.put("filters", key(userId, String(n)), filter);
    return String(n);
  });
}

/** A stored filter of a user, if it exists. */
export async function storedFilter(hs: Services, userId: string, filterId: string): Promise<Filter | undefined> {
  return hs.store.read((tx) => tx.get<Filter>("filters", key(userId, filterId)));
}
