/**
 * The joining side of membership handshakes (server-server API "Joining Rooms", "Leaving Rooms
 * (Rejecting Invites)", "Knocking upon a room"), the inviting side of "Inviting to a room", and
 * resolving a remote alias through `/query/directory`. The resident side is joins.ts.
 *
 * A join over federation trusts nothing the resident server says until it is checked: every event
 * of the returned state and auth chain passes the checks on receipt of a PDU (format, signatures,
 * hashes, the auth rules against its own auth events, in auth-chain order), the state holds one
 * event per key and the room's create event for the version `make_join` named, and the join itself
 * passes the auth rules against that state. Only then do the events enter the store: the state and
 * auth chain as outliers and the join through the pipeline with that state as its state before.
 */
import type { ReadTx } from "../../storage/store.ts";
import type { Services } from "../context.ts";
import { MatrixError, forbidden, notFound } from "../errors.ts";
import type { JsonObject } from "../crypto/signing.ts";
import { verifyJsonSignature } from "../crypto/signing.ts";
import { eventIdOf } from "../events/hashes.ts";
import { redact } from "../events/redaction.ts";
import type { EventWithId, Pdu, StateMap, StoredEvent } from "../events/types.ts";
import { refIds, stateKeyOf } from "../events/types.ts";
import type { FetchEvent } from "../rooms/authChain.ts";
import { buildEvent, eventRef } from "../rooms/build.ts";
import type { EventRef } from "../rooms/build.ts";
import { domainOf, serverOf } from "../rooms/ids.ts";
import type { ServerKeyLookup } from "../rooms/receive.ts";
import { checkFormat, receivePdu } from "../rooms/receive.ts";
import type { RoomVersionRules } from "../rooms/versions.ts";
import { ROOM_VERSIONS, roomVersion } from "../rooms/versions.ts";
import type { Ed25519Verifier } from "../crypto/ed25519.ts";
import { withRoomLock } from "../roomserver/lock.ts";
import { persist } from "../roomserver/persist.ts";
import type { PersistInput } from "../roomserver/persist.ts";
import { serverInRoom, storeOutOfRoomMembership } from "../roomserver/outOfRoom.ts";
import { currentStateEvent, getEvent, getRoom, membershipRecord, serversInRoom } from "../roomserver/state.ts";
import { asObject } from "../validate.ts";
import { FederationError } from "./client.ts";
import type { FederationClient } from "./client.ts";
import { activitiesOf } from "../activity.ts";

/** State shared with invitees and knockers ("Stripped state": the recommended event types). */
export const STRIPPED_STATE_TYPES = ["m.room.create", "m.room.name", "m.room.avatar", "m.room.topic", "m.room.join_rules", "m.room.canonical_alias", "m.room.encryption"];

/** A stored event as it goes over federation: the signed PDU without our local `unsigned` data. */
export function pduForFederation(e: { pdu: Pdu }): Pdu {
  const { unsigned: _unsigned, ...pdu } = e.pdu;
  return pdu as Pdu;
}

/** "Resident servers" for an alias answer: this server first, then the room's other servers. */
export async function aliasServers(tx: ReadTx, roomId: string, self: string): Promise<string[]> {
  return [self, ...(await serversInRoom(tx, roomId)).filter((s) => s !== self)];
}

const MEMBER = "m.room.member";
const CREATE_SK = stateKeyOf("m.room.create", "");
const enc = encodeURIComponent;

/** How many events of one auth-DAG level are checked at once. */
const VERIFY_CONCURRENCY = 64;

/** A resident server's answer that does not survive verification (the join tries another server). */
export class RoomStateError extends Error {
  override readonly name = "RoomStateError";
}

/** The verified answer of a resident: the state before the join and every event it needs. */
export interface VerifiedRoomState {
  /** SK → event ID. */
  state: StateMap;
  /** Every verified event (state and auth chain) by ID; redacted copies where a hash did not match. */
  events: Map<string, EventWithId>;
}

/**
 * Checks a `send_join` answer's `state` and `auth_chain` in full (see the module comment); throws
 * RoomStateError at the first event that fails. Pure apart from the key lookup. `onChecked` hears
 * how many of the distinct events are checked so far (a progress indicator's figures).
 */
export async function verifyRoomState(
  roomId: string,
  rules: RoomVersionRules,
  stateRaw: unknown,
  chainRaw: unknown,
  keys: ServerKeyLookup,
  verifier: Ed25519Verifier,
  onChecked?: (done: number, total: number) => void,
): Promise<VerifiedRoomState> {
  if (!Array.isArray(stateRaw) || !Array.isArray(chainRaw)) throw new RoomStateError("state and auth_chain must be lists");
  const raws = new Map<string, Pdu>();
  const stateIds: string[] = [];
  for (const [list, isState] of [[stateRaw, true], [chainRaw, false]] as const) {
    for (const entry of list) {
      const obj = asObject(entry);
      if (!obj) throw new RoomStateError("an entry is not an event");
      const formatError = checkFormat(obj, rules);
      if (formatError) throw new RoomStateError(`invalid event: ${formatError}`);
      const id = await eventIdOf(obj, rules);
      raws.set(id, obj as Pdu);
      if (isState) stateIds.push(id);
    }
  }
  // Auth events before the events they authorise (a depth-first walk over auth_events).
  const order: string[] = [];
  const mark = new Map<string, "open" | "done">();
  for (const root of raws.keys()) {
    const stack: [string, boolean][] = [[root, false]];
    while (stack.length) {
      const [id, expanded] = stack.pop()!;
      if (expanded) {
        mark.set(id, "done");
        order.push(id);
        continue;
      }
      if (mark.get(id) === "done") continue;
      if (mark.get(id) === "open") throw new RoomStateError(`auth_events form a cycle at ${id}`);
      mark.set(id, "open");
      stack.push([id, true]);
      for (const a of refIds(raws.get(id)!.auth_events)) if (raws.has(a) && mark.get(a) !== "done") stack.push([a, false]);
    }
  }
  // Levels of the auth DAG: an event is checked once all its auth events are. The events of one
  // level are independent, so their checks (mostly signature verification) run concurrently.
  const level = new Map<string, number>();
  const levels: string[][] = [];
  for (const id of order) {
    const pdu = raws.get(id)!;
    // v12 events do not list the create event, but their checks read it: it comes first.
    let l = rules.roomIdFromCreate && pdu.type !== "m.room.create" ? 1 : 0;
    for (const a of refIds(pdu.auth_events)) if (level.has(a)) l = Math.max(l, level.get(a)! + 1);
    level.set(id, l);
    (levels[l] ??= []).push(id);
  }
  const events = new Map<string, EventWithId>();
  const fetchEvent: FetchEvent = (id) => events.get(id);
  onChecked?.(0, raws.size);
  for (const ids of levels) {
    for (let i = 0; i < ids.length; i += VERIFY_CONCURRENCY) {
      const chunk = ids.slice(i, i + VERIFY_CONCURRENCY);
      const verdicts = await Promise.all(chunk.map((id) => receivePdu(raws.get(id)!, rules, { keys, verifier, fetchEvent, expectedEventId: id })));
      for (const [j, verdict] of verdicts.entries()) {
        const id = chunk[j]!;
        if (verdict.outcome !== "accept") throw new RoomStateError(`event ${id}: ${verdict.reason ?? verdict.outcome}`);
        if (verdict.event!.roomId !== roomId) throw new RoomStateError(`event ${id} belongs to another room`);
      }
      for (const [j, verdict] of verdicts.entries()) events.set(chunk[j]!, verdict.event!);
      onChecked?.(events.size, raws.size);
    }
  }
  const state: StateMap = new Map();
  for (const id of stateIds) {
    const pdu = events.get(id)!.pdu;
    if (pdu.state_key === undefined) throw new RoomStateError(`state event ${id} has no state_key`);
    const sk = stateKeyOf(pdu.type, pdu.state_key);
    if (state.has(sk) && state.get(sk) !== id) throw new RoomStateError(`two state events for ${pdu.type} ${pdu.state_key}`);
    state.set(sk, id);
  }
  const create = state.get(CREATE_SK);
  if (!create) throw new RoomStateError("the state has no m.room.create event");
  const createPdu = events.get(create)!.pdu;
  const createVersion = typeof createPdu.content.room_version === "string" ? createPdu.content.room_version : "1";
  if (createVersion !== rules.id) throw new RoomStateError(`the create event says version ${createVersion}, make_join said ${rules.id}`);
  return { state, events };
}

/** Where to try a handshake: the given servers in order, without us and servers we may not contact. */
export function candidateServers(hs: Services, ...lists: (string | undefined)[][]): string[] {
  const out: string[] = [];
  for (const list of lists) {
    for (const s of list) if (s && !out.includes(s) && hs.federation?.mayContact(s)) out.push(s);
  }
  return out;
}

/** The server named in a room ID (`!opaque:domain`, room versions before 12), if any. */
export function roomIdServer(roomId: string): string | undefined {
  const i = roomId.indexOf(":");
  return i > 0 ? roomId.slice(i + 1) : undefined;
}

/**
 * Servers that know a room this server only holds an invite or knock for: the inviter's, then
 * those of the senders of the stripped state the invite or knock carried.
 */
export async function outOfRoomServers(hs: Services, roomId: string, userId: string): Promise<string[]> {
  return hs.store.read(async (tx) => {
    const rec = await membershipRecord(tx, roomId, userId);
    const e = rec ? await getEvent(tx, rec.eventId) : undefined;
    if (!e || (rec!.membership !== "invite" && rec!.membership !== "knock")) return [];
    const out = rec!.membership === "invite" ? [serverOf(e.pdu.sender)] : [];
    const carried = e.pdu.unsigned?.invite_room_state ?? e.pdu.unsigned?.knock_room_state;
    for (const s of Array.isArray(carried) ? carried : []) {
      const sender = asObject(s)?.sender;
      if (typeof sender === "string" && sender.includes(":")) out.push(serverOf(sender));
    }
    return out;
  });
}

/** Whether this server is in the room (has a joined member): then it builds membership events itself. */
export async function isResident(hs: Services, roomId: string): Promise<boolean> {
  return hs.store.read(async (tx) => (await getRoom(tx, roomId)) !== undefined && serverInRoom(tx, roomId, hs.serverName));
}

/** The last error of a handshake over several servers, as the client should see it. */
function handshakeFailure(errors: unknown[], what: string): MatrixError {
  for (const err of errors) {
    // A resident that refuses (403) or that the room version excludes speaks for the room.
    if (err instanceof FederationError && err.status === 403) return forbidden(`${what} refused by ${err.destination}: ${String((err.body as { error?: unknown })?.error ?? err.message)}`);
    if (err instanceof FederationError && err.errcode === "M_INCOMPATIBLE_ROOM_VERSION") return new MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", err.message);
    if (err instanceof MatrixError) return err;
  }
  const last = errors[errors.length - 1];
  const reason = last instanceof Error ? last.message : String(last);
  // Synapse answers a join no server could help with 502; the client may retry later.
  return new MatrixError(502, "M_UNKNOWN", `${what} failed on every server tried: ${reason}`);
}

/** Event references as a template gives them (v1/v2 `[id, {sha256}]` pairs, else IDs). */
function refsOf(list: unknown, rules: RoomVersionRules, max: number): EventRef[] {
  if (!Array.isArray(list) || list.length > max) throw new RoomStateError("template prev_events/auth_events malformed");
  return list.map((x) => {
    if (rules.referencePairs) {
      const pair = Array.isArray(x) ? x : [];
      const sha256 = asObject(pair[1])?.sha256;
      if (typeof pair[0] !== "string" || typeof sha256 !== "string") throw new RoomStateError("template reference malformed");
      return { eventId: pair[0], sha256 };
    }
    if (typeof x !== "string") throw new RoomStateError("template reference malformed");
    return { eventId: x, sha256: "" };
  });
}

/**
 * `make_{membership}` on `server`, then our event built on its template and signed: checks that
 * the template is the membership asked for ("MUST also verify that the type, room_id, sender,
 * state_key and content.membership fields have the expected values").
 */
async function makeAndBuild(hs: Services, client: FederationClient, server: string, roomId: string, userId: string, membership: "join" | "leave" | "knock", content: Record<string, unknown>): Promise<{ rules: RoomVersionRules; event: EventWithId }> {
  const versions = [...ROOM_VERSIONS.keys()];
  const answer = await client.json(server, "GET", `/_matrix/federation/v1/make_${membership}/${enc(roomId)}/${enc(userId)}`, {
    ...(membership !== "leave" ? { query: versions.map((v): [string, string] => ["ver", v]) } : {}),
  });
  const version = typeof answer.room_version === "string" ? answer.room_version : "1";
  const rules = roomVersion(version);
  if (!rules) throw new MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", `Room version ${version} is not supported by this server`);
  const t = asObject(answer.event);
  if (!t) throw new RoomStateError(`${server} sent no template`);
  const tc = asObject(t.content);
  if (t.type !== MEMBER || t.sender !== userId || t.state_key !== userId || t.room_id !== roomId || tc?.membership !== membership) {
    throw new RoomStateError(`${server} sent a template for another event`);
  }
  if (typeof t.depth !== "number" || !Number.isInteger(t.depth)) throw new RoomStateError("template depth malformed");
  const via = tc.join_authorised_via_users_server;
  const event = await buildEvent(
    {
      roomId, sender: userId, type: MEMBER, stateKey: userId,
      content: { ...content, ...(typeof via === "string" ? { join_authorised_via_users_server: via } : {}), membership },
      prevEvents: refsOf(t.prev_events, rules, 20),
      authEvents: refsOf(t.auth_events, rules, 10),
      depth: t.depth, originServerTs: hs.clock(), origin: hs.serverName,
    },
    rules, hs.signingKey, hs.random,
  );
  return { rules, event };
}

/**
 * Whether an error answer says the endpoint itself is unknown to the remote server (an older server
 * without the v2 API): `404`/`405 M_UNRECOGNIZED` ("Unsupported endpoints"), `400 M_UNRECOGNIZED`
 * (what older Synapse answers), or a 404/405 with no Matrix error at all (Dendrite's and Conduit's
 * plain 404). A `404 M_NOT_FOUND` is an answer of the endpoint, not a missing endpoint.
 */
export function endpointUnsupported(err: unknown): boolean {
  if (!(err instanceof FederationError)) return false;
  if (err.errcode === "M_UNRECOGNIZED") return err.status === 400 || err.status === 404 || err.status === 405;
  return err.errcode === undefined && (err.status === 404 || err.status === 405);
}

/** The body of a v1 answer, which comes as `[200, body]` (joins-v1, leaving-v1, invites-v1). */
function v1Body(server: string, what: string, answer: unknown): Record<string, unknown> {
  const body = Array.isArray(answer) && answer.length === 2 && typeof answer[0] === "number" ? asObject(answer[1]) : undefined;
  if (!body) throw new RoomStateError(`${server} answered the v1 ${what} with something other than [200, {…}]`);
  return body;
}

/**
 * `PUT /v2/send_{membership}` on `server`; when the server lacks the v2 endpoint, the deprecated v1
 * one ("servers SHOULD retry with v1"), whose `[200, body]` answer is unwrapped.
 */
async function sendMembership(client: FederationClient, server: string, membership: "join" | "leave", event: EventWithId, timeoutMs?: number): Promise<Record<string, unknown>> {
  const path = (v: string): string => `/_matrix/federation/${v}/send_${membership}/${enc(event.roomId)}/${enc(event.eventId)}`;
  const options = { body: event.pdu, ...(timeoutMs !== undefined ? { timeoutMs } : {}) };
  try {
    return await client.json(server, "PUT", path("v2"), options);
  } catch (err) {
    if (!endpointUnsupported(err)) throw err;
  }
  return v1Body(server, `send_${membership}`, await client.json<unknown>(server, "PUT", path("v1"), options));
}

/** Keys for checking what `via` sent: the keyring, with `via` as a last-resort notary. */
const keyLookup = (hs: Services, via: string): ServerKeyLookup => (server, keyId, validAt) => hs.keyring.key(server, keyId, validAt, via);

/**
 * Joins `userId` to a room this server is not in, through the first of `servers` that completes
 * the handshake with an answer that verifies. Returns the join's event ID.
 */
export async function joinRemoteRoom(hs: Services, userId: string, roomId: string, servers: string[], content: Record<string, unknown>): Promise<string> {
  const client = hs.federation;
  if (!client || servers.length === 0) throw notFound(`Room ${roomId} is not known here and no server to join it through is known`);
  const errors: unknown[] = [];
  // The status view's progress indicator: a large room's answer takes a while to check and store.
  const progress = activitiesOf(hs.store).start("join", roomId, "asking other servers");
  try {
    for (const server of servers) {
      try {
        progress.update(`asking ${server}`);
        const { rules, event: built } = await makeAndBuild(hs, client, server, roomId, userId, "join", content);
        const answer = await sendMembership(client, server, "join", built, 120_000);
        progress.update("checking events");
        const verified = await verifyRoomState(roomId, rules, answer.state, answer.auth_chain, keyLookup(hs, server), hs.verifier, (done, total) => progress.update("checking events", done, total));
        // Restricted rooms: the resident returns the join with its signature added.
        let join = built;
        const returned = asObject(answer.event);
        if (returned) {
          if ((await eventIdOf(returned, rules)) !== built.eventId || (rules.referencePairs && returned.event_id !== built.eventId)) {
            throw new RoomStateError(`${server} returned another join event`);
          }
          join = { ...built, pdu: { ...built.pdu, signatures: { ...(asObject(returned.signatures) as Pdu["signatures"]), ...built.pdu.signatures } } };
        }
        const check = await receivePdu(join.pdu, rules, {
          keys: keyLookup(hs, server), verifier: hs.verifier, fetchEvent: (id) => verified.events.get(id), stateBefore: verified.state, expectedEventId: join.eventId,
        });
        if (check.outcome !== "accept") throw new RoomStateError(`our join does not pass the auth rules against ${server}'s state: ${check.reason}`);
        progress.update(`storing ${verified.events.size + 1} events`);
        await persistJoin(hs, roomId, rules, verified, join);
        return join.eventId;
      } catch (err) {
        if (!(err instanceof FederationError || err instanceof RoomStateError || (err instanceof MatrixError && err.errcode === "M_INCOMPATIBLE_ROOM_VERSION"))) throw err;
        hs.logger.warn(`join of ${roomId} through ${server} failed: ${err.message}`);
        errors.push(err);
      }
    }
  } finally {
    progress.end();
  }
  throw handshakeFailure(errors, `Joining ${roomId}`);
}

/** Stores a verified join: state and auth chain as outliers, the join on top with that state before it. */
async function persistJoin(hs: Services, roomId: string, rules: RoomVersionRules, verified: VerifiedRoomState, join: EventWithId): Promise<void> {
  await withRoomLock(hs.store, roomId, async () => {
    const inputs: PersistInput[] = [];
    for (const event of verified.events.values()) inputs.push({ kind: "outlier", event });
    inputs.push({ kind: "new", event: join, stateBefore: verified.state, entersRoom: true });
    const known = await hs.store.read((tx) => getRoom(tx, roomId));
    const outcomes = await persist(hs, roomId, inputs, known ? undefined : { roomId, roomVersion: rules.id });
    const mine = outcomes.find((o) => o.eventId === join.eventId);
    if (mine?.outcome !== "accepted" && mine?.outcome !== "duplicate") throw forbidden(`The join was not accepted: ${mine?.reason ?? mine?.outcome}`);
  });
}

/**
 * Leaves (rejects an invite, retracts a knock) a room this server is not in, through the first of
 * `servers` that completes `make_leave`/`send_leave`. When none can be reached, the rejection
 * still happens here: a leave event of our own on top of the invite (or knock), stored as an
 * outlier, so the user is rid of it; the inviting server learns of it never, as with any server
 * that is down for good.
 */
export async function leaveRemoteRoom(hs: Services, userId: string, roomId: string, servers: string[], content: Record<string, unknown>): Promise<string> {
  const client = hs.federation;
  const errors: unknown[] = [];
  if (client) {
    for (const server of servers) {
      try {
        const { event } = await makeAndBuild(hs, client, server, roomId, userId, "leave", content);
        await sendMembership(client, server, "leave", event);
        await storeOutOfRoomMembership(hs, event);
        return event.eventId;
      } catch (err) {
        if (!(err instanceof FederationError || err instanceof RoomStateError || err instanceof MatrixError)) throw err;
        // A resident that answers and refuses decides (e.g. the user is not invited after all).
        if (err instanceof FederationError && err.status === 403) throw handshakeFailure([err], `Leaving ${roomId}`);
        hs.logger.warn(`leave of ${roomId} through ${server} failed: ${err.message}`);
        errors.push(err);
      }
    }
  }
  const rec = await hs.store.read(async (tx) => {
    const r = await membershipRecord(tx, roomId, userId);
    return r ? { rec: r, event: await getEvent(tx, r.eventId) } : undefined;
  });
  if (!rec?.event) throw handshakeFailure(errors, `Leaving ${roomId}`);
  const rules = roomVersion(await roomVersionOf(hs, roomId, rec.event)) ?? ROOM_VERSIONS.get("1")!;
  hs.logger.info(`no server of ${roomId} could be reached; rejecting ${userId}'s ${rec.rec.membership} here only`);
  const ref: EventRef = { eventId: rec.event.eventId, sha256: rules.referencePairs ? await referenceHashOf(rec.event, rules) : "" };
  const event = await buildEvent(
    {
      roomId, sender: userId, type: MEMBER, stateKey: userId, content: { ...content, membership: "leave" },
      prevEvents: [ref], authEvents: [ref], depth: rec.event.pdu.depth + 1, originServerTs: hs.clock(), origin: hs.serverName,
    },
    rules, hs.signingKey, hs.random,
  );
  await storeOutOfRoomMembership(hs, event);
  return event.eventId;
}

async function referenceHashOf(e: StoredEvent, rules: RoomVersionRules): Promise<string> {
  return (await eventRef(e, rules)).sha256;
}

/** The room version of a room known only from an invite or knock: its stripped create event. */
async function roomVersionOf(hs: Services, roomId: string, own: StoredEvent): Promise<string> {
  const room = await hs.store.read((tx) => getRoom(tx, roomId));
  if (room) return room.roomVersion;
  const carried = own.pdu.unsigned?.invite_room_state ?? own.pdu.unsigned?.knock_room_state;
  for (const s of Array.isArray(carried) ? carried : []) {
    const c = asObject(s);
    if (c?.type === "m.room.create") {
      const v = asObject(c.content)?.room_version;
      return typeof v === "string" ? v : "1";
    }
  }
  return "1";
}

/**
 * Knocks on a room this server is not in through the first of `servers` that completes
 * `make_knock`/`send_knock`; the answer's `knock_room_state` (entries that verify) is what the
 * user's `/sync` shows under `knock`.
 */
export async function knockRemoteRoom(hs: Services, userId: string, roomId: string, servers: string[], content: Record<string, unknown>): Promise<string> {
  const client = hs.federation;
  if (!client || servers.length === 0) throw notFound(`Room ${roomId} is not known here and no server to knock through is known`);
  const errors: unknown[] = [];
  for (const server of servers) {
    try {
      const { rules, event } = await makeAndBuild(hs, client, server, roomId, userId, "knock", content);
      const answer = await client.json(server, "PUT", `/_matrix/federation/v1/send_knock/${enc(roomId)}/${enc(event.eventId)}`, { body: event.pdu });
      const stripped = await strippedFromPdus(hs, answer.knock_room_state, roomId, rules);
      await storeOutOfRoomMembership(hs, { ...event, pdu: { ...event.pdu, unsigned: { knock_room_state: stripped } } });
      return event.eventId;
    } catch (err) {
      if (!(err instanceof FederationError || err instanceof RoomStateError || (err instanceof MatrixError && err.errcode === "M_INCOMPATIBLE_ROOM_VERSION"))) throw err;
      hs.logger.warn(`knock on ${roomId} through ${server} failed: ${err.message}`);
      errors.push(err);
    }
  }
  throw handshakeFailure(errors, `Knocking on ${roomId}`);
}

/**
 * Stripped state from PDUs a resident sent (`knock_room_state`): "Entries which are improperly
 * signed or formatted SHOULD be removed by the server prior to supplying them over the
 * Client-Server API."
 */
async function strippedFromPdus(hs: Services, value: unknown, roomId: string, rules: RoomVersionRules): Promise<JsonObject[]> {
  const out: JsonObject[] = [];
  for (const entry of Array.isArray(value) ? value : []) {
    const e = asObject(entry);
    if (!e || checkFormat(e, rules)) continue;
    const pdu = e as Pdu;
    const id = await eventIdOf(pdu, rules);
    const eventRoom = rules.roomIdFromCreate && pdu.type === "m.room.create" ? "!" + id.slice(1) : pdu.room_id;
    if (eventRoom !== roomId) continue;
    const validAt = rules.enforceKeyValidity ? pdu.origin_server_ts : undefined;
    if (!(await verifyJsonSignature(redact(pdu, rules), domainOf(pdu.sender)!, (s, k) => hs.keyring.key(s, k, validAt), hs.verifier))) continue;
    out.push({ type: pdu.type, state_key: pdu.state_key, sender: pdu.sender, content: pdu.content });
  }
  return out;
}

/**
 * The invite flow for a remote invitee: `PUT /v2/invite` to the invitee's server with the room's
 * stripped state (as PDUs, v1.16), which signs the event; returns the event with both signatures,
 * which the local send then persists. Used as `sendEvent`'s countersign step.
 */
export function remoteInviteSigner(hs: Services): (event: EventWithId) => Promise<EventWithId> {
  return async (event) => {
    const client = hs.federation;
    const invitee = event.pdu.state_key!;
    const server = serverOf(invitee);
    if (!client || !client.mayContact(server)) throw forbidden(`Federation with ${server} is not possible`);
    const { version, stripped } = await hs.store.read(async (tx) => {
      const room = await getRoom(tx, event.roomId);
      const out: Pdu[] = [];
      for (const type of STRIPPED_STATE_TYPES) {
        const e = await currentStateEvent(tx, event.roomId, type, "");
        if (e) out.push(pduForFederation(e));
      }
      return { version: room!.roomVersion, stripped: out };
    });
    const rules = roomVersion(version)!;
    let answer: Record<string, unknown>;
    try {
      answer = await sendInvite(client, server, event, version, stripped);
    } catch (err) {
      if (err instanceof RoomStateError) throw new MatrixError(502, "M_UNKNOWN", `Could not invite ${invitee}: ${err.message}`);
      if (!(err instanceof FederationError)) throw err;
      if (err.status === 403) throw forbidden(`${server} refused the invite: ${String((err.body as { error?: unknown })?.error ?? err.message)}`);
      if (err.errcode === "M_INCOMPATIBLE_ROOM_VERSION") throw new MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", `${server} does not support room version ${version}`);
      // invites-v2: M_MISSING_PARAM / M_INVALID_PARAM "SHOULD fail with a 5xx error".
      throw new MatrixError(502, "M_UNKNOWN", `Could not invite ${invitee}: ${err.message}`);
    }
    const signed = asObject(answer.event);
    if (!signed || (await eventIdOf(signed, rules)) !== event.eventId || (rules.referencePairs && signed.event_id !== event.eventId)) {
      throw new MatrixError(502, "M_UNKNOWN", `${server} answered the invite with another event`);
    }
    const validAt = rules.enforceKeyValidity ? event.pdu.origin_server_ts : undefined;
    if (!(await verifyJsonSignature(redact(signed, rules), server, (s, k) => hs.keyring.key(s, k, validAt), hs.verifier))) {
      throw new MatrixError(502, "M_UNKNOWN", `${server} did not sign the invite validly`);
    }
    const theirs = (asObject(signed.signatures) ?? {}) as Pdu["signatures"];
    return { ...event, pdu: { ...event.pdu, signatures: { ...event.pdu.signatures, [server]: theirs[server]! } } };
  };
}

/**
 * `PUT /v2/invite` to the invitee's server; a server without it gets the v1 invite (the event itself
 * with `unsigned.invite_room_state`, answered `[200, {event}]`), which invites-v2 allows only for
 * room versions 1 and 2 ("Servers which receive a v1 invite request must assume that the room
 * version is either 1 or 2"). For later versions such a server cannot be invited: 400
 * `M_INCOMPATIBLE_ROOM_VERSION`.
 */
async function sendInvite(client: FederationClient, server: string, event: EventWithId, version: string, stripped: Pdu[]): Promise<Record<string, unknown>> {
  const path = (v: string): string => `/_matrix/federation/${v}/invite/${enc(event.roomId)}/${enc(event.eventId)}`;
  const pdu = pduForFederation(event);
  try {
    return await client.json(server, "PUT", path("v2"), { body: { room_version: version, event: pdu, invite_room_state: stripped } });
  } catch (err) {
    if (!endpointUnsupported(err)) throw err;
    if (version !== "1" && version !== "2") {
      throw new MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", `${server} has no v2 invite API, and the v1 API cannot invite to a room of version ${version}`);
    }
  }
  return v1Body(server, "invite", await client.json<unknown>(server, "PUT", path("v1"), { body: { ...pdu, unsigned: { invite_room_state: stripped } } }));
}

/** Resolves an alias of another server with `/query/directory`: its room and the servers to join through. */
export async function queryRemoteAlias(hs: Services, alias: string): Promise<{ roomId: string; servers: string[] }> {
  const server = serverOf(alias);
  const client = hs.federation;
  if (!client || !client.mayContact(server)) throw notFound(`Room alias ${alias} not found (federation with ${server} is not possible)`);
  let answer: Record<string, unknown>;
  try {
    answer = await client.json(server, "GET", "/_matrix/federation/v1/query/directory", { query: [["room_alias", alias]] });
  } catch (err) {
    if (!(err instanceof FederationError)) throw err;
    if (err.status === 404) throw notFound(`Room alias ${alias} not found`);
    throw new MatrixError(502, "M_UNKNOWN", `Could not resolve ${alias}: ${err.message}`);
  }
  const roomId = answer.room_id;
  const servers = Array.isArray(answer.servers) ? answer.servers.filter((s): s is string => typeof s === "string") : [];
  if (typeof roomId !== "string" || !roomId.startsWith("!")) throw new MatrixError(502, "M_UNKNOWN", `${server} answered the alias query with no room ID`);
  return { roomId, servers };
}
