/**
 * Sending a local event into a room: choose prev and auth events, build and sign the PDU, check
 * the auth rules against the current state, and hand it to the persistence pipeline (persist.ts),
 * which stores it in one write transaction guarded by a compare-and-swap on the extremities. If
 * another writer moved them meanwhile, the event is built again on the new ones. Sends to one room
 * are also serialized in-process (lock.ts), so that retry is the exception.
 */
import type { ReadTx } from "../../storage/store.ts";
import { key, prefix } from "../../storage/store.ts";
import type { Services } from "../context.ts";
import { forbidden, notFound, badJson } from "../errors.ts";
import type { EventWithId, Pdu, StoredEvent } from "../events/types.ts";
import { stateKeyOf, isTimelineEvent } from "../events/types.ts";
import type { RoomVersionRules } from "../rooms/versions.ts";
import { buildEvent, eventRef } from "../rooms/build.ts";
import type { EventRef } from "../rooms/build.ts";
import { authStateKeysFor, checkAuth } from "../rooms/auth.ts";
import { requiredPowerLevel, userPowerLevel } from "../rooms/powerLevels.ts";
import { withRoomLock } from "./lock.ts";
import { currentState, getEvent, getRoom, membersWith, pdusOf, rulesOf } from "./state.ts";
import { ExtremitiesChanged, persist } from "./persist.ts";
import type { PersistInput } from "./persist.ts";

/** What a local user asks to send. */
export interface SendRequest {
  roomId: string;
  sender: string;
  type: string;
  stateKey?: string;
  content: Record<string, unknown>;
  redacts?: string;
  /**
   * The client's transaction: a retry with the same (user, device, scope, txnId) returns the same
   * event. `scope` names the request path (the spec scopes transaction IDs per device and path).
   */
  txn?: { deviceId: string; txnId: string; scope?: string };
  /**
   * Another server's signature the event needs before it is stored (an invite of a remote user:
   * the invitee's server signs it, server-server "Inviting to a room"). Called under the room lock,
   * outside any transaction; returns the event with the signature added.
   */
  countersign?: (event: EventWithId) => Promise<EventWithId>;
}

/** The outcome of a send. */
export interface SendResult {
  eventId: string;
  streamPos: number;
}

/** Up to this many forward extremities become `prev_events` (the spec allows 20). */
const MAX_PREV_EVENTS = 10;

/**
 * The `txn_ids` key of a client transaction. key = userId|deviceId|scope|txnId → { eventId, streamPos }.
 * The scope is the request path ("Transaction identifiers": "scoped to a single device and HTTP
 * request path"), so an ID reused in another room or for another event type is a new transaction.
 */
export function txnKey(userId: string, deviceId: string, txnId: string, scope: string): string {
  return key(userId, deviceId, scope, txnId);
}

/** Builds, authorizes and stores a local event; see the module comment. */
export async function sendEvent(hs: Services, req: SendRequest): Promise<SendResult> {
  const tkey = req.txn ? txnKey(req.sender, req.txn.deviceId, req.txn.txnId, req.txn.scope ?? `${req.type === "m.room.redaction" ? "redact" : "send"}/${req.roomId}/${req.type}`) : undefined;
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

/** The body of `sendEvent`, under the room lock: build, then persist; again if the extremities moved. */
async function sendLocked(hs: Services, req: SendRequest, tkey?: string): Promise<SendResult> {
  for (let attempt = 1; ; attempt++) {
    const prepared = await hs.store.read(async (tx) => {
      const seen = tkey ? await tx.get<SendResult>("txn_ids", tkey) : undefined;
      return seen ? { seen } : prepare(tx, req);
    }, { tables: ["txn_ids", "rooms", "extremities", "events", "room_state"] });
    if ("seen" in prepared) return prepared.seen;
    const { rules, loaded, prevs, authKeys } = prepared;

    const authEvents: StoredEvent[] = [];
    for (const sk of authKeys) {
      const e = loaded.get(sk);
      if (e) authEvents.push(e);
    }
    const depth = prevs.reduce((m, e) => Math.max(m, e.pdu.depth), 0) + 1;
    let built = await buildEvent(
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

    // Auth against the chosen auth events, for a clear 403 before anything is stored; the create
    // event is always part of the auth state (v12 leaves it out of auth_events but the rules
    // still consult it). The pipeline checks again against the state it commits on.
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
    if (req.countersign) built = await req.countersign(built);
    markReplaced(built, replaced);
    try {
      const [outcome] = await persist(hs, req.roomId, [{ kind: "local", event: built, ...(req.txn ? { txn: req.txn } : {}), ...(tkey ? { tkey } : {}), ...(applyRedaction ? { applyRedaction } : {}) }]);
      if (outcome?.outcome !== "accepted" || outcome.streamPos === undefined) throw forbidden(outcome?.reason ?? "The event was not accepted");
      return { eventId: built.eventId, streamPos: outcome.streamPos };
    } catch (err) {
      if (err instanceof ExtremitiesChanged && attempt < MAX_ATTEMPTS) continue;
      throw err;
    }
  }
}

const MAX_ATTEMPTS = 5;

/** "unsigned" data clients read on a state event: the state it replaces (Client-Server "Room Events"). */
export function markReplaced(built: EventWithId, replaced: StoredEvent | undefined): void {
  if (!replaced) return;
  const pdu = built.pdu;
  pdu.unsigned = { ...(pdu.unsigned ?? {}), replaces_state: replaced.eventId, prev_content: replaced.pdu.content, prev_sender: replaced.pdu.sender };
}

const CREATE_SK = stateKeyOf("m.room.create", "");
/** Create events by event ID (immutable, and their IDs are unique, so one cache serves every store). */
const createEvents = new Map<string, StoredEvent>();
const POWER_SK = stateKeyOf("m.room.power_levels", "");

interface Prepared {
  rules: RoomVersionRules;
  /** The few current state events this send needs (auth events, create, power levels, the replaced one). */
  loaded: Map<string, StoredEvent>;
  prevs: StoredEvent[];
  /** The SKs `authStateKeysFor` selects for this event. */
  authKeys: string[];
}

async function prepare(tx: ReadTx, req: SendRequest): Promise<Prepared> {
  const pre = prefix(req.roomId);
  // Reads that do not depend on each other are asked for together: in IndexedDB each awaited
  // request is a round trip to the browser's storage process.
  // key = roomId|eventId → true
  const [room, extremities] = await Promise.all([getRoom(tx, req.roomId), tx.range<true>("extremities", { prefix: pre })]);
  if (!room) throw notFound(`Unknown room ${req.roomId}`);
  const rules = rulesOf(room);
  const authKeys = [...new Set(authStateKeysFor(req.type, req.stateKey, req.sender, req.content, rules))];

  const wanted = new Set([...authKeys, CREATE_SK, POWER_SK]);
  if (req.stateKey !== undefined) wanted.add(stateKeyOf(req.type, req.stateKey));
  // key = roomId|type|stateKey → eventId; the part after the room ID is exactly the SK.
  const [prevEvents, stateEvents] = await Promise.all([
    Promise.all(extremities.map((row) => getEvent(tx, row.key.slice(pre.length)))),
    Promise.all([...wanted].map(async (sk) => {
      const id = await tx.get<string>("room_state", pre + sk);
      return [sk, id ? await getEvent(tx, id) : undefined] as const;
    })),
  ]);
  const prevs = prevEvents.filter((e): e is StoredEvent => e !== undefined);
  // Deepest first, so the cap keeps the most recent branches.
  prevs.sort((a, b) => b.pdu.depth - a.pdu.depth);
  const loaded = new Map<string, StoredEvent>();
  for (const [sk, e] of stateEvents) if (e) loaded.set(sk, e);
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
  return { rules, loaded, prevs: prevs.slice(0, MAX_PREV_EVENTS), authKeys };
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
  const target = await hs.store.read((tx) => getEvent(tx, targetId), { tables: ["events"] });
  const sameSender = target !== undefined && target.pdu.sender === req.sender;
  if (!sameSender && userPowerLevel(req.sender, state, rules) < requiredPowerLevel("redact", state)) {
    throw forbidden("You may only redact your own events without the redact power level");
  }
  if (!target || target.roomId !== req.roomId || !isTimelineEvent(target)) return undefined;
  return targetId;
}

/**
 * The events of a room being made (`createRoom`, an upgrade's new room): each is built on the one
 * before, checked against the state the earlier ones make, and the whole list is persisted in one
 * transaction, so a crash leaves either the whole room or nothing.
 */
export class LocalBatch {
  readonly inputs: PersistInput[] = [];
  private readonly state = new Map<string, StoredEvent>();
  private last: StoredEvent | undefined;
  /** The prev events of the first event added (an existing room's forward extremities). */
  private firstPrevs: StoredEvent[] = [];

  private readonly hs: Services;
  private readonly rules: RoomVersionRules;
  readonly roomId: string;

  constructor(hs: Services, rules: RoomVersionRules, roomId: string) {
    this.hs = hs;
    this.rules = rules;
    this.roomId = roomId;
  }

  /** A batch of events for an existing room, built on its current extremities and state. */
  static async forRoom(hs: Services, roomId: string): Promise<LocalBatch> {
    return hs.store.read(async (tx) => {
      const room = await getRoom(tx, roomId);
      if (!room) throw notFound(`Unknown room ${roomId}`);
      const batch = new LocalBatch(hs, rulesOf(room), roomId);
      for (const [sk, e] of await currentState(tx, roomId)) batch.state.set(sk, e);
      const pre = prefix(roomId);
      for (const row of await tx.range<true>("extremities", { prefix: pre })) {
        const e = await getEvent(tx, row.key.slice(pre.length));
        if (e) batch.firstPrevs.push(e);
      }
      batch.firstPrevs.sort((a, b) => b.pdu.depth - a.pdu.depth);
      batch.firstPrevs = batch.firstPrevs.slice(0, MAX_PREV_EVENTS);
      return batch;
    });
  }

  /** The content of a state event as the batch has it so far. */
  stateContent(type: string, stateKey = ""): Record<string, unknown> | undefined {
    return this.state.get(stateKeyOf(type, stateKey))?.pdu.content;
  }

  /** Adds the already built create event. */
  addCreate(create: EventWithId): void {
    const stored: StoredEvent = { ...create };
    this.state.set(CREATE_SK, stored);
    this.last = stored;
    this.inputs.push({ kind: "local", event: create });
  }

  /** Builds, checks and adds one event; 403 when the auth rules refuse it. */
  async add(req: Omit<SendRequest, "roomId" | "txn">): Promise<{ eventId: string }> {
    const { hs, rules } = this;
    const authKeys = authStateKeysFor(req.type, req.stateKey, req.sender, req.content, rules);
    const authEvents = authKeys.map((k) => this.state.get(k)).filter((e): e is StoredEvent => e !== undefined);
    const built = await buildEvent(
      {
        roomId: this.roomId, sender: req.sender, type: req.type,
        ...(req.stateKey !== undefined ? { stateKey: req.stateKey } : {}),
        content: req.content,
        prevEvents: await refsOf(this.last ? [this.last] : this.firstPrevs, rules),
        authEvents: await refsOf(authEvents, rules),
        depth: Math.max(0, ...(this.last ? [this.last] : this.firstPrevs).map((e) => e.pdu.depth)) + 1,
        originServerTs: hs.clock(), origin: hs.serverName,
      },
      rules, hs.signingKey, hs.random,
    );
    const verdict = checkAuth(built.pdu, built.eventId, pdusOf(this.state), rules);
    if (!verdict.allowed) throw forbidden(verdict.reason);
    const stored: StoredEvent = { ...built };
    if (req.stateKey !== undefined) {
      const sk = stateKeyOf(req.type, req.stateKey);
      markReplaced(built, this.state.get(sk));
      this.state.set(sk, stored);
    }
    this.last = stored;
    this.inputs.push({ kind: "local", event: built });
    return { eventId: built.eventId };
  }
}
