/**
 * The worker script of the browser-to-browser latency bench (bench/swp2p.ts): Hyphae's worker
 * exactly as src/sw/worker.ts installs it, except that the client API's rate limits are lifted, as
 * the Node P2P bench does (Synapse's `rc_message` default, 10 messages then one per 5 s, would
 * otherwise pace the conversation, and the bench measures delivery, not the limiter).
 */
import { installHyphae } from "../src/sw/serviceWorker.ts";
import { LIMITER_NAMES } from "../src/homeserver/auth/rateLimit.ts";
import type { HomeserverConfig } from "../src/homeserver/context.ts";

const unlimited = Object.fromEntries(LIMITER_NAMES.map((n) => [n, { perSecond: 1e9, burstCount: 1e9 }])) as HomeserverConfig["rateLimits"];

installHyphae(globalThis as unknown as ServiceWorkerGlobalScope, { homeserver: { config: { rateLimits: unlimited } } });
