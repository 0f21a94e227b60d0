/**
 * The Node HTTP(S) listener: turns a node:http request into a WHATWG Request, asks the homeserver,
 * and streams the Response back (bodies may be binary). Tracks in-flight requests so shutdown can
 * wait for them.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { isIP } from "node:net";
import { CLIENT_ADDRESS_HEADER } from "../homeserver/auth/rateLimit.ts";
import { CORS_HEADERS, redactUrl } from "../homeserver/http.ts";
import type { Logger } from "../homeserver/context.ts";

/** What the listener needs from the homeserver. */
export type Handle = (request: Request) => Promise<Response>;

/** Options of {@link createRequestListener}. */
export interface ListenerOptions {
  scheme: "http" | "https";
  /** Used when a request has no usable Host header. */
  fallbackHost: string;
  /** Largest request body read into memory (or a function of the request path); larger ones get 413. */
  maxBodyBytes: number | ((path: string) => number);
  logger: Logger;
  /**
   * A reverse proxy is in front (Synapse's listener option `x_forwarded`): the client address
   * comes from `X-Forwarded-For` and the scheme from `X-Forwarded-Proto`.
   */
  xForwarded?: boolean;
  /**
   * Request targets (path and query) this listener does not serve (answered 404 `M_UNRECOGNIZED` unread), as a Synapse
   * listener serves only the resources configured on it: the plain HTTP listener of a classic
   * server leaves the federation API to the HTTPS one.
   */
  notServed?: (path: string) => boolean;
}

/** A node:http request handler plus a way to wait for what is still running. */
export interface RequestListener {
  (req: IncomingMessage, res: ServerResponse): void;
  /** Resolves when no request is in flight. */
  idle(): Promise<void>;
  /** How many requests are being handled. */
  inFlight(): number;
}

const HOST_RE = /^[A-Za-z0-9.\-_]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$/;

function errorBody(res: ServerResponse, status: number, errcode: string, error: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { "Content-Type": "application/json", ...CORS_HEADERS });
  res.end(JSON.stringify({ errcode, error }));
}

/** Reads the whole body, or undefined if it is larger than `max`. */
async function readBody(req: IncomingMessage, max: number): Promise<Buffer | undefined> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > max) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** The last entry of a comma-separated proxy header (what the proxy nearest to us added). */
function lastEntry(header: string | string[] | undefined): string | undefined {
  const joined = Array.isArray(header) ? header.join(",") : header;
  const last = joined?.split(",").pop()?.trim();
  return last || undefined;
}

/**
 * The client's address from `X-Forwarded-For`. The last entry is the one the proxy in front of us
 * appended; entries before it were sent by the client and could be anything (Synapse takes the
 * first, which lets a client choose its own rate-limit key behind an appending proxy).
 */
export function forwardedFor(header: string | string[] | undefined): string | undefined {
  const entry = lastEntry(header);
  if (entry === undefined) return undefined;
  if (isIP(entry)) return entry;
  // "[v6]:port" and "v4:port" forms some proxies write.
  const m = /^\[([^\]]+)\](?::\d+)?$/.exec(entry) ?? /^([\d.]+):\d+$/.exec(entry);
  return m && isIP(m[1]!) ? m[1] : undefined;
}

/** Builds the WHATWG Request the homeserver sees. */
export function toWebRequest(req: IncomingMessage, body: Buffer | undefined, scheme: string, fallbackHost: string, signal: AbortSignal, xForwarded = false): Request {
  const hostHeader = req.headers.host;
  const host = hostHeader && HOST_RE.test(hostHeader) ? hostHeader : fallbackHost;
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    // The client address header is ours to set: a client must not choose its own rate-limit key.
    if (name.toLowerCase() === CLIENT_ADDRESS_HEADER) continue;
    try {
      headers.append(name, raw[i + 1]!);
    } catch {
      // a header value WHATWG Headers refuses; the homeserver never needs it
    }
  }
  const addr = (xForwarded ? forwardedFor(req.headers["x-forwarded-for"]) : undefined) ?? req.socket.remoteAddress;
  if (addr) headers.set(CLIENT_ADDRESS_HEADER, addr);
  const proto = xForwarded ? lastEntry(req.headers["x-forwarded-proto"])?.toLowerCase() : undefined;
  if (proto === "http" || proto === "https") scheme = proto;
  const init: RequestInit = { method: req.method, headers, signal };
  if (body && body.length > 0 && req.method !== "GET" && req.method !== "HEAD") init.body = new Uint8Array(body);
  return new Request(`${scheme}://${host}${req.url}`, init);
}

/** Writes a WHATWG Response to a node:http response, streaming the body with backpressure. */
export async function sendWebResponse(response: Response, res: ServerResponse, isHead: boolean): Promise<void> {
  const headers: Record<string, string | string[]> = {};
  response.headers.forEach((value, name) => {
    headers[name] = value;
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) headers["set-cookie"] = cookies;
  res.writeHead(response.status, headers);
  if (isHead || !response.body) {
    await response.body?.cancel();
    res.end();
    return;
  }
  const reader = response.body.getReader();
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      if (res.destroyed) {
        await reader.cancel();
        return;
      }
      if (!res.write(value)) await drainOrClose(res);
    }
    res.end();
  } catch (err) {
    res.destroy(err as Error);
  }
}

function drainOrClose(res: ServerResponse): Promise<void> {
  return new Promise((resolveWait) => {
    const done = (): void => {
      res.off("drain", done);
      res.off("close", done);
      resolveWait();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

/** A node:http listener serving `handle`. */
export function createRequestListener(handle: Handle, options: ListenerOptions): RequestListener {
  let active = 0;
  let waiters: (() => void)[] = [];
  const finished = (): void => {
    active--;
    if (active === 0) {
      const w = waiters;
      waiters = [];
      for (const f of w) f();
    }
  };

  const serve = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const aborter = new AbortController();
    // A client that goes away mid-request aborts the Request's signal (long-polls stop waiting).
    res.on("close", () => {
      if (!res.writableFinished) aborter.abort();
    });
    if (!req.url?.startsWith("/")) return errorBody(res, 400, "M_UNRECOGNIZED", "Malformed request target");
    if (options.notServed?.(req.url)) {
      res.setHeader("Connection", "close");
      return errorBody(res, 404, "M_UNRECOGNIZED", "Unrecognized request");
    }
    let body: Buffer | undefined;
    try {
      const max = typeof options.maxBodyBytes === "number" ? options.maxBodyBytes : options.maxBodyBytes(req.url.split("?")[0]!);
      body = await readBody(req, max);
    } catch {
      res.destroy();
      return;
    }
    if (body === undefined) {
      // Close the connection: the rest of the oversized body is not worth reading.
      res.setHeader("Connection", "close");
      return errorBody(res, 413, "M_TOO_LARGE", "Request body too large");
    }
    let request: Request;
    try {
      request = toWebRequest(req, body, options.scheme, options.fallbackHost, aborter.signal, options.xForwarded);
    } catch (err) {
      options.logger.debug("unparsable request", req.method, redactUrl(req.url), err);
      return errorBody(res, 400, "M_UNRECOGNIZED", "Malformed request");
    }
    const response = await handle(request);
    await sendWebResponse(response, res, req.method === "HEAD");
  };

  const listener = ((req: IncomingMessage, res: ServerResponse): void => {
    active++;
    serve(req, res)
      .catch((err: unknown) => {
        options.logger.error("listener error", req.method, redactUrl(req.url ?? ""), err);
        errorBody(res, 500, "M_UNKNOWN", "Internal server error");
      })
      .finally(finished);
  }) as RequestListener;
  listener.idle = () => (active === 0 ? Promise.resolve() : new Promise<void>((r) => waiters.push(r)));
  listener.inFlight = () => active;
  return listener;
}
