/**
 * Sending a local event into a room: choose prev and auth events, build and sign the PDU, check
 * the auth rules against the current state, and store everything in one write transaction
 * (events, timeline, stream, room_state, state_snapshots, extremities, memberships, relations,
 * txn_ids), then wake `/sync` and the push sender. Sends to one room are serialized (lock.ts).
 */
import type { ReadTx, WriteTx } from "../../storage/store.ts";
import { key, pos, prefix } from "../../storage/store.ts";
import type { Services } from "../context.ts";
import { nextStreamPos } from "../context.ts";
import { forbidden, notFound, badJson } from "../errors.ts";
import type { EventWithId, Pdu, RoomRecord, StoredEvent } from "../events/types.ts";
import { stateKeyOf } from "../events/types.ts";
import type { RoomVersionRules } from "../rooms/versions.ts";
import { buildEvent, eventRef } from "../rooms/build.ts";
import type { EventRef } from "../rooms/build.ts";
import { authStateKeysFor, checkAuth } from "../rooms/auth.ts";
import { requiredPowerLevel, userPowerLevel } from "../rooms/powerLevels.ts";
import { withRoomLock } from "./lock.ts";
import { getEvent, getRoom, membersWith, pdusOf, rulesOf, SAME_AS } from "./state.ts";
import type { MembershipRecord, Snapshot } from "./state.ts";

/** What a local user asks to send. */
export interface SendRequest {
  roomId: string;
  sender: string;
  type: string;
  stateKey?: string;
  content: Record<string, unknown>;
  redacts?: string;
  /** The client's transaction: a retry with the same (user, device, txnId) returns the same event. */
  txn?: { deviceId: string; txnId: string };
}

/** The outcome of a send. */
export interface SendResult {
  eventId: string;
  streamPos: number;
}

/** Up to this many forward extremities become `prev_events` (the spec allows 20). */
const MAX_PREV_EVENTS = 10;

/**
 * The `txn_ids` key of a client transaction. key = userId|deviceId|txnId → { eventId, streamPos }.
 * Redactions get their own namespace (`redact:` prefix) because the spec scopes transaction IDs
 * per endpoint, and a client may reuse an ID across `/send` and `/redact`.
 */
export function txnKey(userId: string, deviceId: string, txnId: string, kind: "send" | "redact" = "send"): string {
  return key(userId, deviceId, kind === "send" ? txnId : `redact:${txnId}`);
}

/** Builds, authorizes and stores a local event; see the module comment. */
export async function sendEvent(hs: Services, req: SendRequest): Promise<SendResult> {
  const tkey = req.txn ? txnKey(req.sender, req.txn.deviceId, req.txn.txnId, req.type === "m.room.redaction" ? "redact" : "send") : undefined;
  // The transaction check happens under the room lock, in the same read as the rest of the
  // preparation: a retry racing its first attempt waits for it and then finds its result.
  const result = await withRoomLock(hs.store, req.roomId, () => sendLocked(hs, req, tkey));
  if (req.type === "m.room.guest_access" && req.stateKey === "" && req.content.guest_access !== "can_join") {
    await removeGuests(hs, req.roomId);
  }
  return result;
}

/**
 * Guest access, server behaviour: when `guest_access` stops being `can_join`, "the server MUST set
 * those users' m.room.member state to leave" (local guests; each leaves by their own event).
 */
async function removeGuests(hs: Services, roomId: string): Promise<void> {
  const guests = await hs.store.read(async (tx) => {
    const out: string[] = [];
    for (const userId of await membersWith(tx, roomId, "join")) {
      if ((await tx.get<{ isGuest?: boolean }>("accounts", userId))?.isGuest) out.push(userId);
    }
    return out;
  });
  for (const userId of guests) {
    try {
      await sendEvent(hs, { roomId, sender: userId, type: "m.room.member", stateKey: userId, content: { membership: "leave" } });
    } catch (err) {
      hs.logger.warn("could not remove guest", userId, "from", roomId, err);
    }
  }
}

/** The body of `sendEvent`, for callers that already hold the room lock (createRoom). */
export async function sendLocked(hs: Services, req: SendRequest, tkey?: string): Promise<SendResult> {
  const prepared = await hs.store.read(async (tx) => {
    const seen = tkey ? await tx.get<SendResult>("txn_ids", tkey) : undefined;
    return seen ? { seen } : prepare(tx, req);
  });
  if ("seen" in prepared) return prepared.seen;
  const { room, rules, stateIds, loaded, prevs, snapshotOf, authKeys } = prepared;

  const authEvents: StoredEvent[] = [];
  for (const sk of authKeys) {
    const e = loaded.get(sk);
    if (e) authEvents.push(e);
  }
  const depth = prevs.reduce((m, e) => Math.max(m, e.pdu.depth), 0) + 1;
  const built = await buildEvent(
    {
      roomId: req.roomId,
      sender: req.sender,
      type: req.type,
      ...(req.stateKey !== undefined ? { stateKey: req.stateKey } : {}),
      content: req.content,
      ...(req.redacts !== undefined ? { redacts: req.redacts } : {}),
      prevEvents: await refsOf(prevs, rules),
      authEvents: await refsOf(authEvents, rules),
      depth,
      originServerTs: hs.clock(),
      origin: hs.serverName,
    },
    rules,
    hs.signingKey,
    hs.random,
  );

  // Auth against the chosen auth events; the create event is always part of the auth state (v12
  // leaves it out of auth_events but the rules still consult it).
  const authState = new Map<string, Pdu>();
  const create = loaded.get(CREATE_SK);
  if (create) authState.set(CREATE_SK, create.pdu);
  for (const e of authEvents) authState.set(stateKeyOf(e.pdu.type, e.pdu.state_key ?? ""), e.pdu);
  const verdict = checkAuth(built.pdu, built.eventId, authState, rules);
  if (!verdict.allowed) throw forbidden(verdict.reason);

  let applyRedaction: string | undefined;
  if (req.type === "m.room.redaction") {
    applyRedaction = await redactionTarget(hs, req, pdusOf(loaded), rules);
  }

  const replaced = req.stateKey !== undefined ? loaded.get(stateKeyOf(req.type, req.stateKey)) : undefined;
  return storeLocalEvent(hs, room, built, stateIds, replaced, prevs, { tkey, txn: req.txn, applyRedaction, snapshotOf });
}

const CREATE_SK = stateKeyOf("m.room.create", "");
/** Create events by event ID (immutable, and their IDs are unique, so one cache serves every store). */
const createEvents = new Map<string, StoredEvent>();
const POWER_SK = stateKeyOf("m.room.power_levels", "");

interface Prepared {
  room: RoomRecord;
  rules: RoomVersionRules;
  /** The current state as IDs (SK → eventId): all of it when the event needs a full snapshot, else the wanted keys. */
  stateIds: Map<string, string>;
  /** The few current state events this send needs (auth events, create, power levels, the replaced one). */
  loaded: Map<string, StoredEvent>;
  prevs: StoredEvent[];
  /** The event whose full snapshot equals the current state, if known. */
  snapshotOf: string | undefined;
  /** The SKs `authStateKeysFor` selects for this event. */
  authKeys: string[];
}

async function prepare(tx: ReadTx, req: SendRequest): Promise<Prepared> {
  const room = await getRoom(tx, req.roomId);
  if (!room) throw notFound(`Unknown room ${req.roomId}`);
  const rules = rulesOf(room);
  const authKeys = [...new Set(authStateKeysFor(req.type, req.stateKey, req.sender, req.content, rules))];
  const pre = prefix(req.roomId);

  // key = roomId|eventId → true
  const prevs: StoredEvent[] = [];
  for (const row of await tx.range<true>("extremities", { prefix: pre })) {
    const e = await getEvent(tx, row.key.slice(pre.length));
    if (e) prevs.push(e);
  }
  // Deepest first, so the cap keeps the most recent branches.
  prevs.sort((a, b) => b.pdu.depth - a.pdu.depth);
  // With a single forward extremity the current state is the state after it, so a non-state event
  // can share that event's full snapshot instead of copying it. State events always store a full
  // snapshot; other events store a link to one.
  let snapshotOf: string | undefined;
  if (prevs.length === 1) {
    const prev = prevs[0]!;
    if (prev.pdu.state_key !== undefined) snapshotOf = prev.eventId;
    else {
      const snap = await tx.get<Snapshot>("state_snapshots", prev.eventId);
      if (snap) snapshotOf = snap[SAME_AS] ?? prev.eventId;
    }
  }

  const wanted = new Set([...authKeys, CREATE_SK, POWER_SK]);
  if (req.stateKey !== undefined) wanted.add(stateKeyOf(req.type, req.stateKey));
  // key = roomId|type|stateKey → eventId; the part after the room ID is exactly the SK. The whole
  // current state is read only when this event needs a full snapshot of its own.
  const stateIds = new Map<string, string>();
  if (req.stateKey !== undefined || snapshotOf === undefined) {
    for (const row of await tx.range<string>("room_state", { prefix: pre })) stateIds.set(row.key.slice(pre.length), row.value);
  } else {
    for (const sk of wanted) {
      const id = await tx.get<string>("room_state", pre + sk);
      if (id) stateIds.set(sk, id);
    }
  }
  const loaded = new Map<string, StoredEvent>();
  for (const sk of wanted) {
    const id = stateIds.get(sk);
    const e = id ? await getEvent(tx, id) : undefined;
    if (e) loaded.set(sk, e);
  }
  // Keep one object per create event: the auth rules cache its event ID per object (v12 checks
  // every event's room ID against it), and a create event never changes.
  const create = loaded.get(CREATE_SK);
  if (create) {
    const known = createEvents.get(create.eventId);
    if (known && known.roomId === create.roomId) loaded.set(CREATE_SK, known);
    else {
      if (createEvents.size > 1000) createEvents.clear();
      createEvents.set(create.eventId, create);
    }
  }
  return { room, rules, stateIds, loaded, prevs: prevs.slice(0, MAX_PREV_EVENTS), snapshotOf, authKeys };
}

/** Event references as `buildEvent` wants them. */
async function refsOf(events: StoredEvent[], rules: RoomVersionRules): Promise<EventRef[]> {
  const out: EventRef[] = [];
  for (const e of events) out.push(await eventRef(e, rules));
  return out;
}

/**
 * Whether a local redaction may take effect on its target ("Redactions": the sender of the
 * original event, or anyone with the `redact` power level). A client asking for a redaction it
 * may not apply gets 403 rather than a redaction event that silently does nothing.
 * Returns the target's event ID when the redaction applies.
 */
async function redactionTarget(hs: Services, req: SendRequest, state: Map<string, Pdu>, rules: RoomVersionRules): Promise<string | undefined> {
  const targetId = req.redacts ?? (typeof req.content.redacts === "string" ? req.content.redacts : undefined);
  if (!targetId) throw badJson("A redaction needs the ID of the event it redacts");
  const target = await hs.store.read((tx) => getEvent(tx, targetId));
  const sameSender = target !== undefined && target.pdu.sender === req.sender;
  if (!sameSender && userPowerLevel(req.sender, state, rules) < requiredPowerLevel("redact", state)) {
    throw forbidden("You may only redact your own events without the redact power level");
  }
  if (!target || target.roomId !== req.roomId || target.outlier || target.rejected) return undefined;
  return targetId;
}

/** Extra effects of a local store. */
interface StoreOptions {
  tkey?: string | undefined;
  txn?: { deviceId: string; txnId: string } | undefined;
  applyRedaction?: string | undefined;
  /** An event whose full snapshot is the current state (lets a non-state event link to it). */
  snapshotOf?: string | undefined;
}

/**
 * Stores an authorized event as the new head of the room, in one write transaction, and notifies
 * `/sync` after the commit. `state` is the current state before the event, `prevs` its prev events.
 */
export async function storeLocalEvent(
  hs: Services,
  room: RoomRecord,
  built: EventWithId,
  stateIds: Map<string, string>,
  replaced: StoredEvent | undefined,
  prevs: StoredEvent[],
  opts: StoreOptions = {},
): Promise<SendResult> {
  const pdu = built.pdu;
  const isState = pdu.state_key !== undefined;
  const sk = isState ? stateKeyOf(pdu.type, pdu.state_key!) : undefined;
  if (replaced) {
    // "unsigned" data clients read: the state this event replaces (Client-Server "Room Events").
    pdu.unsigned = { ...(pdu.unsigned ?? {}), replaces_state: replaced.eventId, prev_content: replaced.pdu.content, prev_sender: replaced.pdu.sender };
  }
  // A state event stores the full state after it; a non-state event links to the full snapshot it
  // shares when there is one (see Snapshot in state.ts).
  let snapshot: Snapshot;
  const sameAs = sk ? undefined : opts.snapshotOf;
  if (sameAs) {
    snapshot = { [SAME_AS]: sameAs };
  } else {
    snapshot = Object.fromEntries(stateIds);
    if (sk) snapshot[sk] = built.eventId;
  }

  const result = await hs.store.write(async (tx) => {
    const streamPos = await nextStreamPos(tx);
    const stored: StoredEvent = { eventId: built.eventId, roomId: built.roomId, pdu, streamPos, ...(opts.txn ? { txn: opts.txn } : {}) };
    writeEventRows(tx, stored, snapshot, prevs);
    const maxDepth = Math.max(room.maxDepth ?? 0, pdu.depth);
    tx.put("rooms", room.roomId, { ...room, maxDepth } satisfies RoomRecord);
    if (opts.applyRedaction) await applyRedaction(tx, opts.applyRedaction, built.eventId);
    const res: SendResult = { eventId: built.eventId, streamPos };
    if (opts.tkey) tx.put("txn_ids", opts.tkey, res);
    return res;
  });
  hs.notifier.notify(result.streamPos);
  hs.pushSender?.onEventStored();
  hs.onEventsCommitted?.(result.streamPos);
  return result;
}

/** The rows one timeline event owns, per CONTRACTS.md. */
function writeEventRows(tx: WriteTx, e: StoredEvent, snapshot: Snapshot, prevs: StoredEvent[]): void {
  const pdu = e.pdu;
  const streamPos = e.streamPos!;
  tx.put("events", e.eventId, e);
  tx.put("timeline", key(e.roomId, pos(streamPos)), e.eventId); // key = roomId|pos → eventId
  tx.put("stream", pos(streamPos), { roomId: e.roomId, eventId: e.eventId }); // key = pos → { roomId, eventId }
  tx.put("state_snapshots", e.eventId, snapshot); // key = eventId → state after
  for (const p of prevs) tx.delete("extremities", key(e.roomId, p.eventId)); // key = roomId|eventId
  tx.put("extremities", key(e.roomId, e.eventId), true);
  if (pdu.state_key !== undefined) {
    tx.put("room_state", key(e.roomId, pdu.type, pdu.state_key), e.eventId); // key = roomId|type|stateKey
    if (pdu.type === "m.room.member") {
      const membership = typeof pdu.content.membership === "string" ? pdu.content.membership : "leave";
      // key = userId|roomId → { membership, eventId, streamPos }
      tx.put("memberships", key(pdu.state_key, e.roomId), { membership, eventId: e.eventId, streamPos } satisfies MembershipRecord);
    }
  }
  const rel = relationOf(pdu);
  if (rel) {
    // key = relatesToEventId|relType|eventId → { type, sender, streamPos, key? }
    tx.put("relations", key(rel.event_id, rel.rel_type, e.eventId), {
      type: pdu.type, sender: pdu.sender, streamPos, ...(typeof rel.key === "string" ? { key: rel.key } : {}),
    });
  }
}

/** The relation an event declares (`m.relates_to` with a string `rel_type` and `event_id`), which gets a `relations` row. */
function relationOf(pdu: Pdu): { rel_type: string; event_id: string; key?: unknown } | undefined {
  const rel = pdu.content["m.relates_to"] as Record<string, unknown> | undefined;
  if (rel && typeof rel === "object" && typeof rel.rel_type === "string" && typeof rel.event_id === "string") {
    return { rel_type: rel.rel_type, event_id: rel.event_id, key: rel.key };
  }
  return undefined;
}

/** Marks `targetId` redacted by `redactionId` and drops it from relation aggregations. */
async function applyRedaction(tx: WriteTx, targetId: string, redactionId: string): Promise<void> {
  const target = await tx.get<StoredEvent>("events", targetId);
  if (!target || target.redactedBy) return;
  tx.put("events", targetId, { ...target, redactedBy: redactionId } satisfies StoredEvent);
  const rel = relationOf(target.pdu);
  if (rel) {
    // A redacted event no longer counts towards aggregations ("Relationships", redactions).
    tx.delete("relations", key(rel.event_id, rel.rel_type, targetId));
  }
}

/**
 * Stores the first event of a new room (the create event) with its room record. The room's ID is
 * the create event's (derived from it in v12).
 */
export async function storeCreateEvent(hs: Services, rules: RoomVersionRules, built: EventWithId): Promise<SendResult> {
  const room: RoomRecord = { roomId: built.roomId, roomVersion: rules.id, maxDepth: built.pdu.depth };
  return storeLocalEvent(hs, room, built, new Map(), undefined, []);
}
