/**
 * What the worker's federation needs before its libp2p node runs (src/sw/p2p.ts, loaded only when
 * the node starts): the rendezvous list of `config.json`, and the transport the homeserver is built
 * on while the node starts. Kept apart so that a worker restarted by a fetch does not evaluate the
 * libp2p stack before it answers.
 */
import type { FederationTransport } from "../homeserver/federation/transport.ts";
import { UnreachableError } from "../homeserver/federation/transport.ts";
import type { Logger } from "../homeserver/context.ts";
import { parseConfig } from "../app/config.ts";

/** The rendezvous list of `config.json` at `url`; none when it is missing or malformed (no P2P then). */
export async function loadRendezvous(url: string, logger: Logger): Promise<string[]> {
  try {
    const res = await fetch(url, { cache: "no-cache", signal: AbortSignal.timeout(10_000) });
    if (!res.ok) return [];
    return parseConfig(await res.json()).rendezvous;
  } catch (err) {
    logger.warn(`no P2P: cannot read ${url}: ${(err as Error).message}`);
    return [];
  }
}

/**
 * The federation transport of a worker whose libp2p node is still starting (or never will: no
 * rendezvous configured, or it failed). The homeserver is built on it at once, so a worker restarted
 * by a fetch answers from storage without waiting for `config.json` or the node; federation
 * requests wait for the node and fail as unreachable when there is none.
 */
export class DeferredTransport implements FederationTransport {
  private target: FederationTransport | undefined;
  private why = "the libp2p node is starting";
  private readonly ready: Promise<FederationTransport | undefined>;
  private settle!: (t: FederationTransport | undefined) => void;
  /** Reachability listeners, each with its unsubscribe from the attached transport. */
  private readonly listeners = new Map<(server: string) => void, (() => void) | undefined>();

  constructor() {
    this.ready = new Promise((resolve) => (this.settle = resolve));
  }

  /** The node started: requests go through `transport` from now on. */
  attach(transport: FederationTransport): void {
    this.target = transport;
    for (const listener of this.listeners.keys()) this.listeners.set(listener, transport.onReachable?.(listener));
    this.settle(transport);
  }

  /** No node will run here (`why` says why): requests fail as unreachable. */
  fail(why: string): void {
    this.why = why;
    this.settle(undefined);
  }

  async request(destination: string, request: Request): Promise<Response> {
    const target = this.target ?? (await this.ready);
    if (!target) throw new UnreachableError(`${destination}: no federation here (${this.why})`);
    return target.request(destination, request);
  }

  async onlineServers(): Promise<string[]> {
    const target = this.target ?? (await this.ready);
    return (await target?.onlineServers?.()) ?? [];
  }

  onReachable(listener: (server: string) => void): () => void {
    this.listeners.set(listener, this.target?.onReachable?.(listener));
    return () => {
      this.listeners.get(listener)?.();
      this.listeners.delete(listener);
    };
  }
}
