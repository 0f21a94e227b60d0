/**
 * The resident side of membership handshakes (server-server API "Joining Rooms", "Leaving Rooms
 * (Rejecting Invites)", "Knocking upon a room"), the invited side of "Inviting to a room", and
 * `/query/directory` ("Querying for information"). The joining side is remoteMembership.ts.
 */
import type { ReadTx } from "../../storage/store.ts";
import { prefix } from "../../storage/store.ts";
import type { RequestContext } from "../context.ts";
import { MatrixError, forbidden, invalidParam, missingParam, notFound } from "../errors.ts";
import type { JsonObject } from "../crypto/signing.ts";
import { signJson, verifyJsonSignature } from "../crypto/signing.ts";
import { checkContentHash, eventIdOf } from "../events/hashes.ts";
import { redact } from "../events/redaction.ts";
import type { EventWithId, Pdu, StoredEvent } from "../events/types.ts";
import { stateKeyOf } from "../events/types.ts";
import { authChain } from "../rooms/authChain.ts";
import { authStateKeysFor, checkAuth } from "../rooms/auth.ts";
import { eventRef } from "../rooms/build.ts";
import { domainOf, isRoomAlias, isUserId, serverOf } from "../rooms/ids.ts";
import { requiredPowerLevel, userPowerLevel } from "../rooms/powerLevels.ts";
import { checkFormat, receivePdu } from "../rooms/receive.ts";
import type { RoomVersionRules } from "../rooms/versions.ts";
import { roomVersion } from "../rooms/versions.ts";
import { persist } from "../roomserver/persist.ts";
import { serverInRoom, storeOutOfRoomMembership } from "../roomserver/outOfRoom.ts";
import { getEvent, getRoom, loadState, membershipIn, membershipRecord, rulesOf, stateBefore } from "../roomserver/state.ts";
import { queryAliasIfUnknown } from "../appservice/queries.ts";
import { STRIPPED_STATE_TYPES, aliasServers, pduForFederation } from "./remoteMembership.ts";
import { serverAllowedInRoom } from "./acl.ts";
import { asObject } from "../validate.ts";
import type { AccountRecord } from "../services/accounts.ts";

/** Membership handshakes this server answers as a resident. */
export type Handshake = "join" | "leave" | "knock";

const MEMBER = "m.room.member";
const CREATE_SK = stateKeyOf("m.room.create", "");
const JOIN_RULES_SK = stateKeyOf("m.room.join_rules", "");
const POWER_SK = stateKeyOf("m.room.power_levels", "");
/** Up to this many forward extremities become the template's `prev_events`. */
const MAX_PREV_EVENTS = 10;

/** The key lookup the checks on receipt use: the keyring. */
function keysOf(ctx: RequestContext) {
  return (server: string, keyId: string, validAt: number | undefined) => ctx.hs.keyring.key(server, keyId, validAt);
}

/** Adds this server's signature to an event (over its redacted form, "Signing events"). */
export async function countersign(ctx: { hs: RequestContext["hs"] }, pdu: Pdu, rules: RoomVersionRules): Promise<Pdu> {
  const signed = await signJson(redact(pdu, rules), ctx.hs.signingKey);
  return { ...pdu, signatures: signed.signatures as Pdu["signatures"] };
}

// --- make_join / make_leave / make_knock ---

/** `GET /_matrix/federation/v1/make_join/{roomId}/{userId}` */
export function getMakeJoin(ctx: RequestContext, p: Record<string, string>, origin: string): Promise<Record<string, unknown>> {
  // joins-v1: `ver` "Defaults to [1]".
  const vers = ctx.queryAll("ver");
  return makeMembership(ctx, p, origin, "join", vers.length ? vers : ["1"]);
}

/** `GET /_matrix/federation/v1/make_leave/{roomId}/{userId}` */
export function getMakeLeave(ctx: RequestContext, p: Record<string, string>, origin: string): Promise<Record<string, unknown>> {
  return makeMembership(ctx, p, origin, "leave", undefined);
}

/** `GET /_matrix/federation/v1/make_knock/{roomId}/{userId}` */
export function getMakeKnock(ctx: RequestContext, p: Record<string, string>, origin: string): Promise<Record<string, unknown>> {
  const vers = ctx.queryAll("ver");
  // knocks.yaml: `ver` is required ("knocking was supported in v7").
  if (vers.length === 0) throw missingParam("ver is required");
  return makeMembership(ctx, p, origin, "knock", vers);
}

/** What a template is built from, read in one transaction. */
interface TemplateBasis {
  rules: RoomVersionRules;
  roomVersion: string;
  prevs: StoredEvent[];
  state: Map<string, StoredEvent>;
  content: Record<string, unknown>;
}

async function makeMembership(ctx: RequestContext, p: Record<string, string>, origin: string, membership: Handshake, vers: string[] | undefined): Promise<Record<string, unknown>> {
  const { hs } = ctx;
  const roomId = p.roomId!;
  const userId = p.userId!;
  if (!isUserId(userId)) throw invalidParam("Invalid user ID");
  if (serverOf(userId) !== origin) throw forbidden("The user does not belong to the requesting server");
  const basis = await hs.store.read(async (tx): Promise<TemplateBasis> => {
    const room = await getRoom(tx, roomId);
    if (!room || !(await serverInRoom(tx, roomId, hs.serverName))) throw notFound(`This server is not in room ${roomId}`);
    if (!(await serverAllowedInRoom(tx, roomId, origin))) throw forbidden("Server is denied by the room's server ACL");
    if (vers && !vers.includes(room.roomVersion)) {
      throw new MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", `The room has version ${room.roomVersion}, which the requesting server does not support`, { room_version: room.roomVersion });
    }
    const rules = rulesOf(room);
    if (membership === "knock" && !rules.knocking) throw forbidden("This room version does not support knocking");
    const pre = prefix(roomId);
    const prevs: StoredEvent[] = [];
    for (const row of await tx.range<true>("extremities", { prefix: pre })) {
      const e = await getEvent(tx, row.key.slice(pre.length));
      if (e) prevs.push(e);
    }
    prevs.sort((a, b) => b.pdu.depth - a.pdu.depth);
    const content: Record<string, unknown> = { membership };
    const state = await stateOf(tx, roomId, [CREATE_SK, JOIN_RULES_SK, POWER_SK, stateKeyOf(MEMBER, userId)]);
    if (membership === "join") {
      const via = await restrictedAuthoriser(tx, ctx, roomId, userId, state, rules);
      if (via) content.join_authorised_via_users_server = via;
    }
    for (const [k, e] of await stateOf(tx, roomId, authStateKeysFor(MEMBER, userId, userId, content, rules))) state.set(k, e);
    return { rules, roomVersion: room.roomVersion, prevs: prevs.slice(0, MAX_PREV_EVENTS), state, content };
  });
  const { rules, prevs, state, content } = basis;
  const authEvents = authStateKeysFor(MEMBER, userId, userId, content, rules).map((k) => state.get(k)).filter((e): e is StoredEvent => e !== undefined);
  const refs = async (list: StoredEvent[]) =>
    Promise.all(list.map(async (e) => {
      const r = await eventRef(e, rules);
      return rules.referencePairs ? [r.eventId, { sha256: r.sha256 }] : r.eventId;
    }));
  const template: JsonObject = {
    room_id: roomId,
    sender: userId,
    type: MEMBER,
    state_key: userId,
    content,
    prev_events: await refs(prevs),
    auth_events: await refs(authEvents),
    depth: Math.min(Math.max(0, ...prevs.map((e) => e.pdu.depth)) + 1, rules.maxDepth),
    origin: hs.serverName,
    origin_server_ts: hs.clock(),
  };
  // Refuse now what the auth rules would refuse at send_join. The signature rule 5.2 asks of
  // join_authorised_via_users_server is ours to add then, so its presence is assumed here.
  const probe = { ...template, hashes: { sha256: "" }, signatures: content.join_authorised_via_users_server ? { [hs.serverName]: { [hs.signingKey.keyId]: "" } } : {} } as unknown as Pdu;
  const authState = new Map<string, Pdu>();
  for (const [k, e] of state) authState.set(k, e.pdu);
  const verdict = checkAuth(probe, "$template", authState, rules);
  if (!verdict.allowed) throw forbidden(`The room does not allow this ${membership}: ${verdict.reason}`);
  return { room_version: basis.roomVersion, event: template };
}

/** Current state events of some keys. */
async function stateOf(tx: ReadTx, roomId: string, keys: string[]): Promise<Map<string, StoredEvent>> {
  const out = new Map<string, StoredEvent>();
  for (const k of new Set(keys)) {
    // key = roomId|type|stateKey → eventId
    const id = await tx.get<string>("room_state", prefix(roomId) + k);
    const e = id ? await getEvent(tx, id) : undefined;
    if (e) out.set(k, e);
  }
  return out;
}

/**
 * "Restricted rooms": for a join that needs it, a local member who may invite, vouching for a user
 * joined to one of the `allow` rooms. Undefined when no authorisation is needed (not restricted, or
 * the user is invited or joined); `400 M_UNABLE_TO_AUTHORISE_JOIN` when this server knows none of
 * the allowed rooms; 403 when the user is in none; `400 M_UNABLE_TO_GRANT_JOIN` when no local
 * member may invite.
 */
async function restrictedAuthoriser(tx: ReadTx, ctx: RequestContext, roomId: string, userId: string, state: Map<string, StoredEvent>, rules: RoomVersionRules): Promise<string | undefined> {
  const jr = state.get(JOIN_RULES_SK)?.pdu.content;
  const rule = jr?.join_rule;
  if (!rules.restrictedJoins || !(rule === "restricted" || (rule === "knock_restricted" && rules.knockRestricted))) return undefined;
  const mine = membershipIn(state.get(stateKeyOf(MEMBER, userId)));
  if (mine === "invite" || mine === "join") return undefined;
  let knowsOne = false;
  let qualifies = false;
  for (const a of Array.isArray(jr?.allow) ? (jr.allow as unknown[]) : []) {
    const cond = asObject(a);
    if (cond?.type !== "m.room_membership" || typeof cond.room_id !== "string") continue;
    if (!(await getRoom(tx, cond.room_id)) || !(await serverInRoom(tx, cond.room_id, ctx.hs.serverName))) continue;
    knowsOne = true;
    if ((await membershipRecord(tx, cond.room_id, userId))?.membership === "join") qualifies = true;
  }
  // knock_restricted: someone in none of the rooms may still knock, but not join.
  if (!knowsOne) throw new MatrixError(400, "M_UNABLE_TO_AUTHORISE_JOIN", "This server cannot check any of the room's join conditions");
  if (!qualifies) throw forbidden("You do not satisfy any of the room's join conditions");
  const pdus = new Map<string, Pdu>();
  for (const [k, e] of state) pdus.set(k, e.pdu);
  const invitePower = requiredPowerLevel("invite", pdus);
  const pre = prefix(roomId, MEMBER);
  for (const row of await tx.range<string>("room_state", { prefix: pre })) {
    const member = row.key.slice(pre.length);
    if (serverOf(member) !== ctx.hs.serverName) continue;
    const e = await getEvent(tx, row.value);
    if (membershipIn(e) !== "join") continue;
    const power = await stateOf(tx, roomId, [POWER_SK]);
    const withPower = new Map(pdus);
    const pl = power.get(POWER_SK);
    if (pl) withPower.set(POWER_SK, pl.pdu);
    if (userPowerLevel(member, withPower, rules) >= invitePower) return member;
  }
  throw new MatrixError(400, "M_UNABLE_TO_GRANT_JOIN", "No user on this server may authorise the join; try another server");
}

// --- send_join / send_leave / send_knock ---

/** `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}` */
export async function putSendJoin(ctx: RequestContext, p: Record<string, string>, origin: string): Promise<Record<string, unknown>> {
  const { event, signedByUs } = await acceptMembership(ctx, p, origin, "join");
  const { hs } = ctx;
  return hs.store.read(async (tx) => {
    const stored = await getEvent(tx, event.eventId);
    // joins-v2: "The resolved current room state prior to the join event", and the auth chains of
    // it and of the join. `omit_members` is not honoured (the full state is always sent), which
    // the spec allows: `members_omitted` says so.
    const before = stored ? await stateBefore(tx, stored) : new Map<string, string>();
    const state = [...(await loadState(tx, before)).values()];
    const fetch = (id: string) => getEvent(tx, id);
    const chainIds = await authChain([event.eventId, ...before.values()], fetch);
    const chain: Pdu[] = [];
    for (const id of chainIds) {
      const e = await getEvent(tx, id);
      if (e) chain.push(pduForFederation(e));
    }
    // "The servers active in the room (ie, those with joined members) before the join."
    const servers = new Set<string>();
    for (const e of state) if (e.pdu.type === MEMBER && membershipIn(e) === "join" && e.pdu.state_key) servers.add(serverOf(e.pdu.state_key));
    return {
      origin: hs.serverName,
      state: state.map(pduForFederation),
      auth_chain: chain,
      members_omitted: false,
      servers_in_room: [...servers].sort(),
      ...(signedByUs ? { event: pduForFederation(event) } : {}),
    };
  });
}

/**
 * `PUT /_matrix/federation/v1/send_join/{roomId}/{eventId}` (deprecated, joins-v1): the v2 answer
 * without the v2 fields, wrapped as `[200, body]` as that version requires.
 */
export async function putSendJoinV1(ctx: RequestContext, p: Record<string, string>, origin: string): Promise<unknown[]> {
  const { state, auth_chain, origin: ours, event } = await putSendJoin(ctx, p, origin);
  return [200, { origin: ours, state, auth_chain, ...(event ? { event } : {}) }];
}

/** `PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}` */
export async function putSendLeave(ctx: RequestContext, p: Record<string, string>, origin: string): Promise<Record<string, unknown>> {
  await acceptMembership(ctx, p, origin, "leave");
  return {};
}

/** `PUT /_matrix/federation/v1/send_leave/{roomId}/{eventId}` (deprecated, leaving-v1): `[200, {}]`. */
export async function putSendLeaveV1(ctx: RequestContext, p: Record<string, string>, origin: string): Promise<unknown[]> {
  await acceptMembership(ctx, p, origin, "leave");
  return [200, {}];
}

/** `PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}` */
export async function putSendKnock(ctx: RequestContext, p: Record<string, string>, origin: string): Promise<Record<string, unknown>> {
  const { event } = await acceptMembership(ctx, p, origin, "knock");
  const state = await ctx.hs.store.read((tx) => stateOf(tx, event.roomId, STRIPPED_STATE_TYPES.map((t) => stateKeyOf(t, ""))));
  return { knock_room_state: [...state.values()].map(pduForFederation) };
}

/**
 * The resident's checks on a signed membership event from the joining (leaving, knocking) server,
 * then the pipeline: 400 M_INVALID_PARAM for an event that is not what the handshake sends or
 * fails its signature check, 403 when the auth rules refuse it, 404 for a room this server is not
 * in. Idempotent: the same event again is answered the same way.
 */
async function acceptMembership(ctx: RequestContext, p: Record<string, string>, origin: string, membership: Handshake): Promise<{ event: EventWithId; rules: RoomVersionRules; signedByUs: boolean }> {
  const { hs } = ctx;
  const roomId = p.roomId!;
  const body = await ctx.json();
  const room = await hs.store.read(async (tx) => {
    const r = await getRoom(tx, roomId);
    if (!r || !(await serverInRoom(tx, roomId, hs.serverName))) return undefined;
    if (!(await serverAllowedInRoom(tx, roomId, origin))) throw forbidden("Server is denied by the room's server ACL");
    return r;
  });
  if (!room) throw notFound(`This server is not in room ${roomId}`);
  const rules = rulesOf(room);
  const formatError = checkFormat(body, rules);
  if (formatError) throw invalidParam(`Invalid event: ${formatError}`);
  const raw = body as Pdu;
  if (raw.room_id !== roomId) throw invalidParam("The event is for another room");
  if (raw.type !== MEMBER) throw invalidParam("The event is not an m.room.member event");
  if (raw.content.membership !== membership) throw invalidParam(`The event's membership is not ${membership}`);
  if (raw.state_key !== raw.sender) throw invalidParam("state_key is not the sender");
  if (domainOf(raw.sender) !== origin) throw invalidParam("The sender is not a user of the requesting server");
  const verdict = await receivePdu(body, rules, {
    keys: keysOf(ctx),
    verifier: hs.verifier,
    fetchEvent: (id) => hs.store.read((tx) => getEvent(tx, id)),
    expectedEventId: p.eventId!,
  });
  if (verdict.outcome === "drop") throw invalidParam(`The event fails the checks on receipt: ${verdict.reason}`);
  if (verdict.outcome === "reject") throw forbidden(`The event is not allowed: ${verdict.reason}`);
  let event = verdict.event!;
  // "Restricted rooms": the resident named in join_authorised_via_users_server signs the join.
  const via = membership === "join" ? event.pdu.content.join_authorised_via_users_server : undefined;
  const signedByUs = typeof via === "string" && serverOf(via) === hs.serverName && rules.restrictedJoins;
  if (signedByUs) event = { ...event, pdu: await countersign(ctx, event.pdu, rules) };
  const [outcome] = await persist(hs, roomId, [{ kind: "new", event, relay: true }]);
  if (outcome?.outcome === "duplicate") {
    const known = await hs.store.read((tx) => getEvent(tx, event.eventId));
    if (known?.rejected || known?.softFailed) throw forbidden(`The event is not allowed: ${known.rejected ?? "soft-failed"}`);
    if (known) event = known;
  } else if (outcome?.outcome === "missing-prevs") {
    throw invalidParam("None of the event's prev_events is known here; ask make_" + membership + " again");
  } else if (outcome?.outcome !== "accepted") {
    throw forbidden(`The event is not allowed: ${outcome?.reason ?? outcome?.outcome}`);
  }
  return { event, rules, signedByUs };
}

// --- invites ---

/** `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}` */
export async function putInvite(ctx: RequestContext, p: Record<string, string>, origin: string): Promise<Record<string, unknown>> {
  await refuseDeniedInviter(ctx, p.roomId!, origin);
  const body = await ctx.json();
  const version = body.room_version;
  if (typeof version !== "string") throw missingParam("room_version is required");
  const rules = roomVersion(version);
  if (!rules) throw new MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", `Room version ${version} is not supported by this server`, { room_version: version });
  const raw = asObject(body.event);
  if (!raw) throw missingParam("event is required");
  const signed = await acceptInvite(ctx, p, origin, rules, raw, body.invite_room_state);
  return { event: pduForFederation({ pdu: signed }) };
}

/**
 * `PUT /_matrix/federation/v1/invite/{roomId}/{eventId}` (invites-v1): the body is the invite
 * itself, its `unsigned.invite_room_state` the stripped state, and the room version "must [be
 * assumed to be] either 1 or 2" (the two share one event format; the create event among the
 * stripped state says which, else 1). Answered `[200, {event}]`, the event with our signature
 * added and its other fields untouched.
 */
export async function putInviteV1(ctx: RequestContext, p: Record<string, string>, origin: string): Promise<unknown[]> {
  await refuseDeniedInviter(ctx, p.roomId!, origin);
  const raw = await ctx.json();
  const unsigned = asObject(raw.unsigned);
  const inviteRoomState = unsigned?.invite_room_state;
  const created = Array.isArray(inviteRoomState) ? inviteRoomState.map(asObject).find((e) => e?.type === "m.room.create") : undefined;
  const rules = roomVersion(asObject(created?.content)?.room_version === "2" ? "2" : "1")!;
  const signed = await acceptInvite(ctx, p, origin, rules, raw, inviteRoomState);
  return [200, { event: { ...signed, ...(unsigned ? { unsigned } : {}) } }];
}

/** A room this server is in has an ACL to apply to the inviting server; of another room it knows nothing yet. */
async function refuseDeniedInviter(ctx: RequestContext, roomId: string, origin: string): Promise<void> {
  const denied = await ctx.hs.store.read(async (tx) => (await getRoom(tx, roomId)) !== undefined && !(await serverAllowedInRoom(tx, roomId, origin)));
  if (denied) throw forbidden("Server is denied by the room's server ACL");
}

/**
 * The invited side's checks on an invite (both versions), then our signature: 400 M_INVALID_PARAM
 * for an event that is not an invite of one of our users by a user of the origin, or that fails its
 * signature or hash check; 403 when the invitee does not exist or the auth rules refuse it. The
 * invite is stored (in the room's DAG when we are in the room) with its stripped state. Returns the
 * event with our signature added (without `unsigned`).
 */
async function acceptInvite(ctx: RequestContext, p: Record<string, string>, origin: string, rules: RoomVersionRules, raw: Record<string, unknown>, inviteRoomState: unknown): Promise<Pdu> {
  const { hs } = ctx;
  const formatError = checkFormat(raw, rules);
  if (formatError) throw invalidParam(`Invalid event: ${formatError}`);
  const pdu = raw as Pdu;
  const roomId = p.roomId!;
  if (pdu.room_id !== roomId) throw invalidParam("The event is for another room");
  if (pdu.type !== MEMBER || pdu.content.membership !== "invite") throw invalidParam("The event is not an invite");
  if (domainOf(pdu.sender) !== origin) throw invalidParam("The sender is not a user of the requesting server");
  const invitee = pdu.state_key!;
  if (!isUserId(invitee) || serverOf(invitee) !== hs.serverName) throw invalidParam("The invitee is not a user of this server");
  const eventId = await eventIdOf(pdu, rules);
  if (eventId !== p.eventId) throw invalidParam("The event ID does not match the event");
  const keys = keysOf(ctx);
  const validAt = rules.enforceKeyValidity ? pdu.origin_server_ts : undefined;
  if (!(await verifyJsonSignature(redact(pdu, rules), origin, (s, k) => keys(s, k, validAt), hs.verifier))) {
    throw invalidParam("The invite is not validly signed by its sender's server");
  }
  if (!(await checkContentHash(pdu))) throw invalidParam("The invite's content hash does not match");
  const account = await hs.store.read((tx) => tx.get<AccountRecord>("accounts", invitee));
  if (!account || account.deactivated) throw forbidden(`${invitee} is not a user here`);
  const stripped = await checkInviteRoomState(ctx, inviteRoomState, roomId, rules, origin);

  const signed = await countersign(ctx, pdu, rules);
  const inRoom = await hs.store.read(async (tx) => (await getRoom(tx, roomId)) !== undefined && serverInRoom(tx, roomId, hs.serverName));
  const event: EventWithId = { eventId, roomId, pdu: { ...signed, unsigned: { ...(pdu.unsigned ?? {}), invite_room_state: stripped } } };
  let stored = false;
  if (inRoom) {
    // Already a resident: the invite enters the room's DAG here (it also arrives by /send later,
    // as the spec notes, and is then a duplicate).
    const [outcome] = await persist(hs, roomId, [{ kind: "new", event }]);
    if (outcome?.outcome === "rejected") throw forbidden(`The invite is not allowed: ${outcome.reason}`);
    stored = outcome?.outcome === "accepted" || outcome?.outcome === "duplicate";
  }
  if (!stored) await storeOutOfRoomMembership(hs, event);
  return pduForFederation({ pdu: signed });
}

/**
 * `invite_room_state` (v1.16): PDUs of the room, each validly signed, with the create event. It is
 * checked in every version (entries failing it are an error from v12 on and dropped with a warning
 * before, as the spec suggests for the migration), and kept as stripped state for `/sync`.
 */
async function checkInviteRoomState(ctx: RequestContext, value: unknown, roomId: string, rules: RoomVersionRules, origin: string): Promise<JsonObject[]> {
  const strict = rules.roomIdFromCreate;
  const fail = (why: string): void => {
    if (strict) throw invalidParam(`invite_room_state: ${why}`);
    ctx.hs.logger.warn(`invite from ${origin} to ${roomId}: invite_room_state ${why}`);
  };
  if (value === undefined) {
    fail("is missing");
    return [];
  }
  if (!Array.isArray(value)) throw invalidParam("invite_room_state must be a list");
  const out: JsonObject[] = [];
  let hasCreate = false;
  for (const entry of value) {
    const e = asObject(entry);
    if (!e || typeof e.type !== "string") {
      fail("holds an entry that is not an event");
      continue;
    }
    const stripped: JsonObject = { type: e.type, state_key: e.state_key, sender: e.sender, content: e.content };
    const formatError = checkFormat(e, rules);
    if (formatError) {
      fail(`holds an event not in the room version's format (${formatError})`);
      if (!strict && typeof e.state_key === "string" && typeof e.sender === "string" && asObject(e.content)) out.push(stripped);
      continue;
    }
    const pdu = e as Pdu;
    const isCreate = pdu.type === "m.room.create";
    const id = await eventIdOf(pdu, rules);
    const eventRoom = rules.roomIdFromCreate && isCreate ? "!" + id.slice(1) : pdu.room_id;
    if (eventRoom !== roomId) {
      fail("holds an event of another room");
      continue;
    }
    const keys = keysOf(ctx);
    const validAt = rules.enforceKeyValidity ? pdu.origin_server_ts : undefined;
    const server = domainOf(pdu.sender)!;
    if (!(await verifyJsonSignature(redact(pdu, rules), server, (s, k) => keys(s, k, validAt), ctx.hs.verifier))) {
      fail("holds an event that fails its signature check");
      continue;
    }
    if (isCreate) hasCreate = true;
    out.push(stripped);
  }
  if (!hasCreate) fail("has no m.room.create event");
  return out;
}

// --- directory ---

/** `GET /_matrix/federation/v1/query/directory` */
export async function getQueryDirectory(ctx: RequestContext, _p: Record<string, string>, _origin: string): Promise<Record<string, unknown>> {
  const alias = ctx.query("room_alias");
  if (alias === undefined) throw missingParam("room_alias is required");
  if (!isRoomAlias(alias)) throw invalidParam("Invalid room alias");
  if (serverOf(alias) !== ctx.hs.serverName) throw notFound(`Room alias ${alias} is not on this server`);
  await queryAliasIfUnknown(ctx.hs, alias);
  return ctx.hs.store.read(async (tx) => {
    const row = await tx.get<{ roomId: string }>("aliases", alias);
    if (!row) throw notFound(`Room alias ${alias} not found`);
    return { room_id: row.roomId, servers: await aliasServers(tx, row.roomId, ctx.hs.serverName) };
  });
}
