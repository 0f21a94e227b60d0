/**
 * Power levels as the auth rules read them (client-server API `m.room.power_levels`, server-server
 * API "Definitions": required power level, invite/kick/ban/redact level; room versions' "stringy"
 * and "floaty" power level fragments; v12 "room creators").
 */
import type { Pdu } from "../events/types.ts";
import { stateKeyOf } from "../events/types.ts";
import type { RoomVersionRules } from "./versions.ts";
import { asObject } from "../validate.ts";

const CREATE = stateKeyOf("m.room.create", "");
const POWER = stateKeyOf("m.room.power_levels", "");

/**
 * Reads one power level value. v10+ accept only integers. v1–v9 "accept values as strings": "a single
 * base 10 integer … optionally prefixed with a single `-` or `+` … leading or trailing whitespace";
 * floats are truncated ("floaty power levels"). Returns undefined for anything else.
 */
export function parsePowerLevel(value: unknown, stringy = true): number | undefined {
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return undefined;
    if (Number.isInteger(value)) return value;
    return stringy ? Math.trunc(value) : undefined;
  }
  if (stringy && typeof value === "string") {
    const m = /^\s*([+-]?)(\d+)\s*$/.exec(value);
    if (!m) return undefined;
    const n = Number(m[2]);
    return m[1] === "-" ? -n : n;
  }
  return undefined;
}

/** The content of the current power levels event, or undefined when the room has none. */
function plContent(state: Map<string, Pdu>): Record<string, unknown> | undefined {
  const pl = state.get(POWER);
  return pl ? (asObject(pl.content) ?? {}) : undefined;
}

/**
 * v12 "room creators": the create event's `sender` plus `content.additional_creators`. Before v12
 * the one creator is `content.creator` (v1–v10) or the create event's `sender` (v11).
 */
export function roomCreators(state: Map<string, Pdu>, version: RoomVersionRules): string[] {
  const create = state.get(CREATE);
  if (!create) return [];
  if (version.creatorInContent) {
    const c = create.content.creator;
    return typeof c === "string" ? [c] : [];
  }
  const out = [create.sender];
  if (version.privilegedCreators && Array.isArray(create.content.additional_creators)) {
    for (const u of create.content.additional_creators) if (typeof u === "string" && !out.includes(u)) out.push(u);
  }
  return out;
}

/**
 * A user's power level in `state`: v12 creators are infinitely powerful; else `users[userId]`, else
 * `users_default` (0). Without a power levels event, "the room creator has a power level of 100"
 * and everyone else 0 (client-server API `m.room.power_levels`).
 */
export function userPowerLevel(userId: string, state: Map<string, Pdu>, version: RoomVersionRules): number {
  if (version.privilegedCreators && roomCreators(state, version).includes(userId)) return Infinity;
  const content = plContent(state);
  if (!content) return roomCreators(state, version).includes(userId) ? 100 : 0;
  const users = asObject(content.users);
  const own = users && Object.hasOwn(users, userId) ? parsePowerLevel(users[userId], version.stringyPowerLevels) : undefined;
  if (own !== undefined) return own;
  return parsePowerLevel(content.users_default, version.stringyPowerLevels) ?? 0;
}

/**
 * A named level. Defaults (server-server API "Definitions", `m.room.power_levels`): invite 0; kick,
 * ban, redact 50; events_default 0; "If there is no state_default in the m.room.power_levels event,
 * or there is no m.room.power_levels event, the state_default is 50."
 */
export function requiredPowerLevel(
  kind: "invite" | "kick" | "ban" | "redact" | "state_default" | "events_default",
  state: Map<string, Pdu>,
): number {
  const content = plContent(state);
  const fallback = kind === "invite" || kind === "events_default" ? 0 : 50;
  if (!content) return fallback;
  return parsePowerLevel(content[kind]) ?? fallback;
}

/** "Required Power Level": `events[type]`, else `state_default` / `events_default`. */
export function eventPowerLevel(type: string, isState: boolean, state: Map<string, Pdu>): number {
  const content = plContent(state);
  const events = content ? asObject(content.events) : undefined;
  if (events && Object.hasOwn(events, type)) {
    const v = parsePowerLevel(events[type]);
    if (v !== undefined) return v;
  }
  return requiredPowerLevel(isState ? "state_default" : "events_default", state);
}
