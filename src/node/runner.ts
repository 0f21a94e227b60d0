/**
 * The Node runner: identity, storage, the homeserver core and its HTTP(S) listeners, with a
 * graceful stop. `main.ts` is the command line around it; tests start it in-process.
 */
import { createServer as createHttpServer } from "node:http";
import type { Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { readFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { createHomeserver } from "../homeserver/homeserver.ts";
import type { Homeserver } from "../homeserver/homeserver.ts";
import type { HomeserverConfig, Logger } from "../homeserver/context.ts";
import { DEFAULT_CONFIG } from "../homeserver/context.ts";
import { MAX_JSON_BODY_LIMIT, isMediaUpload } from "../homeserver/http.ts";
import type { Store } from "../storage/store.ts";
import type { NodeConfig } from "./config.ts";
import { loadOrCreateSeed, serverNameFromSeed } from "./identity.ts";
import { createRequestListener } from "./listener.ts";
import type { RequestListener } from "./listener.ts";
import { openNodeStore } from "./storage.ts";
import { sharpThumbnailer } from "./thumbnailer.ts";
import { createNodeMetrics, startMetricsListener } from "./metrics.ts";
import { loadRegistrations } from "./appservices.ts";

/** A running Node homeserver. */
export interface RunningNode {
  readonly homeserver: Homeserver;
  readonly serverName: string;
  /** Base URL of the HTTP listener, e.g. `http://127.0.0.1:8008`. */
  readonly httpUrl: string;
  /** Base URL of the HTTPS listener, when one is configured. */
  readonly httpsUrl?: string;
  /** The rendezvous multiaddr given on the command line or in the config (not used yet). */
  readonly rendezvous?: string;
  /** URL of the Prometheus metrics (`metrics_port`), when enabled. */
  readonly metricsUrl?: string;
  /** Stops accepting, finishes in-flight requests and writes, closes the store. */
  close(): Promise<void>;
}

/** Test hooks: a different store (e.g. one that fails) or clock. */
export interface StartOptions {
  logger: Logger;
  openStore?: (dataDir: string) => Promise<Store>;
  clock?: () => number;
}

/** In-flight requests get this long to finish on shutdown before connections are cut. */
const SHUTDOWN_GRACE_MS = 10_000;

function listen(server: Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolveListen, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolveListen(server.address() as AddressInfo);
    });
  });
}

function urlOf(scheme: string, addr: AddressInfo): string {
  const host = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  return `${scheme}://${host}:${addr.port}`;
}

/** Starts the homeserver described by `config`. */
export async function startNode(config: NodeConfig, options: StartOptions): Promise<RunningNode> {
  const { logger } = options;
  // Registration files are checked before anything is created.
  const appservices = await loadRegistrations(config.appServiceConfigFiles ?? []);
  const { seed, created } = await loadOrCreateSeed(config.dataDir);
  if (created) logger.info(`created a new signing key in ${config.dataDir}`);
  const serverName = config.serverName ?? serverNameFromSeed(seed);
  const metrics = config.metricsPort !== undefined ? createNodeMetrics() : undefined;
  const rawStore = await (options.openStore ?? openNodeStore)(config.dataDir);
  // With metrics on, every transaction is timed (hyphae_store_transaction_duration_seconds).
  const store = metrics ? metrics.instrumentStore(rawStore) : rawStore;

  try {
    // A database belongs to one server name: every stored ID contains it.
    const known = await store.read((tx) => tx.get<string>("settings", "server_name"));
    if (known !== undefined && known !== serverName) {
      throw new Error(`the data directory ${config.dataDir} belongs to server "${known}", not "${serverName}"; refusing to start`);
    }
    if (known === undefined) await store.write(async (tx) => tx.put("settings", "server_name", serverName));
  } catch (err) {
    await store.close();
    throw err;
  }

  const hsConfig: Partial<HomeserverConfig> = { enableRegistration: config.enableRegistration };
  if (config.registrationSharedSecret !== undefined) hsConfig.registrationSharedSecret = config.registrationSharedSecret;
  if (config.passwordIterations !== undefined) hsConfig.passwordIterations = config.passwordIterations;
  if (config.maxUploadBytes !== undefined) hsConfig.maxUploadBytes = config.maxUploadBytes;
  if (config.publicBaseUrl !== undefined) hsConfig.publicBaseUrl = config.publicBaseUrl;
  if (config.accessTokenLifetimeMs !== undefined) hsConfig.accessTokenLifetimeMs = config.accessTokenLifetimeMs;
  if (config.support !== undefined) hsConfig.support = config.support;
  if (config.allowGuestAccess !== undefined) hsConfig.allowGuestAccess = config.allowGuestAccess;
  let homeserver: Homeserver;
  try {
    homeserver = await createHomeserver({
      store, seed, serverName, logger, config: hsConfig, clock: options.clock, thumbnailer: sharpThumbnailer, fetch: globalThis.fetch, metrics,
      appservices, appserviceOptions: { legacyAuth: config.appServiceLegacyAuth === true },
    });
  } catch (err) {
    await store.close();
    throw err;
  }
  metrics?.watch(homeserver);
  if (appservices.length > 0) logger.info(`application services: ${appservices.map((a) => a.id).join(", ")}`);

  if (config.rendezvous !== undefined) {
    logger.warn(`rendezvous ${config.rendezvous} recorded, but P2P federation is not yet enabled in this build`);
  }
  if (serverName.includes(":") && config.httpsPort === undefined) {
    logger.warn(`server name ${serverName} selects classic mode, which federates over HTTPS; no https_port is configured`);
  }

  // Only media uploads may send large bodies; everything else is JSON, refused past its limit unread.
  const maxUploadBody = (config.maxUploadBytes ?? DEFAULT_CONFIG.maxUploadBytes) + 64 * 1024;
  const maxBodyBytes = (path: string): number => (isMediaUpload(path) ? maxUploadBody : MAX_JSON_BODY_LIMIT);
  const servers: Server[] = [];
  const listeners: RequestListener[] = [];
  const handle = (r: Request): Promise<Response> => homeserver.handle(r);
  let httpUrl: string;
  let httpsUrl: string | undefined;
  let metricsListener: { url: string; close(): Promise<void> } | undefined;
  try {
    const httpListener = createRequestListener(handle, { scheme: "http", fallbackHost: `${config.bindHost}:${config.httpPort}`, maxBodyBytes, logger });
    const http = createHttpServer(httpListener);
    servers.push(http);
    listeners.push(httpListener);
    httpUrl = urlOf("http", await listen(http, config.httpPort, config.bindHost));
    if (config.httpsPort !== undefined) {
      const [cert, key] = await Promise.all([readFile(config.tlsCert!), readFile(config.tlsKey!)]);
      const httpsListener = createRequestListener(handle, { scheme: "https", fallbackHost: `${config.bindHost}:${config.httpsPort}`, maxBodyBytes, logger });
      const https = createHttpsServer({ cert, key }, httpsListener);
      servers.push(https);
      listeners.push(httpsListener);
      httpsUrl = urlOf("https", await listen(https, config.httpsPort, config.bindHost));
    }
    if (metrics && config.metricsPort !== undefined) metricsListener = await startMetricsListener(metrics, config.metricsBindHost ?? "127.0.0.1", config.metricsPort);
  } catch (err) {
    for (const s of servers) s.close();
    await homeserver.close();
    throw err;
  }

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      const stopped = servers.map((s) => new Promise<void>((r) => s.close(() => r())));
      for (const s of servers) s.closeIdleConnections();
      // Long-polling /sync requests return now instead of at their timeout.
      homeserver.services.notifier.wakeAll();
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), SHUTDOWN_GRACE_MS)));
      const outcome = await Promise.race([Promise.all(listeners.map((l) => l.idle())), grace]);
      clearTimeout(timer);
      if (outcome === "timeout") logger.warn("shutdown: cutting connections of requests still running");
      for (const s of servers) s.closeAllConnections();
      await Promise.all(stopped);
      await metricsListener?.close();
      // Pending writes finish and the database file is written before this resolves.
      await homeserver.close();
    })());

  return { homeserver, serverName, httpUrl, httpsUrl, rendezvous: config.rendezvous, metricsUrl: metricsListener?.url, close };
}

/** Installs SIGINT/SIGTERM handlers that stop `node` gracefully and exit 0 (a second signal exits at once). */
export function exitOnSignals(node: RunningNode, log: (msg: string) => void): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log(`${signal} again: exiting without waiting`);
      process.exit(1);
    }
    stopping = true;
    log(`${signal}: stopping (finishing in-flight requests)`);
    node.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log(`shutdown failed: ${String(err)}`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}
