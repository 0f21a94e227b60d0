/**
 * The health endpoint: `GET /health` over plain HTTP answers the node's state as JSON (see
 * `RendezvousHealth`). Read-only and without user data, so it needs no authentication; bind it to
 * a private interface if the counters should stay private.
 */
import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { RendezvousHealth } from "./node.ts";

/** A listening health endpoint. */
export interface HealthServer {
  url: string;
  close(): Promise<void>;
}

/** Serves `GET /health` on host:port (0 = any free port). */
export async function startHealthServer(host: string, port: number, health: () => Promise<RendezvousHealth>): Promise<HealthServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const send = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      res.writeHead(status, { "Content-Type": "application/json", "Cache-Control": "no-store", ...headers });
      res.end(req.method === "HEAD" ? undefined : JSON.stringify(body));
    };
    if (path !== "/health") return send(404, { error: "not found: the only endpoint is GET /health" });
    if (req.method !== "GET" && req.method !== "HEAD") return send(405, { error: "method not allowed" }, { Allow: "GET, HEAD" });
    // `?gc=1` collects garbage first when Node runs with --expose-gc (bench/rendezvous.ts measures
    // memory per peer that way); without the flag there is no `gc` and it is ignored.
    const gc = (globalThis as { gc?: () => void }).gc;
    if (gc && /[?&]gc=1(&|$)/.test(req.url ?? "")) gc();
    health().then(
      (h) => send(200, h),
      (err: unknown) => send(500, { error: (err as Error).message }),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  const shown = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${shown}:${addr.port}/health`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
