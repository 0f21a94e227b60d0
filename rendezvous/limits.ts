/**
 * Per-peer limits on top of libp2p's circuit-relay v2 server, so one peer cannot starve the others,
 * without the relay's default per-connection limits (2 minutes, 128 KiB) that cut federation:
 *
 * - reservations per IP address (one peer ID holds at most one reservation anyway; the store's own
 *   `maxReservations` caps the total) — refused through the connection gater's
 *   `denyInboundRelayReservation`, which the relay answers with PERMISSION_DENIED;
 * - relayed connections at once per peer, counting both ends — refused through
 *   `denyOutboundRelayedConnection` (PERMISSION_DENIED to the dialler);
 * - relayed bandwidth per peer: a token bucket charged for every byte a peer sends or receives
 *   through the relay; when it runs dry the relay pauses reading the stream that carries the data,
 *   so yamux flow control holds the sender back (nothing is dropped, the transfer only slows).
 *
 * The relay server gives the gater only peer IDs and hands its streams to an internal pipe, so the
 * limiter wraps two of the server's own methods: `onHop` (the stream handler it registers, to know
 * which connection and stream a request came on) and `stopHop` (which returns the destination's
 * stream once a relayed connection is agreed). Both are public methods of `CircuitRelayServer`.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import type { CircuitRelayService } from "@libp2p/circuit-relay-v2";
import type { Connection, PeerId, PeerStore, Stream, StreamMessageEvent } from "@libp2p/interface";
import { CODE_P2P } from "@multiformats/multiaddr";
import type { Multiaddr } from "@multiformats/multiaddr";
import type { RendezvousLimits } from "./config.ts";

/** What the relay server's factory needs from libp2p (the subset the limiter uses too). */
interface RelayComponents {
  connectionManager: { getConnections(peer?: PeerId): Connection[] };
  addressManager: { getAddresses(): Multiaddr[] };
  peerStore: PeerStore;
  peerId: PeerId;
}

/** The relay server as the limiter sees it: the public methods it wraps. */
interface WrappableRelay extends CircuitRelayService {
  onHop(stream: Stream, connection: Connection): Promise<void>;
  stopHop(args: { connection: Connection; request: { peer?: { id: Uint8Array } } }, options: unknown): Promise<Stream | undefined>;
}

/** One hop request being handled (the async context of `onHop`). */
interface HopContext {
  src: PeerId;
  connection: Connection;
  stream: Stream;
  /** Set when the gater granted a relayed-connection slot to src → dst. */
  slot?: { dst: PeerId };
  /** Set once the relayed connection exists (the slot is then released when it closes). */
  circuit?: boolean;
}

/** Counters the health endpoint and the status line report. */
export interface RelayStats {
  reservations: number;
  activeCircuits: number;
  /** Bytes relayed since start (each byte counted once, in the direction it travelled). */
  relayedBytes: number;
  /** Relayed connections made since start. */
  circuitsOpened: number;
  refusedReservations: number;
  refusedCircuits: number;
  /** Times a stream was paused because a peer ran out of relay bandwidth. */
  throttled: number;
}

/** A per-peer token bucket of bytes. */
interface Bucket {
  tokens: number;
  at: number;
}

/** The relay limiter: create one, pass `gater()` to libp2p and wrap the relay server's factory with `wrap`. */
export class RelayLimiter {
  private readonly limits: RendezvousLimits;
  private readonly now: () => number;
  private readonly hops = new AsyncLocalStorage<HopContext>();
  /** key = peer ID string → relayed connections (or granted slots) it is an end of. */
  private readonly circuits = new Map<string, number>();
  /** key = peer ID string → its bandwidth bucket. */
  private readonly buckets = new Map<string, Bucket>();
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();
  private relay?: WrappableRelay;
  private components?: RelayComponents;
  private readonly counters = { relayedBytes: 0, circuitsOpened: 0, refusedReservations: 0, refusedCircuits: 0, throttled: 0 };

  constructor(limits: RendezvousLimits, now: () => number = () => performance.now()) {
    this.limits = limits;
    this.now = now;
  }

  /** The connection-gater hooks that enforce the per-IP reservation and per-peer circuit limits. */
  gater(): { denyInboundRelayReservation(source: PeerId): boolean; denyOutboundRelayedConnection(source: PeerId, destination: PeerId): boolean } {
    return {
      denyInboundRelayReservation: (source) => {
        const deny = this.denyReservation(source);
        if (deny) this.counters.refusedReservations++;
        return deny;
      },
      denyOutboundRelayedConnection: (source, destination) => {
        const max = this.limits.maxCircuitsPerPeer;
        if (this.circuitsOf(source) >= max || this.circuitsOf(destination) >= max) {
          this.counters.refusedCircuits++;
          return true;
        }
        this.take(source, destination);
        const ctx = this.hops.getStore();
        if (ctx) ctx.slot = { dst: destination };
        return false;
      },
    };
  }

  /** Wraps `circuitRelayServer(init)`'s factory so the limiter sees the relay's streams. */
  wrap<C extends RelayComponents>(factory: (components: C) => CircuitRelayService): (components: C) => CircuitRelayService {
    return (components) => {
      const relay = factory(components) as WrappableRelay;
      if (typeof relay.onHop !== "function" || typeof relay.stopHop !== "function") {
        throw new Error("@libp2p/circuit-relay-v2's server no longer has onHop/stopHop: the rendezvous's relay limits need updating");
      }
      this.relay = relay;
      this.components = components;
      const onHop = relay.onHop.bind(relay);
      const stopHop = relay.stopHop.bind(relay);
      // start() registers `this.onHop` for the hop protocol, so replacing the instance's method here
      // (before start) puts every hop request in a context the gater and stopHop can read.
      relay.onHop = (stream, connection) => {
        const ctx: HopContext = { src: connection.remotePeer, connection, stream };
        const hadReservation = relay.reservations.has(ctx.src);
        return this.hops.run(ctx, async () => {
          try {
            await onHop(stream, connection);
          } finally {
            if (ctx.slot && !ctx.circuit) this.give(ctx.src, ctx.slot.dst);
            if (!hadReservation && relay.reservations.has(ctx.src)) await this.recordRelayAddrs(ctx.src);
          }
        });
      };
      relay.stopHop = async (args, options) => {
        const dstStream = await stopHop(args, options);
        const ctx = this.hops.getStore();
        if (dstStream && ctx?.slot) {
          ctx.circuit = true;
          this.track(ctx, ctx.slot.dst, dstStream);
        }
        return dstStream;
      };
      return relay;
    };
  }

  /** Counters as of now. */
  stats(): RelayStats {
    let active = 0;
    for (const n of this.circuits.values()) active += n;
    return { reservations: this.relay?.reservations.size ?? 0, activeCircuits: active / 2, ...this.counters };
  }

  /** Relayed connections `peer` is an end of right now. */
  circuitsOf(peer: PeerId): number {
    return this.circuits.get(peer.toString()) ?? 0;
  }

  /** Stops pending resume timers (the node is stopping). */
  stop(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  private denyReservation(source: PeerId): boolean {
    const relay = this.relay;
    const ctx = this.hops.getStore();
    // A refresh of the reservation it already holds is always allowed.
    if (!relay || !ctx || relay.reservations.has(source)) return false;
    const ip = ipOf(ctx.connection.remoteAddr);
    if (ip === undefined) return false;
    let sameIp = 0;
    for (const [, reservation] of relay.reservations) if (ipOf(reservation.addr) === ip) sameIp++;
    return sameIp >= this.limits.maxReservationsPerIp;
  }

  private take(a: PeerId, b: PeerId): void {
    for (const p of [a.toString(), b.toString()]) this.circuits.set(p, (this.circuits.get(p) ?? 0) + 1);
  }

  private give(a: PeerId, b: PeerId): void {
    for (const p of [a.toString(), b.toString()]) {
      const n = (this.circuits.get(p) ?? 1) - 1;
      if (n > 0) this.circuits.set(p, n);
      else this.circuits.delete(p);
    }
  }

  /** Counts and throttles a relayed connection's two streams; releases its slot when either closes. */
  private track(ctx: HopContext, dst: PeerId, dstStream: Stream): void {
    this.counters.circuitsOpened++;
    const src = ctx.src;
    let open = true;
    const close = (): void => {
      if (!open) return;
      open = false;
      this.give(src, dst);
    };
    // Data read from the dialler's stream goes to the destination, and the other way round.
    this.meter(ctx.stream, src, dst);
    this.meter(dstStream, dst, src);
    ctx.stream.addEventListener("close", close, { once: true });
    dstStream.addEventListener("close", close, { once: true });
  }

  private meter(stream: Stream, from: PeerId, to: PeerId): void {
    const peers = [from.toString(), to.toString()];
    stream.addEventListener("message", (evt: StreamMessageEvent) => {
      const n = evt.data.byteLength;
      this.counters.relayedBytes += n;
      const rate = this.limits.bytesPerSecondPerPeer;
      if (rate === 0) return;
      let waitMs = 0;
      for (const p of peers) waitMs = Math.max(waitMs, this.charge(p, n, rate));
      if (waitMs > 0 && stream.readStatus === "readable") {
        this.counters.throttled++;
        stream.pause();
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          if (stream.readStatus === "paused") stream.resume();
        }, Math.ceil(waitMs));
        this.timers.add(timer);
      }
    });
  }

  /** Takes `n` bytes from `peer`'s bucket; returns how long (ms) until it is no longer in debt. */
  private charge(peer: string, n: number, rate: number): number {
    const burst = this.limits.burstBytesPerPeer;
    const now = this.now();
    const bucket = this.buckets.get(peer) ?? { tokens: burst, at: now };
    bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) * rate) / 1000) - n;
    bucket.at = now;
    this.buckets.set(peer, bucket);
    this.sweepBuckets(now, rate, burst);
    return bucket.tokens < 0 ? (-bucket.tokens * 1000) / rate : 0;
  }

  /** Forgets full buckets of peers with no relayed connection, so the map does not grow without end. */
  private sweepBuckets(now: number, rate: number, burst: number): void {
    if (this.buckets.size < 4 * Math.max(16, this.circuits.size)) return;
    for (const [p, b] of this.buckets) {
      if (!this.circuits.has(p) && b.tokens + ((now - b.at) * rate) / 1000 >= burst) this.buckets.delete(p);
    }
  }

  /**
   * Puts the peer's relay addresses into the peer store as soon as its reservation exists, so a
   * kad-dht FIND_NODE answered here gives them at once (the peer's own identify push announcing
   * them comes about a second later).
   */
  private async recordRelayAddrs(peer: PeerId): Promise<void> {
    const c = this.components;
    if (!c) return;
    // Without the trailing /p2p/<peer>, as the peer's identify push puts them in the peer store.
    const addrs = relayAddrsOf(c.addressManager.getAddresses(), c.peerId, peer).map((a) => a.decapsulateCode(CODE_P2P));
    try {
      await c.peerStore.merge(peer, { multiaddrs: addrs });
    } catch {
      // the peer store refusing an address changes nothing for the relay itself
    }
  }
}

/** `<relay addr>/p2p-circuit/p2p/<peer>` for each of the relay's own (non-circuit) addresses. */
export function relayAddrsOf(own: Multiaddr[], self: PeerId, peer: PeerId): Multiaddr[] {
  const out: Multiaddr[] = [];
  for (const a of own) {
    if (a.getComponents().some((c) => c.name === "p2p-circuit")) continue;
    const withSelf = a.getComponents().at(-1)?.name === "p2p" ? a : a.encapsulate(`/p2p/${self.toString()}`);
    out.push(withSelf.encapsulate(`/p2p-circuit/p2p/${peer.toString()}`));
  }
  return out;
}

/** The IP address at the start of a multiaddr, if any. */
export function ipOf(addr: Multiaddr): string | undefined {
  const first = addr.getComponents()[0];
  return first && (first.name === "ip4" || first.name === "ip6") ? first.value : undefined;
}
