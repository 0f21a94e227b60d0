/** Turning stored PDUs into the client format ("ClientEvent" in the Client-Server API). */
import type { ClientEvent, StoredEvent } from "./types.ts";
import { redact } from "./redaction.ts";
import { roomVersion, DEFAULT_ROOM_VERSION } from "../rooms/versions.ts";
import type { RoomVersionRules } from "../rooms/versions.ts";

/** Options for `toClientEvent`. */
export interface FormatOptions {
  /** The device asking: the sender's own device gets `unsigned.transaction_id` back. */
  forDevice?: { userId: string; deviceId: string };
  /** The redaction event that redacted this one, for `unsigned.redacted_because`. */
  redactionEvent?: StoredEvent;
  /** The room's version rules (default: looked up from the PDU shape; pass when known). */
  version?: RoomVersionRules;
  /** The server's clock, for `unsigned.age`. */
  now?: number;
  /** Drop `room_id` (sync's timeline format). */
  omitRoomId?: boolean;
  /** Serve the redacted form without a redaction event (a message of an erased user). */
  pruned?: boolean;
}

/** The client-facing form of a stored event, redacted if a redaction applies. */
export function toClientEvent(e: StoredEvent, opts: FormatOptions = {}): ClientEvent {
  const version = opts.version ?? roomVersion(DEFAULT_ROOM_VERSION)!;
  const pdu = e.redactedBy || opts.pruned ? (redact(e.pdu, version) as StoredEvent["pdu"]) : e.pdu;
  const out: ClientEvent = {
    type: pdu.type,
    content: pdu.content ?? {},
    event_id: e.eventId,
    sender: pdu.sender,
    origin_server_ts: pdu.origin_server_ts,
  };
  if (!opts.omitRoomId) out.room_id = e.roomId;
  if (pdu.state_key !== undefined) out.state_key = pdu.state_key;
  if (pdu.type === "m.room.redaction") {
    // v11 moved `redacts` into content; serve it in both places for old and new clients.
    const redacts = (pdu.content?.redacts as string | undefined) ?? pdu.redacts;
    if (redacts !== undefined) {
      out.redacts = redacts;
      out.content = { ...out.content, redacts };
    }
  }
  const unsigned: Record<string, unknown> = { ...(e.pdu.unsigned ?? {}) };
  delete unsigned.age_ts;
  if (opts.now !== undefined) unsigned.age = Math.max(0, opts.now - pdu.origin_server_ts);
  if (opts.redactionEvent) unsigned.redacted_because = toClientEvent(opts.redactionEvent, { version, now: opts.now });
  if (e.txn && opts.forDevice && opts.forDevice.userId === pdu.sender && opts.forDevice.deviceId === e.txn.deviceId) {
    unsigned.transaction_id = e.txn.txnId;
  }
  if (Object.keys(unsigned).length > 0) out.unsigned = unsigned;
  return out;
}
