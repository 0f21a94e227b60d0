/** A tiny benchmark harness: each figure is measured next to the raw primitive it is compared to. */
import type { Homeserver } from "../src/homeserver/homeserver.ts";
import { key } from "../src/storage/store.ts";
import { tokenHash } from "../src/homeserver/auth/tokens.ts";

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

/**
 * Puts an account, its device and an access token straight into the store (no registration, no
 * password hashing), so set-up does not dominate a run; returns the token.
 */
export async function seedDevice(hs: Homeserver, userId: string, deviceId: string, account: Record<string, unknown> = {}): Promise<string> {
  const token = `tok_${userId}_${deviceId}`;
  await hs.services.store.write(async (tx) => {
    tx.put("accounts", userId, { userId, createdAt: 1, ...account });
    tx.put("devices", key(userId, deviceId), { userId, deviceId, createdAt: 1 });
    tx.put("access_tokens", tokenHash(token), { userId, deviceId });
  });
  return token;
}

/** Calls `/_matrix/client/v3{path}` through `handle()` as `token`, with `body` as JSON if given; throws unless 200. */
export async function call(hs: Homeserver, method: string, path: string, token: string, body?: unknown): Promise<Record<string, any>> {
  const res = await hs.handle(new Request(`http://localhost/_matrix/client/v3${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body !== undefined ? { "Content-Type": "application/json" } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  }));
  const json = (await res.json()) as Record<string, any>;
  if (res.status !== 200) throw new Error(`${method} ${path} → ${res.status} ${JSON.stringify(json)}`);
  return json;
}
