/**
 * A push gateway for tests: a real HTTP server on 127.0.0.1 that records every
 * `POST /_matrix/push/v1/notify` body and answers as the test says (status, `rejected` pushkeys).
 */
import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";

/** One request the gateway received. */
export interface Received {
  path: string;
  contentType: string | undefined;
  body: { notification: Record<string, any> };
}

/** A running gateway. */
export interface TestGateway {
  /** The URL to give pushers: `http://127.0.0.1:P/_matrix/push/v1/notify`. */
  url: string;
  received: Received[];
  /** How the next requests are answered (default 200 with no rejected pushkeys). */
  respond: (r: Received) => { status: number; rejected?: string[] };
  /** Resolves once `n` requests arrived; fails after `ms`. */
  waitFor(n: number, ms?: number): Promise<Received[]>;
  close(): Promise<void>;
}

/** Starts a gateway on a free port (or on `port`). */
export async function startGateway(port = 0): Promise<TestGateway> {
  const received: Received[] = [];
  const waiters = new Set<() => boolean>();
  const gw: TestGateway = {
    url: "",
    received,
    respond: () => ({ status: 200 }),
    waitFor: (n, ms = 10_000) =>
      new Promise((resolve, reject) => {
        const check = (): boolean => {
          if (received.length < n) return false;
          clearTimeout(timer);
          resolve(received.slice());
          return true;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`gateway: ${received.length} of ${n} requests after ${ms} ms`));
        }, ms);
        if (!check()) waiters.add(check);
      }),
    close: () => new Promise((r) => {
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      let body: Received["body"];
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Received["body"];
      } catch {
        res.writeHead(400).end();
        return;
      }
      const r: Received = { path: req.url ?? "", contentType: req.headers["content-type"], body };
      received.push(r);
      const answer = gw.respond(r);
      res.writeHead(answer.status, { "Content-Type": "application/json" });
      res.end(JSON.stringify(answer.status === 200 ? { rejected: answer.rejected ?? [] } : { error: "gateway says no" }));
      for (const check of [...waiters]) if (check()) waiters.delete(check);
    });
  });
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
  gw.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/_matrix/push/v1/notify`;
  return gw;
}
