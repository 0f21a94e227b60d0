/**
 * The Node runner: identity, storage, the homeserver core and its HTTP(S) listeners, with a
 * graceful stop. `main.ts` is the command line around it; tests start it in-process.
 */
import { createServer as createHttpServer } from "node:http";
import type { Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { readFile } from "node:fs/promises";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { createSecureContext } from "node:tls";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { createHomeserver } from "../homeserver/homeserver.ts";
import type { Homeserver } from "../homeserver/homeserver.ts";
import type { HomeserverConfig, Logger, ReadWorker } from "../homeserver/context.ts";
import { DEFAULT_CONFIG } from "../homeserver/context.ts";
import { MAX_JSON_BODY_LIMIT, isMediaUpload } from "../homeserver/http.ts";
import type { Store } from "../storage/store.ts";
import { StorageError } from "../storage/store.ts";
import type { NodeConfig } from "./config.ts";
import { StartupError } from "./config.ts";
import { readSeed, serverNameFromSeed, writeNewSeed } from "./identity.ts";
import { createRequestListener } from "./listener.ts";
import type { RequestListener } from "./listener.ts";
import { DATABASE_FILE, openNodeStore } from "./storage.ts";
import { startReadWorker } from "./readWorker.ts";
import { sharpThumbnailer } from "./thumbnailer.ts";
import { loadRegistrations } from "./appservices.ts";
import type { AppServiceRegistration } from "../homeserver/appservice/registration.ts";
import { createNodeMetrics, startMetricsListener } from "./metrics.ts";
import { HttpsFederationTransport, splitPem } from "./federationHttps.ts";
import { isKeyServerName } from "../homeserver/federation/keyring.ts";
import type { NodeMetrics } from "./metrics.ts";
import { unfinishedImport } from "../export/homeserver.ts";
import type { FederationTransport } from "../homeserver/federation/transport.ts";
import { startP2P } from "./p2p.ts";
import type { RunningP2P } from "./p2p.ts";

/** A running Node homeserver. */
export interface RunningNode {
  readonly homeserver: Homeserver;
  readonly serverName: string;
  /** Base URL of the HTTP listener, e.g. `http://127.0.0.1:8008`. */
  readonly httpUrl: string;
  /** Base URL of the HTTPS listener, when one is configured. */
  readonly httpsUrl?: string;
  /** The rendezvous multiaddrs given on the command line or in the config. */
  readonly rendezvous?: string[];
  /** P2P mode: the multiaddrs other peers dial (the websocket listener and relay addresses). */
  p2pAddresses?(): string[];
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

/** Whether a request target is for the federation or key API, as the homeserver's router will see its path. */
export function isFederationPath(target: string): boolean {
  let path: string;
  try {
    path = new URL(`http://localhost${target}`).pathname;
  } catch {
    return false;
  }
  return path.startsWith("/_matrix/federation/") || path.startsWith("/_matrix/key/");
}

/** Reads and checks the HTTPS listener's certificate and key, naming the file that is wrong. */
async function readTls(certPath: string, keyPath: string): Promise<{ cert: Buffer; key: Buffer }> {
  const read = async (path: string, what: string): Promise<Buffer> => {
    try {
      return await readFile(path);
    } catch (err) {
      throw new StartupError(`cannot read ${what} ${path}: ${(err as Error).message}`);
    }
  };
  // One after the other: when both are missing, the error always names the certificate.
  const cert = await read(certPath, "tls_cert");
  const key = await read(keyPath, "tls_key");
  try {
    new X509Certificate(cert);
  } catch {
    throw new StartupError(`tls_cert ${certPath} is not a PEM certificate`);
  }
  try {
    createPrivateKey(key);
  } catch {
    throw new StartupError(`tls_key ${keyPath} is not a PEM private key (or it is encrypted)`);
  }
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new StartupError(`tls_key ${keyPath} does not fit tls_cert ${certPath}: ${(err as Error).message}`);
  }
  return { cert, key };
}

/** Reads `federation_custom_ca_list`: every file must hold PEM certificates that parse. */
async function readCaList(paths: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const path of paths) {
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      throw new StartupError(`cannot read federation_custom_ca_list file ${path}: ${(err as Error).message}`);
    }
    const certs = splitPem(text);
    if (certs.length === 0) throw new StartupError(`federation_custom_ca_list file ${path} holds no PEM certificate`);
    for (const cert of certs) {
      try {
        new X509Certificate(cert);
      } catch {
        throw new StartupError(`federation_custom_ca_list file ${path} holds a certificate that cannot be read`);
      }
    }
    out.push(...certs);
  }
  return out;
}

/** Whether `config` selects classic mode: a server name of DNS or IP form rather than a P2P key name. */
export function isClassicMode(config: NodeConfig): boolean {
  return config.serverName !== undefined && !isKeyServerName(config.serverName);
}

/** Binds `server`, turning "address in use" and friends into one clear line. */
async function bind(server: Server, port: number, host: string, what: string): Promise<AddressInfo> {
  try {
    return await listen(server, port, host);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const reason = e.code === "EADDRINUSE" ? "the port is already in use" : e.code === "EACCES" ? "permission denied" : e.message;
    throw new StartupError(`cannot listen on ${host}:${port} (${what}): ${reason}`);
  }
}

/**
 * Starts the homeserver described by `config`. Everything that can refuse the start (TLS files,
 * ports, seed, database, server name) is checked before anything is created in the data
 * directory, so a failed first start leaves no half-made server behind.
 */
export async function startNode(config: NodeConfig, options: StartOptions): Promise<RunningNode> {
  const { logger } = options;
  // Registration files are checked before anything is created.
  const appservices = await loadRegistrations(config.appServiceConfigFiles ?? []);
  const tls = config.httpsPort !== undefined ? await readTls(config.tlsCert!, config.tlsKey!) : undefined;
  const metrics = config.metricsPort !== undefined ? createNodeMetrics() : undefined;
  const customCas = await readCaList(config.federationCustomCaList ?? []);
  // Classic mode federates over HTTPS; P2P mode (a key name) carries the same requests over libp2p,
  // on a node started once the seed is known (openHomeserver).
  const maxRemoteMedia = Math.max(100 * 1024 * 1024, (config.maxUploadBytes ?? DEFAULT_CONFIG.maxUploadBytes) + 1024 * 1024);
  let p2p: RunningP2P | undefined;
  const startP2PTransport = async (seed: Uint8Array): Promise<FederationTransport> => {
    p2p = await startP2P({ seed, rendezvous: config.rendezvous ?? [], host: config.bindHost, port: config.p2pPort ?? 0, maxResponseBytes: maxRemoteMedia, logger });
    return p2p.transport;
  };
  const federationTransport = isClassicMode(config)
    ? new HttpsFederationTransport({
        extraCa: customCas,
        verifyCertificates: config.federationVerifyCertificates ?? true,
        // Remote media comes through the same transport: room for the largest upload.
        maxResponseBytes: maxRemoteMedia,
        logger,
      })
    : undefined;
  if (federationTransport && config.federationVerifyCertificates === false) logger.warn("federation_verify_certificates is false: other servers' certificates are not checked");

  // Bind first (a busy port must fail before the data directory exists); requests that arrive
  // before the homeserver is ready wait for it.
  let resolveReady!: (hs: Homeserver) => void;
  let rejectReady!: (err: unknown) => void;
  const ready = new Promise<Homeserver>((res, rej) => ((resolveReady = res), (rejectReady = rej)));
  ready.catch(() => undefined);
  const handle = async (r: Request): Promise<Response> => (await ready).handle(r);
  // Only media uploads may send large bodies; everything else is JSON, refused past its limit unread.
  const maxUploadBody = (config.maxUploadBytes ?? DEFAULT_CONFIG.maxUploadBytes) + 64 * 1024;
  const maxBodyBytes = (path: string): number => (isMediaUpload(path) ? maxUploadBody : MAX_JSON_BODY_LIMIT);
  const servers: Server[] = [];
  const listeners: RequestListener[] = [];
  let httpUrl: string;
  let httpsUrl: string | undefined;
  let metricsListener: { url: string; close(): Promise<void> } | undefined;
  const closeServers = async (): Promise<void> => {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    await metricsListener?.close();
  };
  try {
    const listenerOptions = { maxBodyBytes, logger, xForwarded: config.xForwarded };
    // A classic server with an HTTPS listener federates there only: other servers never use plain
    // HTTP (server-server API, "Server discovery"), and Synapse serves federation only on the
    // listeners that name the `federation` resource. Without https_port, a TLS proxy in front of
    // the HTTP port may carry federation, so it is served there.
    const federationOnHttpsOnly = isClassicMode(config) && tls !== undefined;
    const httpListener = createRequestListener(handle, {
      ...listenerOptions,
      scheme: "http",
      fallbackHost: `${config.bindHost}:${config.httpPort}`,
      ...(federationOnHttpsOnly ? { notServed: isFederationPath } : {}),
    });
    const http = createHttpServer(httpListener);
    servers.push(http);
    listeners.push(httpListener);
    httpUrl = urlOf("http", await bind(http, config.httpPort, config.bindHost, "http_port"));
    if (tls && config.httpsPort !== undefined) {
      const httpsListener = createRequestListener(handle, { ...listenerOptions, scheme: "https", fallbackHost: `${config.bindHost}:${config.httpsPort}` });
      const https = createHttpsServer(tls, httpsListener);
      servers.push(https);
      listeners.push(httpsListener);
      httpsUrl = urlOf("https", await bind(https, config.httpsPort, config.bindHost, "https_port"));
    }
    if (metrics && config.metricsPort !== undefined) {
      const metricsHost = config.metricsBindHost ?? "127.0.0.1";
      try {
        metricsListener = await startMetricsListener(metrics, metricsHost, config.metricsPort);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new StartupError(`cannot listen on ${metricsHost}:${config.metricsPort} (metrics_port): ${e.code === "EADDRINUSE" ? "the port is already in use" : e.message}`);
      }
    }
  } catch (err) {
    rejectReady(err);
    await closeServers();
    federationTransport?.close();
    throw err;
  }

  let homeserver: Homeserver;
  let serverName: string;
  try {
    ({ homeserver, serverName } = await openHomeserver(config, options, metrics, appservices, federationTransport ?? startP2PTransport));
    await p2p?.serve(homeserver, serverName);
  } catch (err) {
    rejectReady(err);
    federationTransport?.close();
    await p2p?.close().catch(() => undefined);
    for (const s of servers) s.closeAllConnections();
    await closeServers();
    throw err;
  }
  resolveReady(homeserver);
  if (appservices.length > 0) logger.info(`application services: ${appservices.map((a) => a.id).join(", ")}`);

  if (isClassicMode(config) && config.rendezvous !== undefined) {
    logger.warn(`server name ${serverName} selects classic mode: the rendezvous ${config.rendezvous.join(", ")} is not used`);
  }
  if (isClassicMode(config) && config.httpsPort === undefined) {
    logger.warn(`server name ${serverName} selects classic mode, which federates over HTTPS; no https_port is configured, so other servers cannot reach this one`);
  }

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      const stopped = servers.map((s) => new Promise<void>((r) => s.close(() => r())));
      for (const s of servers) s.closeIdleConnections();
      // Long-polling /sync (and /events) requests answer now instead of at their timeout.
      homeserver.services.notifier.close();
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), SHUTDOWN_GRACE_MS)));
      const outcome = await Promise.race([Promise.all(listeners.map((l) => l.idle())), grace]);
      clearTimeout(timer);
      if (outcome === "timeout") logger.warn("shutdown: cutting connections of requests still running");
      for (const s of servers) s.closeAllConnections();
      await Promise.all(stopped);
      await metricsListener?.close();
      // No new P2P requests; the libp2p node stops after the homeserver's queues have.
      await p2p?.close();
      // Pending writes finish and the database file is written before this resolves.
      await homeserver.close();
      federationTransport?.close();
    })());

  const running = p2p;
  return {
    homeserver,
    serverName,
    httpUrl,
    httpsUrl,
    rendezvous: config.rendezvous,
    metricsUrl: metricsListener?.url,
    ...(running ? { p2pAddresses: () => running.addresses() } : {}),
    close,
  };
}

/**
 * The seed, the database and the homeserver on them. A new seed is written only after the
 * database has opened and agreed with the server name, so a refused start creates no seed.
 */
async function openHomeserver(
  config: NodeConfig,
  options: StartOptions,
  metrics: NodeMetrics | undefined,
  appservices: AppServiceRegistration[],
  /** A transport, or (P2P mode) how to make one from the final seed. */
  transport: FederationTransport | ((seed: Uint8Array) => Promise<FederationTransport>),
): Promise<{ homeserver: Homeserver; serverName: string }> {
  const { logger } = options;
  const existingSeed = await readSeed(config.dataDir);
  const seed = existingSeed ?? crypto.getRandomValues(new Uint8Array(32));
  let serverName = config.serverName ?? serverNameFromSeed(seed);
  let store: Store;
  try {
    const rawStore = await (options.openStore ?? openNodeStore)(config.dataDir);
    // With metrics on, every transaction is timed (hyphae_store_transaction_duration_seconds).
    store = metrics ? metrics.instrumentStore(rawStore) : rawStore;
  } catch (err) {
    if (err instanceof StorageError) throw new StartupError(`cannot open the database in ${config.dataDir}: ${err.message}; refusing to start`);
    throw err;
  }

  let finalSeed = seed;
  try {
    // A database belongs to one server name: every stored ID contains it.
    // An import that stopped half way (src/export/homeserver.ts) left rows that must not be served.
    if (await unfinishedImport(store)) {
      throw new StartupError(`the data directory ${config.dataDir} holds an unfinished import; delete it and run --import again`);
    }
    const known = await store.read((tx) => tx.get<string>("settings", "server_name"));
    if (known !== undefined && known !== serverName) {
      throw new StartupError(`the data directory ${config.dataDir} belongs to server "${known}", not "${serverName}"; refusing to start`);
    }
    if (!existingSeed) {
      const written = await writeNewSeed(config.dataDir, seed);
      if (written.created) logger.info(`created a new signing key in ${config.dataDir}`);
      finalSeed = written.seed;
      serverName = config.serverName ?? serverNameFromSeed(finalSeed);
    }
    if (known === undefined) await store.write(async (tx) => tx.put("settings", "server_name", serverName));
  } catch (err) {
    await store.close();
    throw err;
  }

  const hsConfig: Partial<HomeserverConfig> = {
    enableRegistration: config.enableRegistration,
    registrationRequiresToken: config.registrationRequiresToken,
    defaultRoomVersion: config.defaultRoomVersion,
    rateLimits: config.rateLimits,
    federationRateLimit: config.federationRateLimit,
  };
  if (config.registrationSharedSecret !== undefined) hsConfig.registrationSharedSecret = config.registrationSharedSecret;
  if (config.passwordIterations !== undefined) hsConfig.passwordIterations = config.passwordIterations;
  if (config.maxUploadBytes !== undefined) hsConfig.maxUploadBytes = config.maxUploadBytes;
  if (config.publicBaseUrl !== undefined) hsConfig.publicBaseUrl = config.publicBaseUrl;
  if (config.accessTokenLifetimeMs !== undefined) hsConfig.accessTokenLifetimeMs = config.accessTokenLifetimeMs;
  if (config.support !== undefined) hsConfig.support = config.support;
  if (config.allowGuestAccess !== undefined) hsConfig.allowGuestAccess = config.allowGuestAccess;
  if (config.federationDomainWhitelist !== undefined) hsConfig.federationDomainWhitelist = config.federationDomainWhitelist;
  if (config.trustedKeyServers !== undefined) hsConfig.trustedKeyServers = config.trustedKeyServers;
  if (config.directoryPeerTtlMs !== undefined) hsConfig.directoryPeerTtlMs = config.directoryPeerTtlMs;
  if (config.directoryRefreshIntervalMs !== undefined) hsConfig.directoryRefreshIntervalMs = config.directoryRefreshIntervalMs;
  let readWorker: ReadWorker | undefined;
  try {
    // Searches run on a worker thread with its own connection to the database file (readWorker.ts);
    // a store opened some other way (tests) has no such file, and they run here.
    if (!options.openStore) readWorker = await startReadWorker(join(config.dataDir, DATABASE_FILE));
    const federationTransport = typeof transport === "function" ? await transport(finalSeed) : transport;
    const homeserver = await createHomeserver({ store, seed: finalSeed, serverName, logger, config: hsConfig, clock: options.clock, thumbnailer: sharpThumbnailer, fetch: globalThis.fetch, metrics,
      appservices, appserviceOptions: { legacyAuth: config.appServiceLegacyAuth === true },
      federationTransport,
      ...(readWorker ? { readWorker } : {}),
    });
    metrics?.watch(homeserver);
    return { homeserver, serverName };
  } catch (err) {
    await readWorker?.close();
    await store.close();
    throw err;
  }
}

/**
 * A signal this soon after the first is the same stop request delivered twice, not an operator
 * insisting: `npm run` relays SIGTERM/SIGINT to the server, which also gets its own copy when the
 * whole process group (Ctrl-C in a terminal) or cgroup (systemd's default `KillMode`) is signalled.
 */
const RELAYED_SIGNAL_MS = 2_000;

/**
 * Installs SIGINT/SIGTERM handlers that stop the node gracefully and exit 0; a second signal (later
 * than {@link RELAYED_SIGNAL_MS} after the first) exits at once with 1. Takes the node while it is
 * still starting, so that a signal during start-up waits for it and then stops it cleanly instead
 * of killing it half way. `starting` resolving to undefined (nothing to run, e.g. `--help`) exits 0;
 * rejecting (a start-up failure) is left to the caller, which reports it and exits 1.
 */
export function exitOnSignals(starting: Promise<RunningNode | undefined>, log: (msg: string) => void): void {
  let stoppingSince: number | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stoppingSince !== undefined) {
      if (Date.now() - stoppingSince < RELAYED_SIGNAL_MS) return;
      log(`${signal} again: exiting without waiting`);
      process.exit(1);
    }
    stoppingSince = Date.now();
    log(`${signal}: stopping (finishing in-flight requests)`);
    starting.then(
      (node) =>
        (node ? node.close() : Promise.resolve()).then(
          () => process.exit(0),
          (err: unknown) => {
            log(`shutdown failed: ${String(err)}`);
            process.exit(1);
          },
        ),
      // The start failed: the caller prints its one line and exits 1.
      () => undefined,
    );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}
