/**
 * The rendezvous node, composed from libp2p's own parts: websockets + noise + yamux, identify, ping,
 * a circuit-relay v2 server (per-peer limits instead of the default per-connection ones), kad-dht
 * in server mode (so several rendezvous nodes form one network that finds any peer on any of them),
 * and `/hyphae/peers/1`. It stores nothing but its key: restart it at any time.
 */
import { noise } from "@chainsafe/libp2p-noise";
import { yamux } from "@chainsafe/libp2p-yamux";
import { circuitRelayServer } from "@libp2p/circuit-relay-v2";
import type { CircuitRelayService } from "@libp2p/circuit-relay-v2";
import { identify } from "@libp2p/identify";
import type { Identify } from "@libp2p/identify";
import type { Libp2p, PeerId, PeerInfo, PrivateKey } from "@libp2p/interface";
import { kadDHT, passthroughMapper, removePrivateAddressesMapper } from "@libp2p/kad-dht";
import type { KadDHT } from "@libp2p/kad-dht";
import { ping } from "@libp2p/ping";
import type { Ping } from "@libp2p/ping";
import { isPrivate } from "@libp2p/utils";
import { webSockets } from "@libp2p/websockets";
import type { Multiaddr } from "@multiformats/multiaddr";
import { createLibp2p } from "libp2p";
import { DHT_PROTOCOL, RENDEZVOUS_AGENT_PREFIX } from "../src/transport/protocols.ts";
import type { PeerEntry } from "../src/transport/protocols.ts";
import type { RendezvousConfig } from "./config.ts";
import { RelayLimiter } from "./limits.ts";
import type { RelayStats } from "./limits.ts";
import { PeerDirectory } from "./peers.ts";
import { joinRendezvous } from "./join.ts";

/** What the health endpoint and the status line show. */
export interface RendezvousHealth {
  peerId: string;
  addrs: string[];
  uptimeSeconds: number;
  /** Open connections, all kinds. */
  connections: number;
  /** Peers connected now (rendezvous nodes included). */
  connectedPeers: string[];
  /** Peers online here: a reservation and a live connection. */
  onlinePeers: number;
  /** Rendezvous nodes connected now. */
  rendezvous: string[];
  reservations: number;
  relay: RelayStats;
  memory: { rssBytes: number; heapUsedBytes: number };
}

/** A started rendezvous node. */
export interface Rendezvous {
  peerId: PeerId;
  libp2p: Libp2p<{ identify: Identify; ping: Ping; relay: CircuitRelayService; dht: KadDHT }>;
  /** Its full multiaddrs, each ending in /p2p/<peer id>. */
  multiaddrs(): string[];
  health(): Promise<RendezvousHealth>;
  /** The `/hyphae/peers/1` answer as a client would get it. */
  onlinePeers(): Promise<PeerEntry[]>;
  stop(): Promise<void>;
}

/** Options beyond the config: the key, and where warnings go. */
export interface RendezvousOptions {
  privateKey: PrivateKey;
  log?: (line: string) => void;
}

/** Starts a rendezvous node listening as `config` says. */
export async function startRendezvous(config: RendezvousConfig, options: RendezvousOptions): Promise<Rendezvous> {
  const { limits } = config;
  const log = options.log ?? (() => undefined);
  const limiter = new RelayLimiter(limits);
  const addrs = addressFilter();
  const keepAddr = addrs.keep;
  const ipProto = config.host.includes(":") ? "ip6" : "ip4";
  const libp2p = await createLibp2p({
    privateKey: options.privateKey,
    nodeInfo: { name: "hyphae-rendezvous", version: "1", userAgent: `${RENDEZVOUS_AGENT_PREFIX}1` },
    addresses: {
      listen: [`/${ipProto}/${config.host}/tcp/${config.port}/ws`],
      ...(config.announce.length ? { announce: config.announce } : {}),
    },
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: {
      // Loopback and private addresses are where tests and LAN deployments run.
      denyDialMultiaddr: () => false,
      ...limiter.gater(),
    },
    connectionManager: {
      maxConnections: limits.maxConnections,
      inboundConnectionThreshold: limits.inboundConnectionsPerSecondPerHost,
      maxIncomingPendingConnections: Math.max(10, Math.min(256, limits.inboundConnectionsPerSecondPerHost * 4)),
    },
    services: {
      identify: identify(),
      ping: ping(),
      relay: limiter.wrap(
        circuitRelayServer({
          reservations: {
            maxReservations: limits.maxReservations,
            // No per-connection data/duration limits: a limited connection refuses ordinary
            // protocol streams and cuts a 1 MB transfer (docs/notes on the relay).
            applyDefaultLimit: false,
          },
          // libp2p's own per-connection caps as a backstop behind the limiter's per-peer count.
          maxInboundHopStreams: limits.maxCircuitsPerPeer + 8,
          maxOutboundStopStreams: limits.maxCircuitsPerPeer + 8,
        }),
      ),
      dht: kadDHT({ protocol: DHT_PROTOCOL, clientMode: false, peerInfoMapper: keepAddr }),
    },
  });
  addrs.decide(libp2p.getMultiaddrs());
  const directory = new PeerDirectory(libp2p, libp2p.services.relay, keepAddr, config.peers);
  await directory.start();
  const stopJoining = joinRendezvous(libp2p, config.peers, log);
  const started = performance.now();
  const multiaddrs = (): string[] => libp2p.getMultiaddrs().map(String);

  return {
    peerId: libp2p.peerId,
    libp2p,
    multiaddrs,
    onlinePeers: () => directory.allPeers(),
    async health() {
      const connections = libp2p.getConnections();
      const relay = limiter.stats();
      const mem = process.memoryUsage();
      return {
        peerId: libp2p.peerId.toString(),
        addrs: multiaddrs(),
        uptimeSeconds: Math.round((performance.now() - started) / 1000),
        connections: connections.length,
        connectedPeers: libp2p.getPeers().map(String),
        onlinePeers: (await directory.localPeers()).length,
        rendezvous: (await directory.connectedRendezvous()).map(String),
        reservations: relay.reservations,
        relay,
        memory: { rssBytes: mem.rss, heapUsedBytes: mem.heapUsed },
      };
    },
    async stop() {
      stopJoining();
      limiter.stop();
      await libp2p.stop();
    },
  };
}

/**
 * Which addresses of a peer this node hands out (kad-dht answers and `/hyphae/peers/1`): all of
 * them while none of the node's own addresses is public (a test on loopback or a LAN deployment),
 * else only public ones (a private address of a peer elsewhere is useless or misleading to the
 * asker). Decided from the addresses the node actually listens on or announces once it started.
 */
function addressFilter(): { keep: (peer: PeerInfo) => PeerInfo; decide: (own: Multiaddr[]) => void } {
  let privateNetwork = true;
  return {
    keep: (peer) => (privateNetwork ? passthroughMapper(peer) : removePrivateAddressesMapper(peer)),
    decide: (own) => {
      privateNetwork = own.every((a) => isPrivate(a));
    },
  };
}
