/**
 * End-to-end encryption key distribution (client-server API "End-to-End Encryption": "Key
 * management API", "Cross-signing"), to-device messages, and the E2EE part of `/sync` (to-device
 * messages, device list changes, one-time key counts). client/keys.ts, client/toDevice.ts,
 * federation/queries.ts and the sync service call these.
 *
 * Tables (CONTRACTS.md): device_keys userId|deviceId → signed device keys; one_time_keys
 * userId|deviceId|"algorithm:keyId" → StoredOneTimeKey (the key plus its upload sequence);
 * fallback_keys userId|deviceId|algorithm → { keyId, key, used }; cross_signing_keys
 * userId|usage → key; device_list_stream pos → { userId, visibleTo? }; to_device
 * userId|deviceId|pos → { sender, type, content }.
 */
import type { Services } from "../context.ts";
import { nextStreamPos, streamPosIn } from "../context.ts";
import { badJson, invalidParam } from "../errors.ts";
import { canonicalJson } from "../crypto/canonicalJson.ts";
import { tryDecodeBase64 } from "../crypto/base64.ts";
import { verifyJsonSignature } from "../crypto/signing.ts";
import type { JsonObject } from "../crypto/signing.ts";
import { isObject } from "../validate.ts";
import type { ReadTx, WriteTx } from "../../storage/store.ts";
import type { StoredEvent } from "../events/types.ts";
import { key, pos, prefix, unpos } from "../../storage/store.ts";
import { serverOf } from "../rooms/ids.ts";
import { deviceLastKey, queueEdu } from "../federation/sender.ts";
import { encodeBase64Url } from "../crypto/base64.ts";
import type { DeviceRecord } from "./devices.ts";

/**
 * A device_list_stream row; `visibleTo` limits it to one observer (user-signing signatures).
 * `deviceIds` / `signing` say what changed, for the device-list EDUs other servers get
 * (federation/sender.ts); without them every device is announced.
 */
export interface DeviceListChange {
  userId: string;
  visibleTo?: string;
  deviceIds?: string[];
  signing?: boolean;
}

/** Records that `userId`'s devices or keys changed; returns the stream position (notify after commit). */
export async function recordDeviceListChange(tx: WriteTx, userId: string, visibleTo?: string, what?: { deviceIds?: string[]; signing?: boolean }): Promise<number> {
  const p = await nextStreamPos(tx);
  tx.put("device_list_stream", pos(p), { userId, ...(visibleTo !== undefined ? { visibleTo } : {}), ...what } satisfies DeviceListChange);
  // The federation `stream_id` of the user's device list (`/user/devices`, `m.device_list_update`).
  if (visibleTo === undefined) tx.put("device_list_latest", userId, p);
  return p;
}

/** The `stream_id` of a local user's device list: the position of its latest change (0 if none). */
export async function deviceListStreamId(tx: ReadTx, userId: string): Promise<number> {
  return (await tx.get<number>("device_list_latest", userId)) ?? 0;
}

/** A fallback key as stored. */
interface FallbackKey {
  keyId: string;
  key: unknown;
  used: boolean;
}

/**
 * A one-time key as stored: the key (object or string) and the upload call it came in, because
 * keys are handed out oldest upload first (keys.yaml, claim) — clients discard their oldest
 * private one-time keys first, so a newer key handed out early could leave an older one stranded.
 */
interface StoredOneTimeKey {
  key: unknown;
  seq: number;
}

/** key settings|"otk_seq" → the sequence number of the latest one-time key upload call. */
const OTK_SEQ = "otk_seq";

/** A to-device message as stored. */
interface ToDeviceRow {
  sender: string;
  type: string;
  content: unknown;
}

/** The cross-signing key usages, in the order they are returned. */
export const USAGES = ["master", "self_signing", "user_signing"] as const;

export type Usage = (typeof USAGES)[number];

/** At most this many to-device messages per `/sync` response (send_to_device.md leaves it to us). */
export const TO_DEVICE_LIMIT = 100;

/** key settings|"to_device_ack"|userId|deviceId → the last `since` acknowledged by that device. */
const ackKey = (userId: string, deviceId: string): string => key("to_device_ack", userId, deviceId);

/** Rooms a user is joined to (memberships table, key userId|roomId). */
async function roomsOf(tx: ReadTx, userId: string): Promise<{ roomId: string; membership: string; streamPos: number }[]> {
  const p = prefix(userId);
  const rows = await tx.range<{ membership: string; streamPos: number }>("memberships", { prefix: p });
  return rows.map((r) => ({ roomId: r.key.slice(p.length), membership: r.value.membership, streamPos: r.value.streamPos ?? 0 }));
}

/** Everyone with a current membership in a room, with their membership and when it last changed. */
async function membersOf(tx: ReadTx, roomId: string): Promise<{ userId: string; membership: string; streamPos: number }[]> {
  const p = prefix(roomId, "m.room.member");
  const rows = await tx.range<string>("room_state", { prefix: p });
  const out: { userId: string; membership: string; streamPos: number }[] = [];
  for (const r of rows) {
    const userId = r.key.slice(p.length);
    const m = await tx.get<{ membership: string; streamPos: number }>("memberships", key(userId, roomId));
    if (m) out.push({ userId, membership: m.membership, streamPos: m.streamPos ?? 0 });
  }
  return out;
}

/** Windows with this many timeline events or more are answered by scanning room members instead. */
const MEMBERSHIP_WINDOW_LIMIT = 500;

/**
 * Device list changes between two stream positions for one user ("Tracking the device list for a
 * user"): `changed` holds users sharing a room whose keys changed, users who started sharing a room
 * with the user, and the user themselves; `left` users who no longer share any room.
 *
 * An incremental sync looks only at what happened in the window (membership events in the
 * timeline stream, rows of device_list_stream), so its cost follows the news, not the size of the
 * user's rooms; long windows fall back to scanning the members of every room.
 */
export async function deviceListChanges(
  tx: ReadTx,
  userId: string,
  since: number,
  upTo: number,
  windowLimit = MEMBERSHIP_WINDOW_LIMIT,
): Promise<{ changed: string[]; left: string[] }> {
  const rooms = await roomsOf(tx, userId);
  const mine = new Map(rooms.map((r) => [r.roomId, r]));
  const joined = new Set(rooms.filter((r) => r.membership === "join").map((r) => r.roomId));
  const inWindow = (p: number): boolean => p > since && p <= upTo;
  const changed = new Set<string>();
  const candidatesLeft = new Set<string>();

  const events = await tx.range<{ roomId: string; eventId: string }>("stream", { gt: pos(since), lte: pos(upTo), limit: windowLimit + 1 });
  let sharing: Set<string> | undefined;
  if (events.length >= windowLimit) {
    sharing = new Set([userId]);
    for (const room of rooms) {
      const joinedNow = room.membership === "join";
      const changedMine = inWindow(room.streamPos);
      if (!joinedNow && !changedMine) continue;
      for (const m of await membersOf(tx, room.roomId)) {
        if (joinedNow && m.membership === "join") {
          sharing.add(m.userId);
          // A user newly joined, or we newly joined: their devices are news to us.
          if (inWindow(m.streamPos) || changedMine) changed.add(m.userId);
        } else if (m.membership === "join" && changedMine) {
          // We left this room: its members may no longer share a room with us.
          candidatesLeft.add(m.userId);
        } else if (m.membership !== "join" && inWindow(m.streamPos)) {
          candidatesLeft.add(m.userId);
        }
      }
    }
  } else {
    const ownChangeDone = new Set<string>();
    for (const row of events) {
      const room = mine.get(row.value.roomId);
      if (!room) continue;
      const ev = await tx.get<StoredEvent>("events", row.value.eventId);
      if (ev?.pdu.type !== "m.room.member" || typeof ev.pdu.state_key !== "string") continue;
      const target = ev.pdu.state_key;
      if (target === userId) {
        if (ownChangeDone.has(room.roomId)) continue;
        ownChangeDone.add(room.roomId);
        // Our own membership changed: everyone in the room is news (joined) or may be gone (left).
        for (const m of await membersOf(tx, room.roomId)) {
          if (m.membership !== "join") continue;
          if (joined.has(room.roomId)) changed.add(m.userId);
          else candidatesLeft.add(m.userId);
        }
        continue;
      }
      const current = await tx.get<{ membership: string }>("memberships", key(target, room.roomId));
      if (current?.membership === "join") {
        if (joined.has(room.roomId)) changed.add(target);
      } else {
        candidatesLeft.add(target);
      }
    }
  }

  // Asked once per device_list_stream row and per leave candidate: one membership scan per user.
  const shares = new Map<string, boolean>();
  const sharesRoom = async (other: string): Promise<boolean> => {
    if (sharing) return sharing.has(other);
    if (other === userId) return true;
    let r = shares.get(other);
    if (r === undefined) shares.set(other, (r = (await roomsOf(tx, other)).some((m) => m.membership === "join" && joined.has(m.roomId))));
    return r;
  };
  const stream = await tx.range<DeviceListChange>("device_list_stream", { gt: pos(since), lte: pos(upTo) });
  for (const r of stream) {
    const u = r.value.userId;
    if (r.value.visibleTo !== undefined ? r.value.visibleTo === userId : changed.has(u) || (await sharesRoom(u))) changed.add(u);
  }
  const left: string[] = [];
  for (const u of candidatesLeft) if (!(await sharesRoom(u))) left.push(u);
  for (const u of left) changed.delete(u);
  return { changed: [...changed].sort(), left: left.sort() };
}

/** One-time key counts per algorithm for a device (signed_curve25519 always present). */
export async function oneTimeKeyCounts(tx: ReadTx, userId: string, deviceId: string): Promise<Record<string, number>> {
  const p = prefix(userId, deviceId);
  const rows = await tx.range("one_time_keys", { prefix: p });
  const counts: Record<string, number> = { signed_curve25519: 0 };
  for (const r of rows) {
    const alg = r.key.slice(p.length).split(":")[0]!;
    counts[alg] = (counts[alg] ?? 0) + 1;
  }
  return counts;
}

/** Algorithms for which the device has a fallback key that has not been claimed. */
export async function unusedFallbackKeyTypes(tx: ReadTx, userId: string, deviceId: string): Promise<string[]> {
  const p = prefix(userId, deviceId);
  const rows = await tx.range<FallbackKey>("fallback_keys", { prefix: p });
  return rows.filter((r) => !r.value.used).map((r) => r.key.slice(p.length));
}

/**
 * The pending to-device messages a `/sync` response carries, oldest first, at most TO_DEVICE_LIMIT.
 *
 * Delivery is at-least-once (send_to_device.md "Server behaviour": messages are removed once the
 * client acknowledges them by syncing with the next token). Because one response carries at most
 * TO_DEVICE_LIMIT messages while the token moves to `upTo`, the ack cannot be "everything up to the
 * token": it removes the oldest TO_DEVICE_LIMIT pending messages up to the token, which are exactly
 * the ones delivered with it, and the rest of a backlog (positions at or below `since`) is handed
 * out here by the following responses. If the ack for `since` has not been applied yet (sync reads
 * before it acks), those messages are skipped here.
 */
async function pendingToDevice(tx: ReadTx, userId: string, deviceId: string, since: number, upTo: number): Promise<unknown[]> {
  const lastAck = (await tx.get<number>("settings", ackKey(userId, deviceId))) ?? 0;
  const p = prefix(userId, deviceId);
  const rows = await tx.range<ToDeviceRow>("to_device", { prefix: p, lte: key(userId, deviceId, pos(upTo)), limit: 2 * TO_DEVICE_LIMIT });
  let skip = 0;
  if (since > lastAck) {
    const toBeAcked = rows.filter((r) => unpos(r.key.slice(p.length)) <= since).length;
    skip = Math.min(TO_DEVICE_LIMIT, toBeAcked);
  }
  return rows.slice(skip, skip + TO_DEVICE_LIMIT).map((r) => ({ sender: r.value.sender, type: r.value.type, content: r.value.content }));
}

/** The E2EE part of a `/sync` response for one device (contract with services/sync.ts). */
export async function e2eeSyncSection(
  tx: ReadTx,
  userId: string,
  deviceId: string,
  since: number,
  upTo: number,
): Promise<{
  to_device: { events: unknown[] };
  device_lists: { changed: string[]; left: string[] };
  device_one_time_keys_count: Record<string, number>;
  device_unused_fallback_key_types: string[];
}> {
  // An initial sync reports no device list changes: the client queries everyone it needs.
  const device_lists = since > 0 ? await deviceListChanges(tx, userId, since, upTo) : { changed: [], left: [] };
  return {
    to_device: { events: await pendingToDevice(tx, userId, deviceId, since, upTo) },
    device_lists,
    device_one_time_keys_count: await oneTimeKeyCounts(tx, userId, deviceId),
    device_unused_fallback_key_types: await unusedFallbackKeyTypes(tx, userId, deviceId),
  };
}

/**
 * Removes the to-device messages that the response carrying token `since` delivered; sync calls
 * it when the client presents `since`. Repeating an ack (a retried request) is a no-op.
 *
 * When messages up to `since` are still pending (a backlog longer than one response), the stream
 * is moved on by one position: otherwise the next response would carry the same token again, and
 * the ack after it could not tell "received" from "retried".
 */
export async function ackToDevice(hs: Services, userId: string, deviceId: string, since: number): Promise<void> {
  if (since <= 0) return;
  const range = { prefix: prefix(userId, deviceId), lte: key(userId, deviceId, pos(since)), limit: TO_DEVICE_LIMIT + 1 };
  // Most syncs have nothing to acknowledge: check in a read before taking a write transaction (a
  // file-backed store rewrites its file after every write). With no message at or below `since`, and
  // `since` a position already issued (so none can appear there later), recording the ack would
  // change nothing any later ack or `pendingToDevice` could tell apart.
  const nothingToAck = await hs.store.read(async (tx) => {
    if (since <= ((await tx.get<number>("settings", ackKey(userId, deviceId))) ?? 0)) return true;
    if ((await tx.range("to_device", { ...range, limit: 1 })).length > 0) return false;
    return since <= (await streamPosIn(tx));
  }, { tables: ["settings", "to_device"] });
  if (nothingToAck) return;
  const bumped = await hs.store.write(async (tx) => {
    const lastAck = (await tx.get<number>("settings", ackKey(userId, deviceId))) ?? 0;
    if (since <= lastAck) return undefined;
    const rows = await tx.range("to_device", range);
    for (const r of rows.slice(0, TO_DEVICE_LIMIT)) tx.delete("to_device", r.key);
    tx.put("settings", ackKey(userId, deviceId), since);
    return rows.length > TO_DEVICE_LIMIT ? nextStreamPos(tx) : undefined;
  }, { tables: ["settings", "to_device"] });
  if (bumped !== undefined) hs.notifier.notify(bumped);
}

/** The parts of a device keys object that identify it (signatures may be added later). */
const deviceKeyIdentity = (k: Record<string, unknown>): string =>
  canonicalJson({ user_id: k.user_id, device_id: k.device_id, algorithms: k.algorithms, keys: k.keys });

function mergeSignatures(stored: JsonObject, incoming: unknown): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = structuredClone((stored.signatures as Record<string, Record<string, string>> | undefined) ?? {});
  if (isObject(incoming)) {
    for (const [entity, sigs] of Object.entries(incoming)) {
      if (!isObject(sigs)) continue;
      out[entity] = { ...out[entity] };
      for (const [keyId, sig] of Object.entries(sigs)) if (typeof sig === "string") out[entity][keyId] = sig;
    }
  }
  return out;
}

/** Signatures on someone's keys that `viewer` may see: the owner's, and the viewer's own. */
function visibleSignatures(obj: JsonObject, owner: string, viewer: string): JsonObject {
  const sigs = obj.signatures as Record<string, unknown> | undefined;
  if (!isObject(sigs)) return obj;
  const kept: Record<string, unknown> = {};
  for (const [entity, s] of Object.entries(sigs)) if (entity === owner || entity === viewer) kept[entity] = s;
  return { ...obj, signatures: kept };
}

/** The keys part of a `keys/query` answer (client-server and federation alike). */
export interface KeysQueryResult {
  device_keys: Record<string, Record<string, unknown>>;
  master_keys: Record<string, unknown>;
  self_signing_keys: Record<string, unknown>;
  user_signing_keys: Record<string, unknown>;
}

/**
 * The device and cross-signing keys of local users. `viewer` also sees their own signatures on
 * other users' keys and their own user-signing key; without one (a federation query) only the
 * owners' signatures are shown. An empty or null device list means every device.
 */
export async function localDeviceKeys(tx: ReadTx, wanted: [userId: string, devices: readonly string[] | null][], viewer?: string): Promise<KeysQueryResult> {
  const device_keys: Record<string, Record<string, unknown>> = {};
  const master_keys: Record<string, unknown> = {};
  const self_signing_keys: Record<string, unknown> = {};
  const user_signing_keys: Record<string, unknown> = {};
  for (const [userId, devices] of wanted) {
    const filter = devices && devices.length > 0 ? new Set(devices) : undefined;
    const out: Record<string, unknown> = {};
    const p = prefix(userId);
    for (const row of await tx.range<JsonObject>("device_keys", { prefix: p })) {
      const deviceId = row.key.slice(p.length);
      if (filter && !filter.has(deviceId)) continue;
      const device = await tx.get<DeviceRecord>("devices", key(userId, deviceId));
      const keys = visibleSignatures(row.value, userId, viewer ?? userId);
      out[deviceId] = device?.displayName !== undefined ? { ...keys, unsigned: { device_display_name: device.displayName } } : keys;
    }
    device_keys[userId] = out;
    const master = await tx.get<JsonObject>("cross_signing_keys", key(userId, "master"));
    if (master) master_keys[userId] = visibleSignatures(master, userId, viewer ?? userId);
    const selfSigning = await tx.get<JsonObject>("cross_signing_keys", key(userId, "self_signing"));
    if (selfSigning) self_signing_keys[userId] = selfSigning;
    // The user-signing key is private to its owner (cross_signing.yaml).
    if (userId === viewer) {
      const userSigning = await tx.get<JsonObject>("cross_signing_keys", key(userId, "user_signing"));
      if (userSigning) user_signing_keys[userId] = userSigning;
    }
  }
  return { device_keys, master_keys, self_signing_keys, user_signing_keys };
}

/**
 * Claims one key per (user, device, algorithm) in one transaction: the oldest uploaded one-time
 * key, else the fallback key (marked used), else nothing for that device. Federation's
 * `/user/keys/claim` can use it as it is.
 */
export async function claimKeys(tx: WriteTx, requests: [userId: string, deviceId: string, algorithm: string][]): Promise<Record<string, Record<string, Record<string, unknown>>>> {
  const out: Record<string, Record<string, Record<string, unknown>>> = {};
  for (const [userId, deviceId, alg] of requests) {
    const rows = await tx.range<StoredOneTimeKey>("one_time_keys", { prefix: prefix(userId, deviceId) + `${alg}:` });
    let otk: (typeof rows)[number] | undefined;
    for (const r of rows) if (!otk || r.value.seq < otk.value.seq) otk = r;
    let claimed: Record<string, unknown> | undefined;
    if (otk) {
      tx.delete("one_time_keys", otk.key);
      claimed = { [otk.key.slice(prefix(userId, deviceId).length)]: otk.value.key };
    } else {
      // keys.yaml: with no one-time key left, the fallback key is returned (and marked used).
      const fk = await tx.get<FallbackKey>("fallback_keys", key(userId, deviceId, alg));
      if (fk) {
        if (!fk.used) tx.put("fallback_keys", key(userId, deviceId, alg), { ...fk, used: true });
        claimed = { [`${alg}:${fk.keyId}`]: fk.key };
      }
    }
    if (claimed) (out[userId] ??= {})[deviceId] = claimed;
  }
  return out;
}

/** The one ed25519 public key of a cross-signing key object, as [keyId, raw bytes]. */
export function crossSigningPublicKey(k: JsonObject): [string, Uint8Array] | undefined {
  const keys = k.keys;
  if (!isObject(keys)) return undefined;
  const entries = Object.entries(keys);
  if (entries.length !== 1) return undefined;
  const [keyId, value] = entries[0]!;
  if (!keyId.startsWith("ed25519:") || typeof value !== "string" || keyId !== `ed25519:${value}`) return undefined;
  const raw = tryDecodeBase64(value);
  return raw?.length === 32 ? [keyId, raw] : undefined;
}

/**
 * Stores what a device uploaded (`keys/upload`, already validated): its device keys (which never
 * change; only new signatures merge in), one-time keys (refused if one with the same ID differs),
 * and fallback keys (one per algorithm). Returns the device's one-time key counts.
 */
export async function uploadKeys(
  hs: Services,
  userId: string,
  deviceId: string,
  deviceKeys: JsonObject | undefined,
  otks: [string, unknown][],
  fallbacks: [string, unknown][],
): Promise<Record<string, number>> {
  const { counts, streamPos } = await hs.store.write(async (tx) => {
    let streamPos: number | undefined;
    if (deviceKeys) {
      const dkKey = key(userId, deviceId);
      const stored = await tx.get<JsonObject>("device_keys", dkKey);
      if (!stored) {
        tx.put("device_keys", dkKey, deviceKeys);
        streamPos = await recordDeviceListChange(tx, userId, undefined, { deviceIds: [deviceId] });
      } else if (deviceKeyIdentity(stored) !== deviceKeyIdentity(deviceKeys)) {
        // keys.yaml: the device keys of a device never change; a new identity needs a new device.
        throw invalidParam("Device keys for this device already exist and differ from the uploaded ones");
      } else {
        const merged = { ...stored, signatures: mergeSignatures(stored, deviceKeys.signatures) };
        if (canonicalJson(merged) !== canonicalJson(stored)) {
          tx.put("device_keys", dkKey, merged);
          streamPos = await recordDeviceListChange(tx, userId, undefined, { deviceIds: [deviceId] });
        }
      }
    }
    if (otks.length > 0) {
      // Keys of one call are equivalent in order; later calls come after (keys.yaml, claim).
      const seq = ((await tx.get<number>("settings", OTK_SEQ)) ?? 0) + 1;
      tx.put("settings", OTK_SEQ, seq);
      for (const [id, value] of otks) {
        const k = key(userId, deviceId, id);
        const existing = await tx.get<StoredOneTimeKey>("one_time_keys", k);
        if (existing !== undefined) {
          if (canonicalJson(existing.key) !== canonicalJson(value)) throw invalidParam(`One-time key ${id} already exists with different content`);
          continue;
        }
        tx.put("one_time_keys", k, { key: value, seq } satisfies StoredOneTimeKey);
      }
    }
    // "The server will only keep one fallback key per algorithm": a new one replaces the old.
    for (const [id, value] of fallbacks) {
      const colon = id.indexOf(":");
      const alg = id.slice(0, colon);
      const keyId = id.slice(colon + 1);
      const k = key(userId, deviceId, alg);
      const existing = await tx.get<FallbackKey>("fallback_keys", k);
      if (existing && existing.keyId === keyId && canonicalJson(existing.key) === canonicalJson(value)) continue;
      tx.put("fallback_keys", k, { keyId, key: value, used: false } satisfies FallbackKey);
    }
    return { counts: await oneTimeKeyCounts(tx, userId, deviceId), streamPos };
  }, { tables: ["device_keys", "settings", "device_list_stream", "device_list_latest", "one_time_keys", "fallback_keys"] });
  if (streamPos !== undefined) hs.notifier.notify(streamPos);
  return counts;
}

/** `localDeviceKeys` in its own read. */
export async function queryLocalKeys(hs: Services, wanted: [userId: string, devices: readonly string[] | null][], viewer?: string): Promise<KeysQueryResult> {
  return hs.store.read((tx) => localDeviceKeys(tx, wanted, viewer));
}

/** `claimKeys` in its own write. */
export async function claimLocalKeys(hs: Services, requests: [userId: string, deviceId: string, algorithm: string][]): Promise<Record<string, Record<string, Record<string, unknown>>>> {
  return hs.store.write((tx) => claimKeys(tx, requests));
}

/** `deviceListChanges` in its own read (`keys/changes`). */
export async function keyChanges(hs: Services, userId: string, from: number, to: number): Promise<{ changed: string[]; left: string[] }> {
  return hs.store.read((tx) => deviceListChanges(tx, userId, from, to));
}

/** A user's stored cross-signing keys by usage. */
export async function crossSigningKeysOf(hs: Services, userId: string): Promise<Partial<Record<Usage, JsonObject>>> {
  return hs.store.read(async (tx) => {
    const out: Partial<Record<Usage, JsonObject>> = {};
    for (const usage of USAGES) {
      const v = await tx.get<JsonObject>("cross_signing_keys", key(userId, usage));
      if (v) out[usage] = v;
    }
    return out;
  });
}

/**
 * Stores uploaded cross-signing keys (validated and verified); a new master key drops the subkeys
 * it did not come with. Records a device-list change and wakes `/sync`.
 */
export async function storeCrossSigningKeys(
  hs: Services,
  userId: string,
  uploaded: Partial<Record<Usage, JsonObject>>,
  existing: Partial<Record<Usage, JsonObject>>,
): Promise<void> {
  const streamPos = await hs.store.write(async (tx) => {
    for (const usage of USAGES) {
      const k = uploaded[usage];
      if (k) tx.put("cross_signing_keys", key(userId, usage), k);
    }
    // A new master key invalidates subkeys signed by the old one.
    if (uploaded.master && existing.master && canonicalJson(uploaded.master) !== canonicalJson(existing.master)) {
      for (const usage of ["self_signing", "user_signing"] as const) {
        if (!uploaded[usage]) tx.delete("cross_signing_keys", key(userId, usage));
      }
    }
    return recordDeviceListChange(tx, userId, undefined, { signing: true });
  });
  hs.notifier.notify(streamPos);
}

/**
 * `keys/signatures/upload`: verifies each signature by `signer` on a stored key (their
 * cross-signing keys or their own devices' keys may sign), merges the valid ones, and records who
 * must hear about it. Returns the failures per user and key ID.
 */
export async function uploadSignatures(
  hs: Services,
  signer: string,
  body: Record<string, unknown>,
): Promise<Record<string, Record<string, { errcode: string; error: string }>>> {
  const failures: Record<string, Record<string, { errcode: string; error: string }>> = {};
  const fail = (userId: string, keyId: string, errcode: string, error: string): void => {
    (failures[userId] ??= {})[keyId] = { errcode, error };
  };

  // Read everything the signatures can refer to, verify outside the transaction, then merge.
  interface Target {
    userId: string;
    keyId: string;
    table: "device_keys" | "cross_signing_keys";
    storeKey: string;
    newSignatures: Record<string, string>;
  }
  const targets: Target[] = [];
  const snapshot = await hs.store.read(async (tx) => {
    const crossSigning = new Map<string, JsonObject>();
    for (const usage of USAGES) {
      const v = await tx.get<JsonObject>("cross_signing_keys", key(signer, usage));
      if (v) crossSigning.set(usage, v);
    }
    const lookups = new Map<string, { table: Target["table"]; storeKey: string; stored: JsonObject } | undefined>();
    for (const [userId, keys] of Object.entries(body)) {
      if (!isObject(keys)) continue;
      for (const keyId of Object.keys(keys)) {
        const dk = await tx.get<JsonObject>("device_keys", key(userId, keyId));
        if (dk) {
          lookups.set(`${userId}\n${keyId}`, { table: "device_keys", storeKey: key(userId, keyId), stored: dk });
          continue;
        }
        const master = await tx.get<JsonObject>("cross_signing_keys", key(userId, "master"));
        if (master && crossSigningPublicKey(master)?.[0] === `ed25519:${keyId}`) {
          lookups.set(`${userId}\n${keyId}`, { table: "cross_signing_keys", storeKey: key(userId, "master"), stored: master });
          continue;
        }
        lookups.set(`${userId}\n${keyId}`, undefined);
      }
    }
    const signerDevices = new Map<string, JsonObject>();
    const p = prefix(signer);
    for (const r of await tx.range<JsonObject>("device_keys", { prefix: p })) signerDevices.set(r.key.slice(p.length), r.value);
    return { crossSigning, lookups, signerDevices };
  });

  // The keys the signer may sign with: their cross-signing keys and their own devices' ed25519 keys.
  const signerKey = (keyId: string): Uint8Array | undefined => {
    for (const k of snapshot.crossSigning.values()) {
      const pk = crossSigningPublicKey(k);
      if (pk && pk[0] === keyId) return pk[1];
    }
    for (const dk of snapshot.signerDevices.values()) {
      const v = (dk.keys as Record<string, string> | undefined)?.[keyId];
      if (typeof v === "string") return tryDecodeBase64(v);
    }
    return undefined;
  };

  for (const [userId, keys] of Object.entries(body)) {
    if (!isObject(keys)) throw badJson("signatures/upload values must be objects");
    for (const [keyId, signed] of Object.entries(keys)) {
      if (!isObject(signed)) {
        fail(userId, keyId, "M_BAD_JSON", "The signed key must be an object");
        continue;
      }
      const found = snapshot.lookups.get(`${userId}\n${keyId}`);
      if (!found) {
        fail(userId, keyId, "M_NOT_FOUND", "No such key");
        continue;
      }
      // The signed object must be the stored key (apart from signatures and unsigned).
      const { signatures: _s1, unsigned: _u1, ...a } = found.stored;
      const { signatures: _s2, unsigned: _u2, ...b } = signed;
      if (canonicalJson(a) !== canonicalJson(b)) {
        fail(userId, keyId, "M_INVALID_PARAM", "The signed object does not match the stored key");
        continue;
      }
      const sigs = (signed.signatures as Record<string, unknown> | undefined)?.[signer];
      if (!isObject(sigs)) {
        fail(userId, keyId, "M_INVALID_PARAM", "No signature by the uploading user");
        continue;
      }
      const newSignatures: Record<string, string> = {};
      let bad = false;
      for (const [sigKeyId, sig] of Object.entries(sigs)) {
        const already = ((found.stored.signatures as Record<string, Record<string, string>> | undefined)?.[signer] ?? {})[sigKeyId];
        if (already === sig) continue;
        const raw = signerKey(sigKeyId);
        const one = { ...signed, signatures: { [signer]: { [sigKeyId]: sig } } };
        if (typeof sig !== "string" || !raw || !(await verifyJsonSignature(one, signer, () => raw, hs.verifier))) {
          bad = true;
          break;
        }
        newSignatures[sigKeyId] = sig;
      }
      if (bad) {
        fail(userId, keyId, "M_INVALID_SIGNATURE", "Invalid signature");
        continue;
      }
      if (Object.keys(newSignatures).length > 0) targets.push({ userId, keyId, table: found.table, storeKey: found.storeKey, newSignatures });
    }
  }

  if (targets.length > 0) {
    const streamPos = await hs.store.write(async (tx) => {
      for (const t of targets) {
        const stored = await tx.get<JsonObject>(t.table, t.storeKey);
        if (!stored) continue;
        tx.put(t.table, t.storeKey, { ...stored, signatures: mergeSignatures(stored, { [signer]: t.newSignatures }) });
      }
      // Signatures on one's own keys are news for everyone sharing a room; a signature on another
      // user's master key (user-signing) is visible only to the signer, so only the signer's
      // devices hear that the target's keys changed.
      let last = 0;
      const others = new Set(targets.filter((t) => t.userId !== signer).map((t) => t.userId));
      if (targets.some((t) => t.userId === signer)) last = await recordDeviceListChange(tx, signer);
      for (const other of others) last = await recordDeviceListChange(tx, other, signer);
      return last;
    });
    if (streamPos > 0) hs.notifier.notify(streamPos);
  }
  return failures;
}

/**
 * key txn_ids|userId|deviceId|"sendToDevice"|eventType|txnId → {} — transaction IDs are scoped to
 * the device and the endpoint ("Transaction identifiers").
 */
const txnKey = (userId: string, deviceId: string, eventType: string, txnId: string): string =>
  key(userId, deviceId, "sendToDevice", eventType, txnId);

/**
 * Queues to-device messages (`sendToDevice`): for local devices in `to_device` (key
 * userId|deviceId|pos(streamPos) → { sender, type, content }; `*` is every device, unknown devices
 * are skipped), for remote users as one `m.direct_to_device` EDU per server. A repeated
 * transaction ID of the sending device is a no-op.
 */
export async function sendToDevice(
  hs: Services,
  sender: string,
  senderDevice: string,
  eventType: string,
  txnId: string,
  messages: [userId: string, deviceId: string, content: Record<string, unknown>][],
): Promise<void> {
  const local = hs.serverName;
  // Messages for remote users: one m.direct_to_device EDU per server ("Send-to-device messaging",
  // server-server API), queued in the transaction that records the client's transaction ID.
  const outbox = hs.federationSender;
  const remote = new Map<string, Record<string, Record<string, Record<string, unknown>>>>();
  for (const [userId, deviceId, content] of messages) {
    const server = serverOf(userId);
    if (server === local) continue;
    let byUser = remote.get(server);
    if (!byUser) remote.set(server, (byUser = {}));
    (byUser[userId] ??= {})[deviceId] = content;
  }
  const destinations = outbox ? outbox.targets(remote.keys()) : [];
  if (remote.size > destinations.length) hs.logger.warn("sendToDevice: no federation with", [...remote.keys()].filter((s) => !destinations.includes(s)));

  const last = await hs.store.write(async (tx) => {
    const tk = txnKey(sender, senderDevice, eventType, txnId);
    // A repeated transaction is a no-op ("the server should … return the same response").
    if ((await tx.get("txn_ids", tk)) !== undefined) return 0;
    tx.put("txn_ids", tk, {});
    for (const server of destinations) {
      // "Unique ID for the message, used for idempotence … of maximum length 32 codepoints."
      const messageId = encodeBase64Url(hs.random(16));
      await queueEdu(tx, [server], { edu_type: "m.direct_to_device", content: { sender, type: eventType, message_id: messageId, messages: remote.get(server)! } });
    }
    let last = 0;
    for (const [userId, deviceId, content] of messages) {
      if (serverOf(userId) !== local) continue;
      let targets: string[];
      if (deviceId === "*") {
        // "*" means every device of the user.
        const p = prefix(userId);
        targets = (await tx.range("devices", { prefix: p })).map((r) => r.key.slice(p.length));
      } else {
        // Unknown devices are ignored: the message could never be collected.
        targets = (await tx.get("devices", key(userId, deviceId))) !== undefined ? [deviceId] : [];
      }
      for (const target of targets) {
        last = await nextStreamPos(tx);
        tx.put("to_device", key(userId, target, pos(last)), { sender, type: eventType, content });
      }
    }
    return last;
  }, { tables: ["txn_ids", "settings", "federation_queue", "devices", "to_device"] });
  if (last > 0) hs.notifier.notify(last);
  for (const d of destinations) outbox?.wake(d);
}

/**
 * A local user's device list as the federation's `/user/devices` answers it: the devices that
 * have uploaded keys, the cross-signing keys, and the list's `stream_id`.
 */
export async function userDeviceList(hs: Services, userId: string): Promise<Record<string, unknown>> {
  return hs.store.read(async (tx) => {
    const { device_keys, master_keys, self_signing_keys } = await localDeviceKeys(tx, [[userId, null]]);
    const keys = device_keys[userId] ?? {};
    const devices: Record<string, unknown>[] = [];
    const dp = prefix(userId);
    for (const row of await tx.range<DeviceRecord>("devices", { prefix: dp })) {
      const deviceId = row.key.slice(dp.length);
      const k = keys[deviceId] as JsonObject | undefined;
      // `keys` is required per device: a device that has not uploaded keys has none to offer yet.
      if (!k) continue;
      const { unsigned: _u, ...signed } = k;
      const device: Record<string, unknown> = { device_id: deviceId, keys: signed };
      if (row.value.displayName !== undefined) device.device_display_name = row.value.displayName;
      devices.push(device);
    }
    // The newest of the list's last change and the last update sent for it (the sender numbers the
    // updates of one change consecutively), so that updates chained after it name a known prev_id.
    const streamId = Math.max(await deviceListStreamId(tx, userId), (await tx.get<number>("settings", deviceLastKey(userId))) ?? 0);
    const out: Record<string, unknown> = { user_id: userId, stream_id: streamId, devices };
    if (master_keys[userId]) out.master_key = master_keys[userId];
    if (self_signing_keys[userId]) out.self_signing_key = self_signing_keys[userId];
    return out;
  });
}
