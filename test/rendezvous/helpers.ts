/**
 * Test helpers: the real `npm run rendezvous` as a child process, and bare libp2p peers built the
 * way a Hyphae peer is (websockets + noise + yamux + identify + ping + circuit-relay transport +
 * kad-dht in client mode).
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { noise } from "@chainsafe/libp2p-noise";
import { yamux } from "@chainsafe/libp2p-yamux";
import { circuitRelayTransport } from "@libp2p/circuit-relay-v2";
import { identify } from "@libp2p/identify";
import type { Identify } from "@libp2p/identify";
import type { Libp2p, PeerId, Stream } from "@libp2p/interface";
import { kadDHT, passthroughMapper } from "@libp2p/kad-dht";
import type { KadDHT } from "@libp2p/kad-dht";
import { ping } from "@libp2p/ping";
import type { Ping } from "@libp2p/ping";
import { lpStream } from "@libp2p/utils";
import { webSockets } from "@libp2p/websockets";
import { multiaddr } from "@multiformats/multiaddr";
import { createLibp2p } from "libp2p";
import { DHT_PROTOCOL, MAX_PEERS_FRAME_BYTES, PEERS_PROTOCOL } from "../../src/transport/protocols.ts";
import type { PeersFrame } from "../../src/transport/protocols.ts";

export const REPO = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const BIN = resolve(REPO, "node_modules/.bin");

/** A running `npm run rendezvous`. */
export interface SpawnedRendezvous {
  child: ChildProcess;
  /** Its first "rendezvous listening on" multiaddr (ends in /p2p/<id>). */
  addr: string;
  peerId: string;
  /** The health URL when started with --health-port. */
  healthUrl?: string;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of children) if (c.pid && c.exitCode === null) try { process.kill(-c.pid, "SIGKILL"); } catch { /* gone */ }
});

/** Runs `npm run --silent rendezvous -- ARGS` and waits for its "listening" line (60 s at most). */
export function spawnRendezvous(args: string[]): Promise<SpawnedRendezvous> {
  const child = spawn("npm", ["run", "--silent", "rendezvous", "--", ...args], {
    cwd: REPO,
    env: { ...process.env, PATH: `${BIN}:${process.env.PATH ?? ""}` },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  children.add(child);
  let out = "";
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once("exit", (code, signal) => {
      children.delete(child);
      r({ code, signal });
    }),
  );
  const stop = async (signal: NodeJS.Signals = "SIGTERM") => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // gone
      }
    }, 15_000);
    const status = await exited;
    clearTimeout(timer);
    return status;
  };
  return new Promise((resolveStart, reject) => {
    const timer = setTimeout(() => {
      void stop("SIGKILL");
      reject(new Error(`no listening line after 60 s:\n${out}`));
    }, 60_000);
    const onData = (chunk: Buffer): void => {
      out += chunk.toString("utf8");
      const m = /rendezvous listening on (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        child.stdout!.off("data", onData);
        child.stdout!.on("data", (c: Buffer) => (out += c.toString("utf8")));
        resolveStart({
          child,
          addr: m[1]!,
          peerId: /rendezvous peer id (\S+)/.exec(out)![1]!,
          healthUrl: /rendezvous health on (\S+)/.exec(out)?.[1],
          output: () => out,
          exited,
          stop,
        });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", (c: Buffer) => (out += c.toString("utf8")));
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`exited (code ${code}, signal ${signal}) before listening:\n${out}`));
    });
  });
}

/** Runs `npm run --silent rendezvous -- ARGS` to completion (for usage errors); killed after 60 s. */
export async function runRendezvous(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn("npm", ["run", "--silent", "rendezvous", "--", ...args], {
    cwd: REPO,
    env: { ...process.env, PATH: `${BIN}:${process.env.PATH ?? ""}` },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  children.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // gone
    }
  }, 60_000);
  const code = await new Promise<number | null>((r) => child.once("close", (c) => r(c)));
  clearTimeout(timer);
  children.delete(child);
  return { code, stdout, stderr };
}

/** A bare peer as a Hyphae peer is built. */
export type Peer = Libp2p<{ identify: Identify; ping: Ping; dht: KadDHT }>;

/** Starts a peer (or only creates it, with start = false); with `reserveOn`, it listens through that rendezvous (a reservation there). */
export async function startPeer(reserveOn?: string, start = true): Promise<Peer> {
  return createLibp2p({
    start,
    addresses: { listen: reserveOn ? [`${reserveOn}/p2p-circuit`] : [] },
    transports: [webSockets(), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    // Loopback addresses are dialled in tests.
    connectionGater: { denyDialMultiaddr: () => false },
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({ protocol: DHT_PROTOCOL, clientMode: true, peerInfoMapper: passthroughMapper }),
    },
  });
}

/** Waits until `peer` holds a relay address (its reservation is made), 15 s at most. */
export async function reserved(peer: Libp2p, rendezvousId?: string): Promise<string> {
  return until(() => peer.getMultiaddrs().map(String).find((a) => a.includes("/p2p-circuit") && (!rendezvousId || a.includes(rendezvousId))), 15_000, "a relay reservation");
}

/** Polls `fn` every 100 ms until it returns something truthy; fails after `ms`. */
export async function until<T>(fn: () => T | undefined | false | Promise<T | undefined | false>, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ""}`);
}

/** Asks a rendezvous for its online peers over `/hyphae/peers/1`. */
export async function askPeers(peer: Libp2p, rendezvousAddr: string): Promise<PeersFrame> {
  const signal = AbortSignal.timeout(10_000);
  const stream = await peer.dialProtocol(multiaddr(rendezvousAddr), PEERS_PROTOCOL, { signal });
  const lp = lpStream(stream, { maxDataLength: MAX_PEERS_FRAME_BYTES });
  const frame = JSON.parse(new TextDecoder().decode((await lp.read({ signal })).subarray())) as PeersFrame;
  await stream.close({ signal });
  return frame;
}

/** GETs a health URL's JSON. */
export async function getHealth(url: string): Promise<Record<string, any>> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  if (res.status !== 200) throw new Error(`health answered ${res.status}`);
  return (await res.json()) as Record<string, any>;
}

/** A test protocol that reads length-prefixed chunks until an empty one, then answers their total size and SHA-256. */
export const BULK_PROTOCOL = "/hyphae-test/bulk/1";

/** Serves BULK_PROTOCOL on `peer`. */
export async function serveBulk(peer: Libp2p): Promise<void> {
  await peer.handle(BULK_PROTOCOL, async (stream: Stream) => {
    const lp = lpStream(stream, { maxDataLength: 1 << 20 });
    const chunks: Uint8Array[] = [];
    let size = 0;
    while (true) {
      const chunk = (await lp.read({ signal: AbortSignal.timeout(60_000) })).subarray();
      if (chunk.length === 0) break;
      chunks.push(chunk);
      size += chunk.length;
    }
    const all = new Uint8Array(size);
    let at = 0;
    for (const c of chunks) {
      all.set(c, at);
      at += c.length;
    }
    const digest = await sha256(all);
    await lp.write(new TextEncoder().encode(JSON.stringify({ size, digest })));
    await stream.close();
  }, { runOnLimitedConnection: false });
}

/** Sends `data` in 64 KiB chunks over BULK_PROTOCOL to `target`; returns the receiver's answer and the time taken. */
export async function sendBulk(from: Libp2p, target: PeerId | string, data: Uint8Array, timeoutMs = 60_000): Promise<{ size: number; digest: string; ms: number }> {
  const signal = AbortSignal.timeout(timeoutMs);
  const start = performance.now();
  const stream = await from.dialProtocol(typeof target === "string" ? multiaddr(target) : target, BULK_PROTOCOL, { signal });
  const lp = lpStream(stream, { maxDataLength: 1 << 20 });
  for (let i = 0; i < data.length; i += 65536) await lp.write(data.subarray(i, i + 65536), { signal });
  await lp.write(new Uint8Array(0), { signal });
  const answer = JSON.parse(new TextDecoder().decode((await lp.read({ signal })).subarray())) as { size: number; digest: string };
  const ms = performance.now() - start;
  await stream.close({ signal }).catch(() => undefined);
  return { ...answer, ms };
}

/** SHA-256 hex of bytes. */
export async function sha256(data: Uint8Array): Promise<string> {
  return createHash("sha256").update(data).digest("hex");
}

/** Random bytes (crypto.getRandomValues fills at most 64 KiB at a time). */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  return out;
}
