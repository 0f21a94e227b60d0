/**
 * Building a new PDU (server-server API "Signing events"; room versions' event format and event ID
 * fragments; client-server API "Size limits"). Pure apart from the signing key and `random`.
 */
import { canonicalJsonBytes, isCanonicalValue } from "../crypto/canonicalJson.ts";
import { encodeBase64, encodeBase64Url } from "../crypto/base64.ts";
import type { JsonObject, SigningKey } from "../crypto/signing.ts";
import { MatrixError, badJson } from "../errors.ts";
import type { EventWithId, Pdu } from "../events/types.ts";
import { eventIdOf, hashAndSignEvent, referenceHash } from "../events/hashes.ts";
import type { RoomVersionRules } from "./versions.ts";

/** A reference to an earlier event: its ID and (for v1/v2 `[id, {sha256}]` pairs) its reference hash. */
export interface EventRef {
  eventId: string;
  sha256: string;
}

/** Everything a new event needs besides hashes, signatures and its ID. */
export interface EventProto {
  /** Absent only for a v12 `m.room.create` (whose room ID is derived from it). */
  roomId?: string;
  sender: string;
  type: string;
  stateKey?: string;
  content: Record<string, unknown>;
  /** For `m.room.redaction`; placed top-level (v1–v10) or in `content.redacts` (v11+). */
  redacts?: string;
  prevEvents: EventRef[];
  authEvents: EventRef[];
  depth: number;
  originServerTs: number;
  /** The sending server's name (kept as a PDU field only by v1–v10; v1/v2 event IDs use it). */
  origin: string;
}

/** Client-server API "Size limits": "The complete event MUST NOT be larger than 65536 bytes". */
export const MAX_PDU_BYTES = 65536;
/** "`state_key` MUST NOT exceed 255 bytes", same for `type`; user, room and event IDs are 255 bytes too. */
export const MAX_KEY_BYTES = 255;

const utf8 = new TextEncoder();
const tooLarge = (msg: string): MatrixError => new MatrixError(413, "M_TOO_LARGE", msg);

/** The first of `fields` (in their order) that is a string over MAX_KEY_BYTES, or undefined. */
export function oversizedKeyField(fields: { sender?: unknown; room_id?: unknown; state_key?: unknown; type?: unknown; event_id?: unknown }): string | undefined {
  for (const [name, value] of Object.entries(fields)) {
    if (typeof value === "string" && utf8.encode(value).length > MAX_KEY_BYTES) return name;
  }
  return undefined;
}

/** Throws 413 M_TOO_LARGE when one of the per-key size limits is exceeded. */
export function checkKeySizes(fields: Parameters<typeof oversizedKeyField>[0]): void {
  const name = oversizedKeyField(fields);
  if (name !== undefined) throw tooLarge(`'${name}' exceeds ${MAX_KEY_BYTES} bytes`);
}

/** The `{eventId, sha256}` reference for an existing event (sha256 = unpadded base64 reference hash). */
export async function eventRef(e: { eventId: string; pdu: Pdu }, version: RoomVersionRules): Promise<EventRef> {
  // Only v1/v2 put the hash on the wire; later versions use the ID alone, so skip hashing there.
  const sha256 = version.referencePairs ? encodeBase64(await referenceHash(e.pdu, version)) : "";
  return { eventId: e.eventId, sha256 };
}

const defaultRandom = (n: number): Uint8Array => crypto.getRandomValues(new Uint8Array(n));

/**
 * Hashes, signs and names a new event. v1/v2: `prev_events`/`auth_events` as `[id, {sha256}]` and a
 * random `$<random>:<origin>` ID; v3+: ID lists and the reference-hash event ID; v12 create events
 * carry no `room_id` and their room ID (returned) is `!` + the event ID's hash.
 * Throws 413 M_TOO_LARGE for the size limits and 400 M_BAD_JSON for non-canonical content (v6+) or
 * an out-of-range depth.
 */
export async function buildEvent(
  proto: EventProto,
  version: RoomVersionRules,
  key: SigningKey,
  random: (n: number) => Uint8Array = defaultRandom,
): Promise<EventWithId> {
  const isV12Create = version.roomIdFromCreate && proto.type === "m.room.create";
  if (!isV12Create && !proto.roomId) throw badJson("room_id is required");
  if (!Number.isInteger(proto.depth) || proto.depth < 0) throw badJson("depth must be a non-negative integer");
  // PDU format: at most 20 prev_events and 10 auth_events; choosing them is the caller's job.
  if (proto.prevEvents.length > 20 || proto.authEvents.length > 10) throw new Error("buildEvent: at most 20 prev_events and 10 auth_events");
  const refs = (list: EventRef[]): unknown[] =>
    version.referencePairs ? list.map((r) => [r.eventId, { sha256: r.sha256 }]) : list.map((r) => r.eventId);

  const content: JsonObject = { ...proto.content };
  if (proto.redacts !== undefined && version.redactsInContent) content.redacts = proto.redacts;
  const pdu: JsonObject = {
    sender: proto.sender,
    type: proto.type,
    content,
    prev_events: refs(proto.prevEvents),
    auth_events: refs(proto.authEvents),
    // PDU format: "If the room's depth is already at the limit, the depth must be set to the limit."
    depth: Math.min(proto.depth, version.maxDepth),
    origin_server_ts: proto.originServerTs,
  };
  if (!isV12Create) pdu.room_id = proto.roomId;
  if (proto.stateKey !== undefined) pdu.state_key = proto.stateKey;
  if (proto.redacts !== undefined && !version.redactsInContent) pdu.redacts = proto.redacts;
  if (version.originField) pdu.origin = proto.origin;
  let eventId: string | undefined;
  if (version.eventIdFormat === "v1") {
    // v1 "Event IDs": `$opaque_id:domain`, the domain being the originating server's name.
    eventId = `$${encodeBase64Url(random(18))}:${proto.origin}`;
    pdu.event_id = eventId;
  }
  checkKeySizes({ sender: pdu.sender, room_id: pdu.room_id, state_key: pdu.state_key, type: pdu.type, event_id: eventId });
  // v6+ "Servers MUST strictly enforce the JSON format" (no floats, integers within ±(2^53−1)). Older
  // versions tolerate such values in events received over federation, but an event built here is
  // hashed and signed, which needs canonical JSON ("Canonical JSON" appendix), in every version.
  if (!isCanonicalValue(pdu)) throw badJson("Event is not canonical JSON (floats or out-of-range integers)");

  const signed = (await hashAndSignEvent(pdu, version, key)) as Pdu;
  if (canonicalJsonBytes(signed).length > MAX_PDU_BYTES) throw tooLarge(`Event exceeds ${MAX_PDU_BYTES} bytes`);
  eventId ??= await eventIdOf(signed, version);
  const roomId = isV12Create ? "!" + eventId.slice(1) : proto.roomId!;
  return { eventId, roomId, pdu: signed };
}
