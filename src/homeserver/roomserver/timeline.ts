/** Walking a room's timeline (`timeline` table: key = roomId|pos(streamPos) → eventId). */
import type { ReadTx } from "../../storage/store.ts";
import { key, pos, prefix, unpos } from "../../storage/store.ts";
import type { StoredEvent } from "../events/types.ts";
import { getEvent } from "./state.ts";

/** One step of a timeline walk. */
export interface WalkOptions {
  roomId: string;
  dir: "b" | "f";
  /** Backwards: start at positions ≤ from. Forwards: positions > from. */
  from: number;
  /** Stop before crossing this point (backwards: positions > to; forwards: positions ≤ to). */
  to?: number;
  /** Keep an event? (visibility, filters). Skipped events still advance the walk. */
  keep: (e: StoredEvent) => Promise<boolean> | boolean;
  limit: number;
  /** Give up after looking at this many events (bounds the work of a very selective filter). */
  maxScan?: number;
}

/** The kept events in walk order, and the position the walk stopped at (`exhausted` if nothing lies beyond). */
export async function walkTimeline(tx: ReadTx, o: WalkOptions): Promise<{ events: StoredEvent[]; last: number; exhausted: boolean }> {
  if (o.dir === "f") return walkIndex(tx, { ...o, table: "timeline", ascending: true, after: o.from, until: o.to });
  // Backwards from `from` inclusive, down to `to` exclusive; the token is the next position to read.
  if (o.from < 0 && o.limit > 0) return { events: [], last: o.from, exhausted: true };
  const walk = await walkIndex(tx, { ...o, table: "timeline", ascending: false, after: o.from + 1, until: o.to === undefined ? undefined : o.to + 1 });
  return { ...walk, last: walk.last - 1 };
}

/** A walk over an index of a room's events (key = roomId|pos(n) → eventId), shared by the timeline and the backfill table. */
export interface IndexWalk {
  table: string;
  roomId: string;
  /** Rising or falling `n`. */
  ascending: boolean;
  /** Start after this `n` (exclusive). */
  after: number;
  /** Stop at this `n` (inclusive). */
  until?: number | undefined;
  /** Keep an event? (visibility, filters). Skipped events still advance the walk. */
  keep: (e: StoredEvent) => Promise<boolean> | boolean;
  limit: number;
  /** Give up after looking at this many events (bounds the work of a very selective filter). */
  maxScan?: number;
}

/** The kept events in walk order, the `n` of the last row looked at (`after` if none), and whether the index ended before the limit. */
export async function walkIndex(tx: ReadTx, o: IndexWalk): Promise<{ events: StoredEvent[]; last: number; exhausted: boolean }> {
  const events: StoredEvent[] = [];
  const pre = prefix(o.roomId);
  let last = o.after;
  // Nothing asked for: no row is read (the loop below adds an event before it checks the limit).
  if (o.limit <= 0) return { events, last, exhausted: false };
  let scanned = 0;
  const maxScan = o.maxScan ?? Math.max(1000, o.limit * 20);
  const batch = Math.min(200, Math.max(20, o.limit * 2));
  for (;;) {
    const bound = o.until === undefined ? {} : o.ascending ? { lte: key(o.roomId, pos(o.until)) } : { gte: key(o.roomId, pos(o.until)) };
    const range = o.ascending
      ? { prefix: pre, gt: key(o.roomId, pos(last)), limit: batch, ...bound }
      : { prefix: pre, lt: key(o.roomId, pos(last)), reverse: true, limit: batch, ...bound };
    const rows = await tx.range<string>(o.table, range);
    // The events of the rows are asked for together, as many as could still be kept, so IndexedDB
    // answers them in one round trip instead of one each. A read asked for ahead and not awaited
    // (the walk ended, or an earlier one failed) must not become an unhandled rejection.
    const ahead = (id: string): Promise<StoredEvent | undefined> => {
      const p = getEvent(tx, id);
      p.catch(() => undefined);
      return p;
    };
    let fetched: Promise<StoredEvent | undefined>[] = [];
    for (let i = 0; i < rows.length; i++) {
      if (i >= fetched.length) fetched = fetched.concat(rows.slice(i, i + Math.max(1, o.limit - events.length)).map((r) => ahead(r.value)));
      const row = rows[i]!;
      last = unpos(row.key.slice(pre.length));
      scanned++;
      const e = await fetched[i];
      if (e && (await o.keep(e))) events.push(e);
      if (events.length >= o.limit || scanned >= maxScan) return { events, last, exhausted: false };
    }
    if (rows.length < batch) return { events, last, exhausted: true };
  }
}
