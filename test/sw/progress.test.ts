/** The status view's progress indicator (src/app/progress.ts): lines and bar from the worker's activities. */
import { describe, expect, it } from "vitest";
import { progressView } from "../../src/app/progress.ts";

describe("progressView", () => {
  it("no activity: no line, no bar", () => {
    expect(progressView([], 0)).toEqual({ lines: [] });
  });

  it("a join with a count: a determinate bar and a line with the count and the time spent", () => {
    const view = progressView([{ kind: "join", roomId: "!abcdefghijklmnopqrstuvwxyz", phase: "checking events", done: 1200, total: 30000, startedAt: 1_000 }], 13_400);
    expect(view).toEqual({ lines: ["Joining !abcdefghijklmno…: checking events 1,200 of 30,000 (12 s)"], bar: { value: 1200, max: 30000 } });
  });

  it("only work without a count: an indeterminate bar; the bar follows the first counted activity", () => {
    const asking = { kind: "backfill" as const, roomId: "!short:x", phase: "asking b.test", done: 0, startedAt: 5_000 };
    expect(progressView([asking], 5_000)).toEqual({ lines: ["Fetching history of !short:x: asking b.test (0 s)"], bar: {} });
    const counted = { kind: "join" as const, roomId: "!r:x", phase: "checking events", done: 3, total: 9, startedAt: 4_000 };
    expect(progressView([asking, counted], 6_000).bar).toEqual({ value: 3, max: 9 });
    expect(progressView([asking, counted], 6_000).lines).toHaveLength(2);
  });
});
