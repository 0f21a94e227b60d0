/**
 * A stand-in application service for core tests: a real HTTP server on 127.0.0.1 that records
 * every request and answers through a replaceable handler.
 */
import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";

/** One request the service received. */
export interface Received {
  method: string;
  path: string;
  query: URLSearchParams;
  authorization: string | undefined;
  body: any;
}

/** What the handler answers. */
export interface Answer {
  status: number;
  body?: unknown;
}

/** A fake application service. */
export class FakeAppService {
  readonly received: Received[] = [];
  /** Decides the answer; default 200 `{}`. */
  handler: (r: Received) => Answer | Promise<Answer> = () => ({ status: 200, body: {} });
  private waiters: { pred: (r: Received) => boolean; resolve: (r: Received) => void }[] = [];

  private readonly server: Server;
  readonly url: string;

  private constructor(server: Server, url: string) {
    this.server = server;
    this.url = url;
  }

  static async start(): Promise<FakeAppService> {
    // eslint-disable-next-line prefer-const -- assigned once the server listens, used by its handler
    let self: FakeAppService | undefined;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const url = new URL(req.url ?? "/", "http://x");
        const text = Buffer.concat(chunks).toString("utf8");
        const r: Received = { method: req.method ?? "", path: decodeURIComponent(url.pathname), query: url.searchParams, authorization: req.headers.authorization, body: text ? JSON.parse(text) : undefined };
        self!.received.push(r);
        void Promise.resolve(self!.handler(r)).then((a) => {
          res.writeHead(a.status, { "Content-Type": "application/json" });
          res.end(JSON.stringify(a.body ?? {}));
          for (const w of [...self!.waiters]) {
            if (w.pred(r)) {
              self!.waiters.splice(self!.waiters.indexOf(w), 1);
              w.resolve(r);
            }
          }
        });
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    self = new FakeAppService(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    return self;
  }

  /** Resolves with the first (already received or future) request matching `pred`; rejects after `ms`. */
  waitFor(pred: (r: Received) => boolean, ms = 10_000): Promise<Received> {
    const seen = this.received.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching request within ${ms} ms; got ${JSON.stringify(this.received.map((r) => `${r.method} ${r.path}`))}`)), ms);
      this.waiters.push({ pred, resolve: (r) => (clearTimeout(timer), resolve(r)) });
    });
  }

  /** The events of every transaction received so far, in order. */
  transactionEvents(): any[] {
    return this.received.filter((r) => r.path.startsWith("/_matrix/app/v1/transactions/")).flatMap((r) => r.body.events as any[]);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
