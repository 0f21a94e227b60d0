/**
 * The seam between the core and other servers (docs/DESIGN.md "Federation"). The core never opens a
 * socket: it hands a signed `Request` to a `FederationTransport` — HTTPS with server discovery in
 * classic mode (src/node), HTTP over a libp2p stream in P2P mode, or the in-memory network below in
 * tests — and inbound requests of every transport end in the same `Homeserver.handle(Request)`.
 */

/** The scheme of the URLs the core builds for outbound requests: `matrix-federation://{server}{path}`. */
export const FEDERATION_SCHEME = "matrix-federation:";

/** How the core reaches other servers. */
export interface FederationTransport {
  /**
   * Delivers `request` to `destination` and resolves with its answer. The request URL is
   * `matrix-federation://{destination}{path}?{query}`; a transport sends the path and query byte
   * for byte and may carry the rest however it likes. Rejects when the server cannot be reached
   * (or when `request.signal` aborts); any HTTP status, errors included, resolves.
   */
  request(destination: string, request: Request): Promise<Response>;
  /**
   * The other servers this transport can reach right now, when it can know them (P2P: the online
   * peers of the rendezvous network; tests: the servers on the `MemoryNetwork`). Classic HTTPS cannot
   * list the world and leaves this out.
   */
  onlineServers?(): Promise<string[]>;
  /**
   * Calls `listener` with a server's name each time it becomes reachable (a new connection to it, or
   * this server coming back online); returns the unsubscribe. Outbound queues and catch-up start here
   * instead of waiting for a retry timer.
   */
  onReachable?(listener: (server: string) => void): () => void;
}

/** Thrown by a transport for a server it cannot reach. */
export class UnreachableError extends Error {
  override readonly name = "UnreachableError";
}

/** The URL of a request to `destination` (path includes the query, already encoded). */
export function federationUrl(destination: string, pathAndQuery: string): string {
  return `${FEDERATION_SCHEME}//${destination}${pathAndQuery}`;
}

/** Runs `work`, rejecting with the signal's reason as soon as it aborts (the work itself is left to finish). */
function untilAborted<T>(signal: AbortSignal, work: () => Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    void work().then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** A handler of inbound requests: `Homeserver.handle`. */
export type RequestHandler = (request: Request) => Promise<Response>;

/**
 * Several homeservers in one process (the multi-server test harness): requests go straight to the
 * destination's `handle`, through a fresh `Request` so no object is shared between servers. A server
 * can be taken offline (requests to and from it fail as unreachable) to test queues and catch-up.
 */
export class MemoryNetwork {
  private readonly servers = new Map<string, RequestHandler>();
  private readonly offline = new Set<string>();
  private readonly reachable = new Map<string, Set<(server: string) => void>>();

  /** Puts a server on the network under its name. */
  attach(serverName: string, handle: RequestHandler): void {
    this.servers.set(serverName, handle);
  }

  /** Removes a server (it no longer answers). */
  detach(serverName: string): void {
    this.servers.delete(serverName);
  }

  /** Takes a server off the network or brings it back; its outbound requests fail while offline. */
  setOnline(serverName: string, online: boolean): void {
    const wasOffline = this.offline.has(serverName);
    if (online) this.offline.delete(serverName);
    else this.offline.add(serverName);
    if (!online || !wasOffline) return;
    // Coming back: everyone online sees it arrive, and it sees everyone online.
    for (const other of this.onlineNames(serverName)) {
      this.announce(other, serverName);
      this.announce(serverName, other);
    }
  }

  private onlineNames(except: string): string[] {
    return [...this.servers.keys()].filter((name) => name !== except && !this.offline.has(name));
  }

  private announce(to: string, server: string): void {
    for (const listener of this.reachable.get(to) ?? []) listener(server);
  }

  /** The transport a server with name `origin` uses. */
  transportFor(origin: string): FederationTransport {
    return {
      request: async (destination, request) => {
        const handle = this.servers.get(destination);
        if (!handle || this.offline.has(destination) || this.offline.has(origin)) {
          throw new UnreachableError(`${destination} is not reachable from ${origin}`);
        }
        request.signal.throwIfAborted();
        const url = new URL(request.url);
        const body = request.method === "GET" || request.method === "HEAD" ? undefined : await request.arrayBuffer();
        // The callee sees the caller give up, as a server sees its client disconnect.
        const inbound = new Request(`https://${destination}${url.pathname}${url.search}`, {
          method: request.method,
          headers: request.headers,
          signal: request.signal,
          ...(body ? { body } : {}),
        });
        return untilAborted(request.signal, async () => {
          const response = await handle(inbound);
          // A copy, so the caller reads a body the callee can no longer touch.
          const bytes = await response.arrayBuffer();
          return new Response(response.status === 204 ? null : bytes, { status: response.status, headers: response.headers });
        });
      },
      onlineServers: () => Promise.resolve(this.offline.has(origin) ? [] : this.onlineNames(origin)),
      onReachable: (listener) => {
        let listeners = this.reachable.get(origin);
        if (!listeners) this.reachable.set(origin, (listeners = new Set()));
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    };
  }
}
