/**
 * Auth chains ("Auth chain" in the state resolution definitions): "the set containing all of E's
 * auth events, all of their auth events, and so on recursively". Pure: events come from `fetch`.
 */
import type { Pdu } from "../events/types.ts";
import { refIds } from "../events/types.ts";

/** An event as state resolution and auth chains read it (a StoredEvent fits). */
export interface ResolvableEvent {
  eventId: string;
  pdu: Pdu;
  /** Set when the event was rejected (by its auth events or the state before it). */
  rejected?: string | boolean;
}

/** Looks an event up by ID, synchronously or not; undefined when unknown. */
export type FetchEvent = (eventId: string) => ResolvableEvent | undefined | Promise<ResolvableEvent | undefined>;

/**
 * A memoising wrapper around a fetch function, so one resolution reads each event once. A sync
 * fetch stays sync (no await per event when the caller has everything in memory).
 */
export class EventCache {
  private readonly map = new Map<string, ResolvableEvent | undefined>();
  private readonly authIds = new Map<string, string[]>();
  private readonly fetchFn: FetchEvent;
  constructor(fetchFn: FetchEvent) {
    this.fetchFn = fetchFn;
  }

  /** The event, or undefined when `fetch` does not know it. */
  get(id: string): ResolvableEvent | undefined | Promise<ResolvableEvent | undefined> {
    if (this.map.has(id)) return this.map.get(id);
    const r = this.fetchFn(id);
    if (r instanceof Promise) {
      return r.then((e) => {
        this.map.set(id, e);
        return e;
      });
    }
    this.map.set(id, r);
    return r;
  }

  /** An already fetched event (after `get` resolved). */
  peek(id: string): ResolvableEvent | undefined {
    return this.map.get(id);
  }

  /** The IDs in an event's `auth_events` (either PDU format). */
  authEventIds(e: ResolvableEvent): string[] {
    let ids = this.authIds.get(e.eventId);
    if (!ids) {
      ids = Array.isArray(e.pdu.auth_events) ? refIds(e.pdu.auth_events) : [];
      this.authIds.set(e.eventId, ids);
    }
    return ids;
  }
}

/**
 * The union of the auth chains of `ids` (not including `ids` themselves unless reachable).
 * Unknown events are skipped: the chain is what can be walked.
 */
export async function authChain(ids: Iterable<string>, fetch: FetchEvent | EventCache): Promise<Set<string>> {
  const cache = fetch instanceof EventCache ? fetch : new EventCache(fetch);
  const out = new Set<string>();
  const stack: string[] = [];
  const expand = (e: ResolvableEvent | undefined): void => {
    if (!e) return;
    for (const a of cache.authEventIds(e)) {
      if (!out.has(a)) {
        out.add(a);
        stack.push(a);
      }
    }
  };
  for (const id of ids) {
    const e = cache.get(id);
    expand(e instanceof Promise ? await e : e);
  }
  while (stack.length) {
    const id = stack.pop()!;
    const e = cache.get(id);
    expand(e instanceof Promise ? await e : e);
  }
  return out;
}
