/** A tiny benchmark harness: each figure is measured next to the raw primitive it is compared to. */

/** One printed figure. */
export interface Figure {
  name: string;
  value: number;
  unit: string;
  /** The raw primitive this figure is compared to, measured in the same run. */
  baseline?: { name: string; value: number; unit: string };
  /** value / baseline.value (for rates) or as described in `note`. */
  ratio?: number;
  note?: string;
}

/** A benchmark module: returns its figures. */
export type Bench = () => Promise<Figure[]>;

/** Runs `fn` repeatedly for about `ms` milliseconds (after a warm-up); returns operations per second. */
export async function rate(fn: () => unknown, ms = 1000): Promise<number> {
  const warmEnd = performance.now() + Math.min(200, ms / 4);
  while (performance.now() < warmEnd) await fn();
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    await fn();
    n++;
    now = performance.now();
  }
  return (n * 1000) / (now - start);
}

/** Times one run of `fn`, in milliseconds. */
export async function time(fn: () => unknown): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

/** A figure compared to a baseline rate (ratio = value / baseline). */
export function versus(name: string, value: number, unit: string, baselineName: string, baseline: number, baselineUnit = unit, note?: string): Figure {
  return { name, value, unit, baseline: { name: baselineName, value: baseline, unit: baselineUnit }, ratio: value / baseline, note };
}
