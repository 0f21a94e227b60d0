/** The redaction algorithm of each room version (`rooms/fragments/v*-redactions.md`). */
import type { RoomVersionRules } from "../rooms/versions.ts";
import type { JsonObject } from "../crypto/signing.ts";

const TOP_LEVEL_OLD = [
  "event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures", "depth",
  "prev_events", "prev_state", "auth_events", "origin", "origin_server_ts", "membership",
];
const TOP_LEVEL_V11 = [
  "event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures", "depth",
  "prev_events", "auth_events", "origin_server_ts",
];

const PL_KEYS = ["ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"];

type ContentRule = Record<string, readonly string[] | "all">;

const CONTENT: Record<RoomVersionRules["redaction"], ContentRule> = {
  v1: {
    "m.room.member": ["membership"],
    "m.room.create": ["creator"],
    "m.room.join_rules": ["join_rule"],
    "m.room.power_levels": PL_KEYS,
    "m.room.aliases": ["aliases"],
    "m.room.history_visibility": ["history_visibility"],
  },
  v6: {
    "m.room.member": ["membership"],
    "m.room.create": ["creator"],
    "m.room.join_rules": ["join_rule"],
    "m.room.power_levels": PL_KEYS,
    "m.room.history_visibility": ["history_visibility"],
  },
  v8: {
    "m.room.member": ["membership"],
    "m.room.create": ["creator"],
    "m.room.join_rules": ["join_rule", "allow"],
    "m.room.power_levels": PL_KEYS,
    "m.room.history_visibility": ["history_visibility"],
  },
  v9: {
    "m.room.member": ["membership", "join_authorised_via_users_server"],
    "m.room.create": ["creator"],
    "m.room.join_rules": ["join_rule", "allow"],
    "m.room.power_levels": PL_KEYS,
    "m.room.history_visibility": ["history_visibility"],
  },
  v11: {
    "m.room.member": ["membership", "join_authorised_via_users_server"],
    "m.room.create": "all",
    "m.room.join_rules": ["join_rule", "allow"],
    "m.room.power_levels": [...PL_KEYS, "invite"],
    "m.room.history_visibility": ["history_visibility"],
    "m.room.redaction": ["redacts"],
  },
};

/** Returns the redacted copy of an event (PDU or client event) under the given version's rules. */
export function redact(event: JsonObject, version: RoomVersionRules): JsonObject {
  const keep = version.redaction === "v11" ? TOP_LEVEL_V11 : TOP_LEVEL_OLD;
  const out: JsonObject = {};
  for (const k of keep) if (k in event) out[k] = event[k];
  const content = (event.content ?? {}) as JsonObject;
  // Own properties only: an event type such as `__proto__` or `constructor` must not find Object.prototype.
  const rules = CONTENT[version.redaction];
  const rule = Object.hasOwn(rules, event.type as string) ? rules[event.type as string] : undefined;
  let newContent: JsonObject = {};
  if (rule === "all") newContent = { ...content };
  else if (rule) for (const k of rule) if (k in content) newContent[k] = content[k];
  // v11: m.room.member keeps third_party_invite.signed only.
  if (version.redaction === "v11" && event.type === "m.room.member") {
    const tpi = content.third_party_invite as JsonObject | undefined;
    if (tpi && typeof tpi === "object" && "signed" in tpi) newContent.third_party_invite = { signed: tpi.signed };
  }
  out.content = newContent;
  return out;
}
