/**
 * The libp2p node of a P2P homeserver (docs/DESIGN.md "P2P"): websockets, noise, yamux, identify,
 * ping, the circuit-relay transport and, for Node peers, kad-dht in client mode (src/transport/dht.ts).
 * It keeps a relay reservation on every configured rendezvous node and redials them itself with backoff (libp2p's own reconnect
 * gives up after one failed redial), listens directly when the runner asks (a Node peer), and dials
 * other servers: an existing connection, then their known addresses, then through each rendezvous,
 * then kad-dht peer routing when the node has it. No Node-only API here: the Service Worker runs
 * the same module.
 */
import { createLibp2p } from "libp2p";
import type { Libp2p } from "libp2p";
import { webSockets } from "@libp2p/websockets";
import { noise } from "@chainsafe/libp2p-noise";
import { yamux } from "@chainsafe/libp2p-yamux";
import { identify } from "@libp2p/identify";
import type { Identify } from "@libp2p/identify";
import { ping } from "@libp2p/ping";
import type { Ping } from "@libp2p/ping";
import { circuitRelayTransport } from "@libp2p/circuit-relay-v2";
import type { KadDHT, KadDHTComponents } from "@libp2p/kad-dht";
import { multiaddr } from "@multiformats/multiaddr";
import type { Multiaddr } from "@multiformats/multiaddr";
import type { Connection, ConnectionGater, PeerId, PrivateKey, Stream } from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";
import type { Logger } from "../homeserver/context.ts";
import { silentLogger } from "../homeserver/context.ts";
import { DHT_PROTOCOL } from "./protocols.ts";

/** The kad-dht protocol of the rendezvous network (src/transport/protocols.ts): our own, never the public IPFS DHT. */
export const KAD_PROTOCOL = DHT_PROTOCOL;

/** Largest yamux receive window of a stream (libp2p's default is 16 MiB; smaller ones cut throughput here). */
export const STREAM_WINDOW_BYTES = 8 * 1024 * 1024;

/** A relayed connection or stream carries this in its address. */
const CIRCUIT = "/p2p-circuit";

/** libp2p services of a Hyphae node. */
export interface HyphaeServices {
  identify: Identify;
  ping: Ping;
  /** Peer routing, when the node was made with one (src/transport/dht.ts). */
  dht?: KadDHT;
  [name: string]: unknown;
}

/** How a node is made. */
export interface P2PNodeOptions {
  /** The node's key (src/transport/identity.ts `privateKeyFromSeed`): its peer ID is the server name. */
  privateKey: PrivateKey;
  /** Multiaddrs of rendezvous nodes, with or without `/p2p/<id>`. */
  rendezvous?: readonly string[];
  /** Addresses to listen on directly, e.g. `/ip4/0.0.0.0/tcp/0/ws` (Node peers; the browser cannot listen). */
  listen?: readonly string[];
  /** Addresses to advertise instead of the listening ones (a public address in front of a NAT). */
  announce?: readonly string[];
  /** Which dials and connections are allowed (libp2p's default: in a browser no `ws://` and no private addresses). */
  connectionGater?: ConnectionGater;
  /** Redial backoff towards the rendezvous nodes (default 250 ms doubling to 10 s). */
  redialMinMs?: number;
  redialMaxMs?: number;
  logger?: Logger;
  /**
   * kad-dht peer routing (src/transport/dht.ts `dhtClient()`), the last way `connect` tries. Node
   * peers pass it; the Service Worker leaves it out to keep its bundle small.
   */
  dht?: (components: KadDHTComponents) => KadDHT;
}

/** A started node. */
export interface P2PNode {
  readonly libp2p: Libp2p<HyphaeServices>;
  readonly peerId: PeerId;
  /** Where others can reach us now: direct listening addresses and relay addresses of our reservations. */
  addresses(): Multiaddr[];
  /** The rendezvous nodes we hold a live connection to. */
  connectedRendezvous(): PeerId[];
  /** Whether `peer` is one of our rendezvous nodes. */
  isRendezvous(peer: PeerId): boolean;
  /** Calls `listener` each time a rendezvous connection comes up (first connect and every reconnect); returns the unsubscribe. */
  onRendezvousConnect(listener: (peer: PeerId) => void): () => void;
  /** A connection to `peer`, found the way the module doc says; rejects when it cannot be reached. */
  connect(peer: PeerId, signal?: AbortSignal): Promise<Connection>;
  /** A new stream for `protocol` to `peer`. */
  openStream(peer: PeerId, protocol: string, signal?: AbortSignal): Promise<Stream>;
  stop(): Promise<void>;
}

/** A server that no connection, address, rendezvous or peer routing could reach. */
export class PeerUnreachableError extends Error {
  override readonly name = "PeerUnreachableError";
}

/** One configured rendezvous node. */
interface Rendezvous {
  /** As configured (without `/p2p/` when the operator gave none). */
  readonly addr: Multiaddr;
  /** Known once given in the address or learned from the first connection. */
  peerId: PeerId | undefined;
  /** Pending redial. */
  timer: ReturnType<typeof setTimeout> | undefined;
  delayMs: number;
  dialing: boolean;
}

function isRelayed(conn: Connection): boolean {
  return conn.remoteAddr.toString().includes(CIRCUIT);
}

/** Creates and starts a node. */
export async function createP2PNode(options: P2PNodeOptions): Promise<P2PNode> {
  const logger = options.logger ?? silentLogger;
  const minMs = options.redialMinMs ?? 250;
  const maxMs = options.redialMaxMs ?? 10_000;
  const rendezvous: Rendezvous[] = (options.rendezvous ?? []).map((text) => {
    const addr = multiaddr(text);
    const id = addr.getComponents().findLast((c) => c.name === "p2p")?.value;
    return { addr, peerId: id ? peerIdFromString(id) : undefined, timer: undefined, delayMs: minMs, dialing: false };
  });

  const libp2p = await createLibp2p<HyphaeServices>({
    privateKey: options.privateKey,
    addresses: {
      // One `/p2p-circuit` per rendezvous: each asks the reservation store for a reservation on
      // another relay, and the rendezvous nodes are the relays we connect to.
      listen: [...(options.listen ?? []), ...rendezvous.map(() => CIRCUIT)],
      ...(options.announce ? { announce: [...options.announce] } : {}),
    },
    transports: [webSockets(), circuitRelayTransport({ reservationCompletionTimeout: 10_000 })],
    connectionEncrypters: [noise()],
    // A paused stream (a slow reader, src/transport/http.ts) receives at most its window more: the
    // read buffers (here and in http.ts) hold twice that, so pausing never overflows them.
    streamMuxers: [yamux({ streamOptions: { maxStreamWindowSize: STREAM_WINDOW_BYTES, maxReadBufferLength: 2 * STREAM_WINDOW_BYTES } })],
    ...(options.connectionGater ? { connectionGater: options.connectionGater } : {}),
    services: {
      identify: identify(),
      ping: ping(),
      ...(options.dht ? { dht: options.dht } : {}),
    },
  });

  const rendezvousIds = (): PeerId[] => rendezvous.flatMap((r) => (r.peerId ? [r.peerId] : []));
  const isRendezvous = (peer: PeerId): boolean => rendezvous.some((r) => r.peerId?.equals(peer) === true);
  const connectListeners = new Set<(peer: PeerId) => void>();
  let stopped = false;

  const scheduleRedial = (r: Rendezvous): void => {
    if (stopped || r.timer !== undefined || r.dialing) return;
    const delay = r.delayMs;
    r.delayMs = Math.min(r.delayMs * 2, maxMs);
    r.timer = setTimeout(() => {
      r.timer = undefined;
      void dialRendezvous(r);
    }, delay);
  };

  const dialRendezvous = async (r: Rendezvous): Promise<void> => {
    if (stopped || r.dialing) return;
    if (r.peerId && libp2p.getConnections(r.peerId).length > 0) return;
    r.dialing = true;
    try {
      const conn = await libp2p.dial(r.addr, { signal: AbortSignal.timeout(10_000) });
      // A rendezvous restarted without --key comes back under a new peer ID at the same address.
      r.peerId = conn.remotePeer;
      // Kept when the connection manager prunes: everything else reaches us through these.
      await libp2p.peerStore.merge(conn.remotePeer, { tags: { "hyphae-rendezvous": { value: 100 } } });
      announce(r);
    } catch (err) {
      if (!stopped) logger.debug(`p2p: rendezvous ${r.addr.toString()} not reachable (${(err as Error).message}); retrying in ${r.delayMs} ms`);
      r.dialing = false;
      scheduleRedial(r);
      return;
    }
    r.dialing = false;
  };

  // Connected rendezvous nodes, announced once per connection (ours or one libp2p made itself, e.g.
  // the relay transport reconnecting for its reservation).
  const announced = new Set<Rendezvous>();
  const announce = (r: Rendezvous): void => {
    if (announced.has(r) || !r.peerId || libp2p.getConnections(r.peerId).length === 0) return;
    announced.add(r);
    r.delayMs = minMs;
    clearTimeout(r.timer);
    r.timer = undefined;
    logger.info(`p2p: connected to rendezvous ${r.addr.toString()}`);
    for (const listener of connectListeners) listener(r.peerId);
  };
  libp2p.addEventListener("peer:connect", (evt) => {
    const r = rendezvous.find((x) => x.peerId?.equals(evt.detail) === true);
    if (r && !stopped) announce(r);
  });
  libp2p.addEventListener("peer:disconnect", (evt) => {
    const r = rendezvous.find((x) => x.peerId?.equals(evt.detail) === true);
    if (!r || stopped) return;
    announced.delete(r);
    logger.warn(`p2p: lost the rendezvous ${r.addr.toString()}; redialling`);
    r.delayMs = minMs;
    scheduleRedial(r);
  });

  // Direct connections wherever both sides can: a peer we reach through a relay that identify shows
  // listening directly is dialled directly too, and later streams prefer that connection.
  libp2p.addEventListener("peer:identify", (evt) => {
    const { peerId, listenAddrs, connection } = evt.detail;
    if (stopped || isRendezvous(peerId) || !isRelayed(connection)) return;
    const direct = listenAddrs.filter((a) => !a.toString().includes(CIRCUIT)).map((a) => a.encapsulate(`/p2p/${peerId.toString()}`));
    if (direct.length === 0 || libp2p.getConnections(peerId).some((c) => !isRelayed(c))) return;
    libp2p.dial(direct, { force: true, signal: AbortSignal.timeout(10_000) }).catch(() => undefined);
  });

  await Promise.all(rendezvous.map((r) => dialRendezvous(r)));
  // Started means reachable: wait (bounded) for the reservation on each rendezvous we reached.
  const reserved = (): boolean =>
    rendezvous.every((r) => !r.peerId || libp2p.getConnections(r.peerId).length === 0 || libp2p.getMultiaddrs().some((a) => a.toString().includes(`/p2p/${r.peerId!.toString()}${CIRCUIT}`)));
  for (const end = Date.now() + 5_000; !reserved() && Date.now() < end; ) await new Promise((r) => setTimeout(r, 25));

  const preferred = (peer: PeerId): Connection | undefined => {
    const open = libp2p.getConnections(peer).filter((c) => c.status === "open");
    return open.find((c) => !isRelayed(c)) ?? open[0];
  };

  const connect = async (peer: PeerId, signal?: AbortSignal): Promise<Connection> => {
    const existing = preferred(peer);
    if (existing) return existing;
    const attempt = AbortSignal.any([AbortSignal.timeout(15_000), ...(signal ? [signal] : [])]);
    const errors: string[] = [];
    const tryDial = async (target: PeerId | Multiaddr[]): Promise<Connection | undefined> => {
      try {
        return await libp2p.dial(target, { signal: attempt });
      } catch (err) {
        signal?.throwIfAborted();
        errors.push((err as Error).message);
        return undefined;
      }
    };
    // Known addresses (identify, an earlier peer list), then through each rendezvous we are on.
    const known = (await libp2p.peerStore.get(peer).catch(() => undefined))?.addresses ?? [];
    if (known.length > 0) {
      const conn = await tryDial(peer);
      if (conn) return conn;
    }
    const viaRendezvous = rendezvous.flatMap((r) => (r.peerId ? [r.addr.toString().includes("/p2p/") ? r.addr : r.addr.encapsulate(`/p2p/${r.peerId.toString()}`)] : []));
    for (const relay of viaRendezvous) {
      const conn = await tryDial([relay.encapsulate(`${CIRCUIT}/p2p/${peer.toString()}`)]);
      if (conn) return conn;
    }
    // A peer on another rendezvous: the DHT (the rendezvous nodes) knows its relay address.
    if (options.dht) {
      try {
        const info = await libp2p.peerRouting.findPeer(peer, { signal: attempt });
        if (info.multiaddrs.length > 0) {
          await libp2p.peerStore.merge(peer, { multiaddrs: info.multiaddrs });
          const conn = await tryDial(peer);
          if (conn) return conn;
        }
      } catch (err) {
        signal?.throwIfAborted();
        errors.push(`peer routing: ${(err as Error).message}`);
      }
    }
    throw new PeerUnreachableError(`cannot reach ${peer.toString()}${errors.length ? `: ${errors.join("; ")}` : ""}`);
  };

  return {
    libp2p,
    peerId: libp2p.peerId,
    addresses: () => libp2p.getMultiaddrs(),
    connectedRendezvous: () => rendezvousIds().filter((id) => libp2p.getConnections(id).length > 0),
    isRendezvous,
    onRendezvousConnect: (listener) => {
      connectListeners.add(listener);
      return () => connectListeners.delete(listener);
    },
    connect,
    openStream: async (peer, protocol, signal) => {
      const open = async (): Promise<Stream> => {
        const conn = await connect(peer, signal);
        try {
          return await conn.newStream(protocol, { signal: signal ?? AbortSignal.timeout(15_000), runOnLimitedConnection: true });
        } catch (err) {
          // A connection that died under us (the relay restarted): dropped, and the next try dials afresh.
          if ((err as Error).name === "UnsupportedProtocolError" || signal?.aborted) throw err;
          await conn.close().catch(() => undefined);
          throw err;
        }
      };
      try {
        return await open();
      } catch (err) {
        signal?.throwIfAborted();
        if (err instanceof PeerUnreachableError || (err as Error).name === "UnsupportedProtocolError") throw err;
        return open();
      }
    },
    stop: async () => {
      stopped = true;
      for (const r of rendezvous) clearTimeout(r.timer);
      await libp2p.stop();
    },
  };
}
