/**
 * Protocol IDs and frame types shared by Hyphae peers (src/transport) and the rendezvous node
 * (rendezvous/). No imports: it runs in Node and in a Service Worker alike.
 */

/**
 * `/hyphae/peers/1`: the dialler opens a stream to a rendezvous node, which writes one
 * length-prefixed frame (UTF-8 JSON `PeersFrame`) and closes.
 */
export const PEERS_PROTOCOL = "/hyphae/peers/1";

/**
 * The kad-dht protocol of the rendezvous network: `kadDHT({ protocol: DHT_PROTOCOL })` on
 * rendezvous nodes (server mode) and peers (`clientMode: true`). Our own name, so the network never
 * mixes with the public IPFS DHT (`/ipfs/kad/1.0.0`).
 */
export const DHT_PROTOCOL = "/hyphae/kad/1.0.0";

/**
 * The identify agent version of a rendezvous node starts with this (libp2p `nodeInfo.userAgent`).
 * It is how a rendezvous recognizes another, and how a peer can tell a rendezvous it reached
 * through the DHT from another peer: a peer store's protocol list is no test, since libp2p adds
 * to it every protocol a remote opened a stream for.
 */
export const RENDEZVOUS_AGENT_PREFIX = "hyphae-rendezvous/";

/** Largest peers frame a reader should accept (about 20,000 peers of ~200 bytes each). */
export const MAX_PEERS_FRAME_BYTES = 4 * 1024 * 1024;

/** One online peer in a `PeersFrame`: its peer ID and multiaddrs (relay addresses among them). */
export interface PeerEntry {
  id: string;
  addrs: string[];
}

/** The one frame of `/hyphae/peers/1`. */
export interface PeersFrame {
  peers: PeerEntry[];
}
