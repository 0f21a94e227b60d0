/**
 * Push rules ("Push Notifications" module): the spec's predefined rule set, evaluation of an event
 * against a user's rules, and the storage behind the `/pushrules` API (client/pushRules.ts). A user's own rules and changes to the defaults
 * are kept in account data `m.push_rules` (row field `rules`); the row's `content` is the full rule
 * set as served, so `/sync` delivers it like any account data.
 */
import type { Services } from "../context.ts";
import { key } from "../../storage/store.ts";
import type { ReadTx } from "../../storage/store.ts";
import type { StoredEvent } from "../events/types.ts";
import { stateKeyOf } from "../events/types.ts";
import { membershipIn } from "../roomserver/state.ts";
import { putAccountDataTx } from "./accountData.ts";
import { splitPath } from "./filters.ts";

/** A push rule condition. */
export interface PushCondition {
  kind: string;
  key?: string;
  pattern?: string;
  value?: unknown;
  is?: string;
}

/** A push rule as served. */
export interface PushRule {
  rule_id: string;
  default: boolean;
  enabled: boolean;
  actions: unknown[];
  conditions?: PushCondition[];
  pattern?: string;
}

/** The kinds, in the order they are evaluated. */
export const RULE_KINDS = ["override", "content", "room", "sender", "underride"] as const;
/** One kind of push rule. */
export type RuleKind = (typeof RULE_KINDS)[number];
/** A full rule set (`global` of `GET /pushrules/`). */
export type RuleSet = Record<RuleKind, PushRule[]>;

/** What is stored: the user's rules and their changes to the predefined ones. */
export interface StoredPushRules {
  user: RuleSet;
  defaults: Record<string, { enabled?: boolean; actions?: unknown[] }>;
}

const emptyRuleSet = (): RuleSet => ({ override: [], content: [], room: [], sender: [], underride: [] });

const sound = (value: string): Record<string, unknown> => ({ set_tweak: "sound", value });
const highlight = { set_tweak: "highlight" };
const match = (k: string, pattern: string): PushCondition => ({ kind: "event_match", key: k, pattern });

/** The predefined rules ("Predefined Rules", spec v1.19), in the spec's order. */
export function defaultPushRules(userId: string): RuleSet {
  const rule = (rule_id: string, conditions: PushCondition[], actions: unknown[], enabled = true): PushRule => ({
    rule_id, default: true, enabled, conditions, actions,
  });
  return {
    override: [
      rule(".m.rule.master", [], [], false),
      rule(".m.rule.suppress_notices", [match("content.msgtype", "m.notice")], []),
      rule(".m.rule.invite_for_me", [match("type", "m.room.member"), match("content.membership", "invite"), match("state_key", userId)], [
        "notify", sound("default"),
      ]),
      rule(".m.rule.member_event", [match("type", "m.room.member")], []),
      rule(".m.rule.is_user_mention", [{ kind: "event_property_contains", key: "content.m\\.mentions.user_ids", value: userId }], [
        "notify", sound("default"), highlight,
      ]),
      rule(".m.rule.is_room_mention", [
        { kind: "event_property_is", key: "content.m\\.mentions.room", value: true },
        { kind: "sender_notification_permission", key: "room" },
      ], ["notify", highlight]),
      rule(".m.rule.tombstone", [match("type", "m.room.tombstone"), match("state_key", "")], ["notify", highlight]),
      rule(".m.rule.reaction", [match("type", "m.reaction")], []),
      rule(".m.rule.room.server_acl", [match("type", "m.room.server_acl"), match("state_key", "")], []),
      rule(".m.rule.suppress_edits", [{ kind: "event_property_is", key: "content.m\\.relates_to.rel_type", value: "m.replace" }], []),
    ],
    content: [],
    room: [],
    sender: [],
    underride: [
      rule(".m.rule.call", [match("type", "m.call.invite")], ["notify", sound("ring")]),
      rule(".m.rule.encrypted_room_one_to_one", [{ kind: "room_member_count", is: "2" }, match("type", "m.room.encrypted")], [
        "notify", sound("default"),
      ]),
      rule(".m.rule.room_one_to_one", [{ kind: "room_member_count", is: "2" }, match("type", "m.room.message")], [
        "notify", sound("default"),
      ]),
      rule(".m.rule.message", [match("type", "m.room.message")], ["notify"]),
      rule(".m.rule.encrypted", [match("type", "m.room.encrypted")], ["notify"]),
    ],
  };
}

/**
 * The full rule set: `.m.rule.master` first, then user rules before the predefined ones of the
 * same kind ("Predefined Rules": server-default rules have lower priority than user rules).
 */
export function mergeRules(userId: string, stored: StoredPushRules | undefined): RuleSet {
  const defaults = defaultPushRules(userId);
  const apply = (r: PushRule): PushRule => {
    const d = stored?.defaults[r.rule_id];
    return { ...r, enabled: d?.enabled ?? r.enabled, actions: d?.actions ?? r.actions };
  };
  const user = stored?.user ?? emptyRuleSet();
  const out = emptyRuleSet();
  for (const kind of RULE_KINDS) {
    const d = defaults[kind].map(apply);
    if (kind === "override") {
      const master = d.filter((r) => r.rule_id === ".m.rule.master");
      out.override = [...master, ...user.override, ...d.filter((r) => r.rule_id !== ".m.rule.master")];
    } else {
      out[kind] = [...user[kind], ...d];
    }
  }
  return out;
}

/** Reads the stored push rules of a user. */
export async function loadStoredRules(tx: ReadTx, userId: string): Promise<StoredPushRules | undefined> {
  return (await tx.get<{ rules?: StoredPushRules }>("account_data", key(userId, "", "m.push_rules")))?.rules;
}

/** A user's full rule set. */
export async function loadPushRules(tx: ReadTx, userId: string): Promise<RuleSet> {
  return mergeRules(userId, await loadStoredRules(tx, userId));
}

// --- evaluation ---

/** What evaluation needs to know about the room and the user. */
export interface PushContext {
  userId: string;
  /** The user's display name in the room (for `contains_display_name`). */
  displayName?: string;
  /** Joined members of the room. */
  memberCount: number;
  /** Power level of the event's sender. */
  senderPowerLevel: number;
  /** `m.room.power_levels` content, if any (for `notifications`). */
  powerLevels?: Record<string, unknown>;
}

/** The event as push rules see it (client format, with `room_id`). */
export function toPushEvent(e: StoredEvent): Record<string, unknown> {
  const out: Record<string, unknown> = {
    type: e.pdu.type,
    content: e.pdu.content,
    sender: e.pdu.sender,
    room_id: e.roomId,
    event_id: e.eventId,
    origin_server_ts: e.pdu.origin_server_ts,
  };
  if (e.pdu.state_key !== undefined) out.state_key = e.pdu.state_key;
  return out;
}

/** The room's part of a `PushContext`, from its current state (everything but the sender's power). */
export function roomPushContext(state: Map<string, StoredEvent>, userId: string): Omit<PushContext, "senderPowerLevel"> {
  const own = state.get(stateKeyOf("m.room.member", userId))?.pdu.content;
  let memberCount = 0;
  for (const [sk, e] of state) if (sk.startsWith(stateKeyOf("m.room.member", "")) && membershipIn(e) === "join") memberCount++;
  return {
    userId,
    displayName: typeof own?.displayname === "string" ? own.displayname : undefined,
    memberCount,
    powerLevels: state.get(stateKeyOf("m.room.power_levels", ""))?.pdu.content,
  };
}

/** The outcome for one event. */
export interface PushOutcome {
  ruleId: string;
  actions: unknown[];
  notify: boolean;
  highlight: boolean;
}

/**
 * A compiled glob ("Glob-style matching": `*` any run of characters, `?` exactly one): the
 * `*`-separated segments, each a list of literal runs and `?` wildcards. Matching places the
 * segments greedily left to right, each at its leftmost possible position, which decides a glob
 * without backtracking: O(value length × pattern length) at worst, linear for a fixed pattern
 * (a RegExp built from the glob backtracks and goes exponential on patterns like `*a*a*a*b`).
 */
interface CompiledGlob {
  /** Segments between `*`s; the first and last are anchored unless the pattern starts/ends with `*`. */
  segments: Segment[];
}

/** A segment: literal text runs (case-folded) and `?` wildcards, in order. */
type Segment = (string | typeof ANY)[];
const ANY = 0;

const globCache = new Map<string, CompiledGlob>();

/**
 * Case folding for matching: lower case per character, keeping characters whose lower case is
 * longer (e.g. U+0130), so positions in the folded value are positions in the original.
 */
function fold(s: string): string {
  const lower = s.toLowerCase();
  if (lower.length === s.length) return lower;
  let out = "";
  for (const ch of s) {
    const l = ch.toLowerCase();
    out += l.length === ch.length ? l : ch;
  }
  return out;
}

function compileGlob(pattern: string): CompiledGlob {
  let glob = globCache.get(pattern);
  if (glob) return glob;
  const segments: Segment[] = [];
  for (const part of fold(pattern).split("*")) {
    const seg: Segment = [];
    let lit = "";
    for (const ch of part) {
      if (ch === "?") {
        if (lit) seg.push(lit);
        lit = "";
        seg.push(ANY);
      } else {
        lit += ch;
      }
    }
    if (lit) seg.push(lit);
    segments.push(seg);
  }
  glob = { segments };
  if (globCache.size > 1000) globCache.clear();
  globCache.set(pattern, glob);
  return glob;
}

/** The end of `seg` matched at `at` in `v`, or -1. `?` takes one code point (a surrogate pair is one). */
function matchSegmentAt(seg: Segment, v: string, at: number): number {
  let i = at;
  for (const t of seg) {
    if (t === ANY) {
      if (i >= v.length) return -1;
      const c = v.charCodeAt(i);
      i += c >= 0xd800 && c <= 0xdbff && i + 1 < v.length ? 2 : 1;
    } else {
      if (!v.startsWith(t, i)) return -1;
      i += t.length;
    }
  }
  return i;
}

/**
 * The leftmost start ≥ `from` where `seg` matches and `ok(start, end)` holds; returns [start, end]
 * or undefined. A segment that starts with literal text is found with indexOf.
 */
function findSegment(seg: Segment, v: string, from: number, ok: (start: number, end: number) => boolean): [number, number] | undefined {
  const lead = typeof seg[0] === "string" ? seg[0] : undefined;
  for (let s = from; s <= v.length; s++) {
    if (lead !== undefined) {
      s = v.indexOf(lead, s);
      if (s < 0) return undefined;
    }
    const e = matchSegmentAt(seg, v, s);
    if (e >= 0 && ok(s, e)) return [s, e];
  }
  return undefined;
}

const isWordUnit = (c: number): boolean =>
  (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f;

/**
 * Whether `value` matches glob `pattern`, case-insensitively. With `wordBoundary` (the
 * `content.body` special case) the glob may match any part of the value that starts and ends at a
 * word boundary (start/end of the value or a character outside [A-Za-z0-9_]); otherwise it must
 * match the whole value.
 */
export function globMatch(pattern: string, value: string, wordBoundary = false): boolean {
  const { segments } = compileGlob(pattern);
  const v = fold(value);
  const n = v.length;
  const startsWord = (i: number): boolean => !wordBoundary || i === 0 || !isWordUnit(v.charCodeAt(i - 1));
  const endsWord = (i: number): boolean => !wordBoundary || i === n || !isWordUnit(v.charCodeAt(i));
  const first = segments[0]!;
  if (segments.length === 1) {
    // No `*`: one anchored piece (the whole value, or a word-bounded part of it).
    if (!wordBoundary) return matchSegmentAt(first, v, 0) === n;
    return findSegment(first, v, 0, (s, e) => startsWord(s) && endsWord(e)) !== undefined;
  }
  // The first segment: at 0 (whole-value match) or the leftmost word start where it matches.
  let pos: number;
  if (wordBoundary) {
    const found = findSegment(first, v, 0, (s) => startsWord(s));
    if (!found) return false;
    pos = found[1];
  } else {
    pos = matchSegmentAt(first, v, 0);
    if (pos < 0) return false;
  }
  // Middle segments: each at its leftmost place after the previous one (any later place only
  // leaves less room for the rest).
  for (let k = 1; k < segments.length - 1; k++) {
    const found = findSegment(segments[k]!, v, pos, () => true);
    if (!found) return false;
    pos = found[1];
  }
  const last = segments[segments.length - 1]!;
  if (wordBoundary) return findSegment(last, v, pos, (_s, e) => endsWord(e)) !== undefined;
  // Whole-value match: the last segment must end exactly at the end. Without `?` its length is
  // fixed, so there is one place to try; with `?` (a code point may be two units) try each.
  if (!last.includes(ANY)) {
    const at = n - (last as string[]).reduce((l, t) => l + t.length, 0);
    return at >= pos && matchSegmentAt(last, v, at) === n;
  }
  return findSegment(last, v, pos, (_s, e) => e === n) !== undefined;
}

/** The value at a dot-separated path ("Dot-separated property paths"). */
export function valueAtPath(event: Record<string, unknown>, path: string): unknown {
  let cur: unknown = event;
  for (const p of splitPath(path)) {
    if (cur === null || typeof cur !== "object" || Array.isArray(cur)) return undefined;
    cur = (cur as Record<string, unknown>)[p];
  }
  return cur;
}

const isSimple = (v: unknown): boolean =>
  v === null || typeof v === "string" || typeof v === "boolean" || (typeof v === "number" && Number.isSafeInteger(v));

function memberCountMatches(is: string, count: number): boolean {
  const m = /^(==|<=|>=|<|>)?([0-9]+)$/.exec(is);
  if (!m) return false;
  const n = Number(m[2]);
  switch (m[1] ?? "==") {
    case "==": return count === n;
    case "<": return count < n;
    case ">": return count > n;
    case "<=": return count <= n;
    case ">=": return count >= n;
  }
  return false;
}

function conditionHolds(c: PushCondition, event: Record<string, unknown>, ctx: PushContext): boolean {
  switch (c.kind) {
    case "event_match": {
      if (typeof c.key !== "string" || typeof c.pattern !== "string") return false;
      const v = valueAtPath(event, c.key);
      if (typeof v !== "string") return false;
      return globMatch(c.pattern, v, c.key === "content.body");
    }
    case "event_property_is": {
      if (typeof c.key !== "string") return false;
      const v = valueAtPath(event, c.key);
      return isSimple(v) && v === c.value;
    }
    case "event_property_contains": {
      if (typeof c.key !== "string") return false;
      const v = valueAtPath(event, c.key);
      return Array.isArray(v) && v.some((x) => isSimple(x) && x === c.value);
    }
    case "contains_display_name": {
      const body = valueAtPath(event, "content.body");
      if (typeof body !== "string" || !ctx.displayName) return false;
      const name = ctx.displayName.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      return new RegExp(`(?:^|[^A-Za-z0-9_])${name}(?:$|[^A-Za-z0-9_])`, "i").test(body);
    }
    case "room_member_count":
      return typeof c.is === "string" && memberCountMatches(c.is, ctx.memberCount);
    case "sender_notification_permission": {
      if (typeof c.key !== "string") return false;
      const notifications = ctx.powerLevels?.notifications as Record<string, unknown> | undefined;
      const raw = notifications?.[c.key];
      // m.room.power_levels: `notifications.room` defaults to 50.
      const required = typeof raw === "number" ? raw : typeof raw === "string" && /^-?\d+$/.test(raw) ? Number(raw) : 50;
      return ctx.senderPowerLevel >= required;
    }
    default:
      // "Unrecognised conditions MUST NOT match any events".
      return false;
  }
}

function ruleMatches(kind: RuleKind, rule: PushRule, event: Record<string, unknown>, ctx: PushContext): boolean {
  switch (kind) {
    case "override":
    case "underride":
      return (rule.conditions ?? []).every((c) => conditionHolds(c, event, ctx));
    case "content": {
      const body = valueAtPath(event, "content.body");
      return typeof rule.pattern === "string" && typeof body === "string" && globMatch(rule.pattern, body, true);
    }
    case "room":
      return event.room_id === rule.rule_id;
    case "sender":
      return event.sender === rule.rule_id;
  }
}

/** Drops historical actions (`dont_notify`, `coalesce`: "Historical Actions"). */
const cleanActions = (actions: unknown[]): unknown[] => actions.filter((a) => a !== "dont_notify" && a !== "coalesce");

/**
 * Evaluates a client-format event against a rule set; the first enabled matching rule decides.
 * Undefined when no rule matches or the user sent the event themselves.
 */
export function evaluatePushRules(rules: RuleSet, event: Record<string, unknown>, ctx: PushContext): PushOutcome | undefined {
  if (event.sender === ctx.userId) return undefined;
  for (const kind of RULE_KINDS) {
    for (const rule of rules[kind]) {
      if (!rule.enabled || !ruleMatches(kind, rule, event, ctx)) continue;
      const actions = cleanActions(rule.actions);
      const notify = actions.includes("notify");
      const hl = actions.some((a) => {
        if (typeof a !== "object" || a === null) return false;
        const t = a as Record<string, unknown>;
        return t.set_tweak === "highlight" && t.value !== false;
      });
      return { ruleId: rule.rule_id, actions, notify, highlight: notify && hl };
    }
  }
  return undefined;
}

/** Changes a user's stored push rules in one write and wakes `/sync` (the rules are account data). */
export async function updateRules(hs: Services, userId: string, change: (s: StoredPushRules) => void): Promise<void> {
  const pos = await hs.store.write(async (tx) => {
    const stored = (await loadStoredRules(tx, userId)) ?? { user: emptyRuleSet(), defaults: {} };
    change(stored);
    return putAccountDataTx(tx, userId, "", "m.push_rules", { global: mergeRules(userId, stored) }, { rules: stored });
  });
  hs.notifier.notify(pos);
}

/** A user's full rule set, in its own read. */
export async function pushRulesOf(hs: Services, userId: string): Promise<RuleSet> {
  return hs.store.read((tx) => loadPushRules(tx, userId));
}
