/**
 * `/hyphae/http/1` beyond the compliance suite: multi-megabyte bodies both ways with a slow reader,
 * the size caps, the timeouts, garbage on the wire, what the listener serves, and the libp2p side:
 * peers listed by the rendezvous, reachability events, redial after the rendezvous restarts and a
 * direct connection next to the relayed one. Real libp2p on loopback websockets.
 */
import { afterEach, describe, expect, it } from "vitest";
import { lpStream } from "@libp2p/utils";
import type { Stream } from "@libp2p/interface";
import { BodyTooLargeError, HTTP_PROTOCOL, Libp2pFederationTransport, MAX_FRAME_BYTES, StreamTimeoutError, serveHttp } from "../../src/transport/http.ts";
import type { PeerRequestHandler } from "../../src/transport/http.ts";
import { peerIdFromServerName } from "../../src/transport/identity.ts";
import { federationUrl } from "../../src/homeserver/federation/transport.ts";
import { closeAll, startPeer, startRendezvous, until } from "./p2pHarness.ts";
import type { TestRendezvous } from "./p2pHarness.ts";

afterEach(closeAll);

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A rendezvous, a client peer and a server peer answering with `handler`. */
async function pair(handler: PeerRequestHandler, listener: Partial<Parameters<typeof serveHttp>[2]> = {}, transport: ConstructorParameters<typeof Libp2pFederationTransport>[1] = {}) {
  const rendezvous = await startRendezvous();
  const client = await startPeer({ rendezvous: [rendezvous.addr] });
  const server = await startPeer({ rendezvous: [rendezvous.addr] });
  await serveHttp(server.node, handler, { serverName: server.serverName, ...listener });
  const t = new Libp2pFederationTransport(client.node, transport);
  const send = (path: string, init: RequestInit = {}) => t.request(server.serverName, new Request(federationUrl(server.serverName, path), init));
  return { rendezvous, client, server, transport: t, send };
}

/** Opens a raw `/hyphae/http/1` stream from `from` to `to` for hand-made frames. */
async function rawStream(from: Awaited<ReturnType<typeof startPeer>>, toServerName: string): Promise<Stream> {
  return from.node.openStream(peerIdFromServerName(toServerName), HTTP_PROTOCOL, AbortSignal.timeout(5_000));
}

/** Reads a whole response off a raw stream: head, then body frames to the end marker. */
async function readRaw(stream: Stream): Promise<{ status: number; body: string }> {
  const lp = lpStream(stream);
  const head = JSON.parse(decoder.decode((await lp.read({ signal: AbortSignal.timeout(5_000) })).subarray())) as { status: number };
  let body = "";
  for (;;) {
    const frame = (await lp.read({ signal: AbortSignal.timeout(5_000) })).subarray();
    if (frame.byteLength === 0) break;
    body += decoder.decode(frame);
  }
  return { status: head.status, body };
}

function pattern(n: number, seed: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * seed + (i >> 8)) & 0xff;
  return out;
}

describe("/hyphae/http/1", () => {
  it("carries 8 MB each way, the answer streamed to a reader that pauses", async () => {
    const up = pattern(8 * 1024 * 1024, 13);
    const down = pattern(8 * 1024 * 1024 + 3, 29);
    let received: Uint8Array | undefined;
    const { send } = await pair(
      async (request) => {
        received = new Uint8Array(await request.arrayBuffer());
        // Streamed from a generator: the listener writes as the reader drains.
        let at = 0;
        const body = new ReadableStream<Uint8Array>({
          pull(controller) {
            if (at >= down.length) return controller.close();
            controller.enqueue(down.slice(at, at + 100_000));
            at += 100_000;
          },
        });
        return new Response(body, { headers: { "Content-Type": "application/octet-stream" } });
      },
      { maxBodyBytes: () => 16 * 1024 * 1024 },
    );
    const response = await send("/_matrix/federation/v1/media/download/x", { method: "POST", body: up });
    expect(Buffer.compare(received!, up)).toBe(0);
    const reader = response.body!.getReader();
    const chunks: Uint8Array[] = [];
    let n = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      expect(value.byteLength).toBeLessThanOrEqual(MAX_FRAME_BYTES);
      // A slow consumer now and then: the sender waits instead of the stream overflowing.
      if (++n % 32 === 0) await new Promise((r) => setTimeout(r, 20));
    }
    expect(Buffer.compare(Buffer.concat(chunks), down)).toBe(0);
  }, 60_000);

  it("refuses a request body over the listener's cap with 413 M_TOO_LARGE, and still serves afterwards", async () => {
    const { send } = await pair(async (request) => Response.json({ size: (await request.arrayBuffer()).byteLength }), { maxBodyBytes: () => 100_000 });
    const refused = await send("/_matrix/federation/v1/send/1", { method: "PUT", body: new Uint8Array(300_000) });
    expect(refused.status).toBe(413);
    expect(await refused.json()).toMatchObject({ errcode: "M_TOO_LARGE" });
    const ok = await send("/_matrix/federation/v1/send/2", { method: "PUT", body: new Uint8Array(100_000) });
    expect(await ok.json()).toEqual({ size: 100_000 });
  }, 30_000);

  it("fails a response body over the client's cap", async () => {
    const { send } = await pair(async () => new Response(new Uint8Array(2 * 1024 * 1024)), {}, { maxResponseBytes: 1024 * 1024 });
    const response = await send("/_matrix/federation/v1/media/download/big");
    expect(response.status).toBe(200);
    await expect(response.arrayBuffer()).rejects.toBeInstanceOf(BodyTooLargeError);
  }, 30_000);

  it("times out a server that never answers, and a body that stops mid-way", async () => {
    let stall!: () => void;
    const stalled = new Promise<void>((r) => (stall = r));
    const { send } = await pair(
      async (request) => {
        if (new URL(request.url).pathname.endsWith("/silent")) {
          await stalled;
          return Response.json({});
        }
        return new Response(
          new ReadableStream<Uint8Array>({
            start(controller) {
              controller.enqueue(encoder.encode("{"));
            },
          }),
        );
      },
      {},
      { responseTimeoutMs: 300, idleTimeoutMs: 300 },
    );
    const started = Date.now();
    await expect(send("/_matrix/federation/v1/silent")).rejects.toBeInstanceOf(StreamTimeoutError);
    expect(Date.now() - started).toBeLessThan(5_000);
    const trickle = await send("/_matrix/federation/v1/trickle");
    await expect(trickle.text()).rejects.toBeInstanceOf(StreamTimeoutError);
    stall();
  }, 30_000);

  it("cuts a stream that never sends its head", async () => {
    const { client, server } = await pair(async () => Response.json({}), { headTimeoutMs: 200 });
    const stream = await rawStream(client, server.serverName);
    const lp = lpStream(stream);
    const started = Date.now();
    await expect(lp.read({ signal: AbortSignal.timeout(5_000) })).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(4_000);
  }, 30_000);

  it("answers garbage with a Matrix error, never a crash", async () => {
    const seen: string[] = [];
    const { client, server, send } = await pair(async (request) => {
      seen.push(new URL(request.url).pathname);
      return Response.json({ ok: true });
    });
    const cases: { head: Uint8Array; status: number; errcode: string }[] = [
      { head: encoder.encode("not json"), status: 400, errcode: "M_BAD_JSON" },
      { head: new Uint8Array([0xff, 0xfe, 0x00]), status: 400, errcode: "M_BAD_JSON" },
      { head: encoder.encode("[1,2]"), status: 400, errcode: "M_BAD_JSON" },
      { head: encoder.encode(JSON.stringify({ method: "BREW", path: "/_matrix/federation/v1/version", headers: [] })), status: 400, errcode: "M_UNRECOGNIZED" },
      { head: encoder.encode(JSON.stringify({ method: "GET", path: "_matrix/federation/v1/version", headers: [] })), status: 400, errcode: "M_UNRECOGNIZED" },
      { head: encoder.encode(JSON.stringify({ method: "GET", path: "//evil.example/_matrix/federation/v1/version", headers: [] })), status: 400, errcode: "M_UNRECOGNIZED" },
      { head: encoder.encode(JSON.stringify({ method: "GET", path: "/_matrix/federation/v1/version", headers: "x" })), status: 400, errcode: "M_BAD_JSON" },
      { head: encoder.encode(JSON.stringify({ method: "GET", path: "/_matrix/federation/v1/version", headers: [["bad name", "v"]] })), status: 400, errcode: "M_BAD_JSON" },
      { head: encoder.encode(JSON.stringify({ method: "GET", path: "/_matrix/federation/v1/version", headers: [["x", "a\nb"]] })), status: 400, errcode: "M_BAD_JSON" },
      // Only the federation and key APIs over libp2p, however the path is spelled.
      { head: encoder.encode(JSON.stringify({ method: "GET", path: "/_matrix/client/v3/account/whoami", headers: [] })), status: 404, errcode: "M_UNRECOGNIZED" },
      { head: encoder.encode(JSON.stringify({ method: "GET", path: "/_matrix/federation/../client/v3/login", headers: [] })), status: 404, errcode: "M_UNRECOGNIZED" },
      { head: encoder.encode(JSON.stringify({ method: "GET", path: "/_matrix/federation/%2e%2e/client/v3/login", headers: [] })), status: 404, errcode: "M_UNRECOGNIZED" },
      { head: encoder.encode(JSON.stringify({ method: "GET", path: "/_matrix/media/v3/download/a/b", headers: [] })), status: 404, errcode: "M_UNRECOGNIZED" },
    ];
    for (const c of cases) {
      const stream = await rawStream(client, server.serverName);
      const lp = lpStream(stream);
      await lp.write(c.head);
      await lp.write(new Uint8Array(0));
      const answer = await readRaw(stream);
      expect({ status: answer.status, errcode: (JSON.parse(answer.body) as { errcode: string }).errcode }, decoder.decode(c.head)).toEqual({ status: c.status, errcode: c.errcode });
    }
    // A frame longer than the protocol allows: the stream is reset, nothing reaches the homeserver.
    const stream = await rawStream(client, server.serverName);
    const lp = lpStream(stream);
    await lp.write(new Uint8Array(MAX_FRAME_BYTES + 1).fill(0x20));
    await expect(lp.read({ signal: AbortSignal.timeout(5_000) })).rejects.toThrow();
    expect(seen).toEqual([]);
    // And the listener still serves.
    expect(await (await send("/_matrix/federation/v1/version")).json()).toEqual({ ok: true });
    expect(seen).toEqual(["/_matrix/federation/v1/version"]);
  }, 60_000);

  it("hands the homeserver the server name of the peer the stream came from", async () => {
    let info: unknown;
    const { client, send } = await pair(async (_request, i) => {
      info = i;
      return Response.json({});
    });
    await (await send("/_matrix/key/v2/server")).arrayBuffer();
    expect(info).toEqual({ peerServer: client.serverName });
  }, 30_000);
});

describe("streams opened in advance", () => {
  /** A client and a server peer; `events` records the client's stream openings and the server's requests in order. */
  async function tracedPair(listener: Partial<Parameters<typeof serveHttp>[2]> = {}) {
    const rendezvous = await startRendezvous();
    const client = await startPeer({ rendezvous: [rendezvous.addr] });
    const server = await startPeer({ rendezvous: [rendezvous.addr] });
    const events: string[] = [];
    let ready = 0;
    const handler: PeerRequestHandler = async (request) => {
      events.push(`request ${new URL(request.url).pathname}`);
      return Response.json({ ok: true });
    };
    const serve = () => serveHttp(server.node, handler, { serverName: server.serverName, ...listener });
    const open = client.node.openStream.bind(client.node);
    client.node.openStream = async (...args) => {
      events.push("open");
      const stream = await open(...args);
      ready++;
      return stream;
    };
    const t = new Libp2pFederationTransport(client.node);
    const send = async (path: string, init: RequestInit = {}) => {
      const response = await t.request(server.serverName, new Request(federationUrl(server.serverName, path), init));
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ ok: true });
    };
    return { events, serve, send, readyStreams: () => ready };
  }

  it("sends the next request to a peer on the stream opened after its last answer, not on a new one", async () => {
    const { events, serve, send, readyStreams } = await tracedPair();
    await serve();
    await send("/_matrix/federation/v1/a");
    await until("the next stream is open", () => readyStreams() === 2, 10_000);
    await send("/_matrix/federation/v1/b", { method: "PUT", body: JSON.stringify({ pdus: [] }) });
    // The second request went out on the stream opened in advance; its answer opened the next one.
    expect(events).toEqual(["open", "request /_matrix/federation/v1/a", "open", "request /_matrix/federation/v1/b", "open"]);
  }, 30_000);

  it("a stream opened in advance that the listener ended is replaced: the request is still answered", async () => {
    const { events, serve, send, readyStreams } = await tracedPair();
    const stop = await serve();
    await send("/_matrix/federation/v1/a");
    await until("the next stream is open", () => readyStreams() === 2, 10_000);
    await stop();
    await serve();
    await send("/_matrix/federation/v1/b", { method: "PUT", body: JSON.stringify({ big: "x".repeat(200_000) }) });
    expect(events.filter((e) => e.startsWith("request"))).toEqual(["request /_matrix/federation/v1/a", "request /_matrix/federation/v1/b"]);
  }, 30_000);

  it("stopping the listener does not wait for streams that carry no request yet", async () => {
    const rendezvous = await startRendezvous();
    const client = await startPeer({ rendezvous: [rendezvous.addr] });
    const server = await startPeer({ rendezvous: [rendezvous.addr] });
    // With a 60 s head timeout, a stop that waited for the idle stream would outlast the test.
    const stop = await serveHttp(server.node, async () => Response.json({}), { serverName: server.serverName, headTimeoutMs: 60_000 });
    const idle = await rawStream(client, server.serverName);
    await stop();
    await expect(lpStream(idle).read({ signal: AbortSignal.timeout(5_000) })).rejects.toThrow();
  }, 20_000);
});

describe("the libp2p node", () => {
  it("lists the rendezvous's online peers as server names and reports servers becoming reachable", async () => {
    const rendezvous = await startRendezvous();
    const a = await startPeer({ rendezvous: [rendezvous.addr] });
    const transport = new Libp2pFederationTransport(a.node, { peersCacheMs: 0 });
    const reachable: string[] = [];
    const off = transport.onReachable((s) => reachable.push(s));
    const b = await startPeer({ rendezvous: [rendezvous.addr] });
    const c = await startPeer({ rendezvous: [rendezvous.addr] });
    await until("b and c listed", async () => (await transport.onlineServers()).join() === [b.serverName, c.serverName].sort().join());
    await serveHttp(b.node, async () => Response.json({}), { serverName: b.serverName });
    await (await transport.request(b.serverName, new Request(federationUrl(b.serverName, "/_matrix/federation/v1/version")))).arrayBuffer();
    await until("b reachable", () => reachable.includes(b.serverName));
    expect(reachable).not.toContain(a.serverName);
    off();
    await c.node.stop();
    await until("c gone", async () => !(await transport.onlineServers()).includes(c.serverName));
  }, 60_000);

  it("redials a rendezvous that restarts, gets its reservation back, and requests flow again", async () => {
    const first: TestRendezvous = await startRendezvous();
    const { port, key } = first;
    // Configured without /p2p/: the rendezvous's peer ID is learned on connect.
    const addr = `/ip4/127.0.0.1/tcp/${port}/ws`;
    const a = await startPeer({ rendezvous: [addr] });
    const b = await startPeer({ rendezvous: [addr] });
    await serveHttp(b.node, async () => Response.json({ from: "b" }), { serverName: b.serverName });
    const transport = new Libp2pFederationTransport(a.node);
    const ask = async () => (await transport.request(b.serverName, new Request(federationUrl(b.serverName, "/_matrix/federation/v1/version"), { signal: AbortSignal.timeout(10_000) }))).json();
    expect(await ask()).toEqual({ from: "b" });
    const reachable: string[] = [];
    transport.onReachable((s) => reachable.push(s));

    await first.stop();
    await until("a lost the rendezvous", () => a.node.connectedRendezvous().length === 0);
    await expect(ask()).rejects.toThrow();
    await startRendezvous(port, key);
    await until("both back with a reservation", () => [a, b].every((p) => p.node.connectedRendezvous().length === 1 && p.node.addresses().some((m) => m.toString().includes("/p2p-circuit"))), 15_000);
    expect(await ask()).toEqual({ from: "b" });
    // Coming back online announced b as reachable (the core drains its queue for b at once).
    await until("b announced", () => reachable.includes(b.serverName));
  }, 60_000);

  it("adds a direct connection to a peer that listens, next to the relayed one", async () => {
    const rendezvous = await startRendezvous();
    const a = await startPeer({ rendezvous: [rendezvous.addr] });
    const b = await startPeer({ rendezvous: [rendezvous.addr], listen: ["/ip4/127.0.0.1/tcp/0/ws"] });
    await serveHttp(b.node, async () => Response.json({}), { serverName: b.serverName });
    const transport = new Libp2pFederationTransport(a.node);
    // Reached through the rendezvous (a knows nothing else about b yet).
    await (await transport.request(b.serverName, new Request(federationUrl(b.serverName, "/_matrix/federation/v1/version")))).arrayBuffer();
    await until("a direct connection to b", () => a.node.libp2p.getConnections(b.node.peerId).some((c) => !c.remoteAddr.toString().includes("/p2p-circuit")));
    // With the rendezvous gone, b is still reachable directly.
    await rendezvous.stop();
    await (await transport.request(b.serverName, new Request(federationUrl(b.serverName, "/_matrix/federation/v1/version")))).arrayBuffer();
  }, 60_000);
});
