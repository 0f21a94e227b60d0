/**
 * The authorisation rules of every room version family (`rooms/fragments/v1-auth-rules.md`,
 * `v3-auth-rules.md`, `v8-auth-rules.md`, and the rules in `rooms/v6.md`, `v7.md`, `v10.md`,
 * `v11.md`, `v12.md`), plus "Auth events selection" (server-server API). Pure and synchronous:
 * no storage, clock or network. Step numbers in comments are the v12 numbering unless noted
 * (v1–v11 number the same rules one lower from "Considering the event's auth_events" on, and
 * v3+ drop the v1 `m.room.aliases` rule 4, renumbering the rest).
 */
import nacl from "tweetnacl";
import { canonicalJsonBytes } from "../crypto/canonicalJson.ts";
import { tryDecodeBase64 } from "../crypto/base64.ts";
import { signable } from "../crypto/signing.ts";
import type { Pdu } from "../events/types.ts";
import { refIds, stateKeyOf } from "../events/types.ts";
import { eventIdFromHash, referenceHashInput } from "../events/hashes.ts";
import { domainOf, isValidUserId } from "./ids.ts";
import { eventPowerLevel, parsePowerLevel, requiredPowerLevel, roomCreators, userPowerLevel } from "./powerLevels.ts";
import { sha256Sync } from "./syncHash.ts";
import type { RoomVersionRules } from "./versions.ts";
import { roomVersion } from "./versions.ts";
import { asObject } from "../validate.ts";

/** The outcome of an auth check; `reason` names the rule that failed. */
export type AuthResult = { allowed: true } | { allowed: false; reason: string };

const CREATE = stateKeyOf("m.room.create", "");
const POWER = stateKeyOf("m.room.power_levels", "");
const JOIN_RULES = stateKeyOf("m.room.join_rules", "");
const member = (userId: string): string => stateKeyOf("m.room.member", userId);
const ALLOW: AuthResult = { allowed: true };
const deny = (reason: string): AuthResult => ({ allowed: false, reason });

/**
 * "Auth events selection": the state keys whose current events become an event's `auth_events`.
 * The create event itself has none; v12 never selects `m.room.create`.
 */
export function authStateKeysFor(
  type: string,
  stateKey: string | undefined,
  sender: string,
  content: Record<string, unknown>,
  version: RoomVersionRules,
): string[] {
  if (type === "m.room.create") return [];
  const keys: string[] = [];
  // "Depending on the room version, the m.room.create event."
  if (version.createInAuthEvents) keys.push(CREATE);
  // "The current m.room.power_levels event, if any." / "The sender's current m.room.member event, if any."
  keys.push(POWER, member(sender));
  if (type === "m.room.member" && typeof stateKey === "string") {
    // "The target's current m.room.member event, if any."
    if (stateKey !== sender) keys.push(member(stateKey));
    const membership = content.membership;
    // "If membership is join, invite or knock, the current m.room.join_rules event, if any."
    if (membership === "join" || membership === "invite" || membership === "knock") keys.push(JOIN_RULES);
    // "If membership is invite and content contains a third_party_invite property, the current
    // m.room.third_party_invite event with state_key matching content.third_party_invite.signed.token"
    const token = asObject(asObject(content.third_party_invite)?.signed)?.token;
    if (membership === "invite" && typeof token === "string") keys.push(stateKeyOf("m.room.third_party_invite", token));
    // "If membership is join, content.join_authorised_via_users_server is present, and the room
    // version supports restricted rooms, then the m.room.member event with state_key matching" it.
    const via = content.join_authorised_via_users_server;
    if (membership === "join" && version.restrictedJoins && typeof via === "string") {
      const k = member(via);
      if (!keys.includes(k)) keys.push(k);
    }
  }
  return keys;
}

const createIds = new WeakMap<Pdu, string>();

/**
 * The event ID of a create event, synchronously: its `event_id` (v1/v2) or `$` + base64 of its
 * reference hash (v3: standard, v4+: URL-safe alphabet). Cached per object.
 */
export function eventIdSync(pdu: Pdu, version: RoomVersionRules): string {
  const cached = createIds.get(pdu);
  if (cached !== undefined) return cached;
  // The same reference hash as `eventIdOf`, taken synchronously.
  const id = version.eventIdFormat === "v1" ? String(pdu.event_id) : eventIdFromHash(sha256Sync(referenceHashInput(pdu, version)), version);
  createIds.set(pdu, id);
  return id;
}

/** Thrown inside `checkAuth` when a state event it reads belongs to another room (rule 3.5). */
class ForeignAuthEvent extends Error {
  override readonly name = "ForeignAuthEvent";
}

/**
 * Whether `event` is allowed given `authState` (SK → event; must contain the create event, also in
 * v12). Implements every rule except those about the `auth_events` list itself (duplicates,
 * selection, rejected entries — see `checkAuthEvents`) and the cryptographic check of rule 5.2
 * (`join_authorised_via_users_server` signature: here its presence is required; `receive.ts`
 * verifies it with the server's keys). Third-party invite signatures (rule 5.4.1.7) are verified
 * here with tweetnacl against the `m.room.third_party_invite` public keys.
 */
export function checkAuth(event: Pdu, eventId: string, authState: Map<string, Pdu>, version: RoomVersionRules): AuthResult {
  try {
    return checkAuthInner(event, eventId, authState, version);
  } catch (e) {
    if (e instanceof ForeignAuthEvent) return deny(e.message);
    throw e;
  }
}

function checkAuthInner(event: Pdu, eventId: string, authState: Map<string, Pdu>, version: RoomVersionRules): AuthResult {
  const type = event.type;
  const sender = event.sender;
  const content = asObject(event.content) ?? {};
  const stateKey = event.state_key;

  // 1. "If type is m.room.create:" (whatever its state_key; receive.ts drops a non-empty one as malformed)
  if (type === "m.room.create") {
    // 1.1 "If it has any prev_events, reject."
    if (Array.isArray(event.prev_events) && event.prev_events.length > 0) return deny("create: has prev_events");
    if (version.createRoomIdDomainCheck) {
      // 1.2 (v1–v11) "If the domain of the room_id does not match the domain of the sender, reject."
      if (typeof event.room_id !== "string" || domainOf(event.room_id) !== domainOf(sender)) return deny("create: room_id domain differs from sender's");
    } else if ("room_id" in event) {
      // 1.2 (v12) "If the event has a room_id, reject."
      return deny("create: has a room_id");
    }
    // 1.3 "If content.room_version is present and is not a recognised version, reject."
    if ("room_version" in content && (typeof content.room_version !== "string" || !roomVersion(content.room_version))) {
      return deny("create: unknown room_version");
    }
    // 1.4 (v1–v10) "If content has no creator property, reject."
    if (version.creatorInContent && !("creator" in content)) return deny("create: no creator");
    // 1.4 (v12) "If additional_creators is present … and is not an array of strings where each string
    // passes the same user ID validation applied to sender, reject."
    if (version.privilegedCreators && "additional_creators" in content) {
      const ac = content.additional_creators;
      if (!Array.isArray(ac) || !ac.every((u) => typeof u === "string" && isValidUserId(u))) return deny("create: invalid additional_creators");
    }
    // 1.5 "Otherwise, allow."
    return ALLOW;
  }

  const create = authState.get(CREATE);
  if (!create) return deny("no m.room.create event in the auth state");
  if (version.roomIdFromCreate) {
    // 2. (v12) "If the event's room_id is not an event ID for an accepted (not rejected)
    // m.room.create event, with the sigil ! instead of $, reject." (authState holds accepted events.)
    if (typeof event.room_id !== "string" || event.room_id !== "!" + eventIdSync(create, version).slice(1)) {
      return deny("room_id is not the create event's ID");
    }
  } else if (create.room_id !== event.room_id) {
    return deny("create event belongs to another room");
  }
  // 3.5 "If any event in auth_events has a room_id which does not match that of the event being
  // authorised, reject." — applied to every state entry read below.
  const get = (k: string): Pdu | undefined => {
    const e = authState.get(k);
    if (e && k !== CREATE && e.room_id !== event.room_id) throw new ForeignAuthEvent(`auth event ${k} belongs to another room`);
    return e;
  };
  const membershipOf = (userId: string): string | undefined => {
    const m = get(member(userId))?.content.membership;
    return typeof m === "string" ? m : undefined;
  };
  // Power levels read through `get` so the room check applies to them too.
  const plState = new Map<string, Pdu>([[CREATE, create]]);
  const pl = get(POWER);
  if (pl) plState.set(POWER, pl);
  const powerOf = (userId: string): number => userPowerLevel(userId, plState, version);

  // 4. "If the content of the m.room.create event in the room state has the property m.federate set
  // to false, and the sender domain of the event does not match the sender domain of the create
  // event, reject."
  if (create.content["m.federate"] === false && domainOf(sender) !== domainOf(create.sender)) return deny("m.federate is false");

  // v1–v5 rule 4: "If type is m.room.aliases:"
  if (version.specialCaseAliases && type === "m.room.aliases") {
    // 4.1 "If event has no state_key, reject."
    if (stateKey === undefined) return deny("aliases: no state_key");
    // 4.2 "If sender's domain doesn't match state_key, reject."
    if (domainOf(sender) !== stateKey) return deny("aliases: state_key is not the sender's domain");
    // 4.3 "Otherwise, allow."
    return ALLOW;
  }

  // 5. "If type is m.room.member:"
  if (type === "m.room.member") return checkMember(event, content, version, { get, membershipOf, powerOf, create, plState });

  const senderMembership = membershipOf(sender);
  const senderPower = powerOf(sender);
  // 6. "If the sender's current membership state is not join, reject."
  if (senderMembership !== "join") return deny("sender is not joined");
  // 7. "If type is m.room.third_party_invite: Allow if and only if sender's current power level is
  // greater than or equal to the invite level."
  if (type === "m.room.third_party_invite") {
    return senderPower >= requiredPowerLevel("invite", plState) ? ALLOW : deny("third_party_invite: below invite level");
  }
  // 8. "If the event type's required power level is greater than the sender's power level, reject."
  if (eventPowerLevel(type, stateKey !== undefined, plState) > senderPower) return deny(`below the required power level for ${type}`);
  // 9. "If the event has a state_key that starts with an @ and does not match the sender, reject."
  if (typeof stateKey === "string" && stateKey.startsWith("@") && stateKey !== sender) return deny("state_key is another user's ID");
  // 10. "If type is m.room.power_levels:"
  if (type === "m.room.power_levels" && stateKey === "") return checkPowerLevels(content, sender, senderPower, pl, create, version);
  // v1/v2 rule 11: "If type is m.room.redaction:"
  if (version.redactionAuthRule && type === "m.room.redaction") {
    // 11.1 "If the sender's power level is greater than or equal to the redact level, allow."
    if (senderPower >= requiredPowerLevel("redact", plState)) return ALLOW;
    // 11.2 "If the domain of the event_id of the event being redacted is the same as the domain of
    // the event_id of the m.room.redaction, allow."
    if (typeof event.redacts === "string" && domainOf(event.redacts) === domainOf(eventId)) return ALLOW;
    // 11.3 "Otherwise, reject."
    return deny("redaction: below redact level and from another domain");
  }
  // 11. "Otherwise, allow."
  return ALLOW;
}

interface MemberCtx {
  get: (k: string) => Pdu | undefined;
  membershipOf: (userId: string) => string | undefined;
  powerOf: (userId: string) => number;
  create: Pdu;
  plState: Map<string, Pdu>;
}

/** Rule 5, `m.room.member`. */
function checkMember(event: Pdu, content: Record<string, unknown>, version: RoomVersionRules, c: MemberCtx): AuthResult {
  const sender = event.sender;
  const target = event.state_key;
  const membership = content.membership;
  // 5.1 "If there is no state_key property, or no membership property in content, reject."
  if (typeof target !== "string" || !("membership" in content)) return deny("member: no state_key or membership");
  // 5.2 (v8+) "If content has a join_authorised_via_users_server key: If the event is not validly
  // signed by the homeserver of the user ID denoted by the key, reject." (Presence here; the
  // signature itself is verified on receipt, where the server keys are known.)
  if (version.restrictedJoins && "join_authorised_via_users_server" in content) {
    const via = content.join_authorised_via_users_server;
    const server = typeof via === "string" ? domainOf(via) : undefined;
    const sigs = server !== undefined ? asObject(asObject(event.signatures)?.[server]) : undefined;
    if (!sigs || Object.keys(sigs).length === 0) return deny("member: not signed by the join_authorised_via_users_server's server");
  }
  const senderMembership = c.membershipOf(sender);
  const targetMembership = c.membershipOf(target);
  const joinRule = c.get(JOIN_RULES)?.content.join_rule;

  if (membership === "join") {
    // 5.3.1 "If the only previous event is an m.room.create and the state_key is the creator [v11+:
    // the sender of the m.room.create], allow."
    const prev = Array.isArray(event.prev_events) ? refIds(event.prev_events) : [];
    const creator = version.creatorInContent ? c.create.content.creator : c.create.sender;
    if (prev.length === 1 && prev[0] === eventIdSync(c.create, version) && target === creator) return ALLOW;
    // 5.3.2 "If the sender does not match state_key, reject."
    if (sender !== target) return deny("join: sender is not the state_key");
    // 5.3.3 "If the sender is banned, reject."
    if (senderMembership === "ban") return deny("join: sender is banned");
    // 5.3.4 "If the join_rule is invite [v7+: or knock] then allow if membership state is invite or join."
    if (joinRule === "invite" || (version.knocking && joinRule === "knock")) {
      return senderMembership === "invite" || senderMembership === "join" ? ALLOW : deny("join: invite-only and not invited");
    }
    // 5.3.5 (v8+) "If the join_rule is restricted [v10+: or knock_restricted]:"
    if (version.restrictedJoins && (joinRule === "restricted" || (version.knockRestricted && joinRule === "knock_restricted"))) {
      // 5.3.5.1 "If membership state is join or invite, allow."
      if (senderMembership === "join" || senderMembership === "invite") return ALLOW;
      // 5.3.5.2 "If the join_authorised_via_users_server key in content is not a user with sufficient
      // permission to invite other users or is not a joined member of the room, reject."
      const via = content.join_authorised_via_users_server;
      if (typeof via !== "string") return deny("join: restricted room and no join_authorised_via_users_server");
      if (c.membershipOf(via) !== "join") return deny("join: authorising user is not joined");
      if (c.powerOf(via) < requiredPowerLevel("invite", c.plState)) return deny("join: authorising user cannot invite");
      // 5.3.5.3 "Otherwise, allow."
      return ALLOW;
    }
    // 5.3.6 "If the join_rule is public, allow." 5.3.7 "Otherwise, reject."
    return joinRule === "public" ? ALLOW : deny(`join: join_rule ${String(joinRule)} does not allow joining`);
  }

  if (membership === "invite") {
    // 5.4.1 "If content has a third_party_invite property:"
    if ("third_party_invite" in content) return checkThirdPartyInvite(event, content, targetMembership, c);
    // 5.4.2 "If the sender's current membership state is not join, reject."
    if (senderMembership !== "join") return deny("invite: sender is not joined");
    // 5.4.3 "If target user's current membership state is join or ban, reject."
    if (targetMembership === "join" || targetMembership === "ban") return deny(`invite: target is ${targetMembership}`);
    // 5.4.4 "If the sender's power level is greater than or equal to the invite level, allow."
    if (c.powerOf(sender) >= requiredPowerLevel("invite", c.plState)) return ALLOW;
    // 5.4.5 "Otherwise, reject."
    return deny("invite: below invite level");
  }

  if (membership === "leave") {
    // 5.5.1 "If the sender matches state_key, allow if and only if that user's current membership
    // state is invite, join [v7+: or knock]."
    if (sender === target) {
      const ok = senderMembership === "invite" || senderMembership === "join" || (version.knocking && senderMembership === "knock");
      return ok ? ALLOW : deny(`leave: cannot leave from ${String(senderMembership)}`);
    }
    // 5.5.2 "If the sender's current membership state is not join, reject."
    if (senderMembership !== "join") return deny("kick: sender is not joined");
    const senderPower = c.powerOf(sender);
    // 5.5.3 "If the target user's current membership state is ban, and the sender's power level is
    // less than the ban level, reject."
    if (targetMembership === "ban" && senderPower < requiredPowerLevel("ban", c.plState)) return deny("unban: below ban level");
    // 5.5.4 "If the sender's power level is greater than or equal to the kick level, and the target
    // user's power level is less than the sender's power level, allow."
    if (senderPower >= requiredPowerLevel("kick", c.plState) && c.powerOf(target) < senderPower) return ALLOW;
    // 5.5.5 "Otherwise, reject."
    return deny("kick: insufficient power");
  }

  if (membership === "ban") {
    // 5.6.1 "If the sender's current membership state is not join, reject."
    if (senderMembership !== "join") return deny("ban: sender is not joined");
    const senderPower = c.powerOf(sender);
    // 5.6.2 "If the sender's power level is greater than or equal to the ban level, and the target
    // user's power level is less than the sender's power level, allow."
    if (senderPower >= requiredPowerLevel("ban", c.plState) && c.powerOf(target) < senderPower) return ALLOW;
    // 5.6.3 "Otherwise, reject."
    return deny("ban: insufficient power");
  }

  if (version.knocking && membership === "knock") {
    // 5.7.1 "If the join_rule is anything other than knock [v10+: or knock_restricted], reject."
    if (!(joinRule === "knock" || (version.knockRestricted && joinRule === "knock_restricted"))) return deny("knock: join_rule does not allow knocking");
    // 5.7.2 "If sender does not match state_key, reject."
    if (sender !== target) return deny("knock: sender is not the state_key");
    // 5.7.3 "If the sender's current membership is not ban, invite, or join, allow."
    if (senderMembership !== "ban" && senderMembership !== "invite" && senderMembership !== "join") return ALLOW;
    // 5.7.4 "Otherwise, reject."
    return deny(`knock: sender is ${String(senderMembership)}`);
  }
  // 5.8 "Otherwise, the membership is unknown. Reject."
  return deny(`member: unknown membership ${String(membership)}`);
}

/** Rule 5.4.1, an invite made from a third-party invite. */
function checkThirdPartyInvite(event: Pdu, content: Record<string, unknown>, targetMembership: string | undefined, c: MemberCtx): AuthResult {
  // 5.4.1.1 "If target user is banned, reject."
  if (targetMembership === "ban") return deny("3pid invite: target is banned");
  // 5.4.1.2 "If content.third_party_invite does not have a signed property, reject."
  const signed = asObject(asObject(content.third_party_invite)?.signed);
  if (!signed) return deny("3pid invite: no signed");
  // 5.4.1.3 "If signed does not have mxid and token properties, reject."
  if (typeof signed.mxid !== "string" || typeof signed.token !== "string") return deny("3pid invite: signed lacks mxid or token");
  // 5.4.1.4 "If mxid does not match state_key, reject."
  if (signed.mxid !== event.state_key) return deny("3pid invite: mxid is not the state_key");
  // 5.4.1.5 "If there is no m.room.third_party_invite event in the current room state with
  // state_key matching token, reject."
  const tpi = c.get(stateKeyOf("m.room.third_party_invite", signed.token));
  if (!tpi) return deny("3pid invite: no matching m.room.third_party_invite");
  // 5.4.1.6 "If sender does not match sender of the m.room.third_party_invite, reject."
  if (tpi.sender !== event.sender) return deny("3pid invite: sender differs from the third_party_invite's");
  // 5.4.1.7 "If any signature in signed matches any public key in the m.room.third_party_invite
  // event, allow." Keys: "public_key" and each `public_keys[].public_key`.
  const keys: string[] = [];
  if (typeof tpi.content.public_key === "string") keys.push(tpi.content.public_key);
  if (Array.isArray(tpi.content.public_keys)) {
    for (const k of tpi.content.public_keys) {
      const pk = asObject(k)?.public_key;
      if (typeof pk === "string") keys.push(pk);
    }
  }
  const message = canonicalJsonBytes(signable(signed));
  for (const server of Object.values(asObject(signed.signatures) ?? {})) {
    for (const sig of Object.values(asObject(server) ?? {})) {
      if (typeof sig !== "string") continue;
      for (const key of keys) if (verifyB64(message, sig, key)) return ALLOW;
    }
  }
  // 5.4.1.8 "Otherwise, reject."
  return deny("3pid invite: no valid signature from the third_party_invite's keys");
}

/** ed25519 verify with base64 (standard or URL-safe, unpadded) key and signature; false on malformed input. */
function verifyB64(message: Uint8Array, sigB64: string, keyB64: string): boolean {
  // tryDecodeBase64 reads both alphabets.
  const sig = tryDecodeBase64(sigB64);
  const key = tryDecodeBase64(keyB64);
  return sig?.length === 64 && key?.length === 32 && nacl.sign.detached.verify(message, sig, key);
}

const PL_LEVEL_KEYS = ["users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"] as const;

/** JSON equality of two power level values as written (so "50" → 50 counts as a change). */
const same = (a: unknown, b: unknown): boolean => a === b || (a !== undefined && b !== undefined && JSON.stringify(a) === JSON.stringify(b));

/** Rule 10, `m.room.power_levels`. */
function checkPowerLevels(
  content: Record<string, unknown>,
  sender: string,
  senderPower: number,
  previous: Pdu | undefined,
  create: Pdu,
  version: RoomVersionRules,
): AuthResult {
  const stringy = version.stringyPowerLevels;
  const isLevel = (v: unknown): boolean => parsePowerLevel(v, stringy) !== undefined;
  if (version.integerPowerLevels) {
    // 10.1 (v10+) "If any of the properties users_default, events_default, state_default, ban,
    // redact, kick, or invite in content are present and not an integer, reject."
    for (const k of PL_LEVEL_KEYS) if (k in content && !isLevel(content[k])) return deny(`power_levels: ${k} is not an integer`);
    // 10.2 (v10+) "If either of the properties events or notifications in content are present and
    // not an object with values that are integers, reject."
    for (const k of ["events", "notifications"]) {
      if (!(k in content)) continue;
      const o = asObject(content[k]);
      if (!o || !Object.values(o).every(isLevel)) return deny(`power_levels: ${k} is not an object of integers`);
    }
  }
  // 10.3 "If the users property in content is not an object with keys that are valid user IDs with
  // values that are integers [v1–v9: (or a string that is an integer)], reject."
  if ("users" in content) {
    const users = asObject(content.users);
    if (!users) return deny("power_levels: users is not an object");
    for (const [u, v] of Object.entries(users)) {
      if (!isValidUserId(u)) return deny(`power_levels: ${u} is not a valid user ID`);
      if (!isLevel(v)) return deny(`power_levels: level of ${u} is not an integer`);
    }
    // 10.4 (v12) "If the users property in content contains the sender of the m.room.create event or
    // any of the additional_creators array … reject."
    if (version.privilegedCreators) {
      for (const creator of roomCreators(new Map([[CREATE, create]]), version)) {
        if (Object.hasOwn(users, creator)) return deny(`power_levels: creator ${creator} may not be listed in users`);
      }
    }
  }
  // 10.5 "If there is no previous m.room.power_levels event in the room, allow."
  if (!previous) return ALLOW;
  const old = asObject(previous.content) ?? {};
  const level = (v: unknown): number | undefined => parsePowerLevel(v, stringy);
  // 10.6 "For the properties users_default, events_default, state_default, ban, redact, kick, invite
  // check if they were added, changed or removed. For each found alteration:"
  for (const k of PL_LEVEL_KEYS) {
    if (same(old[k], content[k])) continue;
    // 10.6.1 "If the current value is higher than the sender's current power level, reject."
    const cur = level(old[k]);
    if (cur !== undefined && cur > senderPower) return deny(`power_levels: current ${k} is above the sender's level`);
    // 10.6.2 "If the new value is higher than the sender's current power level, reject."
    const neu = level(content[k]);
    if (neu !== undefined && neu > senderPower) return deny(`power_levels: new ${k} is above the sender's level`);
  }
  // 10.7/10.8: the `events` [v6+: and `notifications`] maps.
  const maps = version.limitNotificationsPowerLevels ? ["events", "notifications"] : ["events"];
  for (const m of maps) {
    const o = asObject(old[m]) ?? {};
    const n = asObject(content[m]) ?? {};
    for (const k of new Set([...Object.keys(o), ...Object.keys(n)])) {
      const ov = Object.hasOwn(o, k) ? o[k] : undefined;
      const nv = Object.hasOwn(n, k) ? n[k] : undefined;
      if (same(ov, nv)) continue;
      // 10.7.1 "For each entry being changed in, or removed from … If the current value is greater
      // than the sender's current power level, reject."
      const cur = level(ov);
      if (cur !== undefined && cur > senderPower) return deny(`power_levels: current ${m}.${k} is above the sender's level`);
      // 10.8.1 "For each entry being added to, or changed in … If the new value is greater than the
      // sender's current power level, reject."
      const neu = level(nv);
      if (neu !== undefined && neu > senderPower) return deny(`power_levels: new ${m}.${k} is above the sender's level`);
    }
  }
  const ou = asObject(old.users) ?? {};
  const nu = asObject(content.users) ?? {};
  for (const u of new Set([...Object.keys(ou), ...Object.keys(nu)])) {
    const ov = Object.hasOwn(ou, u) ? ou[u] : undefined;
    const nv = Object.hasOwn(nu, u) ? nu[u] : undefined;
    if (same(ov, nv)) continue;
    // 10.9 "For each entry being changed in, or removed from, the users property, other than the
    // sender's own entry: If the current value is greater than or equal to the sender's current
    // power level, reject."
    const cur = level(ov);
    if (u !== sender && cur !== undefined && cur >= senderPower) return deny(`power_levels: cannot change the level of ${u}`);
    // 10.10 "For each entry being added to, or changed in, the users property: If the new value is
    // greater than the sender's current power level, reject."
    const neu = level(nv);
    if (neu !== undefined && neu > senderPower) return deny(`power_levels: new level of ${u} is above the sender's`);
  }
  // 10.11 "Otherwise, allow."
  return ALLOW;
}

/** An event with its ID as the auth-events checks need it. */
export interface AuthEventEntry {
  eventId: string;
  pdu: Pdu;
  /** Rejected under the checks performed on receipt (rule 3.3). */
  rejected?: boolean | string;
}

/**
 * Rule 3 (v1–v11: rule 2), "Considering the event's auth_events": duplicates, selection, rejected
 * entries, (v1–v11) presence of the create event, room IDs. `authEvents` are the events the PDU's
 * `auth_events` name, in order.
 */
export function checkAuthEvents(event: Pdu, authEvents: AuthEventEntry[], version: RoomVersionRules): AuthResult {
  if (event.type === "m.room.create") {
    return authEvents.length === 0 ? ALLOW : deny("create: has auth_events");
  }
  const allowed = new Set(authStateKeysFor(event.type, event.state_key, event.sender, asObject(event.content) ?? {}, version));
  const seen = new Set<string>();
  let hasCreate = false;
  for (const a of authEvents) {
    if (typeof a.pdu.state_key !== "string") return deny(`auth event ${a.eventId} is not a state event`);
    const k = stateKeyOf(a.pdu.type, a.pdu.state_key);
    // 3.1 "If there are duplicate entries for a given type and state_key pair, reject."
    if (seen.has(k)) return deny(`duplicate auth event for ${a.pdu.type}/${a.pdu.state_key}`);
    seen.add(k);
    // 3.2 "If there are entries whose type and state_key don't match those specified by the auth
    // events selection algorithm … reject." (v12: "m.room.create MUST NOT be selected".)
    if (!allowed.has(k)) return deny(`auth event ${a.pdu.type}/${a.pdu.state_key} is not selected by the auth rules`);
    // 3.3 "If there are entries which were themselves rejected … reject."
    if (a.rejected) return deny(`auth event ${a.eventId} was rejected`);
    if (k === CREATE) hasCreate = true;
    // 3.5 "If any event in auth_events has a room_id which does not match … reject."
    if (a.pdu.room_id !== event.room_id) return deny(`auth event ${a.eventId} belongs to another room`);
  }
  // 2.4 (v1–v11) "If there is no m.room.create event among the entries, reject."
  if (version.createInAuthEvents && !hasCreate) return deny("no m.room.create among auth_events");
  return ALLOW;
}

/**
 * Whether an accepted redaction is applied to its target ("Handling redactions", v3+): "1. The power
 * level of the redaction event's sender is greater than or equal to the redact level. 2. The domain
 * of the redaction event's sender matches that of the original event's sender." In v1/v2 the auth
 * rules (rule 11) already decided, so an accepted redaction applies. `state` is the state the
 * redaction is judged against (SK → PDU, with the create event).
 */
export function mayApplyRedaction(redaction: Pdu, target: Pdu, state: Map<string, Pdu>, version: RoomVersionRules): boolean {
  if (version.redactionAuthRule) return true;
  if (userPowerLevel(redaction.sender, state, version) >= requiredPowerLevel("redact", state)) return true;
  return domainOf(redaction.sender) === domainOf(target.sender);
}
