/** Content hashes, reference hashes and event IDs (server-server API "Signing events", room versions' event ID formats). */
import { canonicalJsonBytes } from "../crypto/canonicalJson.ts";
import { encodeBase64, encodeBase64Url, tryDecodeBase64 } from "../crypto/base64.ts";
import type { JsonObject, SigningKey } from "../crypto/signing.ts";
import { signJson } from "../crypto/signing.ts";
import type { RoomVersionRules } from "../rooms/versions.ts";
import { redact } from "./redaction.ts";

/** SHA-256 through WebCrypto (present in Node 22, browsers and Service Workers). */
export async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
}

/** The content hash: SHA-256 of the canonical event without `unsigned`, `signatures` and `hashes`. */
export async function contentHash(event: JsonObject): Promise<string> {
  const { unsigned: _u, signatures: _s, hashes: _h, ...rest } = event;
  return encodeBase64(await sha256(canonicalJsonBytes(rest)));
}

/** Whether the event's `hashes.sha256` matches its content. */
export async function checkContentHash(event: JsonObject): Promise<boolean> {
  const claimed = (event.hashes as Record<string, unknown> | undefined)?.sha256;
  if (typeof claimed !== "string") return false;
  const claimedBytes = tryDecodeBase64(claimed);
  if (!claimedBytes) return false;
  return encodeBase64(claimedBytes) === (await contentHash(event));
}

/**
 * The reference hash ("Calculating the reference hash for an event"): redact, remove `signatures`
 * and `unsigned`, canonical JSON, SHA-256. In v1/v2 `event_id` is a PDU field the redaction keeps,
 * so it is covered; from v3 an `event_id` is never part of the PDU (it is the hash), so one added
 * locally is ignored.
 */
export async function referenceHash(event: JsonObject, version: RoomVersionRules): Promise<Uint8Array> {
  return sha256(referenceHashInput(event, version));
}

/**
 * The bytes the reference hash is taken of (see `referenceHash`); shared with the pure auth rules,
 * which hash them synchronously (`rooms/auth.ts` `eventIdSync`).
 */
export function referenceHashInput(event: JsonObject, version: RoomVersionRules): Uint8Array {
  const { signatures: _s, unsigned: _u, ...rest } = redact(event, version);
  if (!version.referencePairs) delete rest.event_id;
  return canonicalJsonBytes(rest);
}

/** The event ID for a reference hash: `$` + base64 (v3: standard alphabet, v4+: URL-safe). */
export function eventIdFromHash(hash: Uint8Array, version: RoomVersionRules): string {
  return "$" + (version.eventIdFormat === "v3" ? encodeBase64(hash) : encodeBase64Url(hash));
}

/** The event ID of an event in versions whose IDs are hashes (v3+); for v1/v2 the `event_id` field. */
export async function eventIdOf(event: JsonObject, version: RoomVersionRules): Promise<string> {
  if (version.eventIdFormat === "v1") return event.event_id as string;
  return eventIdFromHash(await referenceHash(event, version), version);
}

/** v12: the room ID derived from the create event (`!` + URL-safe base64 of its reference hash). */
export async function roomIdFromCreateEvent(createEvent: JsonObject, version: RoomVersionRules): Promise<string> {
  return "!" + encodeBase64Url(await referenceHash(createEvent, version));
}

/**
 * Hashes and signs an event: adds `hashes.sha256`, then signs the redacted form and copies the
 * signature onto the full event (server-server API "Signing events").
 */
export async function hashAndSignEvent(event: JsonObject, version: RoomVersionRules, key: SigningKey): Promise<JsonObject> {
  const withHash: JsonObject = { ...event, hashes: { sha256: await contentHash(event) } };
  const signedRedacted = await signJson(redact(withHash, version), key);
  return { ...withHash, signatures: signedRedacted.signatures };
}
