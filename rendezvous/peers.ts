/**
 * `/hyphae/peers/1` on the rendezvous side: who is online on this rendezvous network.
 *
 * A peer is online here when it holds a relay reservation AND has a live direct connection to this
 * node (reservations outlive disconnects). The answer adds the online peers of the rendezvous nodes
 * this one is connected to, asked with the same protocol and cached for at most 10 s; a rendezvous
 * asking gets this node's own peers only, so the question never travels further than one hop.
 */
import type { CircuitRelayService } from "@libp2p/circuit-relay-v2";
import type { Connection, Libp2p, PeerId, PeerInfo, Stream } from "@libp2p/interface";
import { lpStream } from "@libp2p/utils";
import { multiaddr } from "@multiformats/multiaddr";
import type { Multiaddr } from "@multiformats/multiaddr";
import { MAX_PEERS_FRAME_BYTES, PEERS_PROTOCOL, RENDEZVOUS_AGENT_PREFIX } from "../src/transport/protocols.ts";
import type { PeerEntry, PeersFrame } from "../src/transport/protocols.ts";
import { relayAddrsOf } from "./limits.ts";

/** How long the online peers of another rendezvous node are reused. */
export const REMOTE_CACHE_MS = 10_000;
/** How long one question to another rendezvous node may take. */
const REMOTE_TIMEOUT_MS = 5_000;

/** The online-peer directory of one rendezvous node. */
export class PeerDirectory {
  private readonly node: Libp2p;
  private readonly relay: CircuitRelayService;
  private readonly keepAddr: (peer: PeerInfo) => PeerInfo;
  /** Peer ID strings of the rendezvous nodes this one joined with --peer. */
  private readonly joined: Set<string>;
  /** key = rendezvous peer ID string → its last answer (or the question in flight). */
  private readonly remote = new Map<string, { at: number; peers: Promise<PeerEntry[]> }>();

  constructor(node: Libp2p, relay: CircuitRelayService, keepAddr: (peer: PeerInfo) => PeerInfo, joined: readonly string[] = []) {
    this.node = node;
    this.relay = relay;
    this.keepAddr = keepAddr;
    this.joined = new Set(joined.map((a) => multiaddr(a).getComponents().at(-1)?.value ?? ""));
  }

  /** Registers the protocol handler. */
  async start(): Promise<void> {
    await this.node.handle(PEERS_PROTOCOL, (stream, connection) => this.serve(stream, connection), { maxInboundStreams: 4 });
  }

  /** This node's online peers: a reservation here and a live direct connection. */
  async localPeers(): Promise<PeerEntry[]> {
    const own = this.node.getMultiaddrs();
    const out: PeerEntry[] = [];
    for (const [peer] of this.relay.reservations) {
      const live = this.node.getConnections(peer).some((c) => c.status === "open" && c.limits === undefined);
      if (!live || (await this.isRendezvous(peer))) continue;
      out.push({ id: peer.toString(), addrs: await this.addrsOf(peer, own) });
    }
    return out;
  }

  /** The rendezvous nodes this one is connected to now. */
  async connectedRendezvous(): Promise<PeerId[]> {
    const out: PeerId[] = [];
    for (const peer of this.node.getPeers()) if (await this.isRendezvous(peer)) out.push(peer);
    return out;
  }

  /** Online peers here and on the connected rendezvous nodes (those from their cache, ≤ 10 s old). */
  async allPeers(): Promise<PeerEntry[]> {
    const merged = new Map<string, Set<string>>();
    const add = (list: PeerEntry[]): void => {
      for (const p of list) {
        const addrs = merged.get(p.id) ?? new Set<string>();
        for (const a of p.addrs) addrs.add(a);
        merged.set(p.id, addrs);
      }
    };
    add(await this.localPeers());
    const rendezvous = await this.connectedRendezvous();
    const exclude = new Set([this.node.peerId.toString(), ...rendezvous.map(String)]);
    for (const list of await Promise.all(rendezvous.map((r) => this.remotePeers(r)))) add(list.filter((p) => !exclude.has(p.id)));
    this.forgetGone(rendezvous);
    return [...merged].map(([id, addrs]) => ({ id, addrs: [...addrs] }));
  }

  private async serve(stream: Stream, connection: Connection): Promise<void> {
    try {
      const peers = (await this.isRendezvous(connection.remotePeer)) ? await this.localPeers() : await this.allPeers();
      const frame: PeersFrame = { peers };
      const lp = lpStream(stream, { maxDataLength: MAX_PEERS_FRAME_BYTES });
      await lp.write(new TextEncoder().encode(JSON.stringify(frame)), { signal: AbortSignal.timeout(REMOTE_TIMEOUT_MS) });
      await stream.close({ signal: AbortSignal.timeout(REMOTE_TIMEOUT_MS) });
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** Another rendezvous node's own online peers, from the cache when the answer is ≤ 10 s old. */
  private remotePeers(peer: PeerId): Promise<PeerEntry[]> {
    const key = peer.toString();
    const cached = this.remote.get(key);
    if (cached && performance.now() - cached.at < REMOTE_CACHE_MS) return cached.peers;
    const peers = this.ask(peer).catch(() => [] as PeerEntry[]);
    this.remote.set(key, { at: performance.now(), peers });
    return peers;
  }

  private async ask(peer: PeerId): Promise<PeerEntry[]> {
    const signal = AbortSignal.timeout(REMOTE_TIMEOUT_MS);
    const stream = await this.node.dialProtocol(peer, PEERS_PROTOCOL, { signal });
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_PEERS_FRAME_BYTES });
      const frame = JSON.parse(new TextDecoder().decode((await lp.read({ signal })).subarray())) as PeersFrame;
      await stream.close({ signal }).catch(() => undefined);
      return Array.isArray(frame.peers) ? frame.peers.filter(isEntry) : [];
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
  }

  private forgetGone(connected: PeerId[]): void {
    const keep = new Set(connected.map(String));
    for (const key of this.remote.keys()) if (!keep.has(key)) this.remote.delete(key);
  }

  /**
   * A rendezvous node is one joined with --peer or one whose identify agent version says so (not
   * its protocol list: libp2p adds to it every protocol a remote opened a stream for, so a peer
   * that asked `/hyphae/peers/1` would look like a rendezvous).
   */
  private async isRendezvous(peer: PeerId): Promise<boolean> {
    if (this.joined.has(peer.toString())) return true;
    try {
      const agent = (await this.node.peerStore.get(peer)).metadata.get("AgentVersion");
      return agent !== undefined && new TextDecoder().decode(agent).startsWith(RENDEZVOUS_AGENT_PREFIX);
    } catch {
      return false;
    }
  }

  /** The peer's relay addresses through this node, then the addresses it announced (filtered like the DHT's). */
  private async addrsOf(peer: PeerId, own: Multiaddr[]): Promise<string[]> {
    const addrs = new Set(relayAddrsOf(own, this.node.peerId, peer).map(String));
    try {
      const { addresses } = await this.node.peerStore.get(peer);
      const kept = this.keepAddr({ id: peer, multiaddrs: addresses.map((a) => a.multiaddr) });
      for (const a of kept.multiaddrs) {
        const s = a.toString();
        addrs.add(s.endsWith(`/p2p/${peer.toString()}`) ? s : `${s}/p2p/${peer.toString()}`);
      }
    } catch {
      // not in the peer store: the relay addresses are enough
    }
    return [...addrs];
  }
}

function isEntry(p: unknown): p is PeerEntry {
  const e = p as PeerEntry;
  return typeof e === "object" && e !== null && typeof e.id === "string" && Array.isArray(e.addrs) && e.addrs.every((a) => typeof a === "string");
}
