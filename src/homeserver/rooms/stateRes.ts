/**
 * State resolution: v1 (`rooms/v1.md` "State resolution"), v2 (`rooms/fragments/v2-state-res.md`)
 * and v2.1 (`rooms/v12.md`). Pure and deterministic: events come from `fetchEvent`; no storage,
 * clock or network.
 */
import type { Pdu, StateMap } from "../events/types.ts";
import { stateKeyOf } from "../events/types.ts";
import { authStateKeysFor, checkAuth } from "./auth.ts";
import type { FetchEvent, ResolvableEvent } from "./authChain.ts";
import { EventCache, authChain } from "./authChain.ts";
import { userPowerLevel } from "./powerLevels.ts";
import type { RoomVersionRules } from "./versions.ts";

export type { FetchEvent, ResolvableEvent } from "./authChain.ts";

const CREATE = stateKeyOf("m.room.create", "");
const POWER = stateKeyOf("m.room.power_levels", "");
const keyOf = (p: Pdu): string => stateKeyOf(p.type, p.state_key ?? "");

/** Resolves a set of room states (each SK → event ID) with the version's algorithm. */
export async function resolveState(version: RoomVersionRules, stateSets: StateMap[], fetchEvent: FetchEvent): Promise<StateMap> {
  if (stateSets.length === 0) return new Map();
  if (stateSets.length === 1) return new Map(stateSets[0]);
  const cache = new EventCache(fetchEvent);
  return version.stateRes === "v1" ? resolveV1(version, stateSets, cache) : resolveV2(version, stateSets, cache);
}

/** Fetches every ID (through the cache); unknown ones are dropped. */
async function fetchAll(ids: Iterable<string>, cache: EventCache): Promise<ResolvableEvent[]> {
  const out: ResolvableEvent[] = [];
  const pending: Promise<ResolvableEvent | undefined>[] = [];
  for (const id of ids) {
    const e = cache.get(id);
    if (e instanceof Promise) pending.push(e);
    else if (e) out.push(e);
  }
  for (const e of await Promise.all(pending)) if (e) out.push(e);
  return out;
}

/**
 * v2 "Unconflicted state map and conflicted state set": "If a given key K is present in every S_i
 * with the same value V in each state map, then the pair (K, V) belongs to the unconflicted state
 * map. Otherwise, V belongs to the conflicted state set."
 */
function partitionV2(stateSets: StateMap[]): { unconflicted: StateMap; conflicted: Set<string> } {
  const unconflicted: StateMap = new Map();
  const conflicted = new Set<string>();
  const keys = new Set<string>();
  for (const s of stateSets) for (const k of s.keys()) keys.add(k);
  for (const k of keys) {
    const first = stateSets[0]!.get(k);
    if (first !== undefined && stateSets.every((s) => s.get(k) === first)) unconflicted.set(k, first);
    else for (const s of stateSets) {
      const v = s.get(k);
      if (v !== undefined) conflicted.add(v);
    }
  }
  return { unconflicted, conflicted };
}

/** A binary min-heap (Kahn's algorithm picks the smallest candidate at each step). */
class Heap<T> {
  private readonly a: T[] = [];
  private readonly less: (x: T, y: T) => boolean;
  constructor(less: (x: T, y: T) => boolean) {
    this.less = less;
  }
  get size(): number {
    return this.a.length;
  }
  push(x: T): void {
    const a = this.a;
    a.push(x);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }
  pop(): T {
    const a = this.a;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < a.length && this.less(a[l]!, a[m]!)) m = l;
        if (r < a.length && this.less(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}

/**
 * "Power events": "a state event with type m.room.power_levels or m.room.join_rules, or a state
 * event with type m.room.member where the membership is leave or ban and the sender does not match
 * the state_key."
 */
export function isPowerEvent(p: Pdu): boolean {
  if (p.state_key === undefined) return false;
  if (p.type === "m.room.power_levels" || p.type === "m.room.join_rules") return p.state_key === "";
  if (p.type === "m.room.member") {
    const m = p.content.membership;
    return (m === "leave" || m === "ban") && p.sender !== p.state_key;
  }
  return false;
}

/** The room's create event: from the state sets, or (v12) named by the room ID. */
async function findCreate(version: RoomVersionRules, stateSets: StateMap[], cache: EventCache): Promise<ResolvableEvent | undefined> {
  for (const s of stateSets) {
    const id = s.get(CREATE);
    if (id) {
      const e = await cache.get(id);
      if (e) return e;
    }
  }
  if (version.roomIdFromCreate) {
    for (const s of stateSets) {
      for (const id of s.values()) {
        const e = await cache.get(id);
        const roomId = e?.pdu.room_id;
        if (typeof roomId === "string") return cache.get("$" + roomId.slice(1));
      }
    }
  }
  return undefined;
}

async function resolveV2(version: RoomVersionRules, stateSets: StateMap[], cache: EventCache): Promise<StateMap> {
  const { unconflicted, conflicted } = partitionV2(stateSets);
  if (conflicted.size === 0) return unconflicted;
  const create = await findCreate(version, stateSets, cache);

  // "Auth difference": "If C_i is the full auth chain of S_i, then the auth difference is ∪C_i − ∩C_i."
  const chains = await Promise.all(stateSets.map((s) => authChain(s.values(), cache)));
  const full = new Set<string>(conflicted);
  for (const c of chains) for (const id of c) if (!chains.every((o) => o.has(id))) full.add(id);
  // v2.1 "Full conflicted set": "the union of the conflicted state set, the conflicted state
  // subgraph, and the auth difference."
  if (version.stateRes === "v2.1") for (const id of await conflictedSubgraph(conflicted, cache)) full.add(id);
  const fullEvents = new Map((await fetchAll(full, cache)).map((e) => [e.eventId, e]));

  // 1. "Select the set X of all power events that appear in the full conflicted set. For each such
  // power event P, enlarge X by adding the events in the auth chain of P which also belong to the
  // full conflicted set. Sort X into a list using the reverse topological power ordering."
  const x = new Set<string>();
  const powerEvents = [...fullEvents.values()].filter((e) => isPowerEvent(e.pdu));
  for (const p of powerEvents) x.add(p.eventId);
  for (const id of await authChain(powerEvents.map((p) => p.eventId), cache)) if (fullEvents.has(id)) x.add(id);
  const sortedPower = await reverseTopologicalPowerOrder([...x].map((id) => fullEvents.get(id)!), version, create, cache);

  // 2. "Apply the iterative auth checks algorithm, starting from the unconflicted state map [v2.1:
  // from an empty state map], to the list of events from the previous step".
  const start: StateMap = version.stateRes === "v2.1" ? new Map() : new Map(unconflicted);
  const partial = await iterativeAuthChecks(start, sortedPower, version, create, cache);

  // 3. "Take all remaining events that weren't picked in step 1 and order them by the mainline
  // ordering based on the power level in the partially resolved state obtained in step 2."
  const remaining = [...fullEvents.values()].filter((e) => !x.has(e.eventId));
  const sortedRest = await mainlineOrder(remaining, partial.get(POWER), cache);

  // 4. "Apply the iterative auth checks algorithm on the partial resolved state and the list of
  // events from the previous step."
  const resolved = await iterativeAuthChecks(partial, sortedRest, version, create, cache);

  // 5. "Update the result by replacing any event with the event with the same key from the
  // unconflicted state map, if such an event exists, to get the final resolved state."
  for (const [k, v] of unconflicted) resolved.set(k, v);
  return resolved;
}

/**
 * v2.1 "Conflicted state subgraph": the union of all `auth_events` paths between events of the
 * conflicted state set. An event is on such a path when it is reachable from a conflicted event
 * and can itself reach a conflicted event.
 */
export async function conflictedSubgraph(conflicted: Set<string>, cache: EventCache): Promise<Set<string>> {
  // Forward: everything reachable from the conflicted set (the union of their auth chains).
  const reachable = await authChain(conflicted, cache);
  // Backward: which of those reach a conflicted event; iterative post-order DFS with memo.
  const reaches = new Map<string, boolean>();
  for (const id of conflicted) reaches.set(id, true);
  const out = new Set<string>();
  for (const root of reachable) {
    if (reaches.has(root)) continue;
    const stack: [string, number][] = [[root, 0]];
    while (stack.length) {
      const top = stack[stack.length - 1]!;
      const e = cache.peek(top[0]);
      const auth = e ? cache.authEventIds(e) : [];
      if (top[1] < auth.length) {
        const next = auth[top[1]++]!;
        if (!reaches.has(next)) stack.push([next, 0]);
        continue;
      }
      stack.pop();
      reaches.set(top[0], auth.some((a) => reaches.get(a) === true));
    }
  }
  for (const id of reachable) if (reaches.get(id)) out.add(id);
  for (const id of conflicted) out.add(id);
  return out;
}

/** The auth state an event names in its `auth_events` (skipping rejected and unknown ones). */
async function authEventsState(e: ResolvableEvent, cache: EventCache): Promise<Map<string, Pdu>> {
  const out = new Map<string, Pdu>();
  for (const a of await fetchAll(cache.authEventIds(e), cache)) {
    if (a.rejected || a.pdu.state_key === undefined) continue;
    out.set(keyOf(a.pdu), a.pdu);
  }
  return out;
}

/**
 * "Reverse topological power ordering": Kahn's algorithm over the `auth_events` DAG restricted to
 * the events, choosing at each step the smallest candidate where x < y if "x's sender has greater
 * power level than y's sender, when looking at their respective auth_events", then smaller
 * `origin_server_ts`, then smaller `event_id`.
 */
export async function reverseTopologicalPowerOrder(
  events: ResolvableEvent[],
  version: RoomVersionRules,
  create: ResolvableEvent | undefined,
  cache: EventCache,
): Promise<ResolvableEvent[]> {
  const ids = new Set(events.map((e) => e.eventId));
  const power = new Map<string, number>();
  for (const e of events) {
    const st = await authEventsState(e, cache);
    // v12 creators are creators whether or not the create event is cited (it never is).
    if (create && !st.has(CREATE)) st.set(CREATE, create.pdu);
    power.set(e.eventId, userPowerLevel(e.pdu.sender, st, version));
  }
  // Edges: an event comes after each of its auth events that is in the set.
  const pendingDeps = new Map<string, number>();
  const dependents = new Map<string, string[]>();
  for (const e of events) {
    let n = 0;
    for (const a of new Set(cache.authEventIds(e))) {
      if (!ids.has(a)) continue;
      n++;
      const list = dependents.get(a);
      if (list) list.push(e.eventId);
      else dependents.set(a, [e.eventId]);
    }
    pendingDeps.set(e.eventId, n);
  }
  const byId = new Map(events.map((e) => [e.eventId, e]));
  const less = (x: ResolvableEvent, y: ResolvableEvent): boolean => {
    const px = power.get(x.eventId)!, py = power.get(y.eventId)!;
    if (px !== py) return px > py;
    if (x.pdu.origin_server_ts !== y.pdu.origin_server_ts) return x.pdu.origin_server_ts < y.pdu.origin_server_ts;
    return x.eventId < y.eventId;
  };
  const heap = new Heap<ResolvableEvent>(less);
  for (const e of events) if (pendingDeps.get(e.eventId) === 0) heap.push(e);
  const out: ResolvableEvent[] = [];
  while (heap.size) {
    const e = heap.pop();
    out.push(e);
    for (const d of dependents.get(e.eventId) ?? []) {
      const n = pendingDeps.get(d)! - 1;
      pendingDeps.set(d, n);
      if (n === 0) heap.push(byId.get(d)!);
    }
  }
  return out;
}

/** The `m.room.power_levels` event among an event's auth events, if any. */
async function authPowerEvent(e: ResolvableEvent, cache: EventCache): Promise<ResolvableEvent | undefined> {
  for (const id of cache.authEventIds(e)) {
    const a = await cache.get(id);
    if (a && a.pdu.type === "m.room.power_levels" && a.pdu.state_key === "") return a;
  }
  return undefined;
}

/**
 * "Mainline ordering": positions along the mainline of the resolved power levels event P (P_0 = P,
 * P_{i+1} = the power levels event in P_i's auth events); an event's position is that of the first
 * e_j (j ≥ 1) of its own power-levels chain on the mainline, else ∞. Sorted by position descending,
 * then `origin_server_ts`, then `event_id`.
 */
export async function mainlineOrder(events: ResolvableEvent[], powerId: string | undefined, cache: EventCache): Promise<ResolvableEvent[]> {
  const mainline = new Map<string, number>();
  let p = powerId ? await cache.get(powerId) : undefined;
  for (let i = 0; p && !mainline.has(p.eventId); i++) {
    mainline.set(p.eventId, i);
    p = await authPowerEvent(p, cache);
  }
  const memo = new Map<string, number>();
  const position = async (e: ResolvableEvent): Promise<number> => {
    const walked: string[] = [];
    let cur = await authPowerEvent(e, cache);
    let pos = Infinity;
    while (cur) {
      const m = mainline.get(cur.eventId) ?? memo.get(cur.eventId);
      if (m !== undefined) {
        pos = m;
        break;
      }
      walked.push(cur.eventId);
      cur = await authPowerEvent(cur, cache);
    }
    // Every power levels event walked on the way has the same position as e (its chain continues
    // the same way), so remember it for the next event.
    for (const w of walked) memo.set(w, pos);
    return pos;
  };
  const keyed: [ResolvableEvent, number][] = [];
  for (const e of events) keyed.push([e, await position(e)]);
  keyed.sort(([x, px], [y, py]) => {
    if (px !== py) return px > py ? -1 : 1;
    if (x.pdu.origin_server_ts !== y.pdu.origin_server_ts) return x.pdu.origin_server_ts - y.pdu.origin_server_ts;
    return x.eventId < y.eventId ? -1 : x.eventId > y.eventId ? 1 : 0;
  });
  return keyed.map(([e]) => e);
}

/**
 * "Iterative auth checks": apply each state event to the state if the authorisation rules allow
 * it; "If a (event_type, state_key) key that is required for checking the authorisation rules is
 * not present in the state, then the appropriate state event from the event's auth_events is used
 * if the auth event is not rejected."
 */
async function iterativeAuthChecks(
  initial: StateMap,
  events: ResolvableEvent[],
  version: RoomVersionRules,
  create: ResolvableEvent | undefined,
  cache: EventCache,
): Promise<StateMap> {
  const state = new Map(initial);
  for (const e of events) {
    if (e.pdu.state_key === undefined) continue;
    const authState = await authEventsState(e, cache);
    for (const k of authStateKeysFor(e.pdu.type, e.pdu.state_key, e.pdu.sender, e.pdu.content, version)) {
      const id = state.get(k);
      if (id === undefined) continue;
      const s = await cache.get(id);
      if (s) authState.set(k, s.pdu);
    }
    // The create event is required by checkAuth; v12 never cites it, its room ID names it.
    if (!authState.has(CREATE)) {
      const cid = state.get(CREATE);
      const c = cid ? await cache.get(cid) : create;
      if (c) authState.set(CREATE, c.pdu);
    }
    if (checkAuth(e.pdu, e.eventId, authState, version).allowed) state.set(keyOf(e.pdu), e.eventId);
  }
  return state;
}

// ---------------------------------------------------------------- v1

/** `sha1(event_id)` as a comparable hex string (WebCrypto: v1 resolution is async anyway). */
export async function sha1Hex(id: string): Promise<string> {
  const b = new Uint8Array(await crypto.subtle.digest("SHA-1", new TextEncoder().encode(id)));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * v1: "Start by setting R to the union of the states to be resolved, excluding any conflicting
 * events", then resolve `m.room.power_levels`, `m.room.join_rules`, `m.room.member` conflicts in
 * that order ("Sort the list by ascending depth then descending sha1(event_id). Add the first event
 * in the list to R. For each subsequent event … If the event would be allowed, then update R … If
 * it would not be allowed, stop"), then other conflicts ("pick the event with the highest depth and
 * lowest sha1(event_id) that passes authentication in R"). "A conflict occurs between states where
 * those states have different event_ids for the same (event_type, state_key)"; a key missing from
 * some states is therefore not a conflict. Member conflicts are resolved key by key.
 */
async function resolveV1(version: RoomVersionRules, stateSets: StateMap[], cache: EventCache): Promise<StateMap> {
  const values = new Map<string, Set<string>>();
  for (const s of stateSets) {
    for (const [k, v] of s) {
      const set = values.get(k);
      if (set) set.add(v);
      else values.set(k, new Set([v]));
    }
  }
  const r: StateMap = new Map();
  const conflicts = new Map<string, ResolvableEvent[]>();
  for (const [k, set] of values) {
    if (set.size === 1) r.set(k, [...set][0]!);
    else conflicts.set(k, await fetchAll(set, cache));
  }
  const allowedIn = async (e: ResolvableEvent): Promise<boolean> => {
    const authState = new Map<string, Pdu>();
    const keys = authStateKeysFor(e.pdu.type, e.pdu.state_key, e.pdu.sender, e.pdu.content, version);
    for (const k of [CREATE, ...keys]) {
      const id = r.get(k);
      const s = id ? await cache.get(id) : undefined;
      if (s) authState.set(k, s.pdu);
    }
    return checkAuth(e.pdu, e.eventId, authState, version).allowed;
  };
  const sorted = async (list: ResolvableEvent[], depthAsc: boolean): Promise<ResolvableEvent[]> => {
    const h = new Map(await Promise.all(list.map(async (e) => [e.eventId, await sha1Hex(e.eventId)] as const)));
    return [...list].sort((a, b) => {
      if (a.pdu.depth !== b.pdu.depth) return depthAsc ? a.pdu.depth - b.pdu.depth : b.pdu.depth - a.pdu.depth;
      const ha = h.get(a.eventId)!, hb = h.get(b.eventId)!;
      // ascending depth → descending sha1; descending depth → ascending sha1
      return ha === hb ? 0 : (ha < hb) === depthAsc ? 1 : -1;
    });
  };
  const keysSorted = [...conflicts.keys()].sort();
  for (const type of ["m.room.power_levels", "m.room.join_rules", "m.room.member"]) {
    for (const k of keysSorted) {
      const list = conflicts.get(k);
      if (!list || list.length === 0 || list[0]!.pdu.type !== type) continue;
      const [first, ...rest] = await sorted(list, true);
      r.set(k, first!.eventId);
      for (const e of rest) {
        if (!(await allowedIn(e))) break;
        r.set(k, e.eventId);
      }
      conflicts.delete(k);
    }
  }
  for (const k of keysSorted) {
    const list = conflicts.get(k);
    if (!list) continue;
    for (const e of await sorted(list, false)) {
      if (await allowedIn(e)) {
        r.set(k, e.eventId);
        break;
      }
    }
  }
  return r;
}

