/**
 * A P2P network of real processes on loopback: `npm run rendezvous` (with a key file, so a restart
 * keeps its peer ID and address) and `npm run serve` peers in P2P mode (server name = their key),
 * each with `--rendezvous`.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../e2e/serve.ts";
import { npmServe } from "../federation/classic.ts";
import type { Reply, ServeProcess } from "../federation/classic.ts";

/** A rendezvous that can be stopped and started again at the same address. */
export interface RendezvousHandle {
  /** Its multiaddr, `/p2p/<id>` included. */
  addr: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  output(): string;
}

/** Starts `npm run rendezvous` on a free port with a key file (a restart keeps its address). */
export async function startRendezvousNode(root: string, extraArgs: string[] = [], name = "rendezvous"): Promise<RendezvousHandle> {
  const port = await freePort();
  const keyFile = join(root, `${name}.key`);
  let proc: ServeProcess | undefined;
  let past = "";
  const launch = async (): Promise<string> => {
    proc = await npmServe(["--port", String(port), "--host", "127.0.0.1", "--key", keyFile, ...extraArgs], /rendezvous listening on (\/\S+)/, {}, 60_000, "rendezvous");
    return /rendezvous listening on (\/\S+)/.exec(proc.output())![1]!;
  };
  const handle: RendezvousHandle = {
    addr: await launch(),
    stop: async () => {
      if (!proc) return;
      await proc.stop();
      past += proc.output();
      proc = undefined;
    },
    start: async () => {
      await launch();
    },
    output: () => past + (proc?.output() ?? ""),
  };
  return handle;
}

/** Limits out of the way of a test's bursts. */
const RELAXED = Object.fromEntries(
  ["rc_message", "rc_registration", "rc_room_creation"].map((k) => [k, { per_second: 1000, burst_count: 1000 }]),
);

/** One `npm run serve` peer in P2P mode. */
export interface P2PPeer {
  /** Its server name (64-hex), read from its output. */
  name: string;
  httpUrl: string;
  process: ServeProcess | undefined;
  output(): string;
  call(method: string, path: string, body?: unknown, token?: string): Promise<Reply>;
  register(localpart: string): Promise<{ userId: string; token: string }>;
}

async function parse(response: Response): Promise<Reply> {
  const text = await response.text();
  try {
    return { status: response.status, body: text ? JSON.parse(text) : {} };
  } catch {
    return { status: response.status, body: { text } };
  }
}

/** The network: a rendezvous and `count` peers on it. */
export interface P2PNetwork {
  /** The first rendezvous (the only one unless more were asked for). */
  rendezvous: RendezvousHandle;
  /** Every rendezvous; the later ones joined the first with `--peer`. */
  rendezvousNodes: RendezvousHandle[];
  peers: P2PPeer[];
  stop(peer: P2PPeer): Promise<void>;
  start(peer: P2PPeer): Promise<void>;
  close(): Promise<void>;
}

/**
 * Starts a rendezvous and `count` P2P peers on it. With `rendezvousCount` > 1, the further
 * rendezvous nodes join the first with `--peer`, and peer i uses rendezvous i mod that count only.
 */
export async function startP2PNetwork(count: number, rendezvousCount = 1): Promise<P2PNetwork> {
  const root = await mkdtemp(join(tmpdir(), "hyphae-p2p-"));
  const rendezvous = await startRendezvousNode(root);
  const rendezvousNodes = [rendezvous];
  for (let i = 1; i < rendezvousCount; i++) rendezvousNodes.push(await startRendezvousNode(root, ["--peer", rendezvous.addr], `rendezvous${i}`));
  const outputs = new Map<P2PPeer, string>();
  const configs = new Map<P2PPeer, string>();
  const makePeer = async (i: number): Promise<P2PPeer> => {
    const dir = join(root, `peer${i}`);
    await mkdir(dir);
    const configFile = join(dir, "hyphae.json");
    await writeFile(configFile, JSON.stringify({ bind_host: "127.0.0.1", http_port: 0, data_dir: "data", rendezvous: [rendezvousNodes[i % rendezvousNodes.length]!.addr], password_pbkdf2_iterations: 1000, ...RELAXED }));
    const peer: P2PPeer = {
      name: "",
      httpUrl: "",
      process: undefined,
      output: () => (outputs.get(peer) ?? "") + (peer.process?.output() ?? ""),
      call: async (method, path, body, token) => {
        const headers: Record<string, string> = {};
        if (token) headers.Authorization = `Bearer ${token}`;
        const init: RequestInit = { method, headers, signal: AbortSignal.timeout(60_000) };
        if (body instanceof Uint8Array) init.body = body as Uint8Array<ArrayBuffer>;
        else if (body !== undefined) {
          headers["Content-Type"] = "application/json";
          init.body = JSON.stringify(body);
        }
        return parse(await fetch(`${peer.httpUrl}${path}`, init));
      },
      register: async (localpart) => {
        const r = await peer.call("POST", "/_matrix/client/v3/register", { username: localpart, password: "correct horse battery", auth: { type: "m.login.dummy" } });
        if (r.status !== 200) throw new Error(`register ${localpart}: ${r.status} ${JSON.stringify(r.body)}`);
        return { userId: r.body.user_id as string, token: r.body.access_token as string };
      },
    };
    configs.set(peer, configFile);
    return peer;
  };
  const start = async (peer: P2PPeer): Promise<void> => {
    const spawned = await npmServe(["--config", configs.get(peer)!], /Hyphae listening on http:/);
    peer.process = spawned;
    // Its relay address is printed (before that line): other peers can reach it through the rendezvous.
    if (!/Hyphae P2P listening on \S+\/p2p-circuit\/\S+/.test(spawned.output())) throw new Error(`no relay address:\n${spawned.output()}`);
    const m = /Hyphae listening on (http:\/\/\S+) \(server name ([0-9a-f]{64})\)/.exec(spawned.output())!;
    peer.httpUrl = m[1]!;
    peer.name = m[2]!;
  };
  const stop = async (peer: P2PPeer): Promise<void> => {
    const p = peer.process;
    if (!p) return;
    await p.stop();
    outputs.set(peer, (outputs.get(peer) ?? "") + p.output());
    peer.process = undefined;
  };
  const peers = await Promise.all(Array.from({ length: count }, (_, i) => makePeer(i)));
  const close = async (): Promise<void> => {
    await Promise.all(peers.map(stop));
    for (const r of rendezvousNodes) await r.stop();
    await rm(root, { recursive: true, force: true });
  };
  try {
    await Promise.all(peers.map(start));
  } catch (err) {
    await close();
    throw err;
  }
  return { rendezvous, rendezvousNodes, peers, stop, start, close };
}
