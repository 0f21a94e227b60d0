/**
 * A small sliding-window rate limiter with an injected clock (client-server API "Rate limiting").
 * Limits are kept per homeserver in memory: they only need to survive seconds, and losing them
 * on restart is harmless.
 */
import { limitExceeded } from "../errors.ts";
import type { RequestContext, Services } from "../context.ts";

/** How many events a key may have within a window. */
export interface RateLimit {
  readonly limit: number;
  readonly windowMs: number;
}

/** Failed `/login` attempts (wrong password, unknown user, bad token) per client. */
export const LOGIN_FAILURES: RateLimit = { limit: 5, windowMs: 60_000 };
/** `/register` attempts that carry `auth` (i.e. try to create an account) per client. */
export const REGISTRATION_ATTEMPTS: RateLimit = { limit: 30, windowMs: 60_000 };
/** Failed UIA password stages per client (device deletion, password change …). */
export const UIA_FAILURES: RateLimit = { limit: 5, windowMs: 60_000 };

/**
 * The header the Node listener sets to the peer's address (and strips from incoming requests).
 * Requests without it — the Service Worker serving its own page, in-process callers — come from
 * the one local user and are not limited.
 */
export const CLIENT_ADDRESS_HEADER = "x-hyphae-client-address";

/** Counts events per key in a sliding window. */
export class RateLimiter {
  private readonly hits = new Map<string, number[]>();

  constructor(
    private readonly rule: RateLimit,
    private readonly clock: () => number,
  ) {}

  /** Throws `429 M_LIMIT_EXCEEDED` if `key` has used up its window. */
  check(key: string): void {
    const recent = this.recent(key);
    if (recent.length >= this.rule.limit) {
      const retryAfter = Math.max(1, recent[0]! + this.rule.windowMs - this.clock());
      throw limitExceeded(retryAfter);
    }
  }

  /** Records one event for `key`. */
  hit(key: string): void {
    const recent = this.recent(key);
    recent.push(this.clock());
    this.hits.set(key, recent);
    if (this.hits.size > 10_000) this.prune();
  }

  private recent(key: string): number[] {
    const since = this.clock() - this.rule.windowMs;
    return (this.hits.get(key) ?? []).filter((t) => t > since);
  }

  private prune(): void {
    for (const key of [...this.hits.keys()]) {
      const recent = this.recent(key);
      if (recent.length === 0) this.hits.delete(key);
      else this.hits.set(key, recent);
    }
  }
}

const limiters = new WeakMap<Services, Map<RateLimit, RateLimiter>>();

/** The limiter for one rule on one homeserver. */
export function limiterFor(hs: Services, rule: RateLimit): RateLimiter {
  let byRule = limiters.get(hs);
  if (!byRule) limiters.set(hs, (byRule = new Map()));
  let limiter = byRule.get(rule);
  if (!limiter) byRule.set(rule, (limiter = new RateLimiter(rule, hs.clock)));
  return limiter;
}

/** The address of the requesting client, when a network listener supplied one. */
export function clientAddress(ctx: RequestContext): string | undefined {
  return ctx.request.headers.get(CLIENT_ADDRESS_HEADER) ?? undefined;
}

/** Throws 429 if the requesting client has used up `rule`; no-op for local (address-less) requests. */
export function checkLimit(ctx: RequestContext, rule: RateLimit): void {
  const addr = clientAddress(ctx);
  if (addr !== undefined) limiterFor(ctx.hs, rule).check(addr);
}

/** Records one event of `rule` for the requesting client. */
export function recordHit(ctx: RequestContext, rule: RateLimit): void {
  const addr = clientAddress(ctx);
  if (addr !== undefined) limiterFor(ctx.hs, rule).hit(addr);
}
