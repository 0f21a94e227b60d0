/**
 * The federation transport compliance suite (as js-libp2p has one for its transports): what every
 * `FederationTransport` must do for the core, whatever carries the bytes. The in-memory network,
 * the HTTPS transport and (with the P2P issue) libp2p each run it through
 * `transportCompliance(name, setup)`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FederationTransport, RequestHandler } from "../../src/homeserver/federation/transport.ts";
import { federationUrl } from "../../src/homeserver/federation/transport.ts";

/** One transport under test and servers for it to talk to. */
export interface TransportUnderTest {
  transport: FederationTransport;
  /** Puts a server answering with `handler` where the transport can reach it; returns its server name. */
  serve(handler: RequestHandler): Promise<string>;
  /** A server name nothing answers at. */
  unreachable(): Promise<string>;
  close(): Promise<void>;
}

/** What the server side saw of one request. */
interface Seen {
  method: string;
  url: URL;
  headers: Headers;
  body: Uint8Array;
}

/** A deadline for anything the suite waits on: generous for a loaded machine, far below the test timeout. */
const BOUND_MS = 5_000;

/** Registers the suite for one transport. */
export function transportCompliance(name: string, setup: () => Promise<TransportUnderTest>): void {
  describe(`federation transport compliance: ${name}`, () => {
    let t: TransportUnderTest;
    let server: string;
    const seen: Seen[] = [];
    /** The answer for the next request, by path (the default echoes what it saw). */
    const answers = new Map<string, (request: Request, body: Uint8Array) => Promise<Response>>();

    beforeAll(async () => {
      t = await setup();
      server = await t.serve(async (request) => {
        const url = new URL(request.url);
        const body = new Uint8Array(await request.arrayBuffer());
        seen.push({ method: request.method, url, headers: request.headers, body });
        const custom = answers.get(url.pathname);
        if (custom) return custom(request, body);
        return Response.json({ ok: true });
      });
    });
    afterAll(async () => {
      await t?.close();
    });

    const send = (path: string, init: RequestInit = {}): Promise<Response> => t.transport.request(server, new Request(federationUrl(server, path), init));
    const last = (): Seen => seen[seen.length - 1]!;

    it("delivers the path and query byte for byte", async () => {
      const paths = [
        "/_matrix/federation/v1/version",
        "/_matrix/federation/v1/query/directory?room_alias=%23room%3Aexample.org",
        "/_matrix/federation/v1/state_ids/%21abc%3Ahs.example?event_id=%24ev%2B%2F%3D",
        "/_matrix/federation/v1/user/devices/%40alice%3Ahs.example",
        "/_matrix/federation/v1/x/a%2Fb/%C3%A9t%C3%A9/%20space?q=a%2Fb%20c+d&empty=&dup=1&dup=2&u=%E2%9C%93",
        "/_matrix/key/v2/server",
      ];
      for (const path of paths) {
        const response = await send(path);
        expect(response.status).toBe(200);
        await response.arrayBuffer();
        expect(last().url.pathname + last().url.search, path).toBe(path);
      }
    });

    it("addresses the destination by its server name", async () => {
      await (await send("/_matrix/federation/v1/version")).arrayBuffer();
      expect(last().url.host).toBe(server);
    });

    it("carries every method with its body", async () => {
      for (const method of ["GET", "PUT", "POST", "DELETE"]) {
        const withBody = method === "PUT" || method === "POST";
        const response = await send("/_matrix/federation/v1/method", { method, ...(withBody ? { body: JSON.stringify({ method }) } : {}) });
        expect(response.status).toBe(200);
        await response.arrayBuffer();
        expect(last().method).toBe(method);
        if (withBody) expect(JSON.parse(new TextDecoder().decode(last().body))).toEqual({ method });
        else expect(last().body.length).toBe(0);
      }
    });

    it("carries request headers to the server and response headers back", async () => {
      const auth = 'X-Matrix origin="a.example",destination="b.example",key="ed25519:k",sig="c2ln"';
      answers.set("/_matrix/federation/v1/headers", async () => new Response("{}", { headers: { "Content-Type": "application/json", "X-Answer": "yes", "Cache-Control": "max-age=60" } }));
      const response = await send("/_matrix/federation/v1/headers", { method: "PUT", headers: { Authorization: auth, "Content-Type": "application/json", "X-Custom": "v1" }, body: "{}" });
      expect(last().headers.get("authorization")).toBe(auth);
      expect(last().headers.get("content-type")).toBe("application/json");
      expect(last().headers.get("x-custom")).toBe("v1");
      expect(response.headers.get("content-type")).toBe("application/json");
      expect(response.headers.get("x-answer")).toBe("yes");
      expect(response.headers.get("cache-control")).toBe("max-age=60");
      await response.arrayBuffer();
    });

    it("carries binary and large bodies unchanged both ways", async () => {
      const bytes = new Uint8Array(256).map((_, i) => i);
      const large = new Uint8Array(1024 * 1024 + 7).map((_, i) => (i * 31) & 0xff);
      for (const body of [bytes, large, new Uint8Array(0)]) {
        answers.set("/_matrix/federation/v1/echo", async (_request, received) => new Response(received.slice(), { headers: { "Content-Type": "application/octet-stream" } }));
        const response = await send("/_matrix/federation/v1/echo", { method: "POST", body });
        // Compared as buffers: element-wise deep equality of a megabyte takes the event loop for seconds.
        expect(Buffer.compare(last().body, body)).toBe(0);
        expect(Buffer.compare(new Uint8Array(await response.arrayBuffer()), body)).toBe(0);
      }
    });

    it("resolves with every status the server answers, body included", async () => {
      for (const status of [200, 201, 400, 401, 403, 404, 413, 429, 500, 502]) {
        const body = { errcode: `M_TEST_${status}`, error: "e" };
        answers.set("/_matrix/federation/v1/status", async () => Response.json(body, { status, headers: status === 429 ? { "Retry-After": "3" } : {} }));
        const response = await send("/_matrix/federation/v1/status");
        expect(response.status).toBe(status);
        expect(await response.json()).toEqual(body);
        if (status === 429) expect(response.headers.get("retry-after")).toBe("3");
      }
      answers.set("/_matrix/federation/v1/status", async () => new Response(null, { status: 204 }));
      const empty = await send("/_matrix/federation/v1/status", { method: "DELETE" });
      expect(empty.status).toBe(204);
      expect((await empty.arrayBuffer()).byteLength).toBe(0);
    });

    it("answers concurrent requests each with its own answer", async () => {
      answers.set("/_matrix/federation/v1/concurrent", async (request) => {
        const n = new URL(request.url).searchParams.get("n");
        // Answer out of order.
        await new Promise((r) => setTimeout(r, (10 - Number(n)) * 5));
        return Response.json({ n });
      });
      const results = await Promise.all(Array.from({ length: 10 }, async (_, i) => (await send(`/_matrix/federation/v1/concurrent?n=${i}`)).json()));
      expect(results).toEqual(Array.from({ length: 10 }, (_, i) => ({ n: String(i) })));
    });

    it("rejects for a server it cannot reach", async () => {
      const nowhere = await t.unreachable();
      const started = Date.now();
      await expect(t.transport.request(nowhere, new Request(federationUrl(nowhere, "/_matrix/federation/v1/version")))).rejects.toBeInstanceOf(Error);
      expect(Date.now() - started).toBeLessThan(BOUND_MS);
    });

    it("rejects when the request's signal aborts: before sending, while waiting, on a timeout", async () => {
      let release!: () => void;
      const never = new Promise<void>((r) => (release = r));
      answers.set("/_matrix/federation/v1/slow", async () => {
        await never;
        return Response.json({});
      });
      const aborted = AbortSignal.abort(new Error("gave up"));
      await expect(send("/_matrix/federation/v1/slow", { signal: aborted })).rejects.toThrow();

      const controller = new AbortController();
      const pending = send("/_matrix/federation/v1/slow", { signal: controller.signal });
      setTimeout(() => controller.abort(new Error("caller aborted")), 50);
      const started = Date.now();
      await expect(pending).rejects.toThrow();
      expect(Date.now() - started).toBeLessThan(BOUND_MS);

      const timedOut = send("/_matrix/federation/v1/slow", { signal: AbortSignal.timeout(100) });
      await expect(timedOut).rejects.toThrow();
      expect(Date.now() - started).toBeLessThan(BOUND_MS);
      release();
    });

    it("fails the body when the signal aborts while it streams", async () => {
      let stop!: () => void;
      answers.set("/_matrix/federation/v1/trickle", async () => {
        const stream = new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(new TextEncoder().encode('{"part":'));
            stop = () => controller.close();
          },
        });
        return new Response(stream, { headers: { "Content-Type": "application/json" } });
      });
      const controller = new AbortController();
      const outcome = send("/_matrix/federation/v1/trickle", { signal: controller.signal }).then((r) => r.text());
      setTimeout(() => controller.abort(new Error("caller aborted")), 100);
      const started = Date.now();
      await expect(outcome).rejects.toThrow();
      expect(Date.now() - started).toBeLessThan(BOUND_MS);
      stop?.();
    });
  });
}
