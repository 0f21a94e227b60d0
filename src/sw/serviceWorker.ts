/**
 * Hyphae in a Service Worker: answers the Matrix paths of its own origin from the homeserver core
 * and leaves every other request to the network (docs/DESIGN.md "The Service Worker"). Composable: a
 * client with its own worker calls `installHyphae(self)` before its own fetch handlers
 * (docs/EMBEDDING.md); Hyphae answers Matrix paths and stops the event there, everything else
 * reaches the client's handlers untouched.
 *
 * Lifecycle. The browser stops an idle worker (Chromium after 30–45 s) and starts a new instance on
 * the next fetch or message: everything needed to answer is in IndexedDB, so the homeserver is
 * rebuilt lazily by the first request and answers it. A `/sync` long-poll cut by a stop is retried
 * by the client with the same `since` token and gets everything (the stream is in storage). Pages of
 * the app keep the worker alive by messaging it every ~10 s (`{ hyphae: "keepalive" }`, see
 * src/app/worker.ts). A newer version of the worker that upgrades the schema closes this one's
 * database (IndexedDB `versionchange`); this instance then refuses with 503 instead of touching a
 * schema it does not know, and the page (claimed by the new worker) retries there.
 */
import { createHomeserver } from "../homeserver/homeserver.ts";
import type { Homeserver, HomeserverOptions } from "../homeserver/homeserver.ts";
import type { Logger } from "../homeserver/context.ts";
import { MatrixError } from "../homeserver/errors.ts";
import { activitiesOf } from "../homeserver/activity.ts";
import type { Activity } from "../homeserver/activity.ts";
import { createIndexedDbStore } from "../storage/indexeddb.ts";
import { StorageError } from "../storage/store.ts";
import type { Store } from "../storage/store.ts";
import { loadOrCreateIdentity } from "./identity.ts";
import { exportHomeserver, importHomeserver } from "../export/homeserver.ts";
import type { HomeserverIdentity } from "../export/homeserver.ts";
import { browserThumbnailer } from "./thumbnailer.ts";
import { DeferredTransport, loadRendezvous } from "./federation.ts";
import type { WorkerP2P } from "./p2p.ts";
import { loadP2PScript, p2pScriptUrl, preloadP2PScript } from "./p2pLoader.ts";

/** Options of {@link installHyphae}. */
export interface HyphaeWorkerOptions {
  /** The IndexedDB database name (default `hyphae`). */
  databaseName?: string;
  /** The IndexedDB factory (default the global one; Node tests pass fake-indexeddb's). */
  indexedDB?: IDBFactory;
  /** Passed on to `createHomeserver` (config, clock, logger …). */
  homeserver?: Partial<Omit<HomeserverOptions, "store" | "seed" | "serverName">>;
  /**
   * Where a user who hit the storage quota is sent (the `admin_contact` of `M_RESOURCE_LIMIT_EXCEEDED`);
   * default: this origin's root, the app's status view, since the user is their own administrator.
   */
  adminContact?: string;
  /**
   * An access token for a request that carries none, or undefined. The app uses it for Hydrogen's
   * `<img>` loads of authenticated media, which cannot send an `Authorization` header (Hydrogen's
   * own worker asks the page for the token the same way).
   */
  authorize?: (event: FetchEvent) => Promise<string | undefined>;
  /**
   * The rendezvous multiaddrs the libp2p node reserves on (P2P federation); none: no libp2p node.
   * Default in {@link installHyphae}: the `rendezvous` list of this origin's `/config.json`.
   */
  rendezvous?: () => Promise<string[]>;
  /**
   * The URL of the libp2p side, `hyphae-p2p.js` (src/sw/p2pLoader.ts). Default in
   * {@link installHyphae}: the one built with this script, next to the worker script.
   */
  p2pScript?: string;
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

/** Whether an error (or one of its causes) is the browser refusing a write for lack of quota. */
export function isQuotaError(err: unknown): boolean {
  for (let e = err, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    const { name, message } = e as { name?: unknown; message?: unknown };
    if (name === "QuotaExceededError" || (typeof message === "string" && /QuotaExceeded|quota/i.test(message))) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * The store as the homeserver sees it in a worker: a write refused for lack of quota becomes
 * `M_RESOURCE_LIMIT_EXCEEDED` (the transaction was aborted as a whole, so the database is as before
 * the request), and a database closed under us by a newer worker's upgrade becomes a 503 the
 * client retries (against the new worker, which has claimed the page by then).
 */
export function guardStore(store: Store, adminContact: string): Store {
  const translate = (err: unknown): unknown => {
    if (err instanceof MatrixError) return err;
    if (isQuotaError(err)) {
      return new MatrixError(403, "M_RESOURCE_LIMIT_EXCEEDED", "This site's browser storage is full: free some space or grant more storage, then retry", {
        admin_contact: adminContact,
      });
    }
    if (err instanceof StorageError && /store is closed/.test(err.message)) {
      return new MatrixError(503, "M_UNKNOWN", "The homeserver is being upgraded by a newer version of the app; retry", { retry_after_ms: 1000 }, { "Retry-After": "1" });
    }
    return err;
  };
  return {
    kind: store.kind,
    read: (fn, scope) => store.read(fn, scope).catch((err: unknown) => Promise.reject(translate(err))),
    write: (fn, scope) => store.write(fn, scope).catch((err: unknown) => Promise.reject(translate(err))),
    schemaVersion: () => store.schemaVersion(),
    close: () => store.close(),
  };
}

const openStore = (options: HyphaeWorkerOptions): Promise<Store> =>
  createIndexedDbStore({ name: options.databaseName ?? "hyphae", ...(options.indexedDB ? { indexedDB: options.indexedDB } : {}) });

/** The identity each started homeserver was built with (export needs the seed). */
const identities = new WeakMap<Homeserver, HomeserverIdentity>();

/** The libp2p side of each started homeserver, or why there is none. */
const p2pSides = new WeakMap<Homeserver, WorkerP2P | string>();

/**
 * Opens the store and the identity and builds the homeserver (once per worker instance). When
 * `options.rendezvous` is given, the libp2p node on the same seed starts after the homeserver, in
 * the background: a worker restarted by a fetch answers from storage at once, and federation
 * requests wait for the node (src/sw/p2p.ts `DeferredTransport`). A node that cannot start leaves a
 * homeserver that serves its own users without federation (the status says why).
 */
export async function startHomeserver(options: HyphaeWorkerOptions = {}, adminContact = "/"): Promise<Homeserver> {
  const store = guardStore(await openStore(options), options.adminContact ?? adminContact);
  let hs: Homeserver;
  let seed: Uint8Array;
  let serverName: string;
  const { rendezvous } = options;
  const deferred = rendezvous ? new DeferredTransport() : undefined;
  try {
    ({ seed, serverName } = await loadOrCreateIdentity(store));
    hs = await createHomeserver({
      logger: workerLogger,
      thumbnailer: browserThumbnailer,
      ...options.homeserver,
      ...(deferred ? { federationTransport: deferred } : {}),
      store,
      seed,
      serverName,
    });
  } catch (err) {
    await store.close();
    throw err;
  }
  identities.set(hs, { seed, serverName });
  p2pSides.set(hs, deferred ? "starting" : "no rendezvous configured");
  if (rendezvous && deferred) {
    const started = startP2P(hs, seed, serverName, rendezvous, options.p2pScript, deferred, options.homeserver?.logger ?? workerLogger);
    const close = hs.close.bind(hs);
    hs.close = async () => {
      // A node still starting is stopped once it has started.
      deferred.fail("the homeserver is closing");
      const side = await started;
      await side?.close().catch(() => undefined);
      await close();
    };
  }
  return hs;
}

/** Reads the rendezvous list, starts the libp2p node and plugs it into `hs`; resolves to the started side, if any. */
async function startP2P(hs: Homeserver, seed: Uint8Array, serverName: string, rendezvousList: () => Promise<string[]>, p2pScript: string | undefined, deferred: DeferredTransport, logger: Logger): Promise<WorkerP2P | undefined> {
  const failed = (why: string): undefined => {
    p2pSides.set(hs, why);
    deferred.fail(why);
    return undefined;
  };
  const rendezvous = await rendezvousList().catch(() => []);
  if (rendezvous.length === 0) return failed("no rendezvous configured");
  let side: WorkerP2P | undefined;
  try {
    // A script of its own, imported now: a restarted worker compiles the libp2p stack only after
    // the homeserver is built and answering.
    if (p2pScript === undefined) throw new Error("no libp2p script configured");
    const { startWorkerP2P } = loadP2PScript(p2pScript);
    side = await startWorkerP2P(seed, rendezvous, logger);
    await side.serve(hs, serverName);
  } catch (err) {
    await side?.close().catch(() => undefined);
    workerLogger.warn("could not start the libp2p node; running without federation", err);
    return failed(`failed to start: ${err instanceof Error ? err.message : String(err)}`);
  }
  p2pSides.set(hs, side);
  deferred.attach(side.transport);
  return side;
}

/** The status view's P2P section for `hs`. */
function p2pStatus(hs: Homeserver): WorkerStatus["p2p"] {
  const side = p2pSides.get(hs) ?? "not started";
  if (typeof side === "string") return { running: false, peers: 0, rendezvous: side, rendezvousConnected: 0 };
  const { peers, rendezvousConnected } = side.state();
  return {
    running: true,
    peers,
    rendezvousConnected,
    rendezvous: `${rendezvousConnected} of ${side.rendezvous.length} connected`,
    peerId: side.node.peerId.toString(),
  };
}

/** `hyl_` + 32 random bytes, base64url: the core's login token format (client/login.ts). */
const newLoginToken = (): string =>
  "hyl_" + btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32)))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

/**
 * A login token (as `POST /login/get_token` makes, valid 2 minutes) for a local account, minted by
 * the worker for a page of its own origin: the app's *Sign in* for a returning or imported user.
 * Same-origin pages can read the whole database anyway, so this opens nothing new.
 */
async function mintLoginToken(hs: Homeserver, wanted: string | undefined): Promise<{ userId: string; loginToken: string }> {
  const accounts = await hs.services.store.read((tx) => tx.range<{ userId: string; isGuest?: boolean; deactivated?: boolean }>("accounts"));
  const usable = accounts.map((r) => r.value).filter((a) => !a.isGuest && !a.deactivated && a.userId.endsWith(`:${hs.services.serverName}`));
  const account = wanted === undefined ? usable[0] : usable.find((a) => a.userId === wanted);
  if (!account) throw new Error(wanted ? `no account ${wanted} on this homeserver` : "no account on this homeserver");
  const loginToken = newLoginToken();
  await hs.services.store.write(async (tx) => tx.put("login_tokens", loginToken, { userId: account.userId, expiresAt: hs.services.clock() + 120_000 }));
  return { userId: account.userId, loginToken };
}

const errorResponse = (err: unknown): Response => {
  const body = err instanceof MatrixError ? err.toJSON() : { errcode: "M_UNKNOWN", error: `homeserver unavailable: ${err instanceof Error ? err.message : String(err)}` };
  return new Response(JSON.stringify(body), {
    status: err instanceof MatrixError ? err.status : 503,
    headers: { "Content-Type": "application/json", "Access-Control-Allow-Origin": "*" },
  });
};

/** What `{ hyphae: "status" }` answers (the app's status view). */
export interface WorkerStatus {
  /** Random per worker instance: a new value after the browser stopped and restarted the worker. */
  instance: string;
  /** When this instance started (ms since the epoch). */
  startedAt: number;
  serverName: string;
  schemaVersion: number;
  /** Rows waiting in the outbound federation queue, per destination server. */
  outboundQueues: Record<string, number>;
  /**
   * The libp2p node: whether it runs, the other peers connected now, the rendezvous nodes we hold a
   * connection to, and a line on the rendezvous state (or why no node runs).
   */
  p2p: { running: boolean; peers: number; rendezvousConnected: number; rendezvous: string; peerId?: string };
  /** `navigator.storage.estimate()` / `persisted()` as the worker sees them. */
  storage: { usage?: number; quota?: number; persisted?: boolean };
  /** Rooms being joined over federation or backfilled now, with how far each got (the progress indicator). */
  activities: Activity[];
}

/** Outbound queue depth per destination (federation/sender.ts: key federation_queue = destination|pos(seq)). */
async function queueDepths(hs: Homeserver): Promise<Record<string, number>> {
  const rows = await hs.services.store.read((tx) => tx.range<unknown>("federation_queue"));
  const out: Record<string, number> = {};
  for (const { key } of rows) {
    const destination = key.split("\u001f")[0]!;
    out[destination] = (out[destination] ?? 0) + 1;
  }
  return out;
}

/** The handle {@link installHyphae} returns. */
export interface InstalledHyphae {
  /** The running homeserver, started on first use. */
  homeserver(): Promise<Homeserver>;
  /** The status the app's status view shows. */
  status(): Promise<WorkerStatus>;
  /** The encrypted export file of the whole homeserver (src/export). */
  exportFile(passphrase: string): Promise<Blob>;
  /** Replaces a fresh homeserver (nothing but its generated identity) by an export file's. */
  importFile(file: Blob, passphrase: string): Promise<{ serverName: string }>;
}

/** Registers the install/activate/fetch/message handlers on a Service Worker global scope. */
export function installHyphae(scope: ServiceWorkerGlobalScope, options: HyphaeWorkerOptions = {}): InstalledHyphae {
  const instance = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join("");
  const startedAt = Date.now();
  if (!options.rendezvous) {
    const configUrl = new URL("/config.json", scope.location.href).href;
    options = { ...options, rendezvous: () => loadRendezvous(configUrl, workerLogger) };
  }
  const p2pScript = options.p2pScript ?? p2pScriptUrl(scope.location.href);
  options = { ...options, p2pScript };
  preloadP2PScript(scope, p2pScript, workerLogger);
  let started: Promise<Homeserver> | undefined;
  const homeserver = (): Promise<Homeserver> => {
    started ??= startHomeserver(options, new URL("/", scope.location.href).href).catch((err: unknown) => {
      // Let the next request try again (e.g. IndexedDB blocked by an old tab's open connection).
      started = undefined;
      throw err;
    });
    return started;
  };

  const status = async (): Promise<WorkerStatus> => {
    const hs = await homeserver();
    let storage: WorkerStatus["storage"] = {};
    try {
      const estimate = await scope.navigator.storage.estimate();
      storage = { usage: estimate.usage, quota: estimate.quota, persisted: await scope.navigator.storage.persisted() };
    } catch {
      // StorageManager is missing in some embedders' test environments; the view shows unknown.
    }
    return {
      instance,
      startedAt,
      serverName: hs.services.serverName,
      schemaVersion: await hs.services.store.schemaVersion(),
      outboundQueues: await queueDepths(hs),
      p2p: p2pStatus(hs),
      storage,
      activities: activitiesOf(hs.services.store).list(),
    };
  };

  const exportFile = async (passphrase: string): Promise<Blob> => {
    const hs = await homeserver();
    const identity = identities.get(hs);
    if (!identity) throw new Error("the homeserver's identity is unknown");
    return new Response(exportHomeserver(hs.services.store, identity, passphrase)).blob();
  };

  const importFile = async (file: Blob, passphrase: string): Promise<{ serverName: string }> => {
    // No request may use the store while it is replaced: they wait for the imported homeserver.
    const previous = started;
    const run = (async () => {
      const old = await previous?.catch(() => undefined);
      await old?.close();
      const store = await openStore(options);
      let result: { serverName: string };
      try {
        result = await importHomeserver(store, file, passphrase);
      } finally {
        await store.close();
      }
      return { result, hs: await startHomeserver(options, new URL("/", scope.location.href).href) };
    })();
    started = run.then(
      (r) => r.hs,
      (err: unknown) => {
        started = undefined;
        throw err;
      },
    );
    started.catch(() => undefined);
    return (await run).result;
  };

  // A new version takes over at once, and controls already-open pages without a reload. The
  // homeserver starts right away, so the first fetch after an update does not pay for it.
  scope.addEventListener("install", (event) => event.waitUntil(scope.skipWaiting()));
  scope.addEventListener("activate", (event) =>
    event.waitUntil(
      scope.clients.claim().then(() =>
        homeserver().then(
          () => undefined,
          (err: unknown) => workerLogger.warn("could not start the homeserver on activation", err),
        ),
      ),
    ),
  );
  scope.addEventListener("fetch", (event) => {
    const url = new URL(event.request.url);
    // Only this origin's Matrix paths: a client talking to a remote homeserver goes to the network.
    if (url.origin !== scope.location.origin || !isHomeserverPath(url.pathname)) return;
    event.respondWith(answer(event));
    // Answered: an embedding client's own fetch handlers (registered after ours) must not try too.
    event.stopImmediatePropagation();
  });

  const answer = async (event: FetchEvent): Promise<Response> => {
    let hs: Homeserver;
    try {
      hs = await homeserver();
    } catch (err) {
      workerLogger.error("could not start the homeserver", err);
      return errorResponse(err);
    }
    let request = event.request;
    if (options.authorize && !request.headers.has("Authorization") && !new URL(request.url).searchParams.has("access_token")) {
      const token = await options.authorize(event).catch(() => undefined);
      if (token) {
        const headers = new Headers(request.headers);
        headers.set("Authorization", `Bearer ${token}`);
        request = new Request(request, { headers });
      }
    }
    return hs.handle(request);
  };

  // Messages from pages: keep-alive (the message itself extends the worker's life; answering after
  // the homeserver is up also restarts a stopped one) and the status view.
  scope.addEventListener("message", (event) => {
    const data = event.data as { hyphae?: unknown } | null;
    if (!data || typeof data !== "object" || typeof data.hyphae !== "string") return;
    const reply = (message: unknown): void => {
      const port = event.ports[0];
      if (port) port.postMessage(message);
      else (event.source as Client | MessagePort | ServiceWorker | null)?.postMessage(message);
    };
    if (data.hyphae === "keepalive") {
      event.waitUntil(
        homeserver().then(
          () => reply({ hyphae: "alive", instance }),
          (err: unknown) => reply({ hyphae: "error", error: String(err) }),
        ),
      );
    } else if (data.hyphae === "export") {
      const { passphrase } = data as { passphrase?: unknown };
      event.waitUntil(
        exportFile(String(passphrase ?? "")).then(
          (file) => reply({ hyphae: "export", file }),
          (err: unknown) => reply({ hyphae: "error", error: err instanceof Error ? err.message : String(err) }),
        ),
      );
    } else if (data.hyphae === "import") {
      const { file, passphrase } = data as { file?: unknown; passphrase?: unknown };
      event.waitUntil(
        (file instanceof Blob ? importFile(file, String(passphrase ?? "")) : Promise.reject(new Error("no file given"))).then(
          (r) => reply({ hyphae: "import", serverName: r.serverName }),
          (err: unknown) => reply({ hyphae: "error", error: err instanceof Error ? err.message : String(err) }),
        ),
      );
    } else if (data.hyphae === "login-token") {
      const { userId } = data as { userId?: unknown };
      event.waitUntil(
        homeserver()
          .then((hs) => mintLoginToken(hs, typeof userId === "string" ? userId : undefined))
          .then(
            (r) => reply({ hyphae: "login-token", ...r }),
            (err: unknown) => reply({ hyphae: "error", error: err instanceof Error ? err.message : String(err) }),
          ),
      );
    } else if (data.hyphae === "peer-rtt") {
      // A diagnostic for the benchmark (src/sw/p2p.ts roundTrip): one raw round trip to a peer.
      const { server } = data as { server?: unknown };
      event.waitUntil(
        homeserver()
          .then((hs) => {
            const side = p2pSides.get(hs);
            if (!side || typeof side === "string") throw new Error(`no libp2p node: ${side ?? "not started"}`);
            return side.roundTrip(String(server));
          })
          .then(
            (ms) => reply({ hyphae: "peer-rtt", ms }),
            (err: unknown) => reply({ hyphae: "error", error: err instanceof Error ? err.message : String(err) }),
          ),
      );
    } else if (data.hyphae === "status") {
      event.waitUntil(
        status().then(
          (s) => reply({ hyphae: "status", status: s }),
          (err: unknown) => reply({ hyphae: "error", error: String(err) }),
        ),
      );
    } else if (data.hyphae === "directory-refresh") {
      // The app's Public rooms page (opened, or its Refresh): every reachable server's directory is
      // fetched now, so a room published a moment ago shows up without waiting for the background
      // refresh (a look at /publicRooms only starts one when the last is 30 s old).
      event.waitUntil(
        homeserver()
          .then((hs) => hs.services.directory?.refreshAll())
          .then(
            () => reply({ hyphae: "directory-refresh" }),
            (err: unknown) => reply({ hyphae: "error", error: err instanceof Error ? err.message : String(err) }),
          ),
      );
    }
  });
  return { homeserver, status, exportFile, importFile };
}
