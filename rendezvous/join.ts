/**
 * `--peer`: keeps this rendezvous node connected to the others it was told to join. libp2p's own
 * reconnect for kept-alive peers gave up after the first failed redial here (notes on the relay),
 * so each joined node gets a loop of its own: dial, wait for the disconnect, redial with backoff.
 */
import type { Libp2p, PeerId } from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";
import { multiaddr } from "@multiformats/multiaddr";

/** First and largest wait between failed dials of a joined node. */
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30_000;
/** Tag that keeps the connection manager from pruning a joined node. */
const TAG = "hyphae-rendezvous-peer";

/** Starts one redial loop per address; returns the function that stops them. */
export function joinRendezvous(node: Libp2p, addrs: string[], log: (line: string) => void): () => void {
  const stop = new AbortController();
  for (const addr of addrs) void keepConnected(node, addr, stop.signal, log);
  return () => stop.abort();
}

async function keepConnected(node: Libp2p, addr: string, signal: AbortSignal, log: (line: string) => void): Promise<void> {
  const ma = multiaddr(addr);
  const peer = peerIdFromString(ma.getComponents().at(-1)!.value!);
  await node.peerStore.merge(peer, { tags: { [TAG]: { value: 100 } } }).catch(() => undefined);
  let backoff = BACKOFF_MIN_MS;
  let failures = 0;
  while (!signal.aborted) {
    try {
      await node.dial(ma, { signal: AbortSignal.any([signal, AbortSignal.timeout(10_000)]) });
      if (failures > 0) log(`rendezvous joined ${addr} again after ${failures} failed attempt(s)`);
      else log(`rendezvous joined ${addr}`);
      backoff = BACKOFF_MIN_MS;
      failures = 0;
      await disconnected(node, peer, signal);
      if (!signal.aborted) log(`rendezvous lost ${addr}; redialling`);
    } catch (err) {
      if (signal.aborted) return;
      failures++;
      // One line per streak of failures, then quiet until it comes back.
      if (failures === 1) log(`rendezvous cannot reach ${addr} (${(err as Error).message}); retrying with backoff`);
      await sleep(backoff * (0.75 + Math.random() / 2), signal);
      backoff = Math.min(BACKOFF_MAX_MS, backoff * 2);
    }
  }
}

/** Resolves once `peer` has no connection left (or `signal` aborts). */
function disconnected(node: Libp2p, peer: PeerId, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (!signal.aborted && node.getConnections(peer).length > 0) return;
      node.removeEventListener("peer:disconnect", check);
      signal.removeEventListener("abort", check);
      resolve();
    };
    node.addEventListener("peer:disconnect", check);
    signal.addEventListener("abort", check, { once: true });
    check();
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
