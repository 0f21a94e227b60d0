/**
 * Serving stored events to a client: the client format (events/format.ts), `redacted_because`, and
 * the bundled aggregations of `unsigned.m.relations` (modules "Event replacements", "Threading",
 * "Reference relations"; annotations are not bundled).
 */
import type { ReadTx } from "../../storage/store.ts";
import { prefix, SEP } from "../../storage/store.ts";
import type { ClientEvent, StoredEvent } from "../events/types.ts";
import { toClientEvent } from "../events/format.ts";
import type { RoomVersionRules } from "../rooms/versions.ts";
import { getEvent, getRoom, membershipIn, membershipInState, membershipRecord, rulesOf, stateAfter } from "./state.ts";
import { canSeeEvent } from "./visibility.ts";
import { isTimelineEvent } from "../events/types.ts";

/** Who is looking, for `transaction_id` echo, thread participation and visibility of related events. */
export interface Viewer {
  userId: string;
  deviceId?: string;
}

/** The `relations` value. key = relatesToEventId|relType|eventId. */
export interface RelationRow {
  type: string;
  sender: string;
  streamPos: number;
  key?: string;
}

/** Formats events for one viewer, with caches shared across a response. */
export class EventServer {
  /** Promises, so that events served side by side read each value once. */
  private readonly versions = new Map<string, Promise<RoomVersionRules | undefined>>();

  private readonly tx: ReadTx;
  private readonly viewer: Viewer;
  private readonly now: number;

  constructor(tx: ReadTx, viewer: Viewer, now: number) {
    this.tx = tx;
    this.viewer = viewer;
    this.now = now;
  }

  /** The room version rules of `roomId` (cached). */
  rules(roomId: string): Promise<RoomVersionRules | undefined> {
    let rules = this.versions.get(roomId);
    if (!rules) this.versions.set(roomId, (rules = getRoom(this.tx, roomId).then((room) => (room ? rulesOf(room) : undefined))));
    return rules;
  }

  /** One event in the client format, with bundled aggregations unless `bundle` is false. */
  async serve(e: StoredEvent, opts: { bundle?: boolean; omitRoomId?: boolean } = {}): Promise<ClientEvent> {
    const version = await this.rules(e.roomId);
    const redactionEvent = e.redactedBy ? await getEvent(this.tx, e.redactedBy) : undefined;
    // The viewer's membership at the event, including its own change ("leave" if none).
    const membership = e.streamPos === undefined ? undefined : ((await membershipInState(this.tx, await stateAfter(this.tx, e.eventId), this.viewer.userId)) ?? "leave");
    const pruned = await this.erasedFor(e);
    const out = toClientEvent(e, {
      ...(version ? { version } : {}),
      now: this.now,
      ...(this.viewer.deviceId ? { forDevice: { userId: this.viewer.userId, deviceId: this.viewer.deviceId } } : {}),
      ...(redactionEvent ? { redactionEvent } : {}),
      ...(opts.omitRoomId ? { omitRoomId: true } : {}),
      ...(pruned ? { pruned: true } : {}),
    });
    if (membership !== undefined) out.unsigned = { ...(out.unsigned ?? {}), membership };
    if (opts.bundle !== false && !e.redactedBy && !pruned) {
      const relations = await this.aggregations(e);
      if (relations) out.unsigned = { ...(out.unsigned ?? {}), "m.relations": relations };
    }
    return out;
  }

  /** Stream position of each sender's erasure, undefined when not erased (cached per response). */
  private readonly erasedAt = new Map<string, Promise<number | undefined>>();
  /** Whether the viewer joined a room at or before a stream position, by `roomId|pos` (cached). */
  private readonly joinedBy = new Map<string, Promise<boolean>>();

  /**
   * Whether `e` is a message of an erased account that this viewer is served redacted
   * (account_deactivation.yaml, `erase`: "any users … which join the room after the erasure
   * request are served redacted copies of the events sent by this account. Users which had
   * visibility on those events prior to the erasure are still able to see unredacted copies"): the
   * viewer had not joined the room by the time of the erasure. State events keep their content,
   * since the room's state must stay whole for everyone. Search skips these, so their text cannot match.
   */
  async erasedFor(e: StoredEvent): Promise<boolean> {
    if (e.redactedBy || e.pdu.state_key !== undefined) return false;
    const sender = e.pdu.sender;
    let erasure = this.erasedAt.get(sender);
    if (!erasure) this.erasedAt.set(sender, (erasure = this.tx.get<{ erasedAt?: number }>("accounts", sender).then((a) => a?.erasedAt)));
    const erasedAt = await erasure;
    if (erasedAt === undefined) return false;
    const cacheKey = `${e.roomId}|${erasedAt}`;
    let joined = this.joinedBy.get(cacheKey);
    if (!joined) {
      joined = membershipRecord(this.tx, e.roomId, this.viewer.userId).then((rec) => joinedAtOrBefore(this.tx, rec?.eventId, erasedAt));
      this.joinedBy.set(cacheKey, joined);
    }
    return !(await joined);
  }

  /**
   * Several events, in order. Served side by side: each takes a few dependent reads, and IndexedDB
   * answers the requests of one transaction in a pipeline, so a page costs a few round trips to
   * the browser's storage instead of a few per event. (The caches above may then read a value
   * twice; the answer is the same.)
   */
  serveAll(events: readonly StoredEvent[], opts: { bundle?: boolean; omitRoomId?: boolean } = {}): Promise<ClientEvent[]> {
    return Promise.all(events.map((e) => this.serve(e, opts)));
  }

  /** `unsigned.m.relations` of an event, or undefined when nothing relates to it. */
  async aggregations(e: StoredEvent): Promise<Record<string, unknown> | undefined> {
    const rows = await this.tx.range<RelationRow>("relations", { prefix: prefix(e.eventId) });
    if (rows.length === 0) return undefined;
    const out: Record<string, unknown> = {};
    const byType = new Map<string, { eventId: string; row: RelationRow }[]>();
    for (const r of rows) {
      const { relType, eventId } = parseRelationKey(r.key);
      let list = byType.get(relType);
      if (!list) byType.set(relType, (list = []));
      list.push({ eventId, row: r.value });
    }

    // m.replace: the most recent valid edit, in full ("Event replacements", server behaviour).
    const edits = byType.get("m.replace") ?? [];
    let latestEdit: StoredEvent | undefined;
    for (const { eventId } of edits) {
      const edit = await getEvent(this.tx, eventId);
      if (!edit || edit.redactedBy || !isTimelineEvent(edit) || edit.roomId !== e.roomId) continue;
      if (edit.pdu.sender !== e.pdu.sender || edit.pdu.type !== e.pdu.type || e.pdu.state_key !== undefined || edit.pdu.state_key !== undefined) continue;
      if (!(await canSeeEvent(this.tx, this.viewer.userId, edit))) continue;
      if (!latestEdit || newer(edit, latestEdit)) latestEdit = edit;
    }
    if (latestEdit) out["m.replace"] = await this.serve(latestEdit, { bundle: false });

    // m.thread: count, latest event, whether the viewer took part ("Threading", server behaviour).
    const thread: StoredEvent[] = [];
    for (const { eventId } of byType.get("m.thread") ?? []) {
      const t = await getEvent(this.tx, eventId);
      if (t && !t.redactedBy && t.roomId === e.roomId && (await canSeeEvent(this.tx, this.viewer.userId, t))) thread.push(t);
    }
    if (thread.length > 0) {
      thread.sort((a, b) => (a.streamPos ?? 0) - (b.streamPos ?? 0));
      out["m.thread"] = {
        latest_event: await this.serve(thread[thread.length - 1]!),
        count: thread.length,
        current_user_participated: e.pdu.sender === this.viewer.userId || thread.some((t) => t.pdu.sender === this.viewer.userId),
      };
    }

    // m.reference: the IDs of referencing events.
    // Only those the viewer may see, in this room: a bundle must not reveal other events' IDs.
    const refs: { eventId: string; row: RelationRow }[] = [];
    for (const r of byType.get("m.reference") ?? []) {
      const ref = await getEvent(this.tx, r.eventId);
      if (ref && ref.roomId === e.roomId && !ref.redactedBy && (await canSeeEvent(this.tx, this.viewer.userId, ref))) refs.push(r);
    }
    refs.sort((a, b) => a.row.streamPos - b.row.streamPos);
    if (refs.length > 0) out["m.reference"] = { chunk: refs.map((r) => ({ event_id: r.eventId })) };

    return Object.keys(out).length > 0 ? out : undefined;
  }
}

/**
 * Whether the membership history ending at `eventId` (walked back through
 * `unsigned.replaces_state`) holds a join at or before stream position `pos`.
 */
async function joinedAtOrBefore(tx: ReadTx, eventId: string | undefined, pos: number): Promise<boolean> {
  let id = eventId;
  for (let hops = 0; id && hops < 1000; hops++) {
    const m = await getEvent(tx, id);
    if (!m) return false;
    if (m.streamPos !== undefined && m.streamPos <= pos && membershipIn(m) === "join") return true;
    const prev: unknown = m.pdu.unsigned?.replaces_state;
    id = typeof prev === "string" ? prev : undefined;
  }
  return false;
}

/** Edit order: later `origin_server_ts`, ties broken by the lexicographically larger event ID. */
function newer(a: StoredEvent, b: StoredEvent): boolean {
  if (a.pdu.origin_server_ts !== b.pdu.origin_server_ts) return a.pdu.origin_server_ts > b.pdu.origin_server_ts;
  return a.eventId > b.eventId;
}

/** Splits a `relations` key (relatesTo|relType|eventId). */
export function parseRelationKey(k: string): { relatesTo: string; relType: string; eventId: string } {
  const parts = k.split(SEP);
  return { relatesTo: parts[0]!, relType: parts[1]!, eventId: parts[2]! };
}
