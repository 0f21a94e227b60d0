/**
 * `createHomeserver`: the pure core. A function of a request, used by the Service Worker, the Node
 * HTTP listener and the libp2p listener alike. No DOM, Node or concrete storage here.
 */
import type { Store } from "../storage/store.ts";
import { createSigner, createVerifier } from "./crypto/ed25519.ts";
import type { SigningKey } from "./crypto/signing.ts";
import { RequestContext, DEFAULT_CONFIG, silentLogger } from "./context.ts";
import type { HomeserverConfig, Logger, ReadWorker, RequestObserver, Services } from "./context.ts";
import { CLIENT_ADDRESS_HEADER } from "./auth/rateLimit.ts";
import { logLine, loggablePath } from "./log.ts";
import { Notifier } from "./notifier.ts";
import { OutputStream } from "./output.ts";
import { Router } from "./router.ts";
import { ROUTES } from "./routes.ts";
import type { Thumbnailer } from "./media/thumbnailer.ts";
import { PushSender } from "./push/sender.ts";
import type { AppServiceRegistration } from "./appservice/registration.ts";
import { AppServiceRegistry } from "./appservice/registration.ts";
import type { AppServices } from "./appservice/client.ts";
import { ensureSenderAccounts } from "./appservice/client.ts";
import type { SenderOptions } from "./appservice/transactions.ts";
import { TransactionSender } from "./appservice/transactions.ts";
import { RateLimiters } from "./auth/rateLimit.ts";
import type { FederationTransport } from "./federation/transport.ts";
import { FederationClient } from "./federation/client.ts";
import { Keyring } from "./federation/keyring.ts";
import { FederationSender } from "./federation/sender.ts";
import type { FederationSenderOptions } from "./federation/sender.ts";
import { CatchUp } from "./federation/catchup.ts";
import type { CatchUpOptions } from "./federation/catchup.ts";
import { FederationRateLimiter } from "./federation/rateLimit.ts";
import { DirectoryService } from "./federation/directory.ts";

/** What a homeserver is built from. */
export interface HomeserverOptions {
  store: Store;
  /** The 32-byte ed25519 seed of the server's signing key. */
  seed: Uint8Array;
  /** The server name; in P2P mode the lowercase hex of the public key. */
  serverName: string;
  /** The key ID of the signing key (default `ed25519:auto`). */
  keyId?: string;
  clock?: () => number;
  random?: (bytes: number) => Uint8Array;
  logger?: Logger;
  config?: Partial<HomeserverConfig>;
  /** Media thumbnailing (the Node runner passes one built on sharp, src/node/thumbnailer.ts). */
  thumbnailer?: Thumbnailer;
  /**
   * Outbound HTTP for push gateways (the Node runner passes the platform's `fetch`). Without it
   * pushers are stored and listed but no gateway is called (a gateway is not reachable from a
   * browser page's origin anyway).
   */
  fetch?: typeof fetch;
  /** Told about every answered request (the Node runner's Prometheus metrics). */
  metrics?: RequestObserver;
  /** Application service registrations (parsed registration files). */
  appservices?: readonly AppServiceRegistration[];
  /** How the homeserver reaches application services: legacy auth, retry timing (`fetch` defaults to the option above, else the global one). */
  appserviceOptions?: Partial<SenderOptions>;
  /**
   * How the homeserver reaches other servers (federation/transport.ts): HTTPS in classic mode,
   * libp2p in P2P mode, a `MemoryNetwork` in tests. Without it the server federates with nobody.
   */
  federationTransport?: FederationTransport;
  /** Retry timing of the outbound federation queues (tests shorten it). */
  federationSenderOptions?: FederationSenderOptions;
  /** Limits of catch-up from other servers (federation/catchup.ts). */
  catchUpOptions?: CatchUpOptions;
  /** Where heavy reads (`/search`) run instead of this thread (the Node runner's worker); closed before the store. */
  readWorker?: ReadWorker;
}

/** What a transport knows about a request beyond its bytes. */
export interface HandleOptions {
  /**
   * The server the transport itself proved the request comes from (P2P: the server name of the
   * libp2p peer's key). A federation request signed by any other origin is refused with 401.
   */
  transportOrigin?: string;
}

/** A running homeserver. */
export interface Homeserver {
  readonly services: Services;
  /** Answers one Client-Server, federation, media or key request. */
  handle(request: Request, options?: HandleOptions): Promise<Response>;
  /** Every route, for documentation and the coverage script. */
  routes(): { method: string; path: string }[];
  /** Stops timers and closes the store. */
  close(): Promise<void>;
}

const defaultRandom = (n: number): Uint8Array => crypto.getRandomValues(new Uint8Array(n));

/**
 * One structured line per request (method, path with secret query values redacted, route
 * template, status, duration, user, client address), and a warning for each rate-limit refusal.
 */
function logRequest(logger: Logger, request: Request, route: string, status: number, seconds: number, user: string | undefined): void {
  let path: string;
  try {
    path = loggablePath(new URL(request.url));
  } catch {
    path = "(malformed)";
  }
  const client = request.headers.get(CLIENT_ADDRESS_HEADER) ?? undefined;
  logger.info(logLine("request", { method: request.method, path, route, status, duration_ms: Math.round(seconds * 10_000) / 10, user, client }));
  if (status === 429) logger.warn(logLine("rate_limited", { method: request.method, route, user, client }));
}

/** Builds a homeserver from its capabilities. */
export async function createHomeserver(options: HomeserverOptions): Promise<Homeserver> {
  const signer = await createSigner(options.seed);
  const signingKey: SigningKey = { entity: options.serverName, keyId: options.keyId ?? "ed25519:auto", signer };
  const clock = options.clock ?? Date.now;
  const logger = options.logger ?? silentLogger;
  const config: HomeserverConfig = { ...DEFAULT_CONFIG, ...options.config };
  const pushSender = options.fetch ? new PushSender({ store: options.store, logger, clock, fetch: options.fetch }) : undefined;
  const registry = options.appservices?.length ? new AppServiceRegistry(options.appservices, options.serverName) : undefined;
  let sender: TransactionSender | undefined;
  const heardFrom: ((server: string) => void)[] = [];
  const verifier = await createVerifier();
  const federation = options.federationTransport
    ? new FederationClient({
        serverName: options.serverName,
        signingKey,
        transport: options.federationTransport,
        logger,
        ...(config.federationDomainWhitelist ? { allowedDestinations: config.federationDomainWhitelist } : {}),
        onHeardFrom: (server) => {
          for (const listener of heardFrom) listener(server);
        },
      })
    : undefined;
  // A server that becomes reachable is as good as heard from: its queue drains now, not at the next retry.
  options.federationTransport?.onReachable?.((server) => {
    for (const listener of heardFrom) listener(server);
  });
  const keyring = new Keyring({
    store: options.store,
    serverName: options.serverName,
    signingKey,
    verifier,
    clock,
    logger,
    notaries: config.trustedKeyServers,
    ...(federation ? { client: federation } : {}),
  });
  const services: Services & { appservices?: AppServices; federationSender?: FederationSender; catchUp?: CatchUp; directory?: DirectoryService } = {
    store: options.store,
    serverName: options.serverName,
    signingKey,
    verifier,
    clock,
    random: options.random ?? defaultRandom,
    logger,
    config,
    notifier: new Notifier(),
    output: new OutputStream(options.logger ?? silentLogger),
    thumbnailer: options.thumbnailer,
    pushSender,
    onEventsCommitted: () => sender?.wake(),
    rateLimiters: new RateLimiters(config.rateLimits, clock),
    keyring,
    federationRateLimiter: new FederationRateLimiter(config.federationRateLimit, clock),
    heardFrom,
    ...(federation ? { federation } : {}),
    ...(options.readWorker ? { readWorker: options.readWorker } : {}),
  };
  services.output.subscribe(services.notifier.consume);
  // The push sender evaluates newly committed room events (it reads them from the stream itself).
  if (pushSender) services.output.subscribe((item) => item.kind === "room_event" && pushSender.onEventStored());
  // Application services hear of committed room events through the same stream.
  services.output.subscribe((item) => item.kind === "room_event" && services.onEventsCommitted?.(item.streamPos));
  if (registry) {
    const senderOptions: SenderOptions = { fetch: options.fetch ?? ((...args) => fetch(...args)), legacyAuth: false, ...options.appserviceOptions };
    sender = new TransactionSender(services, registry, senderOptions);
    services.appservices = { registry, http: senderOptions, sender };
    await ensureSenderAccounts(services, registry);
    // Delivers what was pending when the server last stopped.
    sender.wake();
  }
  pushSender?.start();
  if (federation) {
    const federationSender = new FederationSender(services, federation, options.federationSenderOptions);
    services.federationSender = federationSender;
    // Local room events go to the other servers of their room; device-list changes (which only
    // notify) to the servers sharing a room with the user. Both are read back from the store.
    services.output.subscribe((item) => item.kind === "room_event" && item.origin === "local" && federationSender.scan());
    services.notifier.observe(() => federationSender.scan());
    federationSender.start();
    // Catch-up from any peer: what this server missed while offline, from whichever server is online.
    const catchUp = new CatchUp(services, federation, options.catchUpOptions);
    services.catchUp = catchUp;
    catchUp.start(options.federationTransport!);
  }
  if (federation && options.federationTransport) {
    // The global room directory's cache, refreshed from the reachable servers in the background.
    const directory = new DirectoryService(services, federation, options.federationTransport);
    services.directory = directory;
    directory.start();
  }
  const router = new Router(ROUTES);
  return {
    services,
    handle: async (request, handleOptions) => {
      const started = performance.now();
      let ctx: RequestContext | undefined;
      let route = "unmatched";
      const response = await router.dispatch(request, (req, url) => (ctx = new RequestContext(services, req, url, handleOptions?.transportOrigin)), logger, (r) => (route = r));
      const seconds = (performance.now() - started) / 1000;
      options.metrics?.requestFinished(request.method, route, response.status, seconds);
      logRequest(logger, request, route, response.status, seconds, ctx?.authenticatedUserId() ?? ctx?.authenticatedServer());
      return response;
    },
    routes: () => router.list(),
    close: async () => {
      services.notifier.close();
      // Deliveries in flight stop; what is still queued is sent after the next start.
      await pushSender?.close();
      await sender?.close();
      await services.catchUp?.close();
      await services.directory?.close();
      await services.federationSender?.close();
      // Its own connection to the database must be gone before the store switches the file back out of WAL mode.
      await services.readWorker?.close();
      await services.store.close();
    },
  };
}
