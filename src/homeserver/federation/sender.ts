/**
 * Outbound federation delivery (server-server API "Transactions"): per-destination queues kept in
 * the store, so a crash or restart loses no PDU or EDU.
 *
 * What goes in:
 * - PDUs: a scanner follows the timeline stream from a stored cursor and queues every local event
 *   (sender on this server, accepted) for the servers in its room at that event (the servers of
 *   the members joined in the state after it), plus the server of a user whose membership it
 *   changes. The queue rows and the cursor move in one write, after the events' own commit: a
 *   crash between the two only means the scan runs again from the old cursor.
 * - Device list and signing key updates: the same scan over `device_list_stream`.
 * - Other EDUs (typing, receipts, presence, to-device): `queueEdu` inside the producer's own write
 *   transaction, so the EDU is queued exactly when the change it reports is stored.
 *
 * What goes out: one transaction in flight per destination, ≤ 50 PDUs and ≤ 100 EDUs, oldest
 * first. A transaction is fixed (ID and body stored) before its first attempt and resent unchanged
 * until the destination answers, so a retry after a timeout or a restart is deduplicated by the
 * receiver ("the transaction ID … used to ensure idempotency"); its rows leave the queue only when
 * the answer came. A failure backs off exponentially per destination; the backoff ends the moment
 * the destination is heard from (`hs.heardFrom`).
 *
 * key federation_queue = destination|pos(seq) → QueueItem
 * key federation_inflight = destination → InFlight
 * key settings|fed_queue_seq → the last queue sequence number (orders all rows of a destination)
 * key settings|fed_stream_pos → the last timeline stream position scanned for local events
 * key settings|fed_device_pos → the last device_list_stream position scanned
 * key settings|fed_device_last|userId → the stream_id of the user's last device list update sent
 */
import type { ReadTx, WriteTx } from "../../storage/store.ts";
import { SEP_END, key, pos, prefix, unpos } from "../../storage/store.ts";
import type { Services } from "../context.ts";
import { streamPosIn } from "../context.ts";
import type { Pdu, StoredEvent } from "../events/types.ts";
import { isTimelineEvent, refIds, splitStateKey, stateKeyOf } from "../events/types.ts";
import { getEvent, membershipIn, serversInRoom } from "../roomserver/state.ts";
import type { EventStateRecord } from "../roomserver/state.ts";
import { stateOfGroup } from "../roomserver/state.ts";
import { joinedRooms } from "../roomserver/membership.ts";
import { serverOf } from "../rooms/ids.ts";
import { logLine } from "../log.ts";
import type { FederationClient } from "./client.ts";
import { FederationError } from "./client.ts";
import type { DeviceRecord } from "../services/devices.ts";
import type { DeviceListChange } from "../services/e2ee.ts";

/** An EDU as it travels in a transaction. */
export interface Edu {
  edu_type: string;
  content: Record<string, unknown>;
}

/** A queued item: a PDU by event ID, or an EDU. */
export type QueueItem = { pdu: string } | { edu: Edu };

/** The transaction being delivered to a destination, fixed before its first attempt. */
interface InFlight {
  txnId: string;
  /** The queue keys it carries; deleted together with this record once answered. */
  keys: string[];
  body: { origin: string; origin_server_ts: number; pdus: Pdu[]; edus: Edu[] };
}

/** Transaction limits of `PUT /send/{txnId}`. */
export const MAX_PDUS_PER_TXN = 50;
export const MAX_EDUS_PER_TXN = 100;
/** Stream rows looked at per scan step. */
const SCAN_BATCH = 100;
/**
 * What the scans read: the stream rows and events, the state groups and members that name the
 * destinations, and the devices and keys of device-list announcements. Declared so that the read
 * after every commit does not hold up writes to the other tables (IndexedDB schedules by scope).
 */
const SCAN_TABLES = ["settings", "stream", "events", "event_state", "state_groups", "memberships", "room_state", "devices", "device_keys", "cross_signing_keys", "device_list_stream"] as const;
/** Devices announced at most per device-list change whose devices are unknown. */
const MAX_DEVICES_ANNOUNCED = 100;

const SEQ = "fed_queue_seq";
const STREAM_CURSOR = "fed_stream_pos";
const DEVICE_CURSOR = "fed_device_pos";
/** The settings key of the `stream_id` of the last `m.device_list_update` sent for a user (queries.ts reads it too). */
export const deviceLastKey = (userId: string): string => key("fed_device_last", userId);

/** Tuning; tests shorten the backoff. */
export interface FederationSenderOptions {
  /** First retry delay after a failed transaction (doubles each time), ms; default 2 s. */
  minBackoffMs?: number;
  /** Longest retry delay, ms; default 10 min. */
  maxBackoffMs?: number;
  /** How long one `/send` may take before it counts as failed, ms; default 60 s. */
  timeoutMs?: number;
}

/**
 * Queues `edu` for each destination, inside the caller's write transaction (so it is stored
 * together with what it reports). Wake the sender (`FederationSender.wake`) after the commit.
 */
export async function queueEdu(tx: WriteTx, destinations: Iterable<string>, edu: Edu): Promise<void> {
  for (const destination of destinations) await queueItem(tx, destination, { edu });
}

async function queueItem(tx: WriteTx, destination: string, item: QueueItem): Promise<void> {
  const seq = ((await tx.get<number>("settings", SEQ)) ?? 0) + 1;
  tx.put("settings", SEQ, seq);
  tx.put("federation_queue", key(destination, pos(seq)), item);
}

/** The other servers sharing a room with `userId` (where its presence and device lists go). */
export async function serversSharingRoomsWith(tx: ReadTx, userId: string, self: string): Promise<Set<string>> {
  const out = new Set<string>();
  for (const roomId of await joinedRooms(tx, userId)) for (const s of await serversInRoom(tx, roomId)) if (s !== self) out.add(s);
  return out;
}

interface DestState {
  running?: Promise<void>;
  /** The transaction the scan fixed for this idle destination in its own write: the run sends it without another write. */
  prepared?: InFlight;
  /** A wake-up came in while a run was going: run once more. */
  again: boolean;
  timer?: ReturnType<typeof setTimeout>;
  backoffMs: number;
}

/** Delivers the queues; see the module comment. */
export class FederationSender {
  private readonly dests = new Map<string, DestState>();
  private closed = false;
  private readonly abort = new AbortController();
  private scanning: Promise<void> | undefined;
  private scanAgain = false;
  /**
   * How far the scan has read the timeline stream, ahead of the stored cursor while the rows read
   * held nothing to queue (remote events): those moves are stored later, in one write, not one
   * write (and fsync) per inbound event. Rescanning such rows after a crash queues nothing.
   */
  private scannedTo: number | undefined;
  private cursorTimer: ReturnType<typeof setTimeout> | undefined;
  private storingCursor: Promise<void> | undefined;
  /** Joined servers per state group (groups never change once written). */
  private readonly groupServers = new Map<string, string[]>();
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly timeoutMs: number;
  private readonly hs: Services;
  private readonly client: FederationClient;

  constructor(hs: Services, client: FederationClient, options: FederationSenderOptions = {}) {
    this.hs = hs;
    this.client = client;
    this.minBackoffMs = options.minBackoffMs ?? 2000;
    this.maxBackoffMs = options.maxBackoffMs ?? 10 * 60_000;
    this.timeoutMs = options.timeoutMs ?? 60_000;
  }

  /** Resumes after a (re)start: scans what was committed since the last scan and sends every queue. */
  start(): void {
    this.hs.heardFrom.push((server) => this.heardFrom(server));
    this.scan();
    this.track(
      this.hs.store.read((tx) => pendingDestinations(tx)).then((dests) => {
        for (const d of dests) this.wake(d);
      }),
      "resuming queues",
    );
  }

  /** Something was committed (a room event, a device list change): scan for what to queue. */
  scan(): void {
    if (this.closed) return;
    if (this.scanning) {
      this.scanAgain = true;
      return;
    }
    const run = async (): Promise<void> => {
      do {
        this.scanAgain = false;
        if (this.storingCursor) await this.storingCursor;
        while (!this.closed && (await this.scanEvents())) {
          // more stream rows may follow
        }
        while (!this.closed && (await this.scanDeviceLists())) {
          // more rows may follow
        }
      } while (this.scanAgain && !this.closed);
    };
    this.scanning = run()
      .catch((err: unknown) => this.hs.logger.error(logLine("federation_scan_failed", { error: String(err) })))
      .finally(() => (this.scanning = undefined));
  }

  /** Items were queued for `destination`: send them now unless it is backing off. */
  wake(destination: string): void {
    if (this.closed || !this.client.mayContact(destination)) return;
    let st = this.dests.get(destination);
    if (!st) this.dests.set(destination, (st = { again: false, backoffMs: this.minBackoffMs }));
    if (st.timer) return;
    this.kick(destination, st);
  }

  /**
   * Queues `edu` for the servers `destinations(tx)` names (without this one), in its own write
   * transaction, and sends it: for news that is not stored otherwise (typing).
   */
  async sendEdu(destinations: (tx: ReadTx) => Promise<Iterable<string>>, edu: Edu): Promise<void> {
    const dests = await this.hs.store.write(async (tx) => {
      const list = [...(await destinations(tx))].filter((d) => d !== this.hs.serverName && this.client.mayContact(d));
      await queueEdu(tx, list, edu);
      return list;
    });
    for (const d of dests) this.wake(d);
  }

  /** The servers to queue an EDU for among `servers`: not this one, and allowed. */
  targets(servers: Iterable<string>): string[] {
    return [...servers].filter((d) => d !== this.hs.serverName && this.client.mayContact(d));
  }

  /** Queued items (PDUs and EDUs, including those in flight) per destination, for metrics. */
  queueDepths(): Promise<Map<string, number>> {
    return this.hs.store.read(async (tx) => {
      const out = new Map<string, number>();
      for (const d of await queuedDestinations(tx)) out.set(d, await tx.count("federation_queue", { prefix: prefix(d) }));
      return out;
    });
  }

  /** Whether nothing is queued, scanned-but-unsent or waiting to be scanned (tests, bench). */
  async idle(): Promise<boolean> {
    if (this.scanning) return false;
    for (const st of this.dests.values()) if (st.running) return false;
    return this.hs.store.read(async (tx) => {
      if ((await tx.count("federation_queue")) > 0) return false;
      const cursor = Math.max((await tx.get<number>("settings", STREAM_CURSOR)) ?? 0, this.scannedTo ?? 0);
      return (await tx.range("stream", { gt: pos(cursor), limit: 1 })).length === 0;
    });
  }

  /** Stops timers and waits for requests in flight; everything queued stays queued. */
  async close(): Promise<void> {
    this.closed = true;
    this.abort.abort();
    const running: Promise<void>[] = [];
    for (const st of this.dests.values()) {
      clearTimeout(st.timer);
      st.timer = undefined;
      if (st.running) running.push(st.running);
    }
    await this.scanning;
    await Promise.all(running);
    clearTimeout(this.cursorTimer);
    await this.storingCursor;
    await this.storeCursor();
  }

  private track(p: Promise<void>, what: string): void {
    p.catch((err: unknown) => this.hs.logger.error(logLine("federation_sender_failed", { during: what, error: String(err) })));
  }

  /** The destination answered us or sent us a request: it is up, so stop backing off. */
  private heardFrom(destination: string): void {
    const st = this.dests.get(destination);
    if (!st) return;
    st.backoffMs = this.minBackoffMs;
    if (st.timer) {
      clearTimeout(st.timer);
      st.timer = undefined;
      this.kick(destination, st);
    }
  }

  private kick(destination: string, st: DestState): void {
    if (st.running) {
      st.again = true;
      return;
    }
    st.running = this.run(destination, st).finally(() => {
      st.running = undefined;
      // A wake-up after the run's last check still gets its run.
      if (st.again && !st.timer && !this.closed) this.kick(destination, st);
    });
  }

  private async run(destination: string, st: DestState): Promise<void> {
    do {
      st.again = false;
      let delivered: boolean;
      try {
        delivered = await this.drain(destination);
      } catch (err) {
        if (this.closed) return;
        this.hs.logger.error(logLine("federation_send_failed", { destination, error: String(err) }));
        delivered = false;
      }
      if (!delivered) {
        this.retryLater(destination, st);
        return;
      }
      st.backoffMs = this.minBackoffMs;
    } while (st.again && !this.closed);
  }

  private retryLater(destination: string, st: DestState): void {
    if (this.closed) return;
    const delay = st.backoffMs;
    st.backoffMs = Math.min(this.maxBackoffMs, st.backoffMs * 2);
    this.hs.logger.info(logLine("federation_backoff", { destination, retry_in_ms: delay }));
    st.timer = setTimeout(() => {
      st.timer = undefined;
      this.kick(destination, st);
    }, delay);
    (st.timer as { unref?: () => void }).unref?.();
  }

  /** Sends transactions until the queue is empty (true) or one fails (false). */
  private async drain(destination: string): Promise<boolean> {
    while (!this.closed) {
      const txn = (await this.takePrepared(destination)) ?? (await this.hs.store.write((tx) => this.nextTransaction(tx, destination), { tables: ["federation_inflight", "federation_queue", "events"] }));
      if (!txn) return true;
      const outcome = await this.send(destination, txn);
      if (outcome === "retry") return false;
      await this.hs.store.write(async (tx) => {
        for (const k of txn.keys) tx.delete("federation_queue", k);
        tx.delete("federation_inflight", destination);
      }, { tables: ["federation_queue", "federation_inflight"] });
    }
    return false;
  }

  /** The transaction the scan prepared for `destination`, if it is still the one in flight. */
  private async takePrepared(destination: string): Promise<InFlight | undefined> {
    const st = this.dests.get(destination);
    const prepared = st?.prepared;
    if (!st || !prepared) return undefined;
    st.prepared = undefined;
    // Another run may have sent it meanwhile: only the stored record is authoritative.
    const current = await this.hs.store.read((tx) => tx.get<InFlight>("federation_inflight", destination), { tables: ["federation_inflight"] });
    return current?.txnId === prepared.txnId ? current : undefined;
  }

  /** The transaction in flight, or a new one from the head of the queue (stored before it is sent). */
  private async nextTransaction(tx: WriteTx, destination: string): Promise<InFlight | undefined> {
    const inflight = await tx.get<InFlight>("federation_inflight", destination);
    if (inflight) return inflight;
    const rows = await tx.range<QueueItem>("federation_queue", { prefix: prefix(destination), limit: MAX_PDUS_PER_TXN + MAX_EDUS_PER_TXN });
    if (rows.length === 0) return undefined;
    const keys: string[] = [];
    const pdus: Pdu[] = [];
    const edus: Edu[] = [];
    for (const row of rows) {
      const item = row.value;
      if ("pdu" in item) {
        if (pdus.length === MAX_PDUS_PER_TXN) break;
        const e = await getEvent(tx, item.pdu);
        // Gone (purged) events are dropped from the queue.
        if (e) pdus.push(federationPdu(e));
      } else {
        if (edus.length === MAX_EDUS_PER_TXN) break;
        edus.push(item.edu);
      }
      keys.push(row.key);
    }
    const seq = unpos(keys[0]!.slice(prefix(destination).length));
    const now = this.hs.clock();
    // Unique per destination for ever: the first row's sequence number never comes back, and the
    // time keeps it unique even for a server whose store was wiped.
    const txn: InFlight = { txnId: `${now}.${seq}`, keys, body: { origin: this.hs.serverName, origin_server_ts: now, pdus, edus } };
    tx.put("federation_inflight", destination, txn);
    return txn;
  }

  /** One attempt: `delivered`, `dropped` (refused for good) or `retry`. */
  private async send(destination: string, txn: InFlight): Promise<"delivered" | "dropped" | "retry"> {
    let response: Response;
    try {
      response = await this.client.fetch(destination, "PUT", `/_matrix/federation/v1/send/${encodeURIComponent(txn.txnId)}`, {
        body: txn.body,
        timeoutMs: this.timeoutMs,
        signal: this.abort.signal,
      });
    } catch (err) {
      if (!(err instanceof FederationError)) throw err;
      this.hs.logger.info(logLine("federation_txn_unreachable", { destination, txn: txn.txnId, error: err.message }));
      return "retry";
    }
    const text = await response.text().catch(() => "");
    if (response.ok) {
      let results: unknown;
      try {
        results = (JSON.parse(text) as { pdus?: unknown }).pdus;
      } catch {
        results = undefined;
      }
      if (results && typeof results === "object") {
        for (const [eventId, r] of Object.entries(results as Record<string, { error?: unknown }>)) {
          if (r && typeof r === "object" && r.error !== undefined) this.hs.logger.warn(logLine("federation_pdu_refused", { destination, event_id: eventId, error: String(r.error) }));
        }
      }
      return "delivered";
    }
    // Worth retrying: the server is overloaded, broken for now, or cannot check our key yet.
    if (response.status >= 500 || response.status === 429 || response.status === 408 || response.status === 401) {
      this.hs.logger.info(logLine("federation_txn_failed", { destination, txn: txn.txnId, status: response.status }));
      return "retry";
    }
    // Any other refusal would be the same on every retry: give the transaction up.
    this.hs.logger.warn(logLine("federation_txn_refused", { destination, txn: txn.txnId, status: response.status, body: text.slice(0, 200) }));
    return "dropped";
  }

  // --- scanning ---

  /** Queues the local events of the next stream rows; false when there was nothing new. */
  private async scanEvents(): Promise<boolean> {
    const self = this.hs.serverName;
    const plan = await this.hs.store.read(async (tx) => {
      const cursor = await tx.get<number>("settings", STREAM_CURSOR);
      // First start: begin at the present; history is not replayed.
      if (cursor === undefined) return { initial: await streamPosIn(tx) };
      // key stream = pos(streamPos) → { roomId, eventId }
      const rows = await tx.range<{ roomId: string; eventId: string }>("stream", { gt: pos(Math.max(cursor, this.scannedTo ?? cursor)), limit: SCAN_BATCH });
      if (rows.length === 0) return undefined;
      const items: { destination: string; eventId: string }[] = [];
      const announcements: DeviceAnnouncement[] = [];
      for (const row of rows) {
        const e = await getEvent(tx, row.value.eventId);
        if (!e || !isTimelineEvent(e)) continue;
        // Any join, local or remote, may make a server share a room with one of our users anew.
        for (const [userId, destinations] of await this.newlySharing(tx, e)) {
          const a = await deviceAnnouncement(tx, userId, [...destinations].filter((d) => this.client.mayContact(d)).sort(), unpos(row.key), true);
          // A user with no device and no cross-signing key has nothing to announce.
          if (a.destinations.length > 0 && (a.deviceEdus.length > 0 || a.signingEdu)) announcements.push(a);
        }
        // Local events, and remote users' membership events this server accepted as a resident (`relay`).
        if (serverOf(e.pdu.sender) !== self && !e.relay) continue;
        for (const d of await this.destinationsOf(tx, e)) items.push({ destination: d, eventId: e.eventId });
      }
      return { cursor, upTo: unpos(rows[rows.length - 1]!.key), items, announcements, more: rows.length === SCAN_BATCH };
    }, { tables: SCAN_TABLES });
    if (!plan) return false;
    if ("initial" in plan) {
      await this.hs.store.write(async (tx) => {
        if ((await tx.get<number>("settings", STREAM_CURSOR)) === undefined) tx.put("settings", STREAM_CURSOR, plan.initial);
      }, { tables: ["settings"] });
      return true;
    }
    if (plan.items.length === 0 && plan.announcements.length === 0) {
      this.scannedTo = plan.upTo;
      this.storeCursorLater();
      return plan.more;
    }
    const destinations = [...new Set([...plan.items.map((i) => i.destination), ...plan.announcements.flatMap((a) => a.destinations)])];
    const written = await this.hs.store.write(async (tx) => {
      // Only this loop moves the cursor; a mismatch means another instance shares the store.
      if ((await tx.get<number>("settings", STREAM_CURSOR)) !== plan.cursor) return undefined;
      for (const it of plan.items) await queueItem(tx, it.destination, { pdu: it.eventId });
      // After the PDUs: a receiver handles a transaction's PDUs first, so it holds the join by then.
      for (const a of plan.announcements) await queueDeviceAnnouncement(tx, a);
      tx.put("settings", STREAM_CURSOR, plan.upTo);
      // A destination with nothing in flight gets its transaction fixed in this same write: the
      // event reaches it one commit (and fsync) sooner.
      const prepared = new Map<string, InFlight>();
      for (const d of destinations) {
        const st = this.dests.get(d);
        if (this.closed || st?.running || st?.timer || st?.prepared || !this.client.mayContact(d)) continue;
        const txn = await this.nextTransaction(tx, d);
        if (txn) prepared.set(d, txn);
      }
      return prepared;
    }, { tables: ["settings", "federation_queue", "federation_inflight", "events"] });
    if (!written) return false;
    this.scannedTo = plan.upTo;
    for (const d of destinations) {
      const txn = written.get(d);
      if (txn) {
        let st = this.dests.get(d);
        if (!st) this.dests.set(d, (st = { again: false, backoffMs: this.minBackoffMs }));
        st.prepared = txn;
      }
      this.wake(d);
    }
    return plan.more;
  }

  /** Stores the scanned position a second from now (see {@link scannedTo}), unless a scan is running. */
  private storeCursorLater(): void {
    if (this.cursorTimer || this.closed) return;
    this.cursorTimer = setTimeout(() => {
      this.cursorTimer = undefined;
      if (this.scanning) return this.storeCursorLater();
      this.storingCursor = this.storeCursor()
        .catch((err: unknown) => this.hs.logger.error(logLine("federation_scan_failed", { error: String(err) })))
        .finally(() => (this.storingCursor = undefined));
    }, 1000);
    (this.cursorTimer as { unref?: () => void }).unref?.();
  }

  /** Writes {@link scannedTo} as the stored cursor when it is ahead. */
  private async storeCursor(): Promise<void> {
    const to = this.scannedTo;
    if (to === undefined) return;
    await this.hs.store.write(async (tx) => {
      const stored = await tx.get<number>("settings", STREAM_CURSOR);
      if (stored !== undefined && stored < to) tx.put("settings", STREAM_CURSOR, to);
    }, { tables: ["settings"] });
  }

  /**
   * The servers that share a room with one of our users for the first time through event `e` (a
   * join), per local user: "Servers must send m.device_list_update EDUs to all the servers who
   * share a room with a given local user, and must be sent whenever that user's device list
   * changes (i.e. … when that user joins a room which contains servers which are not already
   * receiving updates for that user's device list …)". Both ways round: our user joins a room
   * with servers that shared none with them, or a remote user's join brings their server into a
   * room with our users. A server that already shares another room with the user is left out.
   */
  private async newlySharing(tx: ReadTx, e: StoredEvent): Promise<Map<string, Set<string>>> {
    const out = new Map<string, Set<string>>();
    const joiner = e.pdu.state_key;
    if (e.pdu.type !== "m.room.member" || typeof joiner !== "string" || membershipIn(e) !== "join") return out;
    const rec = await tx.get<EventStateRecord>("event_state", e.eventId);
    if (!rec) return out;
    // The group of the state before: recorded for merges, else the state after the first known prev.
    let beforeGroup = rec.before;
    for (const id of beforeGroup === undefined ? refIds(e.pdu.prev_events ?? []) : []) {
      beforeGroup = (await tx.get<EventStateRecord>("event_state", id))?.after;
      if (beforeGroup !== undefined) break;
    }
    const self = this.hs.serverName;
    const joinerServer = serverOf(joiner);
    // Joined servers per group are cached (destinationsOf walks the same groups): a join that
    // brings no server into the room costs two lookups.
    const serversBefore = new Set(beforeGroup !== undefined ? await this.joinedServersOfGroup(tx, beforeGroup) : []);
    const candidates = new Map<string, Set<string>>();
    if (joinerServer === self) {
      const id = beforeGroup !== undefined ? (await stateOfGroup(tx, beforeGroup)).get(stateKeyOf("m.room.member", joiner)) : undefined;
      if (id !== undefined && membershipIn(await getEvent(tx, id)) === "join") return out; // a profile change
      const servers = (await this.joinedServersOfGroup(tx, rec.after)).filter((s) => s !== self);
      if (servers.length > 0) candidates.set(joiner, new Set(servers));
    } else {
      // Their server was here already (one of its users was joined): it gets updates already.
      if (serversBefore.has(joinerServer)) return out;
      for (const [sk, id] of await stateOfGroup(tx, rec.after)) {
        const [type, userId] = splitStateKey(sk);
        if (type !== "m.room.member" || serverOf(userId) !== self) continue;
        if (membershipIn(await getEvent(tx, id)) === "join") candidates.set(userId, new Set([joinerServer]));
      }
    }
    for (const [userId, servers] of candidates) {
      for (const roomId of await joinedRooms(tx, userId)) {
        if (roomId === e.roomId) continue;
        for (const s of await serversInRoom(tx, roomId)) servers.delete(s);
        if (servers.size === 0) break;
      }
      if (servers.size > 0) out.set(userId, servers);
    }
    return out;
  }

  /**
   * Where a local event goes: the servers with a member joined in the state after it, and the
   * server of the user whose membership it changes (a kicked, banned or invited user's server).
   */
  private async destinationsOf(tx: ReadTx, e: StoredEvent): Promise<string[]> {
    const out = new Set<string>();
    const rec = await tx.get<EventStateRecord>("event_state", e.eventId);
    if (rec) for (const s of await this.joinedServersOfGroup(tx, rec.after)) out.add(s);
    if (e.pdu.type === "m.room.member" && typeof e.pdu.state_key === "string") out.add(serverOf(e.pdu.state_key));
    out.delete(this.hs.serverName);
    // A relayed event's own server already has it (it sent it to us).
    if (e.relay) out.delete(serverOf(e.pdu.sender));
    return [...out].filter((d) => this.client.mayContact(d)).sort();
  }

  private async joinedServersOfGroup(tx: ReadTx, groupId: string): Promise<string[]> {
    const cached = this.groupServers.get(groupId);
    if (cached) return cached;
    const servers = new Set<string>();
    for (const [sk, id] of await stateOfGroup(tx, groupId)) {
      const [type, userId] = splitStateKey(sk);
      if (type !== "m.room.member") continue;
      if (servers.has(serverOf(userId))) continue;
      if (membershipIn(await getEvent(tx, id)) === "join") servers.add(serverOf(userId));
    }
    const list = [...servers];
    if (this.groupServers.size >= 1000) this.groupServers.clear();
    this.groupServers.set(groupId, list);
    return list;
  }

  /** Queues `m.device_list_update` / `m.signing_key_update` for the next device-list rows. */
  private async scanDeviceLists(): Promise<boolean> {
    const self = this.hs.serverName;
    const plan = await this.hs.store.read(async (tx) => {
      const cursor = await tx.get<number>("settings", DEVICE_CURSOR);
      if (cursor === undefined) return { initial: await streamPosIn(tx) };
      // key device_list_stream = pos(streamPos) → DeviceListChange
      const rows = await tx.range<DeviceListChange>("device_list_stream", { gt: pos(cursor), limit: SCAN_BATCH });
      if (rows.length === 0) return undefined;
      const items: DeviceAnnouncement[] = [];
      for (const row of rows) {
        const change = row.value;
        // Signatures only one observer may see (visibleTo) stay local; so do remote users' rows.
        if (change.visibleTo !== undefined || serverOf(change.userId) !== self) continue;
        const destinations = [...(await serversSharingRoomsWith(tx, change.userId, self))].filter((d) => this.client.mayContact(d));
        if (destinations.length === 0) continue;
        const streamId = unpos(row.key);
        if (change.deviceIds === undefined && !change.signing) {
          items.push(await deviceAnnouncement(tx, change.userId, destinations, streamId, true));
          continue;
        }
        const deviceEdus: Edu[] = [];
        for (const deviceId of (change.deviceIds ?? []).slice(0, MAX_DEVICES_ANNOUNCED)) deviceEdus.push(await deviceUpdate(tx, change.userId, deviceId, streamId));
        const signingEdu = change.signing ? await signingKeyUpdate(tx, change.userId) : undefined;
        items.push({ destinations, userId: change.userId, streamId, deviceEdus, ...(signingEdu ? { signingEdu } : {}) });
      }
      return { cursor, upTo: unpos(rows[rows.length - 1]!.key), items, more: rows.length === SCAN_BATCH };
    }, { tables: SCAN_TABLES });
    if (!plan) return false;
    if ("initial" in plan) {
      await this.hs.store.write(async (tx) => {
        if ((await tx.get<number>("settings", DEVICE_CURSOR)) === undefined) tx.put("settings", DEVICE_CURSOR, plan.initial);
      }, { tables: ["settings"] });
      return true;
    }
    const written = await this.hs.store.write(async (tx) => {
      if ((await tx.get<number>("settings", DEVICE_CURSOR)) !== plan.cursor) return false;
      for (const it of plan.items) await queueDeviceAnnouncement(tx, it);
      tx.put("settings", DEVICE_CURSOR, plan.upTo);
      return true;
    }, { tables: ["settings", "federation_queue"] });
    if (!written) return false;
    for (const d of new Set(plan.items.flatMap((i) => i.destinations))) this.wake(d);
    return plan.more;
  }
}

/** A stored event as it is sent: the signed PDU without our local `unsigned` data. */
export function federationPdu(e: StoredEvent): Pdu {
  const { unsigned: _unsigned, ...pdu } = e.pdu;
  return pdu as Pdu;
}

/** Destinations with queued rows (one range step per destination). */
async function queuedDestinations(tx: ReadTx): Promise<string[]> {
  const out: string[] = [];
  let from: string | undefined;
  for (;;) {
    const [row] = await tx.range("federation_queue", { ...(from !== undefined ? { gte: from } : {}), limit: 1 });
    if (!row) return out;
    const dest = row.key.slice(0, row.key.indexOf("\u001f"));
    out.push(dest);
    // Every key of this destination starts with dest + SEP, which sorts below dest + SEP_END.
    from = dest + SEP_END;
  }
}

/** Destinations with a transaction in flight or rows queued. */
async function pendingDestinations(tx: ReadTx): Promise<Set<string>> {
  const out = new Set(await queuedDestinations(tx));
  for (const row of await tx.range("federation_inflight")) out.add(row.key);
  return out;
}

/** Device-list EDUs of one local user for some servers (their IDs and `prev_id` are set when queued). */
interface DeviceAnnouncement {
  destinations: string[];
  userId: string;
  streamId: number;
  deviceEdus: Edu[];
  signingEdu?: Edu;
}

/** Every device of `userId` as it is now (and, with `signing`, their cross-signing keys), for `destinations`. */
async function deviceAnnouncement(tx: ReadTx, userId: string, destinations: string[], streamId: number, signing: boolean): Promise<DeviceAnnouncement> {
  const deviceEdus: Edu[] = [];
  for (const deviceId of (await deviceIdsOf(tx, userId)).slice(0, MAX_DEVICES_ANNOUNCED)) deviceEdus.push(await deviceUpdate(tx, userId, deviceId, streamId));
  const signingEdu = signing ? await signingKeyUpdate(tx, userId) : undefined;
  return { destinations, userId, streamId, deviceEdus, ...(signingEdu ? { signingEdu } : {}) };
}

/**
 * Queues an announcement. A user's updates form one chain across all servers: each names the one
 * sent before it (`prev_id`) and has a larger `stream_id`; a server that missed some (it shared no
 * room with the user meanwhile) does not know the `prev_id` and fetches the whole list again, as
 * the spec asks of it.
 */
async function queueDeviceAnnouncement(tx: WriteTx, it: DeviceAnnouncement): Promise<void> {
  if (it.destinations.length === 0) return;
  for (const edu of it.deviceEdus) {
    const prev = await tx.get<number>("settings", deviceLastKey(it.userId));
    edu.content.prev_id = prev !== undefined ? [prev] : [];
    edu.content.stream_id = prev !== undefined && prev >= it.streamId ? prev + 1 : it.streamId;
    tx.put("settings", deviceLastKey(it.userId), edu.content.stream_id);
    await queueEdu(tx, it.destinations, edu);
  }
  if (it.signingEdu) await queueEdu(tx, it.destinations, it.signingEdu);
}

async function deviceIdsOf(tx: ReadTx, userId: string): Promise<string[]> {
  const p = prefix(userId);
  return (await tx.range("devices", { prefix: p })).map((r) => r.key.slice(p.length));
}

/** `m.device_list_update` for one device as it is now (deleted when it no longer exists); IDs filled in later. */
async function deviceUpdate(tx: ReadTx, userId: string, deviceId: string, streamId: number): Promise<Edu> {
  const device = await tx.get<DeviceRecord>("devices", key(userId, deviceId));
  const content: Record<string, unknown> = { user_id: userId, device_id: deviceId, stream_id: streamId, prev_id: [] };
  if (!device) content.deleted = true;
  else {
    if (device.displayName !== undefined) content.device_display_name = device.displayName;
    const keys = await tx.get<Record<string, unknown>>("device_keys", key(userId, deviceId));
    if (keys) content.keys = keys;
  }
  return { edu_type: "m.device_list_update", content };
}

/** `m.signing_key_update` with the user's current master and self-signing keys (none: nothing to say). */
async function signingKeyUpdate(tx: ReadTx, userId: string): Promise<Edu | undefined> {
  const master = await tx.get<Record<string, unknown>>("cross_signing_keys", key(userId, "master"));
  const selfSigning = await tx.get<Record<string, unknown>>("cross_signing_keys", key(userId, "self_signing"));
  if (!master && !selfSigning) return undefined;
  return { edu_type: "m.signing_key_update", content: { user_id: userId, ...(master ? { master_key: master } : {}), ...(selfSigning ? { self_signing_key: selfSigning } : {}) } };
}
