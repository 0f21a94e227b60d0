/**
 * The rendezvous node's costs (docs/SCALING.md), measured on a real `rendezvous/main.ts` child
 * process with bare libp2p peers built like Hyphae peers:
 *
 * - memory of the rendezvous per connected peer (a relay reservation + kad-dht client + identify),
 *   at 50 and 200 peers, compared with the memory per plain connection (websockets + noise + yamux
 *   + identify, no reservation) measured the same way in the same run;
 * - relayed throughput (8 MiB one way through the relay) compared with a direct connection
 *   between the same two peers;
 * - relayed connection set-up compared with a direct one.
 *
 * Memory is read from the child's /health after a forced GC (it runs with --expose-gc).
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { noise } from "@chainsafe/libp2p-noise";
import { yamux } from "@chainsafe/libp2p-yamux";
import { circuitRelayTransport } from "@libp2p/circuit-relay-v2";
import { identify } from "@libp2p/identify";
import type { Libp2p } from "@libp2p/interface";
import { kadDHT, passthroughMapper } from "@libp2p/kad-dht";
import { ping } from "@libp2p/ping";
import { webSockets } from "@libp2p/websockets";
import { multiaddr } from "@multiformats/multiaddr";
import { createLibp2p } from "libp2p";
import type { Bench, Figure } from "./harness.ts";
import { versus } from "./harness.ts";
import { DHT_PROTOCOL } from "../src/transport/protocols.ts";
import type { Peer } from "../test/rendezvous/helpers.ts";
import { randomBytes, reserved, sendBulk, serveBulk, startPeer } from "../test/rendezvous/helpers.ts";

const REPO = resolve(fileURLToPath(new URL("..", import.meta.url)));
const THROUGHPUT_BYTES = 8 * 1024 * 1024;

interface Child {
  child: ChildProcess;
  addr: string;
  health: string;
}

async function spawnRendezvous(configFile: string): Promise<Child> {
  const child = spawn(resolve(REPO, "node_modules/.bin/node"), ["--expose-gc", "rendezvous/main.ts", "--config", configFile], {
    cwd: REPO,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`rendezvous did not start:\n${out}`)), 60_000);
    const onData = (c: Buffer): void => {
      out += c.toString();
      const addr = /rendezvous listening on (\S+)/.exec(out)?.[1];
      const health = /rendezvous health on (\S+)/.exec(out)?.[1];
      if (addr && health) {
        clearTimeout(timer);
        res({ child, addr, health });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code) => rej(new Error(`rendezvous exited (${code}):\n${out}`)));
  });
}

async function memory(health: string): Promise<{ heap: number; rss: number; connections: number; reservations: number }> {
  const h = (await (await fetch(`${health}?gc=1`)).json()) as { memory: { heapUsedBytes: number; rssBytes: number }; connections: number; reservations: number };
  return { heap: h.memory.heapUsedBytes, rss: h.memory.rssBytes, connections: h.connections, reservations: h.reservations };
}

/** A plain connection's peer: websockets + noise + yamux + identify, nothing else. */
function plainPeer(): Promise<Libp2p> {
  return createLibp2p({
    transports: [webSockets()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: { denyDialMultiaddr: () => false },
    services: { identify: identify() },
  });
}

/** Runs `fn` over `items` with at most `n` at a time. */
async function pool<T, R>(items: T[], n: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export const rendezvousBench: Bench = async () => {
  const dir = await mkdtemp(join(tmpdir(), "hyphae-rv-bench-"));
  const config = join(dir, "rendezvous.json");
  // Limits out of the way: one IP holds every peer here, and throughput is measured unthrottled.
  await writeFile(
    config,
    JSON.stringify({
      port: 0,
      health_port: 0,
      limits: { max_reservations: 4096, max_reservations_per_ip: 4096, bytes_per_second_per_peer: 0, max_connections: 8192, inbound_connections_per_second_per_host: 100_000 },
    }),
  );
  const figures: Figure[] = [];
  const r = await spawnRendezvous(config);
  const started: Libp2p[] = [];
  try {
    // Throughput and set-up: A holds a reservation and listens directly too; B reaches it both ways.
    const a = await createLibp2pWithDirect(r.addr);
    started.push(a);
    const relayAddr = await reserved(a);
    const directAddr = a.getMultiaddrs().map(String).find((m) => !m.includes("/p2p-circuit"))!;
    await serveBulk(a);
    const data = randomBytes(THROUGHPUT_BYTES);
    const setupRelayed: number[] = [];
    const setupDirect: number[] = [];
    let relayedRate = 0;
    let directRate = 0;
    for (let round = 0; round < 3; round++) {
      for (const [addr, setups] of [[relayAddr, setupRelayed], [directAddr, setupDirect]] as const) {
        const b = await startPeer();
        started.push(b);
        const t0 = performance.now();
        await b.dial(multiaddr(addr), { signal: AbortSignal.timeout(20_000) });
        setups.push(performance.now() - t0);
        const { ms } = await sendBulk(b, addr, data);
        const rate = THROUGHPUT_BYTES / 1024 / 1024 / (ms / 1000);
        if (addr === relayAddr) relayedRate = Math.max(relayedRate, rate);
        else directRate = Math.max(directRate, rate);
        await b.stop();
      }
    }
    figures.push(versus("relayed throughput (8 MiB one way, best of 3)", relayedRate, "MiB/s", "direct connection, same peers", directRate));
    figures.push(versus("relayed connection set-up (median of 3)", median(setupRelayed), "ms", "direct connection set-up", median(setupDirect)));
    await a.stop();
    started.length = 0;

    // Memory: the rendezvous's heap and RSS at 50 and at 200 full peers; the cost per peer is the
    // growth from 50 to 200 over 150 (warm-up allocations of the first connections left out).
    // Then the same with plain connections on a fresh rendezvous (reservations outlive the peers).
    const grow = async (health: string, connect: () => Promise<Libp2p>): Promise<{ heap: number; rss: number; total200: number }> => {
      const at: Record<number, { heap: number; rss: number }> = {};
      let count = 0;
      for (const n of [50, 200]) {
        await pool(Array.from({ length: n - count }), 8, async () => {
          started.push(await connect());
        });
        count = n;
        at[n] = await memory(health);
      }
      return { heap: (at[200]!.heap - at[50]!.heap) / 150, rss: (at[200]!.rss - at[50]!.rss) / 150, total200: at[200]!.rss };
    };
    const full = await grow(r.health, async () => {
      // Under load a reservation can time out at start; a peer tries again, as a Hyphae peer would.
      for (let attempt = 1; ; attempt++) {
        try {
          const p = await startPeer(r.addr);
          await reserved(p);
          return p;
        } catch (err) {
          if (attempt === 3) throw err;
        }
      }
    });
    const reservations = (await memory(r.health)).reservations;
    if (reservations < 200) throw new Error(`expected 200 reservations, the rendezvous holds ${reservations}`);
    await Promise.all(started.splice(0).map((p) => p.stop()));
    r.child.kill("SIGTERM");
    const r2 = await spawnRendezvous(config);
    try {
      const plain = await grow(r2.health, async () => {
        const p = await plainPeer();
        await p.dial(multiaddr(r2.addr), { signal: AbortSignal.timeout(20_000) });
        return p;
      });
      figures.push(versus("rendezvous heap per connected peer (reservation + kad-dht client; 50 → 200 peers)", full.heap / 1024, "KiB", "heap per plain connection (50 → 200)", plain.heap / 1024));
      figures.push(versus("rendezvous RSS per connected peer (50 → 200 peers)", full.rss / 1024, "KiB", "RSS per plain connection (50 → 200)", plain.rss / 1024));
      figures.push({ name: "rendezvous RSS with 200 connected peers", value: full.total200 / 1024 / 1024, unit: "MiB" });
    } finally {
      await Promise.all(started.splice(0).map((p) => p.stop()));
      r2.child.kill("SIGTERM");
    }
  } finally {
    await Promise.all(started.splice(0).map((p) => p.stop()));
    r.child.kill("SIGTERM");
    await rm(dir, { recursive: true, force: true });
  }
  return figures;
};

/** A peer with a reservation on `rendezvous` that also listens on a direct websocket port. */
async function createLibp2pWithDirect(rendezvous: string): Promise<Peer> {
  return createLibp2p({
    addresses: { listen: ["/ip4/127.0.0.1/tcp/0/ws", `${rendezvous}/p2p-circuit`] },
    transports: [webSockets(), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionGater: { denyDialMultiaddr: () => false },
    services: { identify: identify(), ping: ping(), dht: kadDHT({ protocol: DHT_PROTOCOL, clientMode: true, peerInfoMapper: passthroughMapper }) },
  });
}
