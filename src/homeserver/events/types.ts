/** The event vocabulary shared by the room module, the room server and the client API. */
import type { JsonObject } from "../crypto/signing.ts";
import { SEP, key } from "../../storage/store.ts";

/**
 * A federation PDU as it is signed and sent. In room versions 1 and 2 `event_id` is a field and
 * `prev_events` / `auth_events` are `[eventId, hashes]` pairs; from v3 they are plain ID lists.
 * In v12 the create event has no `room_id`.
 */
export interface Pdu extends JsonObject {
  event_id?: string;
  room_id?: string;
  sender: string;
  type: string;
  state_key?: string;
  content: JsonObject;
  prev_events: unknown[];
  auth_events: unknown[];
  depth: number;
  origin_server_ts: number;
  hashes: { sha256: string };
  signatures: Record<string, Record<string, string>>;
  unsigned?: JsonObject;
  redacts?: string;
  origin?: string;
}

/** A PDU together with its event ID (computed for v3+, copied for v1/v2) and its room. */
export interface EventWithId {
  eventId: string;
  roomId: string;
  pdu: Pdu;
}

/**
 * What the `events` table holds. key = eventId.
 * `streamPos` is set for events in the timeline (not for outliers).
 */
export interface StoredEvent extends EventWithId {
  streamPos?: number;
  /** Why the event was rejected (auth failure); rejected events are never served. */
  rejected?: string;
  /** Passed auth against its own state but not against the current state. */
  softFailed?: boolean;
  /** Only its auth chain is known; not part of the timeline. */
  outlier?: boolean;
  /** The ID of the redaction that redacted it, once applied. */
  redactedBy?: string;
  /**
   * History older than this server's timeline, fetched from another server with `/backfill`:
   * it has state but no stream position; `/messages` finds it in the `backfill` table.
   */
  backfilled?: true;
  /**
   * A remote user's event this server accepted as a resident (send_join, send_leave, send_knock),
   * which it sends on to the room's other servers like its own ("Joining Rooms": "The resident
   * server must also send the event to other servers participating in the room").
   */
  relay?: true;
  /** The sending device's transaction ID, for echoing `unsigned.transaction_id` to that device. */
  txn?: { deviceId: string; txnId: string };
}

/**
 * Whether a stored event is part of its room's timeline, the one test every reader uses: not
 * rejected (auth failure), not soft-failed ("Soft failure": not relayed to clients), not an outlier
 * (only its auth chain is known).
 */
export function isTimelineEvent(e: StoredEvent): boolean {
  return !e.rejected && !e.softFailed && !e.outlier;
}

/** What the `rooms` table holds. key = roomId. */
export interface RoomRecord {
  roomId: string;
  roomVersion: string;
  /** The highest depth seen, for building the next event. */
  maxDepth?: number;
  /** The state group holding the current state (roomserver/stateGroups.ts). */
  currentGroup?: string;
  /** For upgraded rooms: the room that replaced it. */
  tombstonedBy?: string;
}

/** An event as the Client-Server API serves it ("ClientEvent"). */
export interface ClientEvent {
  type: string;
  content: JsonObject;
  event_id: string;
  sender: string;
  origin_server_ts: number;
  room_id?: string;
  state_key?: string;
  redacts?: string;
  unsigned?: JsonObject;
}

/** The state of a room at a point: `stateKeyOf(type, stateKey)` → event ID. */
export type StateMap = Map<string, string>;

/** The key of a state entry in a StateMap and in the `room_state` table suffix (so: the store's compound key). */
export const stateKeyOf = (type: string, stateKey: string): string => key(type, stateKey);

/** Splits a StateMap key back into type and state key. */
export function splitStateKey(k: string): [type: string, stateKey: string] {
  const i = k.indexOf(SEP);
  return [k.slice(0, i), k.slice(i + 1)];
}

/** The event IDs of a `prev_events` / `auth_events` list in any room version. */
export function refIds(list: unknown[]): string[] {
  return list.map((x) => (Array.isArray(x) ? String(x[0]) : String(x)));
}
