/**
 * HTTP over libp2p: the federation transport of P2P mode (docs/DESIGN.md "P2P").
 *
 * `/hyphae/http/1`, one request per stream, every frame length-prefixed (`lpStream`; never
 * `for await` over a stream, see the libp2p notes):
 *   request:  a JSON head `{"method","path","headers":[[name,value],…]}` (path = path and query
 *             byte for byte), then the body as frames of at most 64 KiB, then an empty frame;
 *   response: a JSON head `{"status","headers":[[name,value],…]}`, body frames, an empty frame.
 * Bodies stream both ways (media) with backpressure: a writer waits for the stream to drain and a
 * reader pauses the stream while its consumer does not pull. Sizes are capped (request body on
 * the listener, response body on the client) and every wait is bounded.
 *
 * The listener calls the homeserver's `handle` with the server name of the peer the stream came
 * from: the core refuses a federation request whose X-Matrix origin is another server (401), so a
 * peer cannot speak for a server whose key it does not hold. Only the federation and key APIs are
 * served over libp2p.
 */
import { lpStream } from "@libp2p/utils";
import type { LengthPrefixedStream } from "@libp2p/utils";
import type { Connection, PeerId, Stream } from "@libp2p/interface";
import { multiaddr } from "@multiformats/multiaddr";
import type { FederationTransport } from "../homeserver/federation/transport.ts";
import { FEDERATION_SCHEME, UnreachableError } from "../homeserver/federation/transport.ts";
import { isKeyServerName } from "../homeserver/federation/keyring.ts";
import { MatrixError, tooLarge, unrecognized } from "../homeserver/errors.ts";
import { MAX_JSON_BODY_LIMIT } from "../homeserver/http.ts";
import type { Logger } from "../homeserver/context.ts";
import { silentLogger } from "../homeserver/context.ts";
import { peerIdFromServerName, serverNameFromPeerId } from "./identity.ts";
import { STREAM_WINDOW_BYTES } from "./node.ts";
import type { P2PNode } from "./node.ts";
import { MAX_PEERS_FRAME_BYTES, PEERS_PROTOCOL } from "./protocols.ts";

/** The HTTP-over-libp2p protocol. */
export const HTTP_PROTOCOL = "/hyphae/http/1";
/** The rendezvous nodes' list of online peers (served by rendezvous/, asked here). */
export { PEERS_PROTOCOL };

/** Largest body frame written; a frame (head included) larger than this is refused when read. */
export const MAX_FRAME_BYTES = 64 * 1024;
/** Bytes read ahead of a body's consumer before the stream is paused. */
const READ_AHEAD_BYTES = 256 * 1024;
/** How long a stream opened in advance waits for its request (the listener waits 10 s for a head). */
const SPARE_STREAM_MS = 5_000;
/** Headers that describe a connection rather than a request or response. */
const HOP_HEADERS = new Set(["host", "connection", "content-length", "transfer-encoding", "keep-alive", "upgrade"]);
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);
const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]);
const EMPTY = new Uint8Array(0);
/** Frames are small; the read buffer holds what a paused stream may still receive (node.ts). */
const LP_OPTIONS = { maxDataLength: MAX_FRAME_BYTES, maxBufferSize: 2 * STREAM_WINDOW_BYTES };

/** A body larger than its cap. */
export class BodyTooLargeError extends Error {
  override readonly name = "BodyTooLargeError";
}

/** A malformed frame from the other side. */
export class ProtocolError extends Error {
  override readonly name = "ProtocolError";
}

/** A stream that broke before the answer's head: the request may be sent again on another. */
class Unanswered extends Error {
  override readonly name = "Unanswered";
  constructor(cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
  }
}

/** A peer that stayed silent past a deadline. */
export class StreamTimeoutError extends Error {
  override readonly name = "StreamTimeoutError";
}

function headersOf(headers: Headers): [string, string][] {
  return [...headers].filter(([name]) => !HOP_HEADERS.has(name));
}

function parseHead(bytes: Uint8Array): Record<string, unknown> {
  let head: unknown;
  try {
    head = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw new ProtocolError("the head frame is not JSON");
  }
  if (typeof head !== "object" || head === null || Array.isArray(head)) throw new ProtocolError("the head frame is not a JSON object");
  return head as Record<string, unknown>;
}

function parseHeaders(value: unknown): Headers {
  if (!Array.isArray(value) || !value.every((h) => Array.isArray(h) && h.length === 2 && typeof h[0] === "string" && typeof h[1] === "string")) {
    throw new ProtocolError("headers must be a list of [name, value] strings");
  }
  try {
    return new Headers((value as [string, string][]).filter(([name]) => !HOP_HEADERS.has(name.toLowerCase())));
  } catch {
    throw new ProtocolError("invalid header name or value");
  }
}

/** A signal that aborts after `ms` or with `signal`, whichever is first. */
function deadline(ms: number, signal?: AbortSignal): AbortSignal {
  const timeout = AbortSignal.timeout(ms);
  return signal ? AbortSignal.any([signal, timeout]) : timeout;
}

/** Reads one frame, turning a timeout into a {@link StreamTimeoutError}. */
async function readFrame(lp: LengthPrefixedStream<Stream>, ms: number, what: string, signal?: AbortSignal): Promise<Uint8Array> {
  const bound = deadline(ms, signal);
  try {
    return (await lp.read({ signal: bound })).subarray();
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    if (bound.aborted) throw new StreamTimeoutError(`no ${what} within ${ms} ms`);
    throw err;
  }
}

/**
 * Writes `head`, then `body` as frames of at most {@link MAX_FRAME_BYTES}, then the end marker;
 * each write waits for the stream to drain. A body of one small chunk (every JSON request and
 * answer) goes out with its head and end marker in one write: one message through the relay
 * instead of three.
 */
async function writeMessage(lp: LengthPrefixedStream<Stream>, head: Uint8Array, body: ReadableStream<Uint8Array> | null, signal: AbortSignal | (() => AbortSignal)): Promise<void> {
  const options = (): { signal: AbortSignal } => ({ signal: typeof signal === "function" ? signal() : signal });
  if (!body) return lp.writeV([head, EMPTY], options());
  const reader = body.getReader();
  try {
    const first = await reader.read();
    if (first.done) return await lp.writeV([head, EMPTY], options());
    // Whether the body ends right there; a body still being produced (streamed media) is not waited for.
    const pending = reader.read();
    const second = await Promise.race([pending, new Promise<undefined>((resolve) => setTimeout(resolve, 0))]);
    if (second?.done && first.value.byteLength <= MAX_FRAME_BYTES) return await lp.writeV(first.value.byteLength ? [head, first.value, EMPTY] : [head, EMPTY], options());
    await lp.write(head, options());
    let chunk: ReadableStreamReadResult<Uint8Array> = first;
    let next: Promise<ReadableStreamReadResult<Uint8Array>> | undefined = pending;
    while (!chunk.done) {
      const value = chunk.value;
      for (let at = 0; at < value.byteLength; at += MAX_FRAME_BYTES) {
        await lp.write(value.subarray(at, at + MAX_FRAME_BYTES), options());
      }
      chunk = await (next ?? reader.read());
      next = undefined;
    }
  } catch (err) {
    await reader.cancel(err).catch(() => undefined);
    throw err;
  }
  await lp.write(EMPTY, options());
}

/** What a body read from frames may be. */
interface BodyLimits {
  maxBytes: number;
  /** Longest silence between two frames. */
  idleMs: number;
  /** Aborting fails the body and resets the stream. */
  signal?: AbortSignal;
  /** Runs once the end marker was read. */
  onEnd?: () => void;
}

/**
 * The body frames of `stream` as a `ReadableStream`. The libp2p stream is paused while the
 * consumer has {@link READ_AHEAD_BYTES} unread, so a slow consumer slows the sender (yamux flow
 * control) instead of filling memory. Errors (too large, silent, reset, aborted) fail the body and
 * reset the stream.
 */
function readBody(stream: Stream, lp: LengthPrefixedStream<Stream>, limits: BodyLimits): ReadableStream<Uint8Array> {
  let total = 0;
  let onAbort: (() => void) | undefined;
  const finish = (): void => {
    if (onAbort) limits.signal?.removeEventListener("abort", onAbort);
  };
  return new ReadableStream<Uint8Array>(
    {
      start(controller) {
        if (!limits.signal) return;
        onAbort = () => {
          const reason = limits.signal!.reason as unknown;
          controller.error(reason);
          stream.abort(reason instanceof Error ? reason : new Error(String(reason)));
        };
        if (limits.signal.aborted) onAbort();
        else limits.signal.addEventListener("abort", onAbort, { once: true });
      },
      async pull(controller) {
        if (stream.readStatus === "paused") stream.resume();
        try {
          const frame = await readFrame(lp, limits.idleMs, "body frame", limits.signal);
          if (frame.byteLength === 0) {
            finish();
            controller.close();
            limits.onEnd?.();
            return;
          }
          total += frame.byteLength;
          if (total > limits.maxBytes) throw new BodyTooLargeError(`body larger than ${limits.maxBytes} bytes`);
          // A copy: the frame is a view into the stream's read buffer.
          controller.enqueue(frame.slice());
          if ((controller.desiredSize ?? 1) <= 0 && stream.readStatus === "readable") stream.pause();
        } catch (err) {
          finish();
          if (limits.signal?.aborted) return;
          controller.error(err);
          stream.abort(err instanceof Error ? err : new Error(String(err)));
        }
      },
      cancel(reason) {
        finish();
        stream.abort(reason instanceof Error ? reason : new Error("body cancelled"));
      },
    },
    { highWaterMark: READ_AHEAD_BYTES, size: (chunk) => chunk.byteLength },
  );
}

/** Client-side options. */
export interface Libp2pTransportOptions {
  /** Largest response body accepted (default 100 MiB: remote media comes this way). */
  maxResponseBytes?: number;
  /** How long to wait for the response head once the request is sent (default 120 s). */
  responseTimeoutMs?: number;
  /** Longest silence inside a body (default 60 s). */
  idleTimeoutMs?: number;
  /** How long a peer list from the rendezvous nodes is reused (default 5 s). */
  peersCacheMs?: number;
  logger?: Logger;
}

/** The federation transport of P2P mode: requests to a 64-hex server go to the libp2p peer of that key. */
export class Libp2pFederationTransport implements FederationTransport {
  private readonly node: P2PNode;
  private readonly maxResponseBytes: number;
  private readonly responseTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly peersCacheMs: number;
  private readonly logger: Logger;
  private peersCache: { at: number; servers: Promise<string[]> } | undefined;
  /** A stream opened in advance per destination, and the destinations one is being opened for. */
  private readonly spares = new Map<string, { stream: Stream; timer: ReturnType<typeof setTimeout> }>();
  private readonly opening = new Set<string>();

  constructor(node: P2PNode, options: Libp2pTransportOptions = {}) {
    this.node = node;
    this.maxResponseBytes = options.maxResponseBytes ?? 100 * 1024 * 1024;
    this.responseTimeoutMs = options.responseTimeoutMs ?? 120_000;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
    this.peersCacheMs = options.peersCacheMs ?? 5_000;
    this.logger = options.logger ?? silentLogger;
  }

  /**
   * Sends `request` to `destination` on a `/hyphae/http/1` stream: the stream opened in advance
   * for this destination when there is one (see {@link prepareSpare}), a new one otherwise. A
   * request that fails on a stream opened in advance before any answer (its connection died while
   * it waited) is sent once more on a new stream.
   */
  async request(destination: string, request: Request): Promise<Response> {
    if (!isKeyServerName(destination)) throw new UnreachableError(`${destination} is not a P2P server name`);
    request.signal.throwIfAborted();
    const spare = this.takeSpare(destination);
    try {
      if (spare) {
        const again = request.body ? request.clone() : request;
        try {
          return await this.exchange(spare, destination, request);
        } catch (err) {
          if (!(err instanceof Unanswered)) throw err;
          return await this.exchange(await this.open(destination, again.signal), destination, again);
        }
      }
      return await this.exchange(await this.open(destination, request.signal), destination, request);
    } catch (err) {
      throw err instanceof Unanswered ? err.cause : err;
    }
  }

  private async open(destination: string, signal: AbortSignal): Promise<Stream> {
    try {
      return await this.node.openStream(peerIdFromServerName(destination), HTTP_PROTOCOL, signal);
    } catch (err) {
      signal.throwIfAborted();
      throw new UnreachableError(`${destination} is not reachable: ${(err as Error).message}`, { cause: err });
    }
  }

  /** One request and its answer on `stream`. Fails with {@link Unanswered} when the stream broke before the answer's head. */
  private async exchange(stream: Stream, destination: string, request: Request): Promise<Response> {
    const signal = request.signal;
    const lp = lpStream(stream, LP_OPTIONS);
    let answered = false;
    try {
      const head = { method: request.method, path: pathAndQuery(request.url, destination), headers: headersOf(request.headers) };
      // Sent while the answer is awaited: a server refusing early (413) is heard even mid-upload.
      const sending = writeMessage(lp, new TextEncoder().encode(JSON.stringify(head)), request.method === "GET" || request.method === "HEAD" ? null : request.body, signal);
      sending.catch(() => undefined);
      const answer = parseHead(await readFrame(lp, this.responseTimeoutMs, "response", signal));
      answered = true;
      this.prepareSpare(destination);
      const status = answer.status;
      if (typeof status !== "number" || !Number.isInteger(status) || status < 200 || status > 599) throw new ProtocolError("invalid response status");
      const headers = parseHeaders(answer.headers);
      const done = (): void => void stream.close().catch(() => undefined);
      const body = readBody(stream, lp, { maxBytes: this.maxResponseBytes, idleMs: this.idleTimeoutMs, signal, onEnd: done });
      if (NULL_BODY_STATUSES.has(status) || request.method === "HEAD") {
        await body.pipeTo(new WritableStream());
        return new Response(null, { status, headers });
      }
      return new Response(body, { status, headers });
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)));
      signal.throwIfAborted();
      if (!answered && !(err instanceof StreamTimeoutError) && !(err instanceof ProtocolError)) throw new Unanswered(err);
      throw err;
    }
  }

  /**
   * Opens a stream to `destination` for its next request, in the background, once it answered
   * one: a new stream costs a round trip of protocol negotiation before its first byte, which a
   * stream opened in advance has already paid. Kept {@link SPARE_STREAM_MS}, then closed.
   */
  private prepareSpare(destination: string): void {
    if (this.spares.has(destination) || this.opening.has(destination)) return;
    this.opening.add(destination);
    this.node
      .openStream(peerIdFromServerName(destination), HTTP_PROTOCOL)
      .then(
        (stream) => {
          if (this.spares.has(destination)) {
            void stream.close().catch(() => undefined);
            return;
          }
          const timer = setTimeout(() => {
            if (this.spares.get(destination)?.stream !== stream) return;
            this.spares.delete(destination);
            void stream.close().catch(() => undefined);
          }, SPARE_STREAM_MS);
          (timer as { unref?: () => void }).unref?.();
          this.spares.set(destination, { stream, timer });
        },
        () => undefined,
      )
      .finally(() => this.opening.delete(destination));
  }

  private takeSpare(destination: string): Stream | undefined {
    const spare = this.spares.get(destination);
    if (!spare) return undefined;
    this.spares.delete(destination);
    clearTimeout(spare.timer);
    if (spare.stream.status === "open" && spare.stream.writeStatus === "writable") return spare.stream;
    spare.stream.abort(new Error("stale"));
    return undefined;
  }

  /** The servers the rendezvous nodes list as online, and those connected to us directly. */
  onlineServers(): Promise<string[]> {
    const now = Date.now();
    if (this.peersCache && now - this.peersCache.at < this.peersCacheMs) return this.peersCache.servers;
    const servers = this.fetchOnline();
    this.peersCache = { at: now, servers };
    servers.catch(() => (this.peersCache = undefined));
    return servers;
  }

  private async fetchOnline(): Promise<string[]> {
    const self = serverNameFromPeerId(this.node.peerId);
    const names = new Set<string>();
    const lists = await Promise.all(this.node.connectedRendezvous().map((r) => this.askPeers(r)));
    for (const list of lists) for (const name of list) names.add(name);
    for (const conn of this.node.libp2p.getConnections()) {
      if (this.node.isRendezvous(conn.remotePeer)) continue;
      const name = serverNameFromPeerId(conn.remotePeer);
      if (name) names.add(name);
    }
    if (self) names.delete(self);
    return [...names].sort();
  }

  /** One rendezvous node's `/hyphae/peers/1` list as server names (its peers' addresses go to the peer store). */
  private async askPeers(rendezvous: PeerId): Promise<string[]> {
    const signal = AbortSignal.timeout(10_000);
    let stream: Stream | undefined;
    try {
      stream = await this.node.openStream(rendezvous, PEERS_PROTOCOL, signal);
      const lp = lpStream(stream, { maxDataLength: MAX_PEERS_FRAME_BYTES });
      const frame = parseHead((await lp.read({ signal })).subarray());
      await stream.close({ signal }).catch(() => undefined);
      const peers = Array.isArray(frame.peers) ? frame.peers : [];
      const out: string[] = [];
      for (const entry of peers as { id?: unknown; addrs?: unknown }[]) {
        if (typeof entry?.id !== "string") continue;
        const name = serverNameFromPeerId(entry.id);
        if (!name) continue;
        const addrs = Array.isArray(entry.addrs) ? entry.addrs.flatMap((a) => (typeof a === "string" ? parseAddr(a) : [])) : [];
        const peerId = peerIdFromServerName(name);
        if (addrs.length > 0 && !peerId.equals(this.node.peerId)) await this.node.libp2p.peerStore.merge(peerId, { multiaddrs: addrs }).catch(() => undefined);
        out.push(name);
      }
      return out;
    } catch (err) {
      stream?.abort(err instanceof Error ? err : new Error(String(err)));
      this.logger.debug(`p2p: no peer list from rendezvous ${rendezvous.toString()}: ${(err as Error).message}`);
      return [];
    }
  }

  /**
   * Calls `listener` with a server's name when a connection to its peer opens, and with every
   * online server when a rendezvous connection comes (back) up: we are online again.
   */
  onReachable(listener: (server: string) => void): () => void {
    const libp2p = this.node.libp2p;
    const onConnect = (evt: CustomEvent<PeerId>): void => {
      if (this.node.isRendezvous(evt.detail)) return;
      const name = serverNameFromPeerId(evt.detail);
      if (name) listener(name);
    };
    const offRendezvous = this.node.onRendezvousConnect(() => {
      this.peersCache = undefined;
      this.onlineServers().then((servers) => servers.forEach((s) => listener(s)), () => undefined);
    });
    libp2p.addEventListener("peer:connect", onConnect);
    return () => {
      libp2p.removeEventListener("peer:connect", onConnect);
      offRendezvous();
    };
  }
}

function parseAddr(text: string): ReturnType<typeof multiaddr>[] {
  try {
    return [multiaddr(text)];
  } catch {
    return [];
  }
}

/** The path and query of a `matrix-federation://{destination}{path}` URL exactly as the core wrote it. */
function pathAndQuery(url: string, destination: string): string {
  const prefix = `${FEDERATION_SCHEME}//${destination}`;
  if (url.startsWith(prefix) && url.charAt(prefix.length) === "/") return url.slice(prefix.length).replace(/#.*$/, "");
  const parsed = new URL(url);
  return parsed.pathname + parsed.search;
}

/** What the listener hands the homeserver besides the request. */
export interface PeerRequestInfo {
  /** The server name of the libp2p peer the stream came from (its key): the only origin it may sign as. */
  peerServer: string;
}

/** The homeserver's entry point as the listener calls it. */
export type PeerRequestHandler = (request: Request, info: PeerRequestInfo) => Promise<Response>;

/** Listener-side options. */
export interface HttpListenerOptions {
  /** Our own server name (the host of the URLs handed to `handle`). */
  serverName: string;
  /** Largest request body, by path (default: the JSON body limit). Larger ones get 413 M_TOO_LARGE. */
  maxBodyBytes?: (path: string) => number;
  /** How long a new stream may take to send its head (default 10 s). */
  headTimeoutMs?: number;
  /** Longest silence inside a request or while the caller reads the response (default 60 s). */
  idleTimeoutMs?: number;
  /** Concurrent `/hyphae/http/1` streams per connection (default 64). */
  maxStreamsPerConnection?: number;
  logger?: Logger;
}

/** Answers `/hyphae/http/1` streams with `handle`; resolves to the function that stops answering. */
export async function serveHttp(node: P2PNode, handle: PeerRequestHandler, options: HttpListenerOptions): Promise<() => Promise<void>> {
  const logger = options.logger ?? silentLogger;
  const inFlight = new Set<Promise<void>>();
  // Stopping ends the streams still waiting for a request (a peer's stream opened in advance).
  const stopping = new AbortController();
  await node.libp2p.handle(
    HTTP_PROTOCOL,
    (stream, connection) => {
      const work = answerStream(stream, connection, handle, options, stopping.signal).catch((err: unknown) => {
        logger.debug(`p2p: ${HTTP_PROTOCOL} stream from ${connection.remotePeer.toString()} failed: ${(err as Error).message}`);
        stream.abort(err instanceof Error ? err : new Error(String(err)));
      });
      inFlight.add(work);
      void work.finally(() => inFlight.delete(work));
    },
    { maxInboundStreams: options.maxStreamsPerConnection ?? 64, maxOutboundStreams: options.maxStreamsPerConnection ?? 64, runOnLimitedConnection: true },
  );
  return async () => {
    await node.libp2p.unhandle(HTTP_PROTOCOL);
    stopping.abort(new Error("the listener stopped"));
    await Promise.allSettled([...inFlight]);
  };
}

/** Writes a response on `lp`: head, body frames, end marker; then closes our side. */
async function writeResponse(stream: Stream, lp: LengthPrefixedStream<Stream>, response: Response, idleMs: number): Promise<void> {
  const head = { status: response.status, headers: headersOf(response.headers) };
  // Each write waits for the caller to make room; a caller that stops reading for idleMs is cut.
  await writeMessage(lp, new TextEncoder().encode(JSON.stringify(head)), response.body, () => AbortSignal.timeout(idleMs));
  await stream.close({ signal: AbortSignal.timeout(idleMs) });
}

function errorAnswer(err: MatrixError): Response {
  return Response.json(err.toJSON(), { status: err.status });
}

async function answerStream(stream: Stream, connection: Connection, handle: PeerRequestHandler, options: HttpListenerOptions, stopping: AbortSignal): Promise<void> {
  const lp = lpStream(stream, LP_OPTIONS);
  const idleMs = options.idleTimeoutMs ?? 60_000;
  const peerServer = serverNameFromPeerId(connection.remotePeer);
  let head: Record<string, unknown>;
  try {
    head = parseHead(await readFrame(lp, options.headTimeoutMs ?? 10_000, "request head", stopping));
  } catch (err) {
    if (err instanceof ProtocolError) return writeResponse(stream, lp, errorAnswer(new MatrixError(400, "M_BAD_JSON", `Malformed request: ${err.message}`)), idleMs);
    throw err;
  }
  const refuse = (err: MatrixError): Promise<void> => writeResponse(stream, lp, errorAnswer(err), idleMs);
  const { method, path } = head;
  if (typeof method !== "string" || !METHODS.has(method)) return refuse(new MatrixError(400, "M_UNRECOGNIZED", "Unknown method"));
  if (typeof path !== "string" || !path.startsWith("/") || path.startsWith("//")) return refuse(new MatrixError(400, "M_UNRECOGNIZED", "The path must start with one /"));
  let headers: Headers;
  let url: URL;
  try {
    headers = parseHeaders(head.headers);
    url = new URL(`https://${options.serverName}${path}`);
  } catch (err) {
    return refuse(new MatrixError(400, "M_BAD_JSON", `Malformed request: ${(err as Error).message}`));
  }
  // Only what servers ask each other: the Client-Server API is for this server's own clients.
  if (!url.pathname.startsWith("/_matrix/federation/") && !url.pathname.startsWith("/_matrix/key/")) return refuse(unrecognized("Only the federation and key APIs are served over libp2p"));
  if (!peerServer) return refuse(new MatrixError(401, "M_UNAUTHORIZED", "The peer is not named by an ed25519 key"));

  // Federation bodies are JSON: read whole (within the cap) before the homeserver sees them.
  const maxBytes = (options.maxBodyBytes ?? (() => MAX_JSON_BODY_LIMIT))(url.pathname);
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const frame = await readFrame(lp, idleMs, "request body frame");
    if (frame.byteLength === 0) break;
    total += frame.byteLength;
    if (total > maxBytes) {
      await refuse(tooLarge("Request body too large"));
      return;
    }
    chunks.push(frame.slice());
  }
  const hasBody = method !== "GET" && method !== "HEAD";
  const request = new Request(url, { method, headers, ...(hasBody ? { body: concat(chunks, total) } : {}) });
  const response = await handle(request, { peerServer });
  await writeResponse(stream, lp, response, idleMs);
}

function concat(chunks: Uint8Array[], total: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
