/**
 * Prometheus metrics for the Node runner (prom-client), served on their own listener when the
 * operator sets `metrics_port`: request counts and latencies per route template, `/sync` waiters,
 * store transaction latency, the push queue and the federation queue depth per destination. The
 * core only sees the small `RequestObserver` interface; prom-client stays here.
 */
import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { RequestObserver } from "../homeserver/context.ts";
import type { Homeserver } from "../homeserver/homeserver.ts";
import type { ReadTx, Store, TxScope, WriteTx } from "../storage/store.ts";

/** The runner's metrics. */
export interface NodeMetrics extends RequestObserver {
  readonly registry: Registry;
  /** Wraps a store so that every transaction's duration is recorded. */
  instrumentStore(store: Store): Store;
  /** Reads gauges from the running homeserver at scrape time. */
  watch(homeserver: Homeserver): void;
}

const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]);

/** Creates the metrics with their own registry (several nodes in one process do not clash). */
export function createNodeMetrics(): NodeMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const requests = new Counter({
    name: "hyphae_http_requests_total",
    help: "HTTP requests answered, by method, route template and status.",
    labelNames: ["method", "route", "status"] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: "hyphae_http_request_duration_seconds",
    help: "Time to answer an HTTP request (until the response is ready), by method and route template.",
    labelNames: ["method", "route"] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });
  const storeLatency = new Histogram({
    name: "hyphae_store_transaction_duration_seconds",
    help: "Duration of storage transactions, by kind (read or write), from start to commit.",
    labelNames: ["kind"] as const,
    buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [registry],
  });
  let hs: Homeserver | undefined;
  new Gauge({
    name: "hyphae_sync_waiters",
    help: "Long-polling /sync requests waiting for news.",
    registers: [registry],
    collect() {
      this.set(hs?.services.notifier.waiting() ?? 0);
    },
  });
  new Gauge({
    name: "hyphae_push_queue_depth",
    help: "Push notifications waiting for their push gateway.",
    registers: [registry],
    async collect() {
      this.set((await hs?.services.pushSender?.queueDepth()) ?? 0);
    },
  });
  new Gauge({
    name: "hyphae_federation_queue_depth",
    help: "PDUs and EDUs waiting for delivery to a destination server (including the transaction in flight), per destination.",
    labelNames: ["destination"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      const depths = await hs?.services.federationSender?.queueDepths();
      for (const [destination, n] of depths ?? []) this.set({ destination }, n);
    },
  });

  const timed = async <T>(kind: "read" | "write", run: () => Promise<T>): Promise<T> => {
    const end = storeLatency.startTimer({ kind });
    try {
      return await run();
    } finally {
      end();
    }
  };

  return {
    registry,
    requestFinished(method, route, status, seconds) {
      const m = METHODS.has(method) ? method : "other";
      requests.inc({ method: m, route, status: String(status) });
      latency.observe({ method: m, route }, seconds);
    },
    instrumentStore(store) {
      const read = <T>(fn: (tx: ReadTx) => Promise<T>, scope?: TxScope): Promise<T> => timed("read", () => store.read(fn, scope));
      const write = <T>(fn: (tx: WriteTx) => Promise<T>, scope?: TxScope): Promise<T> => timed("write", () => store.write(fn, scope));
      // Everything but read/write passes through, including members a backend adds later.
      return new Proxy(store, {
        get(target, prop) {
          if (prop === "read") return read;
          if (prop === "write") return write;
          const v: unknown = Reflect.get(target, prop, target);
          return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
    },
    watch(homeserver) {
      hs = homeserver;
    },
  };
}

/** Serves `GET /metrics` (and Synapse's `/_synapse/metrics`) on its own listener. */
export async function startMetricsListener(metrics: NodeMetrics, host: string, port: number): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (req.method !== "GET" || (path !== "/metrics" && path !== "/_synapse/metrics")) {
      res.writeHead(404, { "Content-Type": "text/plain" }).end("Not found\n");
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { "Content-Type": metrics.registry.contentType }).end(text),
      (err: unknown) => res.writeHead(500, { "Content-Type": "text/plain" }).end(`${String(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const h = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${h}:${addr.port}/metrics`,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
