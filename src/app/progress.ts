/**
 * The status view's progress indicator: what the worker's activities (src/homeserver/activity.ts)
 * look like to a person. Pure, so it is tested without a page (test/sw/progress.test.ts).
 */
import type { Activity } from "../homeserver/activity.ts";

/** What the view shows: one line per activity, and the bar (value/max, or no value: indeterminate). */
export interface ProgressView {
  lines: string[];
  bar?: { value?: number; max?: number };
}

const shortRoom = (roomId: string): string => (roomId.length > 20 ? `${roomId.slice(0, 16)}…` : roomId);

const what: Record<Activity["kind"], string> = { join: "Joining", backfill: "Fetching history of" };

/**
 * The lines and the bar for `activities` at time `now` (ms). The bar follows the oldest activity
 * with a count; without one it is indeterminate; with no activity there is no bar.
 */
export function progressView(activities: readonly Activity[], now: number): ProgressView {
  if (activities.length === 0) return { lines: [] };
  const lines = activities.map((a) => {
    const count = a.total !== undefined ? ` ${a.done.toLocaleString("en")} of ${a.total.toLocaleString("en")}` : "";
    const seconds = Math.max(0, Math.round((now - a.startedAt) / 1000));
    return `${what[a.kind]} ${shortRoom(a.roomId)}: ${a.phase}${count} (${seconds} s)`;
  });
  const counted = activities.find((a) => a.total !== undefined && a.total > 0);
  return { lines, bar: counted ? { value: counted.done, max: counted.total! } : {} };
}
