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
  const events: StoredEvent[] = [];
  const pre = prefix(o.roomId);
  let cursor = o.from;
  // Nothing asked for: no row is read (the loop below adds an event before it checks the limit).
  if (o.limit <= 0) return { events, last: cursor, exhausted: false };
  let scanned = 0;
  const maxScan = o.maxScan ?? Math.max(1000, o.limit * 20);
  const batch = Math.min(200, Math.max(20, o.limit * 2));
  for (;;) {
    if (o.dir === "b" && cursor < 0) return { events, last: cursor, exhausted: true };
    const range = o.dir === "b"
      ? { prefix: pre, lte: key(o.roomId, pos(cursor)), reverse: true, limit: batch, ...(o.to !== undefined ? { gt: key(o.roomId, pos(o.to)) } : {}) }
      : { prefix: pre, gt: key(o.roomId, pos(cursor)), limit: batch, ...(o.to !== undefined ? { lte: key(o.roomId, pos(o.to)) } : {}) };
    const rows = await tx.range<string>("timeline", range);
    for (const row of rows) {
      const p = unpos(row.key.slice(pre.length));
      scanned++;
      const e = await getEvent(tx, row.value);
      if (e && (await o.keep(e))) events.push(e);
      cursor = o.dir === "b" ? p - 1 : p;
      if (events.length >= o.limit || scanned >= maxScan) {
        return { events, last: cursor, exhausted: false };
      }
    }
    if (rows.length < batch) return { events, last: cursor, exhausted: true };
  }
}
