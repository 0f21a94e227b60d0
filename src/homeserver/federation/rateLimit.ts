/**
 * `rc_federation` on inbound federation requests, per origin server, as Synapse applies it
 * (FederationRateLimiter): within `window_size` ms an origin's first `sleep_limit` requests run at
 * once and each further one waits `sleep_delay` ms first; at most `concurrent` run at the same time
 * (the rest wait their turn in arrival order); a request arriving while more than `reject_limit` of
 * the origin's requests are waiting (sleeping or queued) is refused with `429 M_LIMIT_EXCEEDED`.
 * Like the Client-Server limits, it applies to requests that came over a network listener.
 */
import { limitExceeded } from "../errors.ts";
import type { FederationRateLimit } from "../auth/rateLimit.ts";
import { clientAddress } from "../auth/rateLimit.ts";
import type { RequestContext } from "../context.ts";

/** One origin's recent and current requests. */
interface OriginState {
  /** When the requests of the current window arrived. */
  times: number[];
  sleeping: number;
  /** Requests waiting for a slot, first come first served. */
  queue: (() => void)[];
  processing: number;
}

/** Origins kept before a sweep forgets the idle ones. */
const SWEEP_AT = 1_000;

/** The per-origin limiter of a homeserver. */
export class FederationRateLimiter {
  private readonly settings: FederationRateLimit;
  private readonly clock: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly origins = new Map<string, OriginState>();

  constructor(settings: FederationRateLimit, clock: () => number, sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms))) {
    this.settings = settings;
    this.clock = clock;
    this.sleep = sleep;
  }

  /** Runs `work` for `origin` once the limits let it; throws `429 M_LIMIT_EXCEEDED` when too many are waiting. */
  async run<T>(origin: string, work: () => Promise<T>): Promise<T> {
    const { windowSize, sleepLimit, sleepDelay, rejectLimit, concurrent } = this.settings;
    const state = this.stateOf(origin);
    const now = this.clock();
    state.times = state.times.filter((t) => now - t < windowSize);
    if (state.queue.length + state.sleeping > rejectLimit) throw limitExceeded(Math.max(1, Math.floor(windowSize / Math.max(1, sleepLimit))));
    state.times.push(now);
    if (state.times.length > sleepLimit) {
      state.sleeping++;
      try {
        await this.sleep(sleepDelay);
      } finally {
        state.sleeping--;
      }
    }
    // A finishing request hands its slot straight to the first in the queue (processing stays counted).
    if (state.processing >= concurrent) await new Promise<void>((r) => state.queue.push(r));
    else state.processing++;
    try {
      return await work();
    } finally {
      const next = state.queue.shift();
      if (next) next();
      else state.processing--;
    }
  }

  private stateOf(origin: string): OriginState {
    let state = this.origins.get(origin);
    if (!state) {
      if (this.origins.size >= SWEEP_AT) this.sweep();
      state = { times: [], sleeping: 0, queue: [], processing: 0 };
      this.origins.set(origin, state);
    }
    return state;
  }

  private sweep(): void {
    const now = this.clock();
    for (const [origin, s] of this.origins) {
      if (s.processing === 0 && s.sleeping === 0 && s.queue.length === 0 && s.times.every((t) => now - t >= this.settings.windowSize)) this.origins.delete(origin);
    }
  }
}

/** Runs a federation handler for `origin` under `rc_federation` when the request came over the network. */
export function limitFederation<T>(ctx: RequestContext, origin: string, work: () => Promise<T>): Promise<T> {
  if (clientAddress(ctx) === undefined) return work();
  return ctx.hs.federationRateLimiter.run(origin, work);
}
