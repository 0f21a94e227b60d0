/** Key-range logic shared by backends that filter keys themselves (memory) and by tests. */
import type { KeyRange } from "./store.ts";

/** Whether `k` lies within `r` (ignoring reverse/limit). */
export function inRange(k: string, r: KeyRange = {}): boolean {
  if (r.prefix !== undefined && !k.startsWith(r.prefix)) return false;
  if (r.gte !== undefined && k < r.gte) return false;
  if (r.gt !== undefined && k <= r.gt) return false;
  if (r.lte !== undefined && k > r.lte) return false;
  if (r.lt !== undefined && k >= r.lt) return false;
  return true;
}
