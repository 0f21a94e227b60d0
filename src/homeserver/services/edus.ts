/**
 * Ephemeral data (EDUs) of local users: read receipts and markers ("Receipts", "Fully read
 * markers") and presence ("Presence"), stored, handed to `/sync` and queued for the servers that
 * share a room. Typing lives in memory (ephemeral/typing.ts). Remote EDUs arrive through
 * federation/edus.ts.
 */
import type { Services } from "../context.ts";
import { nextStreamPos } from "../context.ts";
import { MatrixError, forbidden, notFound } from "../errors.ts";
import { key } from "../../storage/store.ts";
import type { ReadTx, WriteTx } from "../../storage/store.ts";
import type { StoredEvent } from "../events/types.ts";
import { isTimelineEvent } from "../events/types.ts";
import { membershipOf, serversInRoom } from "../roomserver/state.ts";
import { typingState } from "../ephemeral/typing.ts";
import { joinedRooms } from "../roomserver/membership.ts";
import { queueEdu, serversSharingRoomsWith } from "../federation/sender.ts";
import { putAccountDataTx } from "./accountData.ts";

// ---------------------------------------------------------------------------------------------
// Receipts

/** A row of the `receipts` table. */
export interface ReceiptRow {
  eventId: string;
  ts: number;
  streamPos: number;
}

export interface Marker {
  type: string;
  eventId: string;
  threadId?: string;
}

/** Checks and writes markers for one user in one room in one transaction; returns the last position. */
export async function writeMarkers(hs: Services, roomId: string, userId: string, markers: Marker[]): Promise<void> {
  const now = hs.clock();
  const sender = hs.federationSender;
  let destinations: string[] = [];
  const pos = await hs.store.write(async (tx: WriteTx) => {
    const membership = await membershipOf(tx, roomId, userId);
    if (membership !== "join") throw forbidden("You are not joined to this room");
    let last = 0;
    for (const m of markers) {
      const ev = await tx.get<StoredEvent>("events", m.eventId);
      if (!ev || ev.roomId !== roomId || !isTimelineEvent(ev)) throw notFound(`Unknown event ${m.eventId}`);
      if (m.threadId !== undefined) {
        // receipts.yaml 400: "The event_id is not related to the thread_id".
        const rel = ev.pdu.content?.["m.relates_to"] as Record<string, unknown> | undefined;
        const threadOf = rel?.rel_type === "m.thread" && typeof rel.event_id === "string" ? rel.event_id : undefined;
        const related = m.threadId === "main" ? threadOf === undefined : threadOf === m.threadId || m.eventId === m.threadId;
        if (!related) throw new MatrixError(400, "M_INVALID_PARAM", "The event is not in that thread");
      }
      if (m.type === "m.fully_read") {
        last = await putAccountDataTx(tx, userId, roomId, "m.fully_read", { event_id: m.eventId });
        continue;
      }
      last = await nextStreamPos(tx);
      const row: ReceiptRow = { eventId: m.eventId, ts: now, streamPos: last };
      tx.put("receipts", key(roomId, m.type, userId, m.threadId ?? ""), row);
      // Read receipts go to the room's other servers, queued with the receipt itself ("Receipts",
      // server-server API); private ones stay here.
      if (m.type === "m.read" && sender) {
        destinations = sender.targets(await serversInRoom(tx, roomId));
        const data = { ts: now, ...(m.threadId !== undefined ? { thread_id: m.threadId } : {}) };
        await queueEdu(tx, destinations, { edu_type: "m.receipt", content: { [roomId]: { "m.read": { [userId]: { event_ids: [m.eventId], data } } } } });
      }
    }
    return last;
  }, { tables: ["memberships", "events", "settings", "account_data", "receipts", "room_state", "federation_queue"] });
  if (pos > 0) hs.notifier.notify(pos);
  for (const d of destinations) sender?.wake(d);
}

// ---------------------------------------------------------------------------------------------
// Presence

/** A row of the `presence` table. */
export interface PresenceRow {
  presence: string;
  status_msg?: string;
  lastActiveTs: number;
  streamPos: number;
}

/** Activity within this window counts as `currently_active`. */
const ACTIVE_WINDOW_MS = 5 * 60_000;

/** `last_active` is refreshed (without a stream position) at most this often. */
const TOUCH_INTERVAL_MS = 60_000;

/** "Idle timeout": an `online` user not seen for this long is shown as `unavailable`. */
const IDLE_AFTER_MS = 5 * 60_000;

/** The `m.presence` content of a row, as of `now`. */
export function presenceContent(row: PresenceRow, now: number): Record<string, unknown> {
  const ago = Math.max(0, now - row.lastActiveTs);
  return {
    presence: row.presence === "online" && ago > IDLE_AFTER_MS ? "unavailable" : row.presence,
    last_active_ago: ago,
    currently_active: row.presence === "online" && ago < ACTIVE_WINDOW_MS,
    ...(row.status_msg !== undefined ? { status_msg: row.status_msg } : {}),
  };
}

/**
 * What a `/sync` with `set_presence` does: mark the user `online` or `unavailable`; `offline`
 * changes nothing ("the client is not marked as being online"). Syncing is activity, and "any
 * activity … will cause the server to automatically set their presence to online" ("Idle
 * timeout"). Only real changes take a stream position, so syncs do not wake each other.
 */
export async function touchPresence(hs: Services, userId: string, setPresence: string): Promise<void> {
  if (setPresence === "offline") return;
  const now = hs.clock();
  const wanted = setPresence === "unavailable" ? "unavailable" : "online";
  // Most syncs change nothing: check in a read before taking a write transaction.
  const current = await hs.store.read((tx) => tx.get<PresenceRow>("presence", userId), { tables: ["presence"] });
  if (current && current.presence === wanted && now - current.lastActiveTs <= TOUCH_INTERVAL_MS) return;
  let destinations: string[] = [];
  const pos = await hs.store.write(async (tx) => {
    const row = await tx.get<PresenceRow>("presence", userId);
    // Back from idle (shown as unavailable) also counts as a change clients should hear about.
    if (row && row.presence === wanted && now - row.lastActiveTs <= IDLE_AFTER_MS) {
      tx.put("presence", userId, { ...row, lastActiveTs: now });
      return 0;
    }
    const streamPos = await nextStreamPos(tx);
    const next = { ...row, presence: wanted, lastActiveTs: now, streamPos } satisfies PresenceRow;
    tx.put("presence", userId, next);
    destinations = await queuePresence(hs, tx, userId, next);
    return streamPos;
  }, { tables: PRESENCE_WRITE_TABLES });
  if (pos > 0) hs.notifier.notify(pos);
  for (const d of destinations) hs.federationSender?.wake(d);
}

/** A presence write: the row, its stream position, and its EDU queued for the servers sharing a room. */
const PRESENCE_WRITE_TABLES = ["presence", "settings", "memberships", "room_state", "events", "federation_queue"] as const;

/**
 * Queues a local user's new presence for the servers sharing a room with them ("Presence",
 * server-server API), in the transaction that stores it; returns them (wake the sender after the commit).
 */
async function queuePresence(hs: Services, tx: WriteTx, userId: string, row: PresenceRow): Promise<string[]> {
  const sender = hs.federationSender;
  if (!sender) return [];
  const destinations = sender.targets(await serversSharingRoomsWith(tx, userId, hs.serverName));
  await queueEdu(tx, destinations, { edu_type: "m.presence", content: { push: [{ user_id: userId, ...presenceContent(row, hs.clock()) }] } });
  return destinations;
}

/** Whether two users share a joined room. */
async function shareRoom(tx: ReadTx, a: string, b: string): Promise<boolean> {
  for (const roomId of await joinedRooms(tx, a)) {
    if ((await membershipOf(tx, roomId, b)) === "join") return true;
  }
  return false;
}

/** What `GET /presence/{userId}/status` may show `viewer` (themselves, or someone sharing a room). */
export async function presenceFor(hs: Services, viewer: string, userId: string): Promise<{ exists: boolean; allowed: boolean; row: PresenceRow | undefined }> {
  return hs.store.read(async (tx) => ({
    exists: (await tx.get("accounts", userId)) !== undefined,
    row: await tx.get<PresenceRow>("presence", userId),
    allowed: userId === viewer || (await shareRoom(tx, viewer, userId)),
  }));
}

/** Sets a user's presence (`PUT /presence`): a new stream position, queued for other servers. */
export async function setPresence(hs: Services, userId: string, presence: string, statusMsg: string | undefined): Promise<void> {
  const now = hs.clock();
  let destinations: string[] = [];
  const pos = await hs.store.write(async (tx) => {
    const streamPos = await nextStreamPos(tx);
    const row: PresenceRow = { presence, lastActiveTs: now, streamPos };
    if (statusMsg !== undefined) row.status_msg = statusMsg;
    tx.put("presence", userId, row);
    destinations = await queuePresence(hs, tx, userId, row);
    return streamPos;
  }, { tables: PRESENCE_WRITE_TABLES });
  hs.notifier.notify(pos);
  for (const d of destinations) hs.federationSender?.wake(d);
}

// ---------------------------------------------------------------------------------------------
// Typing

/** Longest typing timeout honoured; clients refresh well before it. */
const MAX_TYPING_MS = 120_000;

/**
 * Sets a joined user's typing state in a room (in memory, ephemeral/typing.ts) for `timeoutMs`
 * (default 30 s, at most MAX_TYPING_MS) and sends it to the room's other servers.
 */
export async function setTyping(hs: Services, roomId: string, userId: string, typing: boolean, timeoutMs: number | undefined): Promise<void> {
  const membership = await hs.store.read((tx) => membershipOf(tx, roomId, userId), { tables: ["memberships"] });
  if (membership !== "join") throw forbidden("You are not joined to this room");
  const timeout = Math.min(timeoutMs ?? 30_000, MAX_TYPING_MS);
  typingState(hs).set(roomId, userId, typing, timeout);
  // Every notification (renewals too: remote servers time typing out on their own) goes to the
  // other servers in the room ("Typing Notifications", server-server API).
  await hs.federationSender?.sendEdu((tx) => serversInRoom(tx, roomId), { edu_type: "m.typing", content: { room_id: roomId, user_id: userId, typing } });
}
