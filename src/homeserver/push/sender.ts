/**
 * The push sender ("Push Notifications" server behaviour, Push Gateway API): after events are
 * stored it evaluates each local user's push rules, queues a notification for every `http` pusher
 * of a user the rules say to notify, and POSTs it to the pusher's gateway (`data.url`, which
 * `POST /pushers/set` checked ends in `/_matrix/push/v1/notify`).
 *
 * Nothing is lost across a restart: the stream position up to which events were evaluated and the
 * queue itself are stored, and `start()` resumes both. A failing gateway is retried with
 * exponential backoff (1 s doubling to 1 h, as Synapse); a notification still failing a day after
 * it was queued is dropped. Pushkeys the gateway reports `rejected` lose their pusher.
 *
 * Outbound HTTP goes through the injected `fetch`, never inside a store transaction.
 *
 * key push_queue = userId|appId|pushkey|pos(streamPos) → QueuedPush
 * key settings|push_stream_pos → number (last stream position evaluated)
 */
import type { ReadTx, Store } from "../../storage/store.ts";
import { SEP, key, pos as posKey, prefix, unpos } from "../../storage/store.ts";
import type { Logger } from "../context.ts";
import { streamPosIn } from "../context.ts";
import type { StoredEvent } from "../events/types.ts";
import { currentState, getEvent, getRoom, joinedSince, membershipIn, pdusOf, rulesOf } from "../roomserver/state.ts";
import type { MembershipRecord } from "../roomserver/state.ts";
import { userPowerLevel } from "../rooms/powerLevels.ts";
import { evaluatePushRules, loadPushRules, roomPushContext, toPushEvent } from "../services/pushRules.ts";
import type { PushContext, RuleSet } from "../services/pushRules.ts";
import type { PusherRow } from "../services/pushers.ts";
import { deletePusherTx } from "../services/pushers.ts";
import type { ReceiptRow } from "../services/edus.ts";
import { logLine } from "../log.ts";
import { isTimelineEvent } from "../events/types.ts";

/** A notification waiting for its gateway. */
export interface QueuedPush {
  eventId: string;
  roomId: string;
  /** The actions of the push rule that matched (for the tweaks). */
  actions: unknown[];
  /** When it was queued (ms), for giving up on a gateway that keeps failing. */
  queuedAt: number;
}

/** What the sender is built from. */
export interface PushSenderOptions {
  store: Store;
  logger: Logger;
  clock: () => number;
  /** Outbound HTTP (the runner passes the platform's `fetch`). */
  fetch: typeof fetch;
  /** Backoff after the first failure, ms (default 1 s). */
  initialBackoffMs?: number;
  /** Longest backoff, ms (default 1 h). */
  maxBackoffMs?: number;
  /** A notification failing this long after it was queued is dropped, ms (default 24 h). */
  giveUpAfterMs?: number;
  /** How long one gateway request may take, ms (default 20 s). */
  requestTimeoutMs?: number;
}

const CURSOR = "push_stream_pos";
/** Stream rows evaluated per transaction. */
const BATCH = 100;
/** Newest events looked at per room when counting unread notifications. */
const MAX_UNREAD_SCAN = 1000;

/** Evaluates push rules for stored events and delivers notifications to push gateways. */
export class PushSender {
  private readonly store: Store;
  private readonly logger: Logger;
  private readonly clock: () => number;
  private readonly fetchFn: typeof fetch;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly giveUpAfterMs: number;
  private readonly requestTimeoutMs: number;

  private closed = false;
  /** The running evaluation pass, and whether another was asked for meanwhile. */
  private evaluating: Promise<void> | undefined;
  private evaluateAgain = false;
  /** Per pusher key (userId|appId|pushkey): the running delivery loop. */
  private readonly delivering = new Map<string, Promise<void>>();
  /** Per pusher key: the current backoff and its retry timer. */
  private readonly backoff = new Map<string, { delayMs: number; timer?: ReturnType<typeof setTimeout> }>();
  private readonly aborter = new AbortController();

  constructor(options: PushSenderOptions) {
    this.store = options.store;
    this.logger = options.logger;
    this.clock = options.clock;
    this.fetchFn = options.fetch;
    this.initialBackoffMs = options.initialBackoffMs ?? 1000;
    this.maxBackoffMs = options.maxBackoffMs ?? 60 * 60_000;
    this.giveUpAfterMs = options.giveUpAfterMs ?? 24 * 60 * 60_000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 20_000;
  }

  /** Resumes after a (re)start: evaluates events stored since the last pass and delivers what is queued. */
  start(): void {
    this.onEventStored();
    this.track(
      this.store.read((tx) => tx.range<QueuedPush>("push_queue")).then((rows) => {
        for (const k of new Set(rows.map((r) => pusherKeyOf(r.key)))) this.deliver(k);
      }),
      "resuming queued pushes",
    );
  }

  /** The post-commit hook: events were stored up to some stream position; evaluate them. */
  onEventStored(): void {
    if (this.closed) return;
    if (this.evaluating) {
      this.evaluateAgain = true;
      return;
    }
    const run = async (): Promise<void> => {
      do {
        this.evaluateAgain = false;
        while (!this.closed && (await this.evaluateBatch())) {
          // more stream rows may follow
        }
      } while (this.evaluateAgain && !this.closed);
    };
    this.evaluating = run()
      .catch((err: unknown) => this.logger.error(logLine("push_evaluation_failed", { error: String(err) })))
      .finally(() => (this.evaluating = undefined));
  }

  /** How many notifications are waiting for a gateway (metrics). */
  queueDepth(): Promise<number> {
    return this.store.read((tx) => tx.count("push_queue"));
  }

  /** Stops timers and waits for running work; queued notifications stay queued for the next start. */
  async close(): Promise<void> {
    this.closed = true;
    for (const b of this.backoff.values()) clearTimeout(b.timer);
    this.aborter.abort();
    await this.evaluating;
    await Promise.all([...this.delivering.values()]);
  }

  private track(p: Promise<void>, what: string): void {
    p.catch((err: unknown) => this.logger.error(logLine("push_failed", { during: what, error: String(err) })));
  }

  // --- evaluation ---

  /** Evaluates the next batch of stream rows; false when there was nothing new. */
  private async evaluateBatch(): Promise<boolean> {
    const plan = await this.store.read(async (tx) => {
      const cursor = await tx.get<number>("settings", CURSOR);
      // First start: begin at the present, not with the whole history.
      if (cursor === undefined) return { initial: await streamPosIn(tx) };
      const rows = await tx.range<{ roomId: string; eventId: string }>("stream", { gt: posKey(cursor), limit: BATCH });
      if (rows.length === 0) return undefined;
      const queued = await this.notificationsFor(tx, rows.map((r) => r.value.eventId));
      return { cursor, upTo: unpos(rows[rows.length - 1]!.key), queued };
    });
    if (!plan) return false;
    if ("initial" in plan) {
      await this.store.write(async (tx) => {
        if ((await tx.get<number>("settings", CURSOR)) === undefined) tx.put("settings", CURSOR, plan.initial);
      });
      return true;
    }
    const now = this.clock();
    const written = await this.store.write(async (tx) => {
      // Only this loop moves the cursor; a mismatch means another instance shares the store.
      if ((await tx.get<number>("settings", CURSOR)) !== plan.cursor) return false;
      for (const q of plan.queued) {
        // A pusher deleted meanwhile gets nothing.
        if (!(await tx.get("pushers", q.pusherKey))) continue;
        tx.put("push_queue", key(q.pusherKey, posKey(q.streamPos)), { eventId: q.eventId, roomId: q.roomId, actions: q.actions, queuedAt: now } satisfies QueuedPush);
      }
      tx.put("settings", CURSOR, plan.upTo);
      return true;
    });
    if (!written) return false;
    for (const k of new Set(plan.queued.map((q) => q.pusherKey))) this.deliver(k);
    return true;
  }

  /**
   * Who must be notified of these events: for each local user with an `http` pusher who was joined
   * when the event was sent (or is its invitee), the push rules decide ("Server behaviour": push
   * rules are processed for each local user in the room, excluding the sender).
   */
  private async notificationsFor(tx: ReadTx, eventIds: string[]): Promise<{ pusherKey: string; streamPos: number; eventId: string; roomId: string; actions: unknown[] }[]> {
    const byUser = new Map<string, PusherRow[]>();
    for (const r of await tx.range<PusherRow>("pushers")) {
      if (r.value.kind !== "http") continue;
      const userId = r.key.slice(0, r.key.indexOf(SEP));
      byUser.set(userId, [...(byUser.get(userId) ?? []), r.value]);
    }
    const out: { pusherKey: string; streamPos: number; eventId: string; roomId: string; actions: unknown[] }[] = [];
    if (byUser.size === 0) return out;
    const rules = new Map<string, RuleSet>();
    const ignored = new Map<string, Set<string>>();
    const rooms = new Map<string, { state: Map<string, StoredEvent>; power: (u: string) => number }>();
    for (const eventId of eventIds) {
      const e = await getEvent(tx, eventId);
      if (!e || !isTimelineEvent(e) || e.streamPos === undefined) continue;
      const invitee = e.pdu.type === "m.room.member" && e.pdu.content.membership === "invite" ? e.pdu.state_key : undefined;
      for (const [userId, pushers] of byUser) {
        if (userId === e.pdu.sender) continue;
        if (userId !== invitee) {
          // key memberships = userId|roomId
          const m = await tx.get<MembershipRecord>("memberships", key(userId, e.roomId));
          if (!m || (await membershipAt(tx, userId, m, e.streamPos)) !== "join") continue;
        }
        let ign = ignored.get(userId);
        if (!ign) ignored.set(userId, (ign = await ignoredUsers(tx, userId)));
        if (ign.has(e.pdu.sender)) continue;
        let room = rooms.get(e.roomId);
        if (!room) {
          const state = await currentState(tx, e.roomId);
          const record = await getRoom(tx, e.roomId);
          const version = record ? rulesOf(record) : undefined;
          const pdus = pdusOf(state);
          rooms.set(e.roomId, (room = { state, power: (u) => (version ? userPowerLevel(u, pdus, version) : 0) }));
        }
        let userRules = rules.get(userId);
        if (!userRules) rules.set(userId, (userRules = await loadPushRules(tx, userId)));
        const ctx: PushContext = { ...roomPushContext(room.state, userId), senderPowerLevel: room.power(e.pdu.sender) };
        const outcome = evaluatePushRules(userRules, toPushEvent(e), ctx);
        if (!outcome?.notify) continue;
        for (const p of pushers) {
          out.push({ pusherKey: key(userId, p.app_id, p.pushkey), streamPos: e.streamPos, eventId: e.eventId, roomId: e.roomId, actions: outcome.actions });
        }
      }
    }
    return out;
  }

  // --- delivery ---

  /** Starts the delivery loop of one pusher unless it is running or backing off. */
  private deliver(pusherKey: string): void {
    if (this.closed || this.delivering.has(pusherKey) || this.backoff.get(pusherKey)?.timer !== undefined) return;
    const run = this.deliveryLoop(pusherKey)
      .catch((err: unknown) => {
        this.logger.error(logLine("push_failed", { user: pusherKey.split(SEP)[0], error: String(err) }));
        this.scheduleRetry(pusherKey);
      })
      .finally(() => this.delivering.delete(pusherKey));
    this.delivering.set(pusherKey, run);
  }

  /** Sends the pusher's queued notifications in order until the queue is empty or a send fails. */
  private async deliveryLoop(pusherKey: string): Promise<void> {
    while (!this.closed) {
      const next = await this.store.read(async (tx) => {
        const pusher = await tx.get<PusherRow>("pushers", pusherKey);
        const [row] = await tx.range<QueuedPush>("push_queue", { prefix: pusherKey + SEP, limit: 1 });
        if (!row || !pusher) return { row, pusher, body: undefined };
        const userId = pusherKey.slice(0, pusherKey.indexOf(SEP));
        return { row, pusher, body: await notificationBody(tx, userId, pusher, row.value) };
      });
      if (!next.row) return;
      if (!next.pusher) {
        // The pusher went away with notifications still queued.
        await this.store.write(async (tx) => tx.deleteRange("push_queue", { prefix: pusherKey + SEP }));
        return;
      }
      const { row, pusher, body } = next;
      const userId = pusherKey.slice(0, pusherKey.indexOf(SEP));
      if (body === undefined) {
        // The event is gone (it cannot be, short of database surgery): nothing to send.
        await this.store.write(async (tx) => tx.delete("push_queue", row.key));
        continue;
      }
      const result = await this.post(String(pusher.data.url), body);
      if (result.ok) {
        this.backoff.delete(pusherKey);
        const rejected = result.rejected.filter((k) => typeof k === "string");
        await this.store.write(async (tx) => {
          tx.delete("push_queue", row.key);
          // "Homeservers must cease sending notification requests for these pushkeys and remove
          // the associated pushers."
          for (const pk of rejected) deletePusherTx(tx, userId, pusher.app_id, pk);
        });
        this.logger.info(logLine("push_sent", { user: userId, app_id: pusher.app_id, event_id: row.value.eventId, status: result.status }));
        if (rejected.length) this.logger.info(logLine("pusher_removed", { user: userId, app_id: pusher.app_id, reason: "rejected by gateway" }));
        continue;
      }
      if (this.closed) return;
      this.logger.warn(logLine("push_failed", { user: userId, app_id: pusher.app_id, event_id: row.value.eventId, ...(result.status ? { status: result.status } : { error: result.error }) }));
      if (this.clock() - row.value.queuedAt > this.giveUpAfterMs) {
        this.logger.warn(logLine("push_dropped", { user: userId, app_id: pusher.app_id, event_id: row.value.eventId, reason: "gateway failing for too long" }));
        await this.store.write(async (tx) => tx.delete("push_queue", row.key));
        continue;
      }
      this.scheduleRetry(pusherKey);
      return;
    }
  }

  /** Waits the pusher's backoff (doubling each time), then tries again. */
  private scheduleRetry(pusherKey: string): void {
    if (this.closed) return;
    const b = this.backoff.get(pusherKey);
    const delayMs = b ? Math.min(b.delayMs * 2, this.maxBackoffMs) : this.initialBackoffMs;
    const timer = setTimeout(() => {
      const current = this.backoff.get(pusherKey);
      if (current) delete current.timer;
      this.deliver(pusherKey);
    }, delayMs);
    this.backoff.set(pusherKey, { delayMs, timer });
  }

  /** One gateway request. Never throws: a network error is a failed attempt like a 5xx. */
  private async post(url: string, body: Record<string, unknown>): Promise<{ ok: true; status: number; rejected: unknown[] } | { ok: false; status?: number; error?: string }> {
    const signal = AbortSignal.any([this.aborter.signal, AbortSignal.timeout(this.requestTimeoutMs)]);
    try {
      const res = await this.fetchFn(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal });
      const text = await res.text();
      if (!res.ok) return { ok: false, status: res.status };
      let parsed: unknown;
      try {
        parsed = text ? JSON.parse(text) : {};
      } catch {
        parsed = {};
      }
      const rejected = parsed !== null && typeof parsed === "object" && Array.isArray((parsed as Record<string, unknown>).rejected) ? ((parsed as Record<string, unknown>).rejected as unknown[]) : [];
      return { ok: true, status: res.status, rejected };
    } catch (err) {
      return { ok: false, error: err instanceof Error ? err.name : String(err) };
    }
  }
}

/** The pusher key of a `push_queue` row key (everything before the position). */
function pusherKeyOf(rowKey: string): string {
  return rowKey.slice(0, rowKey.lastIndexOf(SEP));
}

/**
 * A user's membership just before stream position `at`, from their current membership record and
 * the chain of membership events it replaces (a later join, leave or name change does not count).
 */
async function membershipAt(tx: ReadTx, userId: string, rec: MembershipRecord, at: number): Promise<string | undefined> {
  if (rec.streamPos < at) return rec.membership;
  let id: unknown = rec.eventId;
  for (let hops = 0; typeof id === "string" && hops < 100; hops++) {
    const e = await getEvent(tx, id);
    if (!e || e.pdu.state_key !== userId) return undefined;
    if ((e.streamPos ?? 0) < at) return membershipIn(e);
    id = e.pdu.unsigned?.replaces_state;
  }
  return undefined;
}

/** The users on a user's ignore list ("Ignoring Users"): their events do not notify. */
async function ignoredUsers(tx: ReadTx, userId: string): Promise<Set<string>> {
  const row = await tx.get<{ content?: { ignored_users?: unknown } }>("account_data", key(userId, "", "m.ignored_user_list"));
  const list = row?.content?.ignored_users;
  return new Set(list && typeof list === "object" && !Array.isArray(list) ? Object.keys(list) : []);
}

/**
 * The `/notify` request body for one queued notification (Push Gateway API `notification`): the
 * event's fields unless the pusher's `data.format` is `event_id_only`, the user's unread count, and
 * the one device with its tweaks. Undefined when the event no longer exists.
 */
export async function notificationBody(tx: ReadTx, userId: string, pusher: PusherRow, q: QueuedPush): Promise<Record<string, unknown> | undefined> {
  const e = await getEvent(tx, q.eventId);
  if (!e) return undefined;
  const tweaks: Record<string, unknown> = {};
  for (const a of q.actions) {
    if (a === null || typeof a !== "object") continue;
    const t = a as Record<string, unknown>;
    // "highlight": a set_tweak without a value means true.
    if (typeof t.set_tweak === "string") tweaks[t.set_tweak] = t.set_tweak === "highlight" && t.value === undefined ? true : t.value;
  }
  const { url: _url, ...data } = pusher.data;
  const device: Record<string, unknown> = {
    app_id: pusher.app_id,
    pushkey: pusher.pushkey,
    data,
    tweaks,
    ...(pusher.pushkeyTs !== undefined ? { pushkey_ts: Math.floor(pusher.pushkeyTs / 1000) } : {}),
  };
  const unread = await unreadCount(tx, userId);
  // Counts whose value is zero should be omitted.
  const counts = unread > 0 ? { unread } : {};
  // Synapse's rule: encrypted events and those that sound or highlight are urgent.
  const prio = e.pdu.type === "m.room.encrypted" || tweaks.sound !== undefined || tweaks.highlight === true ? "high" : "low";
  const notification: Record<string, unknown> = { event_id: e.eventId, room_id: e.roomId, counts, devices: [device], prio };
  if (pusher.data.format !== "event_id_only") {
    const room = async (type: string): Promise<Record<string, unknown> | undefined> => {
      const id = await tx.get<string>("room_state", key(e.roomId, type, ""));
      return id ? (await getEvent(tx, id))?.pdu.content : undefined;
    };
    const senderId = await tx.get<string>("room_state", key(e.roomId, "m.room.member", e.pdu.sender));
    const senderName = senderId ? (await getEvent(tx, senderId))?.pdu.content.displayname : undefined;
    const roomName = (await room("m.room.name"))?.name;
    const alias = (await room("m.room.canonical_alias"))?.alias;
    Object.assign(notification, {
      type: e.pdu.type,
      sender: e.pdu.sender,
      ...(typeof senderName === "string" ? { sender_display_name: senderName } : {}),
      ...(typeof roomName === "string" && roomName !== "" ? { room_name: roomName } : {}),
      ...(typeof alias === "string" ? { room_alias: alias } : {}),
      ...(e.pdu.type === "m.room.member" ? { user_is_target: e.pdu.state_key === userId } : {}),
      ...(e.redactedBy ? {} : { content: e.pdu.content }),
    });
  }
  return { notification };
}

/**
 * "The number of unread messages a user has across all of the rooms they are a member of": in
 * each joined room, the events after the user's read receipt (or join) that the push rules say
 * notify, as `/sync`'s `unread_notifications` counts them.
 */
export async function unreadCount(tx: ReadTx, userId: string): Promise<number> {
  const rules = await loadPushRules(tx, userId);
  const ignored = await ignoredUsers(tx, userId);
  let total = 0;
  for (const m of await tx.range<MembershipRecord>("memberships", { prefix: prefix(userId) })) {
    if (m.value.membership !== "join") continue;
    const roomId = m.key.slice(prefix(userId).length);
    let readPos = await joinedSince(tx, userId, m.value);
    // key receipts = roomId|receiptType|userId|threadId
    for (const r of await tx.range<ReceiptRow>("receipts", { prefix: prefix(roomId) })) {
      const [, type, uid] = r.key.split(SEP);
      if (uid !== userId || (type !== "m.read" && type !== "m.read.private")) continue;
      const re = await getEvent(tx, r.value.eventId);
      readPos = Math.max(readPos, re?.streamPos ?? 0);
    }
    const rows = await tx.range<string>("timeline", { prefix: prefix(roomId), gt: key(roomId, posKey(readPos)), reverse: true, limit: MAX_UNREAD_SCAN });
    if (rows.length === 0) continue;
    const state = await currentState(tx, roomId);
    const record = await getRoom(tx, roomId);
    if (!record) continue;
    const version = rulesOf(record);
    const pdus = pdusOf(state);
    const roomCtx = roomPushContext(state, userId);
    for (const row of rows) {
      const e = await getEvent(tx, row.value);
      if (!e || !isTimelineEvent(e) || e.redactedBy || e.pdu.sender === userId || ignored.has(e.pdu.sender)) continue;
      const outcome = evaluatePushRules(rules, toPushEvent(e), { ...roomCtx, senderPowerLevel: userPowerLevel(e.pdu.sender, pdus, version) });
      if (outcome?.notify) total++;
    }
  }
  return total;
}

