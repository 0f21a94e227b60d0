/**
 * Hyphae in a Service Worker: answers the Matrix paths of its own origin from the homeserver core
 * and leaves every other request to the network (docs/DESIGN.md "The Service Worker"). Composable: a
 * client with its own worker calls `installHyphae(self)` next to its own fetch handlers.
 *
 * This is the minimal shell; lifecycle, keep-alive and libp2p come with the Service Worker issue.
 */
import { createHomeserver } from "../homeserver/homeserver.ts";
import type { Homeserver, HomeserverOptions } from "../homeserver/homeserver.ts";
import type { Logger } from "../homeserver/context.ts";
import { createIndexedDbStore } from "../storage/indexeddb.ts";
import { loadOrCreateIdentity } from "./identity.ts";
import { browserThumbnailer } from "./thumbnailer.ts";

/** Options of {@link installHyphae}. */
export interface HyphaeWorkerOptions {
  /** The IndexedDB database name (default `hyphae`). */
  databaseName?: string;
  /** Passed on to `createHomeserver` (config, clock, logger …). */
  homeserver?: Partial<Omit<HomeserverOptions, "store" | "seed" | "serverName">>;
}

/** Whether a path is one the homeserver answers: the Client-Server/federation/media APIs and client discovery. */
export function isHomeserverPath(pathname: string): boolean {
  return pathname.startsWith("/_matrix/") || pathname === "/.well-known/matrix/client" || pathname === "/.well-known/matrix/support";
}

/** Warnings and errors go to the worker's console; the rest is dropped. */
const workerLogger: Logger = {
  debug() {},
  info() {},
  warn: (...args) => console.warn("[hyphae]", ...args),
  error: (...args) => console.error("[hyphae]", ...args),
};

/** Opens the store and the identity and builds the homeserver (once per worker instance). */
export async function startHomeserver(options: HyphaeWorkerOptions = {}): Promise<Homeserver> {
  const store = await createIndexedDbStore({ name: options.databaseName ?? "hyphae" });
  try {
    const { seed, serverName } = await loadOrCreateIdentity(store);
    return await createHomeserver({ logger: workerLogger, thumbnailer: browserThumbnailer, ...options.homeserver, store, seed, serverName });
  } catch (err) {
    await store.close();
    throw err;
  }
}

const errorResponse = (err: unknown): Response =>
  new Response(JSON.stringify({ errcode: "M_UNKNOWN", error: `homeserver unavailable: ${err instanceof Error ? err.message : String(err)}` }), {
    status: 503,
    headers: { "Content-Type": "application/json", "Access-Control-Allow-Origin": "*" },
  });

/** Registers the install/activate/fetch handlers on a Service Worker global scope. */
export function installHyphae(scope: ServiceWorkerGlobalScope, options: HyphaeWorkerOptions = {}): { homeserver(): Promise<Homeserver> } {
  let started: Promise<Homeserver> | undefined;
  const homeserver = (): Promise<Homeserver> => {
    started ??= startHomeserver(options).catch((err: unknown) => {
      // Let the next request try again (e.g. IndexedDB blocked by an old tab's open connection).
      started = undefined;
      throw err;
    });
    return started;
  };

  // A new version takes over at once, and controls already-open pages without a reload.
  scope.addEventListener("install", (event) => event.waitUntil(scope.skipWaiting()));
  scope.addEventListener("activate", (event) => event.waitUntil(scope.clients.claim()));
  scope.addEventListener("fetch", (event) => {
    const url = new URL(event.request.url);
    // Only this origin's Matrix paths: a client talking to a remote homeserver goes to the network.
    if (url.origin !== scope.location.origin || !isHomeserverPath(url.pathname)) return;
    event.respondWith(
      homeserver().then(
        (hs) => hs.handle(event.request),
        (err: unknown) => {
          workerLogger.error("could not start the homeserver", err);
          return errorResponse(err);
        },
      ),
    );
  });
  return { homeserver };
}
