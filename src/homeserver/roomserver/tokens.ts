/**
 * The one stream-token grammar, for `/sync` (`since`, `next_batch`, `prev_batch`), `/events`,
 * `keys/changes`, `/messages`, `/context`, relations, threads, search and `timestamp_to_event`-style
 * positions. A token names a point *between* events of the one global stream:
 * `s<N>` is the point just after stream position N (so it is the same thing as a `/sync`
 * `next_batch` of N). Paginating backwards from `s<N>` returns events with position ≤ N, newest
 * first; forwards from `s<N>` returns events with position > N, oldest first.
 * For a `/sync` timeline whose first event is at position P, `prev_batch` is `s<P-1>`.
 *
 * Emitted: `s<N>` (pagination) and `s<N>_<T>` (`/sync`, where T is the in-memory typing serial,
 * ephemeral/typing.ts). Accepted everywhere: `s<N>`, `s<N>_<T>` and anything after that starting
 * with `_ ~ . -` (other servers' and older multi-part forms), `t<N>`, and a bare decimal N.
 */
import { invalidParam } from "../errors.ts";

/** A parsed token: the stream position and (0 unless given) the typing serial. */
export interface StreamToken {
  pos: number;
  typing: number;
}

const TOKEN = /^[st]?(\d{1,15})(?:_(\d{1,15}))?(?:[_~.-].*)?$/;

/** The position (and typing serial) a token names, or undefined when it is not a token. */
export function readToken(token: string): StreamToken | undefined {
  const m = TOKEN.exec(token);
  return m ? { pos: Number(m[1]), typing: Number(m[2] ?? 0) } : undefined;
}

/** The stream position a token names; 400 M_INVALID_PARAM for anything else. */
export function parseToken(token: string, name = "token"): number {
  const t = readToken(token);
  if (!t) throw invalidParam(`Malformed ${name}`);
  return t.pos;
}

/** The token for the point just after stream position `pos`. */
export function makeToken(pos: number): string {
  return `s${pos}`;
}

/** A `/sync` token: the point after `pos`, with the typing serial the response is complete up to. */
export function syncToken(pos: number, typing: number): string {
  return `s${pos}_${typing}`;
}

/**
 * A point in the history fetched from other servers with `/backfill` (the `backfill` table,
 * federation/backfill.ts), which lies before the whole timeline: `b<K>` is the point between
 * backfill ordinal K (older) and K−1 (newer; ordinal 1 is the newest backfilled event). Backwards
 * from `b<K>` yields ordinals ≥ K; forwards yields K−1 … 1 and then the timeline from its start.
 * Backwards pagination reaches it from `s<N>` when the timeline runs out (as `b1`).
 */
export function makeBackfillToken(ordinal: number): string {
  return `b${ordinal}`;
}

/** The ordinal a backfill token names, or undefined when `token` is not one. */
export function readBackfillToken(token: string): number | undefined {
  const m = /^b(\d{1,15})$/.exec(token);
  return m ? Math.max(1, Number(m[1])) : undefined;
}
