/**
 * The checks performed on receipt of a PDU (server-server API "Checks performed on receipt of a
 * PDU"), in the spec's order, returning a verdict the caller acts on. Async only because signature
 * verification is; everything else is pure. The caller supplies the keys, the events named by
 * `auth_events`, the state before the event (state resolution over its `prev_events`) and the
 * current state.
 */
import { canonicalJsonBytes, isCanonicalValue } from "../crypto/canonicalJson.ts";
import type { Ed25519Verifier } from "../crypto/ed25519.ts";
import type { JsonObject } from "../crypto/signing.ts";
import { verifyJsonSignature } from "../crypto/signing.ts";
import { checkContentHash, eventIdOf } from "../events/hashes.ts";
import { redact } from "../events/redaction.ts";
import type { EventWithId, Pdu, StateMap } from "../events/types.ts";
import { refIds, stateKeyOf } from "../events/types.ts";
import type { AuthEventEntry } from "./auth.ts";
import { authStateKeysFor, checkAuth, checkAuthEvents } from "./auth.ts";
import type { FetchEvent, ResolvableEvent } from "./authChain.ts";
import { MAX_KEY_BYTES, MAX_PDU_BYTES, oversizedKeyField } from "./build.ts";
import { domainOf, isValidEventId, isValidRoomId, isValidServerName, isValidUserId } from "./ids.ts";
import type { RoomVersionRules } from "./versions.ts";
import { asObject } from "../validate.ts";

/**
 * What to do with a received PDU: "drop" (steps 1–2: invalid format or signatures; nothing is
 * stored), "reject" (steps 4–5), "soft-fail" (step 6), or "accept". `event` is the copy to keep:
 * the redacted one when the content hash did not match (step 3, `redacted: true`).
 */
export interface ReceiveVerdict {
  outcome: "accept" | "reject" | "soft-fail" | "drop";
  event?: EventWithId;
  redacted?: boolean;
  reason?: string;
  /** Set with outcome "drop" when `auth_events` name events the caller has not supplied: fetch, then retry. */
  missingAuthEvents?: string[];
}

/**
 * Finds a server's public key by key ID (undefined for unknown keys). `validAt` is the event's
 * `origin_server_ts` in versions that enforce key validity (v5+: "valid_until_ts … at least as large
 * as the origin_server_ts"), else undefined; return undefined for a key not valid then.
 */
export type ServerKeyLookup = (server: string, keyId: string, validAt: number | undefined) => Uint8Array | undefined | Promise<Uint8Array | undefined>;

/** Everything the checks need from outside. */
export interface ReceiveInputs {
  /** Server signing keys (v5+: the caller's lookup must honour `valid_until_ts` ≥ `origin_server_ts`). */
  keys: ServerKeyLookup;
  verifier: Ed25519Verifier;
  /** Looks up events named by `auth_events` (and, for v12, the create event), with their rejection status. */
  fetchEvent: FetchEvent;
  /** The state before the event (step 5); omit to skip that step (e.g. for outliers). */
  stateBefore?: StateMap;
  /** The room's current state (step 6, soft failure); omit to skip. */
  currentState?: StateMap;
  /** The event ID the caller asked for, when fetching by ID: a different computed ID is dropped. */
  expectedEventId?: string;
}

const isInt = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v);

/**
 * Step 1, "Is a valid event": the room version's PDU format (`pdu_v1` … `pdu_v12`), strict canonical
 * JSON from v6, and the size limits. Returns a reason when invalid.
 */
export function checkFormat(raw: JsonObject, version: RoomVersionRules): string | undefined {
  const p = raw as Partial<Pdu> & JsonObject;
  if (typeof p.type !== "string") return "type is not a string";
  if (typeof p.sender !== "string" || !isValidUserId(p.sender)) return "sender is not a user ID";
  if (!asObject(p.content)) return "content is not an object";
  if (!isInt(p.origin_server_ts)) return "origin_server_ts is not an integer";
  if (!isInt(p.depth) || p.depth < 0 || p.depth > version.maxDepth) return "depth is not an integer in range";
  if (typeof asObject(p.hashes)?.sha256 !== "string") return "hashes.sha256 missing";
  const sigs = asObject(p.signatures);
  if (!sigs || !Object.values(sigs).every((s) => asObject(s) && Object.values(s as object).every((x) => typeof x === "string"))) return "signatures malformed";
  if ("state_key" in p && typeof p.state_key !== "string") return "state_key is not a string";
  if ("unsigned" in p && !asObject(p.unsigned)) return "unsigned is not an object";
  // The `m.room.create` schema: "state_key: A zero-length string."
  if (p.type === "m.room.create" && p.state_key !== "") return "m.room.create without an empty state_key";
  const isCreate = p.type === "m.room.create";
  // Room IDs: `!opaque:domain` before v12; in v12 "Omitted from m.room.create events", else the hash form.
  if (version.roomIdFromCreate && isCreate) {
    if ("room_id" in p) return "v12 create event has a room_id";
  } else if (typeof p.room_id !== "string" || !isValidRoomId(p.room_id, !version.roomIdFromCreate)) return "room_id malformed";
  // prev_events / auth_events: `[id, {sha256}]` pairs in v1/v2, event ID strings from v3.
  for (const field of ["prev_events", "auth_events"] as const) {
    const list = p[field];
    if (!Array.isArray(list)) return `${field} is not an array`;
    const ok = version.referencePairs
      ? list.every((x) => Array.isArray(x) && x.length === 2 && isValidEventId(x[0]) && typeof asObject(x[1])?.sha256 === "string")
      : list.every((x) => isValidEventId(x));
    if (!ok) return `${field} malformed`;
    // PDU format: auth_events "Must contain less than or equal to 10 events", prev_events "… 20 events".
    if (list.length > (field === "auth_events" ? 10 : 20)) return `${field} has too many entries`;
  }
  // v1/v2 event IDs are `$opaque_id:domain` ("Event IDs" fragment).
  if (version.referencePairs && !(isValidEventId(p.event_id) && isValidServerName(domainOf(p.event_id) ?? ""))) return "event_id malformed";
  if (p.type === "m.room.redaction") {
    const target = version.redactsInContent ? (p.content as JsonObject).redacts : p.redacts;
    if (target !== undefined && !isValidEventId(target)) return "redacts is not an event ID";
  }
  // v6+ "Servers MUST strictly enforce the JSON format specified in the appendices".
  if (version.strictCanonicalJson && !isCanonicalValue(p)) return "not canonical JSON";
  const oversized = oversizedKeyField({ type: p.type, state_key: p.state_key, sender: p.sender, room_id: p.room_id, event_id: p.event_id });
  if (oversized !== undefined) return `${oversized} exceeds ${MAX_KEY_BYTES} bytes`;
  try {
    if (canonicalJsonBytes(p).length > MAX_PDU_BYTES) return `event exceeds ${MAX_PDU_BYTES} bytes`;
  } catch {
    // v1–v5 may carry floats our canonical encoder refuses; they were measured by the sender.
  }
  return undefined;
}

/** Builds the auth state (SK → PDU) for checking `pdu` against `state`, adding the create event. */
async function authStateFrom(pdu: Pdu, state: StateMap, create: ResolvableEvent, fetch: FetchEvent, version: RoomVersionRules): Promise<Map<string, Pdu>> {
  const out = new Map<string, Pdu>([[stateKeyOf("m.room.create", ""), create.pdu]]);
  for (const k of authStateKeysFor(pdu.type, pdu.state_key, pdu.sender, pdu.content, version)) {
    const id = state.get(k);
    const e = id ? await fetch(id) : undefined;
    if (e && !e.rejected) out.set(k, e.pdu);
  }
  return out;
}

/** Runs the checks on receipt of a PDU in spec order. `raw` is the PDU as received. */
export async function receivePdu(raw: JsonObject, version: RoomVersionRules, inputs: ReceiveInputs): Promise<ReceiveVerdict> {
  // 1. "Is a valid event, otherwise it is dropped."
  const formatError = checkFormat(raw, version);
  if (formatError) return { outcome: "drop", reason: `invalid event: ${formatError}` };
  // v1–v5 "MUST NOT strictly enforce the JSON format", so floats may appear; their canonical form is
  // not specified, so such an event cannot be hashed or verified here and is dropped.
  if (!isCanonicalValue(raw)) return { outcome: "drop", reason: "not representable as canonical JSON (floats or huge integers)" };
  let pdu = raw as Pdu;
  const eventId = await eventIdOf(pdu, version);
  if (inputs.expectedEventId !== undefined && eventId !== inputs.expectedEventId) return { outcome: "drop", reason: "event ID does not match" };
  const isCreate = pdu.type === "m.room.create";
  const roomId = version.roomIdFromCreate && isCreate ? "!" + eventId.slice(1) : pdu.room_id!;

  // 2. "Passes signature checks, otherwise it is dropped." The redacted event is checked for the
  // originating server's signature ("the server the sender belongs to"); "Room versions 1 and 2
  // also require that a signature is present from the domain in the event_id, if it differs".
  const redacted = redact(pdu, version);
  const validAt = version.enforceKeyValidity ? pdu.origin_server_ts : undefined;
  const lookup = (server: string, keyId: string) => inputs.keys(server, keyId, validAt);
  const servers = [domainOf(pdu.sender)!];
  if (version.eventIdDomainSigned) {
    const d = domainOf(eventId);
    if (d && !servers.includes(d)) servers.push(d);
  }
  for (const server of servers) {
    if (!(await verifyJsonSignature(redacted, server, lookup, inputs.verifier))) {
      return { outcome: "drop", reason: `no valid signature from ${server}` };
    }
  }

  // 3. "Passes hash checks, otherwise it is redacted before being processed further."
  let wasRedacted = false;
  if (!(await checkContentHash(pdu))) {
    pdu = redacted as Pdu;
    wasRedacted = true;
  }
  const event: EventWithId = { eventId, roomId, pdu };
  const verdict = (outcome: ReceiveVerdict["outcome"], reason?: string): ReceiveVerdict => ({
    outcome, event, ...(wasRedacted ? { redacted: true } : {}), ...(reason ? { reason } : {}),
  });

  // Auth rule 5.2 (v8+): "If the event is not validly signed by the homeserver of the user ID
  // denoted by [join_authorised_via_users_server], reject." checkAuth requires the signature's
  // presence; the cryptographic check is here, where the keys are.
  const via = pdu.type === "m.room.member" && version.restrictedJoins ? pdu.content.join_authorised_via_users_server : undefined;
  if (via !== undefined) {
    const server = typeof via === "string" ? domainOf(via) : undefined;
    if (!server || !(await verifyJsonSignature(redacted, server, lookup, inputs.verifier))) {
      return verdict("reject", "not validly signed by the join_authorised_via_users_server's server");
    }
  }

  // 4. "Passes authorisation rules based on the event's auth events, otherwise it is rejected."
  if (isCreate) {
    const r = checkAuth(pdu, eventId, new Map(), version);
    if (!r.allowed) return verdict("reject", r.reason);
    const ae = checkAuthEvents(pdu, [], version);
    return ae.allowed ? verdict("accept") : verdict("reject", ae.reason);
  }
  const authIds = refIds(pdu.auth_events);
  const entries: AuthEventEntry[] = [];
  const missing: string[] = [];
  for (const id of authIds) {
    const e = await inputs.fetchEvent(id);
    if (e) entries.push({ eventId: e.eventId, pdu: e.pdu, rejected: e.rejected });
    else missing.push(id);
  }
  // v12 rule 2: the room ID names the create event, which is never among the auth events.
  let create: ResolvableEvent | undefined;
  if (version.roomIdFromCreate) {
    create = await inputs.fetchEvent("$" + roomId.slice(1));
    if (!create) missing.push("$" + roomId.slice(1));
    else if (create.rejected) return verdict("reject", "the room's create event was rejected");
  } else {
    const c = entries.find((e) => e.pdu.type === "m.room.create" && e.pdu.state_key === "");
    if (c) create = { eventId: c.eventId, pdu: c.pdu, rejected: c.rejected };
  }
  if (missing.length) return { outcome: "drop", reason: "auth events unknown", missingAuthEvents: missing };
  const ae = checkAuthEvents(pdu, entries, version);
  if (!ae.allowed) return verdict("reject", ae.reason);
  const own = new Map<string, Pdu>(entries.map((e) => [stateKeyOf(e.pdu.type, e.pdu.state_key!), e.pdu]));
  if (create) own.set(stateKeyOf("m.room.create", ""), create.pdu);
  const r4 = checkAuth(pdu, eventId, own, version);
  if (!r4.allowed) return verdict("reject", `auth events: ${r4.reason}`);
  if (!create) return verdict("reject", "no create event");

  // 5. "Passes authorisation rules based on the state before the event, otherwise it is rejected."
  if (inputs.stateBefore) {
    const r5 = checkAuth(pdu, eventId, await authStateFrom(pdu, inputs.stateBefore, create, inputs.fetchEvent, version), version);
    if (!r5.allowed) return verdict("reject", `state before the event: ${r5.reason}`);
  }
  // 6. "Passes authorisation rules based on the current state of the room, otherwise it is 'soft failed'."
  if (inputs.currentState) {
    const r6 = checkAuth(pdu, eventId, await authStateFrom(pdu, inputs.currentState, create, inputs.fetchEvent, version), version);
    if (!r6.allowed) return verdict("soft-fail", `current state: ${r6.reason}`);
  }
  return verdict("accept");
}

/** S′(E): the state after an event given the state before it (state events replace their key). */
export function stateAfterEvent(stateBefore: StateMap, event: EventWithId): StateMap {
  if (event.pdu.state_key === undefined) return stateBefore;
  const out = new Map(stateBefore);
  out.set(stateKeyOf(event.pdu.type, event.pdu.state_key), event.eventId);
  return out;
}
