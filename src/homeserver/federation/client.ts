/**
 * Outbound federation requests: signed with `X-Matrix`, sent through the injected transport, with a
 * timeout, and never from inside a store transaction (callers read, then call, then write).
 */
import type { SigningKey } from "../crypto/signing.ts";
import type { Logger } from "../context.ts";
import { authorizationHeader } from "./xmatrix.ts";
import type { FederationTransport } from "./transport.ts";
import { federationUrl } from "./transport.ts";

/** A remote server answered with an error status, or could not be reached (`status` 0). */
export class FederationError extends Error {
  override readonly name = "FederationError";
  readonly destination: string;
  readonly status: number;
  readonly errcode: string | undefined;
  readonly body: unknown;

  constructor(destination: string, status: number, message: string, errcode?: string, body?: unknown) {
    super(message);
    this.destination = destination;
    this.status = status;
    this.errcode = errcode;
    this.body = body;
  }

  /** Whether the destination could not be reached at all (as opposed to answering an error). */
  get unreachable(): boolean {
    return this.status === 0;
  }
}

/** Options of one request. */
export interface FederationRequestOptions {
  /** JSON body (PUT/POST). */
  body?: unknown;
  /** Query parameters, appended in order (repeated names allowed). */
  query?: [string, string][];
  /** Give up after this long (default 30 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/** What the client needs from the homeserver. */
export interface FederationClientOptions {
  serverName: string;
  signingKey: SigningKey;
  transport: FederationTransport;
  logger: Logger;
  /** `federation_domain_whitelist`: when set, only these servers are contacted. */
  allowedDestinations?: readonly string[];
  /** Told of every answer from a destination (any status): the outbound queues reset its backoff. */
  onHeardFrom?: (destination: string) => void;
}

/** Signs and sends requests to other servers. */
export class FederationClient {
  private readonly options: FederationClientOptions;

  constructor(options: FederationClientOptions) {
    this.options = options;
  }

  /** Whether `destination` may be contacted at all. */
  mayContact(destination: string): boolean {
    if (destination === this.options.serverName) return false;
    const allowed = this.options.allowedDestinations;
    return !allowed || allowed.includes(destination);
  }

  /**
   * Sends one request; `path` starts with `/_matrix/` and is already percent-encoded. Resolves with
   * the raw Response for any status; rejects with an unreachable `FederationError` otherwise.
   */
  async fetch(destination: string, method: string, path: string, options: FederationRequestOptions = {}): Promise<Response> {
    if (!this.mayContact(destination)) throw new FederationError(destination, 0, `Federation with ${destination} is not allowed`);
    const query = options.query?.length ? `?${new URLSearchParams(options.query).toString()}` : "";
    const uri = `${path}${query}`;
    const headers: Record<string, string> = {
      Authorization: await authorizationHeader(this.options.signingKey, destination, method, uri, options.body),
    };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const timeout = AbortSignal.timeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
    const request = new Request(federationUrl(destination, uri), {
      method,
      headers,
      signal,
      ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
    });
    let response: Response;
    try {
      response = await this.options.transport.request(destination, request);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new FederationError(destination, 0, `${destination} unreachable: ${reason}`);
    }
    this.options.onHeardFrom?.(destination);
    return response;
  }

  /** Sends one request and returns its JSON answer; an error status throws a `FederationError`. */
  async json<T = Record<string, unknown>>(destination: string, method: string, path: string, options: FederationRequestOptions = {}): Promise<T> {
    const response = await this.fetch(destination, method, path, options);
    let body: unknown;
    try {
      body = await response.json();
    } catch {
      throw new FederationError(destination, response.status || 502, `${method} ${path} on ${destination}: answer is not JSON (status ${response.status})`);
    }
    if (!response.ok) {
      const errcode = typeof (body as { errcode?: unknown })?.errcode === "string" ? (body as { errcode: string }).errcode : undefined;
      const error = typeof (body as { error?: unknown })?.error === "string" ? (body as { error: string }).error : "";
      throw new FederationError(destination, response.status, `${method} ${path} on ${destination}: ${response.status} ${errcode ?? ""} ${error}`.trim(), errcode, body);
    }
    if (body === null || typeof body !== "object") throw new FederationError(destination, 502, `${method} ${path} on ${destination}: answer is not a JSON object`);
    return body as T;
  }
}
