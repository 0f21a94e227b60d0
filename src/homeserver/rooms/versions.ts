/**
 * Room versions in one table (the spec's "Room Versions", https://spec.matrix.org/v1.19/rooms/).
 * Everything that differs between versions is a property here; code asks the table, never
 * `if (version === "11")`.
 */

/** What a room version decides. */
export interface RoomVersionRules {
  readonly id: string;
  /** `v1`: `$random:server`; `v3`: `$` + base64(reference hash); `v4`: URL-safe base64. */
  readonly eventIdFormat: "v1" | "v3" | "v4";
  /** State resolution algorithm. */
  readonly stateRes: "v1" | "v2" | "v2.1";
  /** Redaction algorithm (named after the first version that introduced it). */
  readonly redaction: "v1" | "v6" | "v8" | "v9" | "v11";
  /** Auth rule family (named after the first version that changed it). */
  readonly authRules: "v1" | "v3" | "v6" | "v7" | "v8" | "v10" | "v11" | "v12";
  /** v5: signing keys must be valid at the event's `origin_server_ts`. */
  readonly enforceKeyValidity: boolean;
  /** v1–v5: `m.room.aliases` events are special-cased in the auth rules. */
  readonly specialCaseAliases: boolean;
  /** v6+: floats and out-of-range integers are rejected. */
  readonly strictCanonicalJson: boolean;
  /** v6+: `notifications` in power levels is checked. */
  readonly limitNotificationsPowerLevels: boolean;
  /** v7+: `knock` membership and join rule. */
  readonly knocking: boolean;
  /** v8+: `restricted` join rule; v10+ also `knock_restricted`. */
  readonly restrictedJoins: boolean;
  readonly knockRestricted: boolean;
  /** v10+: power level values must be integers (not strings). */
  readonly integerPowerLevels: boolean;
  /** v11+: `creator` is implied by `sender`; `redacts` lives in content; `origin` etc. not kept. */
  readonly v11Semantics: boolean;
  /** v12: room ID derived from the create event; creators have infinite power. */
  readonly roomIdFromCreate: boolean;
  /** Whether the version is stable (all here are). */
  readonly stable: boolean;
  /** v1/v2: `prev_events`/`auth_events` are `[eventId, {sha256}]` pairs and `event_id` is a PDU field. */
  readonly referencePairs: boolean;
  /** v1/v2: events also need a signature from the domain of the `event_id`. */
  readonly eventIdDomainSigned: boolean;
  /** v1–v10: PDUs carry a top-level `origin` (kept by their redaction algorithm). */
  readonly originField: boolean;
  /** v1–v10: redactions carry top-level `redacts`; v11+: `content.redacts`. */
  readonly redactsInContent: boolean;
  /** v1–v10: `content.creator` is required on create and names the creator; v11+: `sender`. */
  readonly creatorInContent: boolean;
  /** v1–v11: create rule "domain of the `room_id` does not match the domain of the `sender`". */
  readonly createRoomIdDomainCheck: boolean;
  /** v1–v11: `m.room.create` is selected into `auth_events`; v12: it "MUST NOT be selected". */
  readonly createInAuthEvents: boolean;
  /** v12: `additional_creators` and infinite creator power. */
  readonly privilegedCreators: boolean;
  /** v1/v2: rule 11 authorises `m.room.redaction` by redact level / event-ID domain. */
  readonly redactionAuthRule: boolean;
  /** v1–v9: power level values may be strings (and, before v6, floats). */
  readonly stringyPowerLevels: boolean;
  /** Depth bound: v1–v5 2^63 − 1, v6+ 2^53 − 1 ("depth" in the PDU format). */
  readonly maxDepth: number;
}

const base: RoomVersionRules = {
  id: "1",
  eventIdFormat: "v1",
  stateRes: "v1",
  redaction: "v1",
  authRules: "v1",
  enforceKeyValidity: false,
  specialCaseAliases: true,
  strictCanonicalJson: false,
  limitNotificationsPowerLevels: false,
  knocking: false,
  restrictedJoins: false,
  knockRestricted: false,
  integerPowerLevels: false,
  v11Semantics: false,
  roomIdFromCreate: false,
  stable: true,
  referencePairs: true,
  eventIdDomainSigned: true,
  originField: true,
  redactsInContent: false,
  creatorInContent: true,
  createRoomIdDomainCheck: true,
  createInAuthEvents: true,
  privilegedCreators: false,
  redactionAuthRule: true,
  stringyPowerLevels: true,
  maxDepth: 2 ** 63 - 1, // not exactly representable as a double; the bound is approximate for v1–v5
};

const v2 = { ...base, id: "2", stateRes: "v2" } as const;
const v3 = {
  ...v2, id: "3", eventIdFormat: "v3", authRules: "v3", referencePairs: false, eventIdDomainSigned: false, redactionAuthRule: false,
} as const;
const v4 = { ...v3, id: "4", eventIdFormat: "v4" } as const;
const v5 = { ...v4, id: "5", enforceKeyValidity: true } as const;
const v6 = {
  ...v5, id: "6", redaction: "v6", authRules: "v6", specialCaseAliases: false, strictCanonicalJson: true,
  limitNotificationsPowerLevels: true, maxDepth: 2 ** 53 - 1,
} as const;
const v7 = { ...v6, id: "7", authRules: "v7", knocking: true } as const;
const v8 = { ...v7, id: "8", redaction: "v8", authRules: "v8", restrictedJoins: true } as const;
const v9 = { ...v8, id: "9", redaction: "v9" } as const;
const v10 = { ...v9, id: "10", authRules: "v10", knockRestricted: true, integerPowerLevels: true, stringyPowerLevels: false } as const;
const v11 = {
  ...v10, id: "11", redaction: "v11", authRules: "v11", v11Semantics: true, originField: false, redactsInContent: true,
  creatorInContent: false,
} as const;
const v12 = {
  ...v11, id: "12", authRules: "v12", stateRes: "v2.1", roomIdFromCreate: true, createRoomIdDomainCheck: false,
  createInAuthEvents: false, privilegedCreators: true,
} as const;

/** Every stable room version this server understands, by ID. */
export const ROOM_VERSIONS: ReadonlyMap<string, RoomVersionRules> = new Map(
  [base, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12].map((v) => [v.id, v as RoomVersionRules]),
);

/** The version new rooms get unless asked otherwise. */
export const DEFAULT_ROOM_VERSION = "12";

/** The rules of a version, or undefined if this server does not know it. */
export function roomVersion(id: string): RoomVersionRules | undefined {
  return ROOM_VERSIONS.get(id);
}
