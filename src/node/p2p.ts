/**
 * P2P mode of the Node runner (docs/DESIGN.md "P2P"): the libp2p node on the server's own seed,
 * listening on websockets itself (a Node peer is directly reachable) and holding a reservation on
 * every configured rendezvous; the federation transport over it; and the `/hyphae/http/1` listener
 * in front of the homeserver once it is ready.
 */
import { isIPv6 } from "node:net";
import type { Homeserver } from "../homeserver/homeserver.ts";
import type { Logger } from "../homeserver/context.ts";
import { MAX_JSON_BODY_LIMIT } from "../homeserver/http.ts";
import { privateKeyFromSeed } from "../transport/identity.ts";
import { dhtClient } from "../transport/dht.ts";
import { createP2PNode } from "../transport/node.ts";
import type { P2PNode } from "../transport/node.ts";
import { Libp2pFederationTransport, serveHttp } from "../transport/http.ts";
import { StartupError } from "./config.ts";

/** What P2P mode needs from the config. */
export interface P2POptions {
  seed: Uint8Array;
  rendezvous: readonly string[];
  /** Address the websocket listener binds to (the runner's bind_host). */
  host: string;
  /** Its port (0: a free one). */
  port: number;
  /** Largest response body accepted from another server (remote media). */
  maxResponseBytes: number;
  logger: Logger;
}

/** A started P2P side. */
export interface RunningP2P {
  readonly node: P2PNode;
  readonly transport: Libp2pFederationTransport;
  /** Multiaddrs other peers can dial, `/p2p/<id>` included. */
  addresses(): string[];
  /** Starts answering `/hyphae/http/1` with `homeserver`. */
  serve(homeserver: Homeserver, serverName: string): Promise<void>;
  close(): Promise<void>;
}

function listenAddr(host: string, port: number): string {
  const ip = host === "localhost" ? "127.0.0.1" : host;
  return `/${isIPv6(ip) ? "ip6" : "ip4"}/${ip}/tcp/${port}/ws`;
}

/** Starts the libp2p node and the transport; `serve` plugs the homeserver in later. */
export async function startP2P(options: P2POptions): Promise<RunningP2P> {
  let node: P2PNode;
  try {
    node = await createP2PNode({
      privateKey: await privateKeyFromSeed(options.seed),
      rendezvous: options.rendezvous,
      listen: [listenAddr(options.host, options.port)],
      logger: options.logger,
      dht: dhtClient(),
    });
  } catch (err) {
    const e = err as Error;
    throw new StartupError(`cannot start the P2P node on ${listenAddr(options.host, options.port)} (p2p_port): ${/EADDRINUSE/.test(e.message) ? "the port is already in use" : e.message}`);
  }
  const transport = new Libp2pFederationTransport(node, { maxResponseBytes: options.maxResponseBytes, logger: options.logger });
  let stopServing: (() => Promise<void>) | undefined;
  if (options.rendezvous.length > 0 && node.connectedRendezvous().length === 0) {
    options.logger.warn(`no rendezvous reachable yet (${options.rendezvous.join(", ")}); retrying in the background`);
  }
  return {
    node,
    transport,
    addresses: () => node.addresses().map((a) => a.toString()),
    serve: async (homeserver, serverName) => {
      stopServing = await serveHttp(node, (request, info) => homeserver.handle(request, { transportOrigin: info.peerServer }), {
        serverName,
        // Federation bodies are JSON (a /send transaction, a send_join); media goes the other way.
        maxBodyBytes: () => MAX_JSON_BODY_LIMIT,
        logger: options.logger,
      });
    },
    close: async () => {
      // Requests in flight get a moment (the HTTP listeners' grace has already run); then the node stops.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([stopServing?.(), new Promise((r) => (timer = setTimeout(r, 5_000)))]);
      clearTimeout(timer);
      await node.stop();
    },
  };
}
