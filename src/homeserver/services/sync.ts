/**
 * `/sync` ("Syncing" in the Client-Server API, `sync.yaml`): everything that changed for one device
 * since a token, read in one transaction; a long-poll that returns as soon as the stream moves.
 *
 * Tokens (grammar in roomserver/tokens.ts) are `s<pos>_<typing>`: `pos` is the global stream position (context.ts) the response is
 * complete up to; `typing` the in-memory typing serial (ephemeral/typing.ts). A token names the
 * point *after* stream position `pos`, so `prev_batch` is `s<first timeline pos - 1>` and
 * `/messages?dir=b&from=s<n>` starts with the event at position n.
 */
import type { Requester, Services } from "../context.ts";
import { streamPosIn } from "../context.ts";
import { MatrixError } from "../errors.ts";
import { SEP, key, pos as posKey, prefix } from "../../storage/store.ts";
import type { ReadTx, Row } from "../../storage/store.ts";
import type { StoredEvent } from "../events/types.ts";
import { splitStateKey, stateKeyOf, isTimelineEvent } from "../events/types.ts";
import { currentState, pdusOf, getEvent, membershipIn, membershipOf, membersWith, joinedSince, joinedInHistory, stateChangesIn, stateAtPos as roomStateAtPos } from "../roomserver/state.ts";
import { isWorldReadable } from "../roomserver/access.ts";
import type { MembershipRecord } from "../roomserver/state.ts";
import { canSeeEvent } from "../roomserver/visibility.ts";
import { EventServer } from "../roomserver/serve.ts";
import { syncToken } from "../roomserver/tokens.ts";
import type { StreamToken } from "../roomserver/tokens.ts";
import { userPowerLevel } from "../rooms/powerLevels.ts";
import { roomVersion, DEFAULT_ROOM_VERSION } from "../rooms/versions.ts";
import type { RoomVersionRules } from "../rooms/versions.ts";
import { typingState } from "../ephemeral/typing.ts";
import { e2eeSyncSection, ackToDevice } from "./e2ee.ts";
import { eventPasses, formatForFilter, roomAllowed, applyEventFields } from "./filters.ts";
import type { Filter, RoomEventFilter } from "./filters.ts";
import { evaluatePushRules, mergeRules, roomPushContext, toPushEvent } from "./pushRules.ts";
import type { RuleSet, StoredPushRules } from "./pushRules.ts";
import type { AccountDataRow } from "./accountData.ts";
import type { ReceiptRow, PresenceRow } from "./edus.ts";
import { presenceContent, touchPresence } from "./edus.ts";

const DEFAULT_TIMELINE_LIMIT = 10;
const MAX_TIMELINE_LIMIT = 500;
/** How many timeline rows one room's scan may read before it calls the timeline limited. */
const MAX_SCAN = 1000;
/** How many events after the read receipt are evaluated for unread counts. */
const MAX_UNREAD_SCAN = 500;
const MAX_TIMEOUT_MS = 5 * 60_000;
/** "Stripped state" the invitee and knocker see (server behaviour of invites/knocks). */
const STRIPPED_TYPES = ["m.room.create", "m.room.name", "m.room.avatar", "m.room.topic", "m.room.join_rules", "m.room.canonical_alias", "m.room.encryption"];

/** What a `/sync` request asks for, parsed (client/sync.ts). */
export interface SyncParams {
  filter: Filter;
  /** The `filter` query parameter as sent: lazy-loading remembers what was sent per filter. */
  filterParam: string | undefined;
  since: StreamToken | undefined;
  fullState: boolean;
  timeoutMs: number;
  /** Where `state_after` goes (`use_state_after`, or its unstable MSC4222 name), if asked for. */
  stateAfterKey: string | undefined;
  setPresence: string;
}

/**
 * One `/sync` response for a device: built in one read transaction; an incremental sync with
 * nothing new waits (up to `timeoutMs`, or until `signal` aborts) for the stream to move.
 */
export async function sync(hs: Services, me: Requester, params: SyncParams, signal: AbortSignal): Promise<Record<string, unknown>> {
  const { filter, since, fullState, stateAfterKey } = params;
  await touchPresence(hs, me.userId, params.setPresence);
  // Messages delivered by the response that carried `since` are now acknowledged (send_to_device).
  if (since) await ackToDevice(hs, me.userId, me.deviceId, since.pos);

  // The long-poll deadline is real time (the wait is a real timer), not the injected clock.
  const deadline = performance.now() + Math.min(params.timeoutMs, MAX_TIMEOUT_MS);
  const typing = typingState(hs);
  const lazyKey = key(me.userId, me.deviceId, params.filterParam ?? "");
  for (;;) {
    const typingSerial = typing.serial;
    const result = await hs.store.read((tx) => buildSync(hs, tx, me, filter, since, fullState, typingSerial, stateAfterKey, lazyKey));
    storeUnreadCounts(hs, result.unreadToStore);
    const remaining = deadline - performance.now();
    if (!since || fullState || !result.empty || remaining <= 0 || signal.aborted) return result.body;
    // A typing change during the build: build again rather than sleep past it.
    if (typing.serial !== typingSerial) continue;
    await hs.notifier.wait(result.upTo, remaining, signal, { userId: me.userId, rooms: result.rooms });
    if (signal.aborted || hs.notifier.closed) return result.body;
  }
}

interface BuildResult {
  body: Record<string, unknown>;
  upTo: number;
  empty: boolean;
  /** The rooms whose events are news to the user (joined, invited, knocking): what wakes its long-poll. */
  rooms: Set<string>;
  /** Unread counts computed for this response, to store once it is built. */
  unreadToStore: Map<string, UnreadCounts>;
}

/** Per-response context shared by the room builders. */
interface SyncRun {
  hs: Services;
  tx: ReadTx;
  me: Requester;
  filter: Filter;
  since: StreamToken | undefined;
  fullState: boolean;
  upTo: number;
  typingSerial: number;
  now: number;
  server: EventServer;
  /** Where `state_after` goes, when the client asked for it instead of `state`. */
  stateAfterKey: string | undefined;
  /** Users on the `m.ignored_user_list` ("Ignoring Users"). */
  ignored: Set<string>;
  /** The user's global account data, read once per response (ignore list, push rules, `account_data`). */
  globalData: GlobalDataRow[];
  /** The user's push rules, merged from `globalData` when first needed. */
  rules?: RuleSet;
  /**
   * The lazy-loaded member events this device has been sent under this filter, when redundant
   * ones are to be left out (`lazy_load_members` without `include_redundant_members`).
   */
  sentMembers: Map<string, SentMember> | undefined;
  /** Users who came to share a room with the user since the token: their presence is news. */
  newlyShared: Set<string>;
  /** Unread counts to store once the response is built (key = userId|roomId). */
  unreadToStore: Map<string, UnreadCounts>;
}

/** A global account data row; the `m.push_rules` row also holds the stored rules (pushRules.ts). */
type GlobalDataRow = Row<AccountDataRow & { rules?: StoredPushRules }>;

/** The user's global account data rows (key = userId||type). */
function readGlobalData(tx: ReadTx, userId: string): Promise<GlobalDataRow[]> {
  return tx.range<GlobalDataRow["value"]>("account_data", { prefix: prefix(userId, "") });
}

/** One row's value among the user's global account data, by type. */
function globalDataOf(rows: GlobalDataRow[], userId: string, type: string): GlobalDataRow["value"] | undefined {
  const k = key(userId, "", type);
  return rows.find((r) => r.key === k)?.value;
}

/** The user's full push rule set (the stored rules merged over the predefined ones). */
function pushRulesOf(run: SyncRun): RuleSet {
  return (run.rules ??= mergeRules(run.me.userId, globalDataOf(run.globalData, run.me.userId, "m.push_rules")?.rules));
}

async function buildSync(hs: Services, tx: ReadTx, me: Requester, filter: Filter, since: StreamToken | undefined, fullState: boolean, typingSerial: number, stateAfterKey: string | undefined, lazyKey: string): Promise<BuildResult> {
  const upTo = await streamPosIn(tx);
  const now = hs.clock();
  const globalData = await readGlobalData(tx, me.userId);
  const ignoredList = globalDataOf(globalData, me.userId, "m.ignored_user_list")?.content.ignored_users;
  const ignored = new Set(ignoredList !== null && typeof ignoredList === "object" ? Object.keys(ignoredList) : []);
  const stateFilter = filter.room?.state;
  const dedupe = stateFilter?.lazy_load_members === true && stateFilter.include_redundant_members !== true;
  const run: SyncRun = {
    hs, tx, me, filter, since, fullState, upTo, typingSerial, now, stateAfterKey, ignored, globalData,
    server: new EventServer(tx, { userId: me.userId, deviceId: me.deviceId }, now),
    // A sync without a token starts a new sequence: the client may have forgotten everything.
    sentMembers: dedupe ? sentMembersOf(hs, lazyKey, since === undefined) : undefined,
    newlyShared: new Set(),
    unreadToStore: new Map(),
  };
  const sincePos = since?.pos ?? 0;

  const join: Record<string, unknown> = {};
  const invite: Record<string, unknown> = {};
  const leave: Record<string, unknown> = {};
  const knock: Record<string, unknown> = {};
  const includeLeave = filter.room?.include_leave === true;
  const memberships = await tx.range<MembershipRecord>("memberships", { prefix: prefix(me.userId) });
  const joinedRooms: string[] = [];
  const rooms = new Set<string>();
  for (const { key: k, value: rec } of memberships) {
    const roomId = k.slice(prefix(me.userId).length);
    if (rec.membership === "join") joinedRooms.push(roomId);
    if (rec.membership === "join" || rec.membership === "invite" || rec.membership === "knock") rooms.add(roomId);
    if (!roomAllowed(filter, roomId)) continue;
    // A membership newer than the token is news for the room as a whole (e.g. a join: send it all).
    const changed = !since || rec.streamPos > sincePos;
    switch (rec.membership) {
      case "join": {
        const room = await joinedRoom(run, roomId, rec);
        if (room) join[roomId] = room;
        break;
      }
      case "invite":
        // "Servers must not send room invites from ignored users to clients."
        if (ignored.size > 0 && ignored.has((await getEvent(tx, rec.eventId))?.pdu.sender ?? "")) break;
        if (changed || fullState) invite[roomId] = { invite_state: { events: await strippedState(run, roomId, rec) } };
        break;
      case "knock":
        if (changed || fullState) knock[roomId] = { knock_state: { events: await strippedState(run, roomId, rec) } };
        break;
      case "leave":
      case "ban": {
        // Leaves are news once; an initial sync shows them only with `include_leave`.
        const show = since ? rec.streamPos > sincePos || (fullState && includeLeave) : includeLeave && !rec.forgotten;
        if (show) leave[roomId] = await leftRoom(run, roomId, rec);
        break;
      }
    }
  }

  const accountData = globalAccountData(run);
  const presence = await presenceEvents(run, joinedRooms);
  const e2ee = await e2eeSyncSection(tx, me.userId, me.deviceId, sincePos, upTo);

  const body: Record<string, unknown> = {
    next_batch: syncToken(upTo, typingSerial),
    rooms: { join, invite, leave, knock },
    presence: { events: presence },
    account_data: { events: accountData },
    to_device: e2ee.to_device,
    device_lists: e2ee.device_lists,
    device_one_time_keys_count: e2ee.device_one_time_keys_count,
    device_unused_fallback_key_types: e2ee.device_unused_fallback_key_types,
  };
  const empty =
    Object.keys(join).length + Object.keys(invite).length + Object.keys(leave).length + Object.keys(knock).length === 0 &&
    presence.length === 0 &&
    accountData.length === 0 &&
    e2ee.to_device.events.length === 0 &&
    e2ee.device_lists.changed.length === 0 &&
    e2ee.device_lists.left.length === 0;
  return { body, upTo, empty, rooms, unreadToStore: run.unreadToStore };
}

// --- rooms ---

function rulesFor(roomVersionId: string | undefined): RoomVersionRules {
  return roomVersion(roomVersionId ?? DEFAULT_ROOM_VERSION) ?? roomVersion(DEFAULT_ROOM_VERSION)!;
}

interface Timeline {
  events: StoredEvent[];
  limited: boolean;
  /** Whether (lower, upper] holds any timeline row at all, even one filtered out. */
  anyRow: boolean;
}

/**
 * The newest `limit` events of a room in (lower, upper] the user may see and the filter lets
 * through, oldest first. `visibleFrom`: events after this position need no visibility check (the
 * user has been joined since).
 */
async function timelineOf(run: SyncRun, roomId: string, lower: number, upper: number, f: RoomEventFilter | undefined, visibleFrom: number | undefined): Promise<Timeline> {
  const limit = Math.min(f?.limit ?? DEFAULT_TIMELINE_LIMIT, MAX_TIMELINE_LIMIT);
  const out: StoredEvent[] = [];
  let cursor = upper;
  let scanned = 0;
  let limited = false;
  while (out.length <= limit) {
    const rows: Row<string>[] = await run.tx.range<string>("timeline", {
      prefix: prefix(roomId),
      gt: key(roomId, posKey(lower)),
      lte: key(roomId, posKey(cursor)),
      reverse: true,
      limit: Math.min(limit + 1, 100),
    });
    if (rows.length === 0) break;
    // Read side by side (one round trip to IndexedDB for the page, not one per event).
    const page = await Promise.all(rows.map((row) => getEvent(run.tx, row.value)));
    for (const e of page) {
      scanned++;
      if (!e || !isTimelineEvent(e)) continue;
      if (!eventPasses(f, { type: e.pdu.type, sender: e.pdu.sender, content: e.pdu.content }, roomId)) continue;
      // Ignored users' events are not sent, except state events ("Ignoring Users").
      if (run.ignored.has(e.pdu.sender) && e.pdu.state_key === undefined) continue;
      const pos = e.streamPos ?? 0;
      if (visibleFrom === undefined || pos <= visibleFrom) {
        if (!(await canSeeEvent(run.tx, run.me.userId, e))) continue;
      }
      out.push(e);
      if (out.length > limit) break;
    }
    const last = rows[rows.length - 1]!;
    cursor = parseInt(last.key.slice(prefix(roomId).length), 16) - 1;
    if (cursor <= lower) break;
    if (scanned >= MAX_SCAN) {
      limited = true;
      break;
    }
  }
  if (out.length > limit) {
    limited = true;
    out.length = limit;
  }
  out.reverse();
  return { events: out, limited, anyRow: scanned > 0 };
}

/** The current state of a room as it was at a stream position (the room's state change log). */
async function stateAtPos(tx: ReadTx, roomId: string, pos: number): Promise<Map<string, string>> {
  if (pos <= 0) return new Map();
  return roomStateAtPos(tx, roomId, pos);
}

/**
 * The `state` section: the state at the start of the timeline (at `upper` when the timeline is
 * empty), minus what the client already has at `sincePos` (all of it when `sincePos` is
 * undefined), never an event of the timeline itself; a key whose change inside the timeline's
 * span the timeline filter hid comes with its value at `upper`. With `use_state_after` it is the
 * state at the *end* of the timeline instead, timeline state events included. Lazy loading keeps only the
 * members the client needs ("Lazy-loading room members"): the timeline's senders, the `heroes`,
 * and in an incremental sync every member whose membership changed in the gap; with
 * `dedupe`, not those this device was already sent.
 */
async function stateSection(run: SyncRun, roomId: string, timeline: Timeline, upper: number, sincePos: number | undefined, includeOwnMember: boolean, heroes: string[], dedupe: boolean): Promise<StoredEvent[]> {
  const after = run.stateAfterKey !== undefined;
  const endPos = after ? (timeline.events.length > 0 ? (timeline.events[timeline.events.length - 1]!.streamPos ?? upper) : upper) : undefined;
  const startPos = timeline.events.length > 0 ? (timeline.events[0]!.streamPos ?? 1) - 1 : upper;
  const target = await stateAtPos(run.tx, roomId, endPos ?? startPos);
  // A state change inside the timeline's span that the timeline does not show (its filter left
  // the event out) would reach the client nowhere: its newest value goes into `state` instead.
  if (!after && timeline.events.length > 0) {
    const spanChanges = await stateChangesIn(run.tx, roomId, startPos, upper);
    const shown = new Set(timeline.events.map((e) => e.eventId));
    const atEnd = spanChanges.size > 0 ? await stateAtPos(run.tx, roomId, upper) : target;
    for (const sk of spanChanges.keys()) {
      const endId = atEnd.get(sk);
      if (endId !== undefined && !shown.has(endId)) target.set(sk, endId);
    }
  }
  const atSince = sincePos !== undefined ? await stateAtPos(run.tx, roomId, sincePos) : new Map<string, string>();
  const inTimeline = new Set(after ? [] : timeline.events.map((e) => e.eventId));
  const stateFilter = run.filter.room?.state;
  const lazy = stateFilter?.lazy_load_members === true;
  const needed = new Set([...timeline.events.map((e) => e.pdu.sender), ...heroes]);
  if (includeOwnMember) needed.add(run.me.userId);
  const known = dedupe && run.since !== undefined && !run.fullState ? run.sentMembers : undefined;
  const out: StoredEvent[] = [];
  for (const [sk, id] of target) {
    const [type, stateKey] = splitStateKey(sk);
    const isMember = type === "m.room.member";
    const changed = atSince.get(sk) !== id;
    if (inTimeline.has(id)) continue;
    if (lazy && isMember) {
      if (!needed.has(stateKey) && !(sincePos !== undefined && changed)) continue;
      // Already sent to this device in a response the client had at its token.
      const sent = known?.get(key(roomId, stateKey));
      if (sent && sent.eventId === id && sent.pos <= run.since!.pos) continue;
    } else if (!changed) {
      continue;
    }
    const e = await getEvent(run.tx, id);
    if (!e) continue;
    if (!eventPasses(stateFilter, { type: e.pdu.type, sender: e.pdu.sender, content: e.pdu.content }, roomId)) continue;
    out.push(e);
  }
  return stateFilter?.limit !== undefined ? out.slice(0, stateFilter.limit) : out;
}

/** What the lazy-loading cache remembers of one member event sent to a device. */
interface SentMember {
  eventId: string;
  /** The stream position of the earliest response that carried it (its `next_batch`). */
  pos: number;
}

/** Devices (user|device|filter) and member events per device the lazy-loading cache keeps. */
const SENT_MEMBER_DEVICES = 1000;
const SENT_MEMBERS_PER_DEVICE = 20_000;
const sentMemberCaches = new WeakMap<Services, Map<string, Map<string, SentMember>>>();

/**
 * The member events sent to one device under one filter (key = roomId|userId), kept in memory:
 * the spec lets a server send redundant members, so losing this only costs bandwidth.
 */
function sentMembersOf(hs: Services, deviceKey: string, reset: boolean): Map<string, SentMember> {
  let devices = sentMemberCaches.get(hs);
  if (!devices) sentMemberCaches.set(hs, (devices = new Map()));
  let sent = devices.get(deviceKey);
  devices.delete(deviceKey);
  if (!sent || reset) sent = new Map();
  devices.set(deviceKey, sent);
  if (devices.size > SENT_MEMBER_DEVICES) devices.delete(devices.keys().next().value!);
  return sent;
}

/** Records the member events of a room response as sent to the device (see `stateSection`). */
function rememberSentMembers(run: SyncRun, roomId: string, events: StoredEvent[]): void {
  const sent = run.sentMembers;
  if (!sent) return;
  for (const e of events) {
    if (e.pdu.type !== "m.room.member" || e.pdu.state_key === undefined) continue;
    const k = key(roomId, e.pdu.state_key);
    const had = sent.get(k);
    sent.delete(k);
    sent.set(k, { eventId: e.eventId, pos: had?.eventId === e.eventId ? Math.min(had.pos, run.upTo) : run.upTo });
  }
  while (sent.size > SENT_MEMBERS_PER_DEVICE) sent.delete(sent.keys().next().value!);
}

/** Whether the user was joined to the room at stream position `pos` (so the client has the room as of then). */
async function joinedAt(tx: ReadTx, roomId: string, userId: string, pos: number): Promise<boolean> {
  const memberId = (await stateAtPos(tx, roomId, pos)).get(stateKeyOf("m.room.member", userId));
  return memberId !== undefined && membershipIn(await getEvent(tx, memberId)) === "join";
}

/** The joined members of a room whose join came after stream position `pos` (new faces, for presence). */
async function membersJoinedSince(tx: ReadTx, roomId: string, pos: number, current: Map<string, StoredEvent>): Promise<string[]> {
  const out: string[] = [];
  for (const [sk, before] of await stateChangesIn(tx, roomId, pos, undefined, "m.room.member")) {
    if (membershipIn(current.get(sk)) !== "join") continue;
    if (before !== undefined && membershipIn(await getEvent(tx, before)) === "join") continue;
    out.push(splitStateKey(sk)[1]);
  }
  return out;
}

/** The state part of a room object: `state`, or `state_after` under the key the client used. */
async function stateObject(run: SyncRun, events: StoredEvent[]): Promise<Record<string, unknown>> {
  return { [run.stateAfterKey ?? "state"]: { events: await serveEvents(run, events) } };
}

async function serveEvents(run: SyncRun, events: StoredEvent[]): Promise<Record<string, unknown>[]> {
  const served = await run.server.serveAll(events, { omitRoomId: true });
  return served.map((ce, i) => formatForFilter(ce, events[i]!.pdu as unknown as Record<string, unknown>, run.filter));
}

async function joinedRoom(run: SyncRun, roomId: string, rec: MembershipRecord): Promise<Record<string, unknown> | undefined> {
  const { tx, since, upTo } = run;
  // Joined since the token (or no token): the room is new to the client, send it whole. A newer
  // member event of someone who was already joined (a profile change) does not make it new.
  let roomSince = since && rec.streamPos <= since.pos ? since.pos : undefined;
  if (since && roomSince === undefined && (await joinedAt(tx, roomId, run.me.userId, since.pos))) roomSince = since.pos;
  const newlyJoined = since !== undefined && roomSince === undefined;
  const timelineFilter = run.filter.room?.timeline;
  const timeline = await timelineOf(run, roomId, roomSince ?? 0, upTo, timelineFilter, rec.streamPos);
  // A room new to an incremental sync has history before its timeline that the client never saw
  // (Synapse marks it so too): the client pages back from `prev_batch` for it.
  if (newlyJoined) timeline.limited = true;

  const receipts = await tx.range<ReceiptRow>("receipts", { prefix: prefix(roomId) });
  const newReceipts = roomSince === undefined ? receipts : receipts.filter((r) => r.value.streamPos > roomSince);
  const accountData = await roomAccountData(run, roomId, roomSince);
  const typing = typingState(run.hs);
  const typingChanged = roomSince === undefined || !since || typing.changedSince(roomId, since.typing);

  const ephemeral = ephemeralEvents(run, roomId, newReceipts, typingChanged);
  // No new timeline row (even one filtered out): no state or membership changed either.
  const incremental = roomSince !== undefined && !run.fullState;
  if (incremental && !timeline.anyRow && ephemeral.length === 0 && accountData.length === 0) return undefined;

  const current = await currentState(tx, roomId);
  const summary = summaryOf(current, run.me.userId);
  const heroes = (summary["m.heroes"] as string[] | undefined) ?? [];
  const stateEvents = await stateSection(run, roomId, timeline, upTo, run.fullState ? undefined : roomSince, roomSince === undefined, heroes, roomSince !== undefined);
  if (since) {
    const newcomers = newlyJoined ? [...current].filter(([sk, e]) => splitStateKey(sk)[0] === "m.room.member" && membershipIn(e) === "join").map(([sk]) => splitStateKey(sk)[1]) : await membersJoinedSince(tx, roomId, since.pos, current);
    for (const u of newcomers) if (u !== run.me.userId) run.newlyShared.add(u);
  }
  // "Make the result appear empty if there are no updates": unread counts alone do not count.
  if (incremental && timeline.events.length === 0 && stateEvents.length === 0 && ephemeral.length === 0 && accountData.length === 0) return undefined;
  rememberSentMembers(run, roomId, [...stateEvents, ...timeline.events]);
  const room = await tx.get<{ roomVersion: string }>("rooms", roomId);
  const unread = await unreadCounts(run, roomId, rec, receipts, current, rulesFor(room?.roomVersion));

  const out: Record<string, unknown> = {
    timeline: {
      events: await serveEvents(run, timeline.events),
      limited: timeline.limited,
      ...(timeline.events.length > 0 ? { prev_batch: syncToken((timeline.events[0]!.streamPos ?? 1) - 1, run.typingSerial) } : { prev_batch: syncToken(roomSince ?? upTo, run.typingSerial) }),
    },
    ...(await stateObject(run, stateEvents)),
    ephemeral: { events: ephemeral },
    account_data: { events: accountData },
    unread_notifications: unread.main,
    summary,
  };
  if (timelineFilter?.unread_thread_notifications) out.unread_thread_notifications = unread.threads;
  return out;
}

async function leftRoom(run: SyncRun, roomId: string, rec: MembershipRecord): Promise<Record<string, unknown>> {
  let roomSince = run.since && !run.fullState ? run.since.pos : undefined;
  // Joined and left since the token: the client never had this room, so it gets it whole (up to
  // the leave), as a newly joined room would come.
  const newToClient = roomSince !== undefined && !(await joinedAt(run.tx, roomId, run.me.userId, roomSince)) && (await joinedInHistory(run.tx, rec.eventId, roomSince));
  if (newToClient) roomSince = undefined;
  // The timeline stops at the leave: nothing after it is the user's business.
  const timeline = await timelineOf(run, roomId, roomSince ?? 0, rec.streamPos, run.filter.room?.timeline, undefined);
  if (newToClient) timeline.limited = true;
  const stateEvents = await stateSection(run, roomId, timeline, rec.streamPos, roomSince, false, [], false);
  const accountData = await roomAccountData(run, roomId, roomSince);
  return {
    timeline: {
      events: await serveEvents(run, timeline.events),
      limited: timeline.limited,
      prev_batch: syncToken(timeline.events.length > 0 ? (timeline.events[0]!.streamPos ?? 1) - 1 : rec.streamPos, run.typingSerial),
    },
    ...(await stateObject(run, stateEvents)),
    account_data: { events: accountData },
  };
}

/** Stripped state for an invite or knock, ending with the user's own member event. */
async function strippedState(run: SyncRun, roomId: string, rec: MembershipRecord): Promise<Record<string, unknown>[]> {
  const own = await getEvent(run.tx, rec.eventId);
  // A federated invite carries the inviting server's view of the room.
  const carried = own?.pdu.unsigned?.invite_room_state ?? own?.pdu.unsigned?.knock_room_state;
  const out: Record<string, unknown>[] = [];
  if (Array.isArray(carried)) {
    out.push(...(carried as Record<string, unknown>[]));
  } else {
    for (const type of STRIPPED_TYPES) {
      const id = await run.tx.get<string>("room_state", key(roomId, type, ""));
      const e = id ? await getEvent(run.tx, id) : undefined;
      if (e) out.push({ type: e.pdu.type, state_key: e.pdu.state_key ?? "", sender: e.pdu.sender, content: e.pdu.content });
    }
  }
  if (own) {
    const ce = await run.server.serve(own, { bundle: false });
    out.push(ce as unknown as Record<string, unknown>);
  }
  return out;
}

function ephemeralEvents(run: SyncRun, roomId: string, receipts: Row<ReceiptRow>[], typingChanged: boolean): Record<string, unknown>[] {
  const f = run.filter.room?.ephemeral;
  const out: Record<string, unknown>[] = [];
  const passes = (type: string): boolean => eventPasses(f, { type, sender: "" }, roomId) || (f?.senders !== undefined && eventPasses({ ...f, senders: undefined }, { type, sender: "" }, roomId));
  if (typingChanged && passes("m.typing")) {
    out.push({ type: "m.typing", content: { user_ids: typingState(run.hs).typingIn(roomId) } });
  }
  if (receipts.length > 0 && passes("m.receipt")) {
    const content: Record<string, Record<string, Record<string, Record<string, unknown>>>> = {};
    for (const r of receipts) {
      const [, type, userId, threadId] = r.key.split(SEP) as [string, string, string, string];
      // m.read.private: "only the user who sent it" sees it (Receipts, "Private read receipts").
      if (type === "m.read.private" && userId !== run.me.userId) continue;
      if (f?.senders && !f.senders.includes(userId)) continue;
      if (f?.not_senders?.includes(userId)) continue;
      const byType = (content[r.value.eventId] ??= {});
      const byUser = (byType[type] ??= {});
      byUser[userId] = { ts: r.value.ts, ...(threadId ? { thread_id: threadId } : {}) };
    }
    if (Object.keys(content).length > 0) out.push({ type: "m.receipt", content });
  }
  return out.slice(0, f?.limit ?? out.length);
}

/** The user's account data events of a room newer than `sincePos` (all of them without it), filtered. */
async function roomAccountData(run: SyncRun, roomId: string, sincePos: number | undefined): Promise<Record<string, unknown>[]> {
  const rows = await run.tx.range<AccountDataRow>("account_data", { prefix: prefix(run.me.userId, roomId) });
  const fresh = sincePos === undefined ? rows : rows.filter((r) => r.value.streamPos > sincePos);
  return accountDataEvents(fresh, run.me.userId, roomId, run.filter.room?.account_data);
}

function accountDataEvents(rows: Row<AccountDataRow>[], userId: string, roomId: string, f: RoomEventFilter | undefined): Record<string, unknown>[] {
  const p = prefix(userId, roomId);
  const out: Record<string, unknown>[] = [];
  for (const r of rows) {
    const type = r.key.slice(p.length);
    if (!eventPasses(f, { type, sender: userId }, roomId === "" ? undefined : roomId)) continue;
    out.push({ type, content: r.value.content });
  }
  return f?.limit !== undefined ? out.slice(0, f.limit) : out;
}

/**
 * `summary` (`RoomSummary`): member counts, and the heroes only when the room has no name or
 * canonical alias to be called by ("Calculating the display name for a room").
 */
function summaryOf(current: Map<string, StoredEvent>, userId: string): Record<string, unknown> {
  const joined: string[] = [];
  const invited: string[] = [];
  const left: string[] = [];
  for (const [sk, e] of current) {
    const [type, stateKey] = splitStateKey(sk);
    if (type !== "m.room.member") continue;
    const m = membershipIn(e);
    if (m === "join") joined.push(stateKey);
    else if (m === "invite") invited.push(stateKey);
    else if (m === "leave" || m === "ban") left.push(stateKey);
  }
  const counts = { "m.joined_member_count": joined.length, "m.invited_member_count": invited.length };
  const nonEmpty = (v: unknown): boolean => typeof v === "string" && v !== "";
  if (nonEmpty(current.get(stateKeyOf("m.room.name", ""))?.pdu.content.name) || nonEmpty(current.get(stateKeyOf("m.room.canonical_alias", ""))?.pdu.content.alias)) return counts;
  const others = [...joined, ...invited].filter((u) => u !== userId).sort();
  const heroes = (others.length > 0 ? others : left.filter((u) => u !== userId).sort()).slice(0, 5);
  return { "m.heroes": heroes, ...counts };
}

/** Unread counts as computed up to a stream position, valid while `sig` (what they depend on) holds. */
interface UnreadCounts {
  sig: string;
  upTo: number;
  main: { notification_count: number; highlight_count: number };
  threads: Record<string, { notification_count: number; highlight_count: number }>;
}

/** The cache entry: the counts, and what of them is stored (the `unread_counts` table). */
interface UnreadCacheEntry extends UnreadCounts {
  stored: { sig: string; upTo: number; at: number } | undefined;
}

/** How often counts that only moved forward are stored again (bounds the scan after a restart). */
const STORE_UNREAD_EVERY_MS = 5_000;

const unreadCaches = new WeakMap<Services, Map<string, UnreadCacheEntry>>();

/** The unread-count cache of a homeserver instance (key = userId|roomId). */
function unreadCache(hs: Services): Map<string, UnreadCacheEntry> {
  let c = unreadCaches.get(hs);
  if (!c) unreadCaches.set(hs, (c = new Map()));
  return c;
}

/**
 * Stores the counts a response computed, after it (a read transaction cannot write). Losing such a
 * write costs only a longer scan after the next restart, so failures are logged and dropped.
 */
function storeUnreadCounts(hs: Services, entries: Map<string, UnreadCounts>): void {
  if (entries.size === 0) return;
  hs.store
    .write(async (tx) => {
      for (const [k, counts] of entries) tx.put("unread_counts", k, counts);
    }, { tables: ["unread_counts"] })
    .catch((err: unknown) => hs.logger.warn("could not store unread counts", err));
}

/**
 * Unread counts: events after the user's read receipt that the push rules say notify
 * ("Receiving notifications"; threaded counts per "Threading").
 */
async function unreadCounts(run: SyncRun, roomId: string, rec: MembershipRecord, receipts: Row<ReceiptRow>[], current: Map<string, StoredEvent>, version: RoomVersionRules): Promise<{
  main: { notification_count: number; highlight_count: number };
  threads: Record<string, { notification_count: number; highlight_count: number }>;
}> {
  const { tx, me } = run;
  const threaded = run.filter.room?.timeline?.unread_thread_notifications === true;
  // Where the user has read up to, per thread ("" = unthreaded).
  const readAt = new Map<string, number>();
  for (const r of receipts) {
    const [, type, userId, threadId] = r.key.split(SEP) as [string, string, string, string];
    if (userId !== me.userId || (type !== "m.read" && type !== "m.read.private")) continue;
    const e = await getEvent(tx, r.value.eventId);
    const p = e?.streamPos ?? 0;
    const t = threaded ? threadId : threadId === "" || threadId === "main" ? "" : threadId;
    if (p > (readAt.get(t) ?? 0)) readAt.set(t, p);
  }
  const unthreaded = readAt.get("") ?? 0;
  const minRead = Math.min(unthreaded, ...[...readAt.values()]);
  // Never count further back than the user's join.
  const from = Math.max(minRead, await joinedSince(tx, me.userId, rec));

  // Counts are kept per (user, room) and extended with the events since the last computation, as
  // long as nothing they depend on changed (read positions, push rules, ignore list, threading).
  const rulesPos = globalDataOf(run.globalData, me.userId, "m.push_rules")?.streamPos ?? 0;
  const sig = JSON.stringify([from, [...readAt].sort(), threaded, rulesPos, [...run.ignored].sort()]);
  const cache = unreadCache(run.hs);
  const cacheKey = key(me.userId, roomId);
  let cached = cache.get(cacheKey);
  if (!cached) {
    // After a restart: the counts an earlier instance stored, extended like the in-memory ones.
    const stored = await tx.get<UnreadCounts>("unread_counts", cacheKey);
    // `at: -Infinity`: counts extended past the stored ones are stored by this first response, so
    // the next restart (browsers stop an idle worker after 30 s) does not scan the same events again.
    if (stored) cached = { ...stored, stored: { sig: stored.sig, upTo: stored.upTo, at: -Infinity } };
  }
  let reuse = cached !== undefined && cached.sig === sig && cached.upTo <= run.upTo;
  // The events after `lower`, newest first, each read once.
  const scanFrom = async (lower: number): Promise<(StoredEvent | undefined)[]> => {
    const rows = await tx.range<string>("timeline", { prefix: prefix(roomId), gt: key(roomId, posKey(lower)), lte: key(roomId, posKey(run.upTo)), reverse: true, limit: MAX_UNREAD_SCAN });
    return Promise.all(rows.map((row) => getEvent(tx, row.value)));
  };
  let events = reuse ? await scanFrom(Math.max(from, cached!.upTo)) : [];
  // A redaction may take back an event already counted: count again from the read receipt.
  if (reuse && events.some((e) => e?.pdu.type === "m.room.redaction")) reuse = false;
  if (!reuse) events = await scanFrom(from);
  const main = reuse ? { ...cached!.main } : { notification_count: 0, highlight_count: 0 };
  const threads: Record<string, { notification_count: number; highlight_count: number }> = reuse ? structuredClone(cached!.threads) : {};
  const done = (): { main: typeof main; threads: typeof threads } => {
    const counts: UnreadCounts = { sig, upTo: run.upTo, main: { ...main }, threads: structuredClone(threads) };
    let stored = cached?.stored;
    const now = performance.now();
    if (!stored || stored.sig !== sig || (stored.upTo !== run.upTo && now - stored.at >= STORE_UNREAD_EVERY_MS)) {
      run.unreadToStore.set(cacheKey, counts);
      stored = { sig, upTo: run.upTo, at: now };
    }
    cache.set(cacheKey, { ...counts, stored });
    return { main, threads };
  };
  if (events.length === 0) return done();

  const rules = pushRulesOf(run);
  const pdus = pdusOf(current);
  const roomCtx = roomPushContext(current, me.userId);
  const powerCache = new Map<string, number>();

  for (const e of events) {
    if (!e || !isTimelineEvent(e) || e.redactedBy || e.pdu.sender === me.userId || run.ignored.has(e.pdu.sender)) continue;
    const rel = e.pdu.content?.["m.relates_to"] as Record<string, unknown> | undefined;
    const threadRoot = rel?.rel_type === "m.thread" && typeof rel.event_id === "string" ? rel.event_id : undefined;
    const bucket = threaded && threadRoot ? threadRoot : threaded ? "main" : "";
    const readPos = Math.max(unthreaded, threaded ? (readAt.get(bucket) ?? 0) : 0);
    if ((e.streamPos ?? 0) <= readPos) continue;
    let senderPower = powerCache.get(e.pdu.sender);
    if (senderPower === undefined) powerCache.set(e.pdu.sender, (senderPower = userPowerLevel(e.pdu.sender, pdus, version)));
    const ce = toPushEvent(e);
    const outcome = evaluatePushRules(rules, ce, { ...roomCtx, senderPowerLevel: senderPower });
    if (!outcome?.notify) continue;
    const counts = threaded && threadRoot ? (threads[threadRoot] ??= { notification_count: 0, highlight_count: 0 }) : main;
    counts.notification_count++;
    if (outcome.highlight) counts.highlight_count++;
  }
  return done();
}

// --- global sections ---

function globalAccountData(run: SyncRun): Record<string, unknown>[] {
  const sincePos = run.since && !run.fullState ? run.since.pos : undefined;
  const rows = run.globalData;
  const fresh = sincePos === undefined ? rows : rows.filter((r) => r.value.streamPos > sincePos);
  const events = accountDataEvents(fresh, run.me.userId, "", run.filter.account_data);
  // The push rules are served computed (defaults may have changed since they were stored), and an
  // initial sync always carries them, as clients read them from here.
  const pushIdx = events.findIndex((e) => e.type === "m.push_rules");
  const wantsPush = eventPasses(run.filter.account_data, { type: "m.push_rules", sender: run.me.userId });
  if (pushIdx >= 0 || (sincePos === undefined && wantsPush)) {
    const content = { global: pushRulesOf(run) };
    if (pushIdx >= 0) events[pushIdx] = { type: "m.push_rules", content };
    else events.push({ type: "m.push_rules", content });
  }
  return events.map((e) => applyEventFields(e, run.filter.event_fields));
}

async function presenceEvents(run: SyncRun, joinedRooms: string[]): Promise<Record<string, unknown>[]> {
  const f = run.filter.presence;
  if (f?.limit === 0) return [];
  const sincePos = run.since && !run.fullState ? run.since.pos : 0;
  const rows = await run.tx.range<PresenceRow>("presence");
  // Someone who newly shares a room with the user is news however old their presence is.
  const fresh = rows.filter((r) => r.value.streamPos > sincePos || run.newlyShared.has(r.key));
  if (fresh.length === 0) return [];
  // Presence goes to users who share a room ("Presence", server behaviour).
  const visible = new Set<string>([run.me.userId]);
  for (const roomId of joinedRooms) for (const u of await membersWith(run.tx, roomId, "join")) visible.add(u);
  const out: Record<string, unknown>[] = [];
  for (const r of fresh) {
    if (!visible.has(r.key)) continue;
    if (!eventPasses(f, { type: "m.presence", sender: r.key })) continue;
    out.push(applyEventFields({ type: "m.presence", sender: r.key, content: presenceContent(r.value, run.now) }, run.filter.event_fields));
  }
  return f?.limit !== undefined ? out.slice(0, f.limit) : out;
}

// --- deprecated r0-era sync: /initialSync, /rooms/{roomId}/initialSync, /events ---

/** How many events a room of `/initialSync` returns by default. */
export const ROOM_INITIAL_SYNC_LIMIT = 20;

/** `globalData`: the user's global account data, where the response carries it (else none). */
function plainRun(hs: Services, tx: ReadTx, me: Requester, upTo: number, globalData: GlobalDataRow[] = []): SyncRun {
  const now = hs.clock();
  return {
    hs, tx, me, filter: {}, since: undefined, fullState: true, upTo, typingSerial: typingState(hs).serial, now,
    stateAfterKey: undefined, ignored: new Set(), globalData, server: new EventServer(tx, { userId: me.userId, deviceId: me.deviceId }, now),
    sentMembers: undefined, newlyShared: new Set(), unreadToStore: new Map(),
  };
}

/** One `RoomInfo` (room_initial_sync.yaml): the room as the user sees it, up to their leave. */
async function roomInfo(run: SyncRun, roomId: string, rec: MembershipRecord | undefined, limit: number): Promise<Record<string, unknown>> {
  const { tx } = run;
  if (rec?.membership === "invite" || rec?.membership === "knock") {
    const own = await getEvent(tx, rec.eventId);
    return { room_id: roomId, membership: rec.membership, ...(own ? { invite: await run.server.serve(own) } : {}) };
  }
  // A former member sees the room as it was when they left.
  const upper = rec && (rec.membership === "leave" || rec.membership === "ban") ? rec.streamPos : run.upTo;
  const timeline = await timelineOf(run, roomId, 0, upper, { limit }, undefined);
  const stateMap = await stateAtPos(tx, roomId, upper);
  const state: Record<string, unknown>[] = [];
  for (const id of stateMap.values()) {
    const e = await getEvent(tx, id);
    if (e) state.push((await run.server.serve(e)) as unknown as Record<string, unknown>);
  }
  const chunk: Record<string, unknown>[] = [];
  for (const e of timeline.events) chunk.push((await run.server.serve(e)) as unknown as Record<string, unknown>);
  const directory = await tx.get<{ visibility: string }>("room_directory", roomId);
  const accountData = rec ? await tx.range<AccountDataRow>("account_data", { prefix: prefix(run.me.userId, roomId) }) : [];
  const first = timeline.events[0];
  return {
    room_id: roomId,
    ...(rec ? { membership: rec.membership } : {}),
    messages: {
      chunk,
      ...(first && timeline.limited ? { start: syncToken((first.streamPos ?? 1) - 1, run.typingSerial) } : {}),
      end: syncToken(upper, run.typingSerial),
    },
    state,
    visibility: directory?.visibility === "public" ? "public" : "private",
    account_data: accountDataEvents(accountData, run.me.userId, roomId, undefined),
  };
}

/**
 * One room's `/initialSync`. Deprecated except for peeking ("Room Previews"): members and former
 * members get the room as they see it (up to their leave); anyone else only a `world_readable` room.
 */
export async function roomInitialSync(hs: Services, me: Requester, roomId: string): Promise<Record<string, unknown>> {
  return hs.store.read(async (tx) => {
    const room = await tx.get("rooms", roomId);
    const rec = await tx.get<MembershipRecord>("memberships", key(me.userId, roomId));
    const member = rec !== undefined && ["join", "leave", "ban"].includes(rec.membership);
    if (!room || (!member && !(await isWorldReadable(tx, roomId)))) {
      throw new MatrixError(403, "M_FORBIDDEN", "You aren't a member of the room and weren't previously a member of the room.");
    }
    const upTo = await streamPosIn(tx);
    return roomInfo(plainRun(hs, tx, me, upTo), roomId, member ? rec : undefined, ROOM_INITIAL_SYNC_LIMIT);
  });
}

/** The deprecated global `/initialSync` (old_sync.yaml): every room the user is or was in. */
export async function initialSync(hs: Services, me: Requester, limit: number, archived: boolean): Promise<Record<string, unknown>> {
  return hs.store.read(async (tx) => {
    const upTo = await streamPosIn(tx);
    const run = plainRun(hs, tx, me, upTo, await readGlobalData(tx, me.userId));
    const memberships = await tx.range<MembershipRecord>("memberships", { prefix: prefix(me.userId) });
    const rooms: Record<string, unknown>[] = [];
    const joined: string[] = [];
    for (const { key: k, value: rec } of memberships) {
      const roomId = k.slice(prefix(me.userId).length);
      if (rec.membership === "join") joined.push(roomId);
      // "archived: … whether to include rooms that the user has left".
      if ((rec.membership === "leave" || rec.membership === "ban") && (!archived || rec.forgotten)) continue;
      rooms.push(await roomInfo(run, roomId, rec, Math.min(limit, MAX_TIMELINE_LIMIT)));
    }
    return {
      end: syncToken(upTo, run.typingSerial),
      presence: await presenceEvents(run, joined),
      rooms,
      account_data: globalAccountData(run),
    };
  });
}

/**
 * The deprecated event stream (`getEvents`, and `peekEvents` with `peekRoom`): the timeline events
 * after `from` in the user's joined rooms (or in one `world_readable` room being peeked at),
 * long-polling up to `timeoutMs`.
 */
export async function eventStream(
  hs: Services,
  me: Requester,
  from: StreamToken | undefined,
  timeoutMs: number,
  peekRoom: string | undefined,
  signal: AbortSignal,
): Promise<Record<string, unknown>> {
  if (peekRoom !== undefined) {
    const allowed = await hs.store.read(async (tx) =>
      (await membershipOf(tx, peekRoom, me.userId)) === "join" || (await isWorldReadable(tx, peekRoom)));
    if (!allowed) throw new MatrixError(403, "M_FORBIDDEN", "You cannot peek into this room");
  }
  const deadline = performance.now() + Math.min(timeoutMs, MAX_TIMEOUT_MS);
  // Without `from` the stream starts where it stood at the first read, not at every wake-up: a
  // peek's first long-poll (matrix-js-sdk sends none) must return the event that woke it.
  let fromPos = from?.pos;
  for (;;) {
    const result = await hs.store.read(async (tx) => {
      const upTo = await streamPosIn(tx);
      const start = (fromPos ??= upTo);
      const run = plainRun(hs, tx, me, upTo);
      const rows = await tx.range<{ roomId: string; eventId: string }>("stream", { gt: posKey(start), lte: posKey(upTo), limit: MAX_SCAN });
      const membership = new Map<string, string | undefined>();
      const chunk: Record<string, unknown>[] = [];
      let end = start;
      for (const row of rows) {
        end = parseInt(row.key, 16);
        const roomId = row.value.roomId;
        if (peekRoom !== undefined && roomId !== peekRoom) continue;
        if (!membership.has(roomId)) membership.set(roomId, await membershipOf(tx, roomId, me.userId));
        if (peekRoom === undefined && membership.get(roomId) !== "join") continue;
        const e = await getEvent(tx, row.value.eventId);
        if (!e || !isTimelineEvent(e)) continue;
        if (!(await canSeeEvent(tx, me.userId, e))) continue;
        chunk.push((await run.server.serve(e)) as unknown as Record<string, unknown>);
      }
      if (rows.length < MAX_SCAN) end = upTo;
      return { chunk, start: syncToken(start, run.typingSerial), end: syncToken(end, run.typingSerial), upTo };
    });
    const remaining = deadline - performance.now();
    if (result.chunk.length > 0 || remaining <= 0 || signal.aborted) {
      return { start: result.start, end: result.end, chunk: result.chunk };
    }
    await hs.notifier.wait(result.upTo, remaining, signal);
    if (signal.aborted || hs.notifier.closed) return { start: result.start, end: result.end, chunk: [] };
  }
}
