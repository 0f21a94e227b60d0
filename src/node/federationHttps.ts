/**
 * The classic-mode federation transport: requests to other servers over HTTPS, found through the
 * spec's server discovery (serverDiscovery.ts), with the `Host` header and certificate name the spec
 * asks for. Certificates are verified against the system's and Node's CAs, `NODE_EXTRA_CA_CERTS` and
 * `federation_custom_ca_list`, unless `federation_verify_certificates` is false. Answers are capped
 * in size. node:https rather than fetch: fetch can neither take a CA list per request nor connect to
 * one address while sending another name as `Host` and SNI.
 */
import { Agent, request as httpsRequest } from "node:https";
import type { RequestOptions } from "node:https";
import type { IncomingMessage } from "node:http";
import { isIP } from "node:net";
import { readFileSync } from "node:fs";
import * as tls from "node:tls";
import type { Logger } from "../homeserver/context.ts";
import { silentLogger } from "../homeserver/context.ts";
import type { FederationTransport } from "../homeserver/federation/transport.ts";
import { UnreachableError } from "../homeserver/federation/transport.ts";
import { DiscoveryError, ServerDiscovery, cacheLifetimeMs } from "./serverDiscovery.ts";
import type { DiscoveryOptions, Target, WellKnownResult } from "./serverDiscovery.ts";

/** An answer larger than the transport accepts (`maxResponseBytes`). */
export class ResponseTooLargeError extends Error {
  override readonly name = "ResponseTooLargeError";
}

/** How the transport is set up. */
export interface HttpsTransportOptions {
  /** More CA certificates (PEM text) to trust, on top of the system's and `NODE_EXTRA_CA_CERTS`. */
  extraCa?: readonly string[];
  /** `federation_verify_certificates` (default true): false accepts any certificate. */
  verifyCertificates?: boolean;
  /** Largest answer body read (default 100 MiB); a larger one fails the request or its body. */
  maxResponseBytes?: number;
  /** A connection silent this long is closed (default 120 s); callers set their own deadline with the request's signal. */
  idleTimeoutMs?: number;
  logger?: Logger;
  /** Discovery knobs for tests (DNS, the default port, the well-known port). */
  discovery?: Partial<Omit<DiscoveryOptions, "fetchWellKnown">> & { wellKnownPort?: number };
}

const DEFAULT_MAX_RESPONSE_BYTES = 100 * 1024 * 1024;
const DEFAULT_IDLE_TIMEOUT_MS = 120_000;
/** A well-known file is a few bytes; anything much larger is not one. */
const WELL_KNOWN_MAX_BYTES = 50 * 1024;
const WELL_KNOWN_TIMEOUT_MS = 10_000;
/** "30x redirects should be followed, however redirection loops should be avoided." */
const WELL_KNOWN_MAX_REDIRECTS = 5;
/** Request headers that describe the connection rather than the request; node:https writes its own. */
const HOP_HEADERS = new Set(["host", "connection", "content-length", "transfer-encoding", "keep-alive", "upgrade"]);

/** A failure before the connection was up: the next target may be tried, nothing was sent. */
class ConnectFailure extends Error {
  override readonly name = "ConnectFailure";
}

/**
 * A kept-alive connection that the server had already closed when the request went out on it (the
 * race every HTTP/1.1 client has): the server saw no request, so it is sent again on a new one.
 */
class StaleConnection extends Error {
  override readonly name = "StaleConnection";
}

/**
 * Every CA the transport trusts: Node's default set (its bundled roots plus `NODE_EXTRA_CA_CERTS`),
 * the operating system's store, and `extra`.
 */
export function trustedCertificates(extra: readonly string[] = []): string[] {
  const all = new Set<string>();
  const get = (tls as { getCACertificates?: (type: string) => string[] }).getCACertificates;
  if (get) {
    for (const type of ["default", "system"]) {
      try {
        for (const c of get(type)) all.add(c);
      } catch {
        // no system store on this platform
      }
    }
  } else {
    for (const c of tls.rootCertificates) all.add(c);
    const file = process.env.NODE_EXTRA_CA_CERTS;
    if (file) {
      try {
        for (const c of splitPem(readFileSync(file, "utf8"))) all.add(c);
      } catch {
        // Node itself warns about an unreadable NODE_EXTRA_CA_CERTS at start-up
      }
    }
  }
  for (const c of extra) all.add(c);
  return [...all];
}

/** The PEM certificate blocks of a file. */
export function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** Sends federation requests over HTTPS. */
export class HttpsFederationTransport implements FederationTransport {
  private readonly agent: Agent;
  private readonly secureContext: tls.SecureContext;
  private readonly verify: boolean;
  private readonly maxResponseBytes: number;
  private readonly idleTimeoutMs: number;
  private readonly wellKnownPort: number;
  private readonly logger: Logger;
  /** Where each server name leads (exported for tests and diagnostics). */
  readonly discovery: ServerDiscovery;

  constructor(options: HttpsTransportOptions = {}) {
    this.verify = options.verifyCertificates ?? true;
    this.maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
    this.idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.logger = options.logger ?? silentLogger;
    // One context for every connection: parsing the CA list per connection would cost each handshake.
    this.secureContext = tls.createSecureContext({ ca: trustedCertificates(options.extraCa) });
    this.agent = new Agent({ keepAlive: true, maxSockets: 16, maxTotalSockets: 512, scheduling: "lifo" });
    const { wellKnownPort, ...discovery } = options.discovery ?? {};
    this.wellKnownPort = wellKnownPort ?? 443;
    this.discovery = new ServerDiscovery({ ...discovery, fetchWellKnown: (host) => this.fetchWellKnown(host) });
  }

  async request(destination: string, request: Request): Promise<Response> {
    request.signal.throwIfAborted();
    let targets: Target[];
    try {
      targets = await this.discovery.resolve(destination);
    } catch (err) {
      if (err instanceof DiscoveryError) throw new UnreachableError(err.message, { cause: err });
      throw err;
    }
    const url = new URL(request.url);
    const headers: Record<string, string> = {};
    request.headers.forEach((value, name) => {
      if (!HOP_HEADERS.has(name)) headers[name] = value;
    });
    const body = request.method === "GET" || request.method === "HEAD" ? undefined : new Uint8Array(await request.arrayBuffer());
    let lastError: unknown;
    for (const target of targets) {
      try {
        const send = () => this.send(target, request.method, url.pathname + url.search, headers, body, request.signal, this.maxResponseBytes);
        return await send().catch((err: unknown) => (err instanceof StaleConnection ? send() : Promise.reject(err)));
      } catch (err) {
        lastError = err;
        // Only a connection that never came up may be retried elsewhere: nothing of the request was sent.
        if (!(err instanceof ConnectFailure)) throw err;
        this.logger.debug(`federation: ${destination} via ${target.connectHost}:${target.port}: ${err.message}`);
      }
    }
    throw new UnreachableError(`${destination}: ${(lastError as Error).message}`, { cause: lastError });
  }

  /** Closes idle connections (the runner's shutdown). */
  close(): void {
    this.agent.destroy();
  }

  /** One request to one target. Rejects with ConnectFailure, UnreachableError or the signal's reason. */
  private send(target: Target, method: string, path: string, headers: Record<string, string>, body: Uint8Array | undefined, signal: AbortSignal, maxBytes: number): Promise<Response> {
    return new Promise<Response>((resolve, reject) => {
      let connected = false;
      let settled = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        if (signal.aborted) reject(signal.reason);
        else if (req.reusedSocket && (err as NodeJS.ErrnoException).code === "ECONNRESET") reject(new StaleConnection(err.message, { cause: err }));
        else if (!connected) reject(new ConnectFailure(err.message, { cause: err }));
        else reject(err instanceof ResponseTooLargeError ? err : new UnreachableError(err.message, { cause: err }));
      };
      const options: RequestOptions & tls.ConnectionOptions = {
        host: target.connectHost,
        port: target.port,
        method,
        path,
        headers: { ...headers, host: target.hostHeader, ...(body ? { "content-length": String(body.byteLength) } : {}) },
        agent: this.agent,
        // "a SNI should be sent for the certificate which is expected, unless that certificate is
        // expected to be an IP address"; the certificate is checked against the same name.
        servername: isIP(target.tlsName) ? "" : target.tlsName,
        rejectUnauthorized: this.verify,
        secureContext: this.secureContext,
        signal,
      };
      const req = httpsRequest(options);
      req.setTimeout(this.idleTimeoutMs, () => req.destroy(new Error(`no data for ${this.idleTimeoutMs} ms`)));
      req.on("socket", (socket) => {
        if (!socket.connecting) connected = true;
        else socket.once("secureConnect", () => (connected = true));
      });
      req.on("error", fail);
      req.on("response", (res: IncomingMessage) => {
        if (settled) return void res.destroy();
        const status = res.statusCode ?? 0;
        if (status < 200 || status > 599) {
          res.destroy();
          return fail(new Error(`invalid status ${status}`));
        }
        const declared = Number(res.headers["content-length"]);
        if (Number.isFinite(declared) && declared > maxBytes) {
          res.destroy();
          return fail(new ResponseTooLargeError(`answer of ${declared} bytes is over the ${maxBytes}-byte limit`));
        }
        const responseHeaders = new Headers();
        for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
          try {
            responseHeaders.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
          } catch {
            // a header WHATWG Headers refuses; nothing here needs it
          }
        }
        settled = true;
        const empty = method === "HEAD" || status === 204 || status === 205 || status === 304;
        if (empty) res.resume();
        resolve(new Response(empty ? null : bodyStream(res, maxBytes, signal), { status, headers: responseHeaders }));
      });
      req.end(body);
    });
  }

  /** GET `https://{host}/.well-known/matrix/server`, following redirects (never in a loop). */
  private async fetchWellKnown(host: string): Promise<WellKnownResult> {
    const signal = AbortSignal.timeout(WELL_KNOWN_TIMEOUT_MS);
    const portSuffix = this.wellKnownPort === 443 ? "" : `:${this.wellKnownPort}`;
    let url = new URL(`https://${host.includes(":") ? `[${host}]` : host}${portSuffix}/.well-known/matrix/server`);
    const seen = new Set<string>();
    for (let hop = 0; hop <= WELL_KNOWN_MAX_REDIRECTS; hop++) {
      seen.add(url.href);
      const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
      const target: Target = { connectHost: hostname, port: Number(url.port || 443), hostHeader: url.host, tlsName: hostname };
      let response: Response;
      try {
        response = await this.send(target, "GET", url.pathname + url.search, { accept: "application/json" }, undefined, signal, WELL_KNOWN_MAX_BYTES);
      } catch (err) {
        this.logger.debug(`well-known of ${host}: ${(err as Error).message}`);
        return { kind: "unreachable" };
      }
      const location = response.headers.get("location");
      if (response.status >= 300 && response.status < 400 && location) {
        await response.body?.cancel();
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          return { kind: "answer", status: response.status, body: "" };
        }
        if (next.protocol !== "https:" || seen.has(next.href)) return { kind: "answer", status: response.status, body: "" };
        url = next;
        continue;
      }
      let text: string;
      try {
        text = await response.text();
      } catch {
        // Too large or cut off: not a valid delegation.
        return { kind: "answer", status: 0, body: "" };
      }
      const maxAgeMs = cacheLifetimeMs(response.headers.get("cache-control"), response.headers.get("expires"), Date.now());
      return { kind: "answer", status: response.status, body: text, ...(maxAgeMs !== undefined ? { maxAgeMs } : {}) };
    }
    return { kind: "answer", status: 310, body: "" };
  }
}

/** The response body as a web stream, with backpressure, failing past `maxBytes` or when `signal` aborts. */
function bodyStream(res: IncomingMessage, maxBytes: number, signal: AbortSignal): ReadableStream<Uint8Array> {
  let received = 0;
  let done = false;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      const error = (err: Error): void => {
        if (done) return;
        done = true;
        controller.error(err);
        res.destroy();
      };
      res.on("data", (chunk: Buffer) => {
        if (done) return;
        received += chunk.length;
        if (received > maxBytes) return error(new ResponseTooLargeError(`answer is over the ${maxBytes}-byte limit`));
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if ((controller.desiredSize ?? 1) <= 0) res.pause();
      });
      res.on("end", () => {
        if (done) return;
        done = true;
        controller.close();
      });
      res.on("error", (err) => error(signal.aborted ? (signal.reason as Error) : new UnreachableError(err.message, { cause: err })));
      res.on("close", () => {
        if (!res.complete) error(signal.aborted ? (signal.reason as Error) : new UnreachableError("connection closed before the answer was complete"));
      });
    },
    pull() {
      res.resume();
    },
    cancel() {
      done = true;
      res.destroy();
    },
  }, { highWaterMark: 4 });
}
