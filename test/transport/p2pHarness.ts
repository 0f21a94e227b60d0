/**
 * libp2p on loopback for the transport tests: a minimal rendezvous (circuit-relay v2 server without
 * the default limits, identify, kad-dht in server mode and a `/hyphae/peers/1` answer as the brief's
 * contract says) and Hyphae peers made with the real `createP2PNode`. Every node started here is
 * stopped by `closeAll()`.
 */
import { createLibp2p } from "libp2p";
import type { Libp2p } from "libp2p";
import { webSockets } from "@libp2p/websockets";
import { noise } from "@chainsafe/libp2p-noise";
import { yamux } from "@chainsafe/libp2p-yamux";
import { identify } from "@libp2p/identify";
import { ping } from "@libp2p/ping";
import { circuitRelayServer } from "@libp2p/circuit-relay-v2";
import { kadDHT, passthroughMapper } from "@libp2p/kad-dht";
import { generateKeyPair } from "@libp2p/crypto/keys";
import type { PrivateKey } from "@libp2p/interface";
import { lpStream } from "@libp2p/utils";
import { createP2PNode, KAD_PROTOCOL } from "../../src/transport/node.ts";
import { dhtClient } from "../../src/transport/dht.ts";
import type { P2PNode, P2PNodeOptions } from "../../src/transport/node.ts";
import { privateKeyFromSeed, serverNameFromPeerId } from "../../src/transport/identity.ts";
import { PEERS_PROTOCOL } from "../../src/transport/http.ts";

/** A running test rendezvous. */
export interface TestRendezvous {
  readonly libp2p: Libp2p;
  /** `/ip4/127.0.0.1/tcp/PORT/ws/p2p/ID` */
  readonly addr: string;
  readonly port: number;
  readonly key: PrivateKey;
  stop(): Promise<void>;
}

const stoppers = new Set<() => Promise<void>>();

/** Starts a rendezvous on `port` (0: a free one) with `key` (default: a fresh one). */
export async function startRendezvous(port = 0, key?: PrivateKey): Promise<TestRendezvous> {
  const privateKey = key ?? (await generateKeyPair("Ed25519"));
  const libp2p = await createLibp2p({
    privateKey,
    addresses: { listen: [`/ip4/127.0.0.1/tcp/${port}/ws`] },
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      ping: ping(),
      relay: circuitRelayServer({ reservations: { applyDefaultLimit: false, maxReservations: 1000 } }),
      dht: kadDHT({ clientMode: false, protocol: KAD_PROTOCOL, peerInfoMapper: passthroughMapper }),
    },
  });
  await libp2p.handle(PEERS_PROTOCOL, async (stream) => {
    const peers = libp2p.getConnections().map((c) => c.remotePeer);
    const unique = [...new Map(peers.map((p) => [p.toString(), p])).values()];
    const list = await Promise.all(
      unique.map(async (id) => ({ id: id.toString(), addrs: ((await libp2p.peerStore.get(id).catch(() => undefined))?.addresses ?? []).map((a) => a.multiaddr.toString()) })),
    );
    const lp = lpStream(stream);
    await lp.write(new TextEncoder().encode(JSON.stringify({ peers: list })));
    await stream.close();
  });
  const addr = libp2p.getMultiaddrs().find((a) => a.toString().includes("/ws"))!;
  const stop = async (): Promise<void> => {
    stoppers.delete(stop);
    await libp2p.stop();
  };
  stoppers.add(stop);
  return { libp2p, addr: addr.toString(), port: Number(/\/tcp\/(\d+)/.exec(addr.toString())![1]), key: privateKey, stop };
}

/** A Hyphae peer (its key from `seed`, random by default) on the given rendezvous. */
export async function startPeer(options: Partial<P2PNodeOptions> & { seed?: Uint8Array } = {}): Promise<{ node: P2PNode; seed: Uint8Array; serverName: string }> {
  const seed = options.seed ?? crypto.getRandomValues(new Uint8Array(32));
  const node = await createP2PNode({ privateKey: await privateKeyFromSeed(seed), redialMinMs: 100, redialMaxMs: 1_000, dht: dhtClient(), ...options });
  const stop = async (): Promise<void> => {
    stoppers.delete(stop);
    await node.stop();
  };
  stoppers.add(stop);
  return { node, seed, serverName: serverNameFromPeerId(node.peerId)! };
}

/** Stops everything started here. */
export async function closeAll(): Promise<void> {
  await Promise.allSettled([...stoppers].map((s) => s()));
}

/** Polls `check` every 50 ms until it returns true; throws after `ms`. */
export async function until(what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what}: not within ${ms} ms`);
}
