/**
 * Rate limiting (client-server API "Rate limiting") with Synapse's limiter names, shapes and
 * defaults, so an operator's `rc_*` settings mean here what they mean there. Each limiter is a
 * token bucket: `burst_count` actions at once, refilled at `per_second`. Buckets live in memory
 * on the homeserver's services: they only need to survive seconds, and losing them on restart is
 * harmless.
 *
 * Only requests that arrive over a network listener are limited (the listener sets
 * {@link CLIENT_ADDRESS_HEADER}); the Service Worker serving its own page and in-process callers
 * are the one local user.
 */
import { limitExceeded } from "../errors.ts";
import type { RequestContext, Requester } from "../context.ts";

/** A token bucket: Synapse's `{ "per_second": …, "burst_count": … }`. */
export interface TokenBucket {
  /** Actions regained per second (the long-term rate). */
  readonly perSecond: number;
  /** Actions allowed at once (the bucket's size). */
  readonly burstCount: number;
}

/** The limiters an operator configures, by Synapse's config path. */
export const LIMITER_NAMES = [
  "rc_message",
  "rc_registration",
  "rc_registration_token_validity",
  "rc_login.address",
  "rc_login.account",
  "rc_login.failed_attempts",
  "rc_joins.local",
  "rc_joins.remote",
  "rc_invites.per_room",
  "rc_invites.per_user",
  "rc_invites.per_issuer",
  "rc_room_creation",
  "rc_presence.per_user",
] as const;

/** One configurable limiter's name, e.g. `rc_login.address`. */
export type LimiterName = (typeof LIMITER_NAMES)[number];

/** Every configurable limiter's bucket. */
export type RateLimitSettings = Readonly<Record<LimiterName, TokenBucket>>;

/**
 * Synapse's defaults (synapse/config/ratelimiting.py), except `rc_registration`'s burst: 30 rather
 * than 3, so that a provisioning script or a bridge setting up its users is not locked out after the
 * third account (30 registrations from one address at once, then Synapse's one per ~5.9 s).
 */
export const DEFAULT_RATE_LIMITS: RateLimitSettings = {
  rc_message: { perSecond: 0.2, burstCount: 10 },
  rc_registration: { perSecond: 0.17, burstCount: 30 },
  rc_registration_token_validity: { perSecond: 0.1, burstCount: 5 },
  "rc_login.address": { perSecond: 0.003, burstCount: 5 },
  "rc_login.account": { perSecond: 0.003, burstCount: 5 },
  "rc_login.failed_attempts": { perSecond: 0.17, burstCount: 3 },
  "rc_joins.local": { perSecond: 0.1, burstCount: 10 },
  "rc_joins.remote": { perSecond: 0.01, burstCount: 10 },
  "rc_invites.per_room": { perSecond: 0.3, burstCount: 10 },
  "rc_invites.per_user": { perSecond: 0.003, burstCount: 5 },
  "rc_invites.per_issuer": { perSecond: 0.3, burstCount: 10 },
  "rc_room_creation": { perSecond: 0.016, burstCount: 10 },
  "rc_presence.per_user": { perSecond: 0.1, burstCount: 1 },
};

/**
 * `rc_federation` (Synapse's FederationRatelimitSettings), parsed and kept for the federation
 * API: within `windowSize` ms a remote server gets `sleepLimit` requests before each further one
 * is delayed `sleepDelay` ms, is refused beyond `rejectLimit`, and at most `concurrent` run at once.
 */
export interface FederationRateLimit {
  readonly windowSize: number;
  readonly sleepLimit: number;
  readonly sleepDelay: number;
  readonly rejectLimit: number;
  readonly concurrent: number;
}

/** Synapse's `rc_federation` defaults. */
export const DEFAULT_FEDERATION_RATE_LIMIT: FederationRateLimit = { windowSize: 1000, sleepLimit: 10, sleepDelay: 500, rejectLimit: 50, concurrent: 3 };

/**
 * The header the Node listener sets to the client's address (and strips from incoming requests).
 * Requests without it — the Service Worker serving its own page, in-process callers — come from
 * the one local user and are not limited.
 */
export const CLIENT_ADDRESS_HEADER = "x-hyphae-client-address";

/** Keys kept before a sweep drops the buckets that have drained. */
const SWEEP_AT = 10_000;

/**
 * One limiter: a bucket per key (an address, a user ID, a room ID). A bucket's level drains at
 * `perSecond`; an action fits while level + cost ≤ `burstCount`.
 */
export class TokenBucketLimiter {
  // key = limited entity → bucket level and when it was last computed
  private readonly levels = new Map<string, { level: number; at: number }>();

  private readonly bucket: TokenBucket;
  private readonly clock: () => number;

  constructor(bucket: TokenBucket, clock: () => number) {
    this.bucket = bucket;
    this.clock = clock;
  }

  /** Throws `429 M_LIMIT_EXCEEDED` if `cost` more actions by `key` do not fit now. */
  check(key: string, cost = 1): void {
    const level = this.levelOf(key);
    if (level + cost > this.bucket.burstCount) throw limitExceeded(this.retryAfterMs(level, cost));
  }

  /** Checks, then counts `cost` actions by `key`. */
  take(key: string, cost = 1): void {
    this.check(key, cost);
    this.record(key, cost);
  }

  /** Counts `cost` actions by `key` even beyond the limit (the action already happened). */
  record(key: string, cost = 1): void {
    this.levels.set(key, { level: this.levelOf(key) + cost, at: this.clock() });
    if (this.levels.size > SWEEP_AT) this.sweep();
  }

  private levelOf(key: string): number {
    const entry = this.levels.get(key);
    if (!entry) return 0;
    return Math.max(0, entry.level - ((this.clock() - entry.at) / 1000) * this.bucket.perSecond);
  }

  /** When enough has drained for `cost` actions (at least 1 ms, so clients always wait a little). */
  private retryAfterMs(level: number, cost: number): number {
    const excess = level + cost - this.bucket.burstCount;
    return Math.max(1, Math.ceil((excess / this.bucket.perSecond) * 1000));
  }

  private sweep(): void {
    for (const key of [...this.levels.keys()]) if (this.levelOf(key) === 0) this.levels.delete(key);
  }
}

/** A homeserver's limiters (on its services): the configured ones, and fixed ones by name. */
export class RateLimiters {
  private readonly limiters = new Map<string, TokenBucketLimiter>();

  private readonly settings: RateLimitSettings;
  private readonly clock: () => number;

  constructor(settings: RateLimitSettings, clock: () => number) {
    this.settings = settings;
    this.clock = clock;
  }

  /** The limiter for a configured name, or for an internal limit with its own fixed bucket. */
  get(name: LimiterName): TokenBucketLimiter;
  get(name: string, bucket: TokenBucket): TokenBucketLimiter;
  get(name: string, bucket?: TokenBucket): TokenBucketLimiter {
    let limiter = this.limiters.get(name);
    if (!limiter) {
      const b = bucket ?? this.settings[name as LimiterName];
      this.limiters.set(name, (limiter = new TokenBucketLimiter(b, this.clock)));
    }
    return limiter;
  }
}

/** The address of the requesting client, when a network listener supplied one. */
export function clientAddress(ctx: RequestContext): string | undefined {
  return ctx.request.headers.get(CLIENT_ADDRESS_HEADER) ?? undefined;
}

/**
 * Whether a requester is exempt from the per-user limits, as in Synapse: server admins, and
 * application services (a request made with an `as_token` carries `appserviceId`; the service's
 * registration may say `rate_limited: true`, which sets `appserviceRateLimited`).
 */
export function isExempt(me: Requester & { appserviceId?: string; appserviceRateLimited?: boolean }): boolean {
  return me.admin === true || (me.appserviceId !== undefined && me.appserviceRateLimited !== true);
}

/** What one limit check does: check only, or check and count (the default). */
export type LimitMode = "check" | "take";

/**
 * Applies limiter `name` to `key` for a network request: `take` (default) checks and counts,
 * `check` only checks (the action is counted later, once it happened). Local requests pass.
 */
export function limitKey(ctx: RequestContext, name: LimiterName, key: string, mode: LimitMode = "take", cost = 1): void {
  if (clientAddress(ctx) === undefined) return;
  const limiter = ctx.hs.rateLimiters.get(name);
  if (mode === "take") limiter.take(key, cost);
  else limiter.check(key, cost);
}

/** Counts `cost` actions of `name` by `key` for a network request (the action happened). */
export function recordKey(ctx: RequestContext, name: LimiterName, key: string, cost = 1): void {
  if (clientAddress(ctx) !== undefined) ctx.hs.rateLimiters.get(name).record(key, cost);
}

/** Applies limiter `name` to the requesting client's address (registration, login). */
export function limitAddress(ctx: RequestContext, name: LimiterName, mode: LimitMode = "take"): void {
  const addr = clientAddress(ctx);
  if (addr !== undefined) limitKey(ctx, name, addr, mode);
}

/** Counts one action of `name` for the requesting client's address. */
export function recordAddress(ctx: RequestContext, name: LimiterName): void {
  const addr = clientAddress(ctx);
  if (addr !== undefined) recordKey(ctx, name, addr);
}

/** Applies a per-user limiter to the requester (keyed by user ID) unless they are exempt. */
export function limitUser(ctx: RequestContext, me: Requester, name: LimiterName, cost = 1): void {
  if (!isExempt(me)) limitKey(ctx, name, me.userId, "take", cost);
}

/**
 * Applies several limiters to one action of a non-exempt requester (an invite: per room, per
 * invitee, per issuer): all are checked before any is counted, so a refusal costs nothing.
 */
export function limitAll(ctx: RequestContext, me: Requester, limits: readonly (readonly [LimiterName, string])[]): void {
  if (isExempt(me) || clientAddress(ctx) === undefined) return;
  for (const [name, key] of limits) ctx.hs.rateLimiters.get(name).check(key);
  for (const [name, key] of limits) ctx.hs.rateLimiters.get(name).record(key);
}

/** Applies an internal limit with a fixed bucket (not operator-configured) to the client's address. */
export function limitAddressFixed(ctx: RequestContext, name: string, bucket: TokenBucket): void {
  const addr = clientAddress(ctx);
  if (addr !== undefined) ctx.hs.rateLimiters.get(name, bucket).take(addr);
}

/** rc_invites: per room, per invitee and per inviter, as Synapse counts them. */
export function limitInvite(ctx: RequestContext, me: Requester, roomId: string, invitee: string): void {
  limitAll(ctx, me, [["rc_invites.per_room", roomId], ["rc_invites.per_user", invitee], ["rc_invites.per_issuer", me.userId]]);
}
