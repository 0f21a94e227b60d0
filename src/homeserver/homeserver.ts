/**
 * `createHomeserver`: the pure core. A function of a request, used by the Service Worker, the Node
 * HTTP listener and the libp2p listener alike. No DOM, Node or concrete storage here.
 */
import type { Store } from "../storage/store.ts";
import { createSigner, createVerifier } from "./crypto/ed25519.ts";
import type { SigningKey } from "./crypto/signing.ts";
import { RequestContext, DEFAULT_CONFIG, silentLogger } from "./context.ts";
import type { HomeserverConfig, Logger, Services } from "./context.ts";
import { Notifier } from "./notifier.ts";
import { Router } from "./router.ts";
import { ROUTES } from "./routes.ts";
import type { Thumbnailer } from "./media/thumbnailer.ts";
import { PushSender } from "./push/sender.ts";

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
}

/** A running homeserver. */
export interface Homeserver {
  readonly services: Services;
  /** Answers one Client-Server, federation, media or key request. */
  handle(request: Request): Promise<Response>;
  /** Every route, for documentation and the coverage script. */
  routes(): { method: string; path: string }[];
  /** Stops timers and closes the store. */
  close(): Promise<void>;
}

const defaultRandom = (n: number): Uint8Array => crypto.getRandomValues(new Uint8Array(n));

/** Builds a homeserver from its capabilities. */
export async function createHomeserver(options: HomeserverOptions): Promise<Homeserver> {
  const signer = await createSigner(options.seed);
  const signingKey: SigningKey = { entity: options.serverName, keyId: options.keyId ?? "ed25519:auto", signer };
  const clock = options.clock ?? Date.now;
  const logger = options.logger ?? silentLogger;
  const pushSender = options.fetch ? new PushSender({ store: options.store, logger, clock, fetch: options.fetch }) : undefined;
  const services: Services = {
    store: options.store,
    serverName: options.serverName,
    signingKey,
    verifier: await createVerifier(),
    clock,
    random: options.random ?? defaultRandom,
    logger,
    config: { ...DEFAULT_CONFIG, ...options.config },
    notifier: new Notifier(),
    thumbnailer: options.thumbnailer,
    pushSender,
  };
  pushSender?.start();
  const router = new Router(ROUTES);
  return {
    services,
    handle: (request) => router.dispatch(request, (req, url) => new RequestContext(services, req, url), services.logger),
    routes: () => router.list(),
    close: async () => {
      services.notifier.wakeAll();
      // Deliveries in flight stop; what is still queued is sent after the next start.
      await pushSender?.close();
      await services.store.close();
    },
  };
}
