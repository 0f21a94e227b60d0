/**
 * Inbound EDUs (server-server API "EDUs"): each `PUT /send` hands its `edus` here after its PDUs.
 * Typing, receipts, presence, device lists, signing keys and to-device messages each reach the
 * local users' `/sync` once: what repeats what we already hold (a resent transaction, the same
 * receipt twice, a known to-device `message_id`, an old device-list `stream_id`) takes no stream
 * position. Unknown types are ignored, as the spec asks.
 *
 * Every EDU speaks for users of its origin only ("Receiving servers should verify that the user
 * is in the room, and is a user belonging to the sending server"); room EDUs count only for users
 * joined to the room, user EDUs only for users who share a room with someone here.
 *
 * key txn_ids|"federation"|origin|"to_device"|message_id → {} (to-device idempotency)
 * key settings|"fed_device_in"|userId → the newest device-list stream_id applied for a remote user
 */
import type { Services } from "../context.ts";
import { nextStreamPos } from "../context.ts";
import { key, prefix, pos } from "../../storage/store.ts";
import type { ReadTx } from "../../storage/store.ts";
import { isObject } from "../validate.ts";
import { serverOf, isValidUserId } from "../rooms/ids.ts";
import { membershipOf } from "../roomserver/state.ts";
import { joinedRooms } from "../roomserver/membership.ts";
import { typingState } from "../ephemeral/typing.ts";
import type { ReceiptRow } from "../services/edus.ts";
import type { PresenceRow } from "../services/edus.ts";
import { markStale } from "./deviceLists.ts";
import { logLine } from "../log.ts";

/** How long a remote typing notification lasts unless renewed (the EDU carries no timeout). */
export const FEDERATION_TYPING_TIMEOUT_MS = 60_000;
const PRESENCE_STATES = new Set(["online", "offline", "unavailable"]);

/** Applies the EDUs `origin` sent; never throws for one bad EDU (the transaction still succeeds). */
export async function receiveEdus(hs: Services, origin: string, edus: readonly unknown[]): Promise<void> {
  for (const edu of edus) {
    if (!isObject(edu) || typeof edu.edu_type !== "string" || !isObject(edu.content)) continue;
    const type = edu.edu_type;
    const content = edu.content;
    try {
      switch (type) {
        case "m.typing":
          await receiveTyping(hs, origin, content);
          break;
        case "m.receipt":
          await receiveReceipts(hs, origin, content);
          break;
        case "m.presence":
          await receivePresence(hs, origin, content);
          break;
        case "m.direct_to_device":
          await receiveToDevice(hs, origin, content);
          break;
        case "m.device_list_update":
        case "m.signing_key_update":
          await receiveDeviceChange(hs, origin, type, content);
          break;
        default:
          hs.logger.debug(logLine("edu_ignored", { origin, type }));
      }
    } catch (err) {
      hs.logger.warn(logLine("edu_failed", { origin, type, error: String(err) }));
    }
  }
}

/** A user ID the origin may speak for. */
function ownUser(origin: string, userId: unknown): userId is string {
  return typeof userId === "string" && isValidUserId(userId) && serverOf(userId) === origin;
}

/** Whether a remote user shares a room with this server (its news matter to someone here). */
async function sharesRoom(tx: ReadTx, userId: string): Promise<boolean> {
  return (await joinedRooms(tx, userId)).length > 0;
}

/** `m.typing` { room_id, user_id, typing } */
async function receiveTyping(hs: Services, origin: string, c: Record<string, unknown>): Promise<void> {
  if (typeof c.room_id !== "string" || typeof c.typing !== "boolean" || !ownUser(origin, c.user_id)) return;
  const userId = c.user_id;
  const roomId = c.room_id;
  if ((await hs.store.read((tx) => membershipOf(tx, roomId, userId))) !== "join") return;
  typingState(hs).set(roomId, userId, c.typing, FEDERATION_TYPING_TIMEOUT_MS);
}

/** `m.receipt` { roomId: { "m.read": { userId: { event_ids: [id], data: { ts, thread_id? } } } } } */
async function receiveReceipts(hs: Services, origin: string, c: Record<string, unknown>): Promise<void> {
  const now = hs.clock();
  for (const [roomId, byType] of Object.entries(c)) {
    if (!roomId.startsWith("!") || !isObject(byType)) continue;
    // Only read receipts travel between servers (private ones never leave theirs).
    const reads = byType["m.read"];
    if (!isObject(reads)) continue;
    const last = await hs.store.write(async (tx) => {
      let last = 0;
      for (const [userId, r] of Object.entries(reads)) {
        if (!ownUser(origin, userId) || !isObject(r) || !Array.isArray(r.event_ids)) continue;
        const eventId = r.event_ids[r.event_ids.length - 1];
        if (typeof eventId !== "string" || !eventId.startsWith("$")) continue;
        const data = isObject(r.data) ? r.data : {};
        const threadId = typeof data.thread_id === "string" && data.thread_id !== "" ? data.thread_id : "";
        if ((await membershipOf(tx, roomId, userId)) !== "join") continue;
        const k = key(roomId, "m.read", userId, threadId);
        // The same receipt again (a resent EDU) is nothing new for clients.
        if ((await tx.get<ReceiptRow>("receipts", k))?.eventId === eventId) continue;
        last = await nextStreamPos(tx);
        const ts = typeof data.ts === "number" && Number.isSafeInteger(data.ts) ? data.ts : now;
        tx.put("receipts", k, { eventId, ts, streamPos: last } satisfies ReceiptRow);
      }
      return last;
    });
    if (last > 0) hs.notifier.notify(last, { rooms: [roomId] });
  }
}

/** `m.presence` { push: [{ user_id, presence, last_active_ago, status_msg?, currently_active? }] } */
async function receivePresence(hs: Services, origin: string, c: Record<string, unknown>): Promise<void> {
  if (!Array.isArray(c.push)) return;
  const now = hs.clock();
  const last = await hs.store.write(async (tx) => {
    let last = 0;
    for (const p of c.push as unknown[]) {
      if (!isObject(p) || !ownUser(origin, p.user_id) || typeof p.presence !== "string" || !PRESENCE_STATES.has(p.presence)) continue;
      const userId = p.user_id;
      if (!(await sharesRoom(tx, userId))) continue;
      const ago = typeof p.last_active_ago === "number" && p.last_active_ago >= 0 ? p.last_active_ago : 0;
      const statusMsg = typeof p.status_msg === "string" ? p.status_msg : undefined;
      const row = await tx.get<PresenceRow>("presence", userId);
      const lastActiveTs = now - ago;
      // An update that only moves last_active (or repeats itself) is kept without waking anyone.
      if (row && row.presence === p.presence && row.status_msg === statusMsg) {
        tx.put("presence", userId, { ...row, lastActiveTs: Math.max(row.lastActiveTs, lastActiveTs) });
        continue;
      }
      last = await nextStreamPos(tx);
      tx.put("presence", userId, { presence: p.presence, lastActiveTs, streamPos: last, ...(statusMsg !== undefined ? { status_msg: statusMsg } : {}) } satisfies PresenceRow);
    }
    return last;
  });
  if (last > 0) hs.notifier.notify(last);
}

/** `m.direct_to_device` { sender, type, message_id, messages: { userId: { deviceId | "*": content } } } */
async function receiveToDevice(hs: Services, origin: string, c: Record<string, unknown>): Promise<void> {
  if (!ownUser(origin, c.sender) || typeof c.type !== "string" || typeof c.message_id !== "string" || !isObject(c.messages)) return;
  const sender = c.sender;
  const type = c.type;
  const messages = c.messages;
  const users = new Set<string>();
  const last = await hs.store.write(async (tx) => {
    const tk = key("federation", origin, "to_device", c.message_id as string);
    // A message ID seen before is the same message again ("used for idempotence").
    if ((await tx.get("txn_ids", tk)) !== undefined) return 0;
    tx.put("txn_ids", tk, {});
    let last = 0;
    for (const [userId, devices] of Object.entries(messages)) {
      if (serverOf(userId) !== hs.serverName || !isObject(devices)) continue;
      for (const [deviceId, content] of Object.entries(devices)) {
        if (!isObject(content)) continue;
        const p = prefix(userId);
        const targets =
          deviceId === "*"
            ? (await tx.range("devices", { prefix: p })).map((r) => r.key.slice(p.length))
            : (await tx.get("devices", key(userId, deviceId))) !== undefined
              ? [deviceId]
              : [];
        for (const target of targets) {
          last = await nextStreamPos(tx);
          tx.put("to_device", key(userId, target, pos(last)), { sender, type, content });
          users.add(userId);
        }
      }
    }
    return last;
  });
  if (last > 0) hs.notifier.notify(last, { users });
}

/**
 * `m.device_list_update` / `m.signing_key_update`: a remote user's devices or cross-signing keys
 * changed. The cached list goes stale and local users sharing a room see the user in
 * `device_lists.changed` (deviceLists.ts `markStale`); an update whose `stream_id` was already
 * applied changes nothing.
 */
async function receiveDeviceChange(hs: Services, origin: string, type: string, c: Record<string, unknown>): Promise<void> {
  if (!ownUser(origin, c.user_id)) return;
  const userId = c.user_id;
  if (type === "m.device_list_update" && (typeof c.device_id !== "string" || typeof c.stream_id !== "number")) return;
  const fresh = await hs.store.write(async (tx) => {
    if (!(await sharesRoom(tx, userId))) return false;
    if (type === "m.device_list_update") {
      const seenKey = key("fed_device_in", userId);
      const seen = await tx.get<number>("settings", seenKey);
      if (seen !== undefined && (c.stream_id as number) <= seen) return false;
      tx.put("settings", seenKey, c.stream_id);
    }
    return true;
  });
  // The cached list is fetched again before its next use, and local clients are told (deviceLists.ts).
  if (fresh) await markStale(hs, userId);
}
