/**
 * Peer routing for Node peers: kad-dht in client mode on the rendezvous network's own protocol
 * (docs/SCALING.md). Kept out of src/transport/node.ts so that the Service Worker's bundle does not
 * carry it (it is a fifth of the worker's size): a browser reaches the peers of its configured
 * rendezvous nodes, and those that reached it first; a Node peer also finds peers that are only on
 * other rendezvous nodes.
 */
import { kadDHT, passthroughMapper } from "@libp2p/kad-dht";
import type { KadDHT, KadDHTComponents } from "@libp2p/kad-dht";
import { DHT_PROTOCOL } from "./protocols.ts";

/**
 * The DHT service of a Hyphae node. Client mode: we ask the rendezvous nodes (DHT servers) where a
 * peer is, we never answer. Private addresses kept: peers on one LAN or on loopback find each other too.
 */
export function dhtClient(): (components: KadDHTComponents) => KadDHT {
  return kadDHT({ clientMode: true, protocol: DHT_PROTOCOL, peerInfoMapper: passthroughMapper });
}
