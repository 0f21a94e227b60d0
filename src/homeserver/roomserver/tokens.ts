/**
 * Pagination tokens. A token names a point *between* events of the one global stream:
 * `s<N>` is the point just after stream position N (so it is the same thing as a `/sync`
 * `next_batch` of N). Paginating backwards from `s<N>` returns events with position ≤ N, newest
 * first; forwards from `s<N>` returns events with position > N, oldest first.
 * For a `/sync` timeline whose first event is at position P, `prev_batch` is `s<P-1>`.
 * Accepted on input: `s<N>` (and sync tokens that start with it, e.g. `s12_4`), `t<N>`, and a bare
 * decimal N. Emitted: `s<N>`.
 */
import { invalidParam } from "../errors.ts";

/** The stream position a token names; 400 M_INVALID_PARAM for anything else. */
export function parseToken(token: string, name = "token"): number {
  const m = /^[st]?(\d{1,15})(?:[_~.-].*)?$/.exec(token);
  if (!m) throw invalidParam(`Malformed ${name}`);
  return Number(m[1]);
}

/** The token for the point just after stream position `pos`. */
export function makeToken(pos: number): string {
  return `s${pos}`;
}
