/**
 * The libp2p side of a browser homeserver (issue 13: "it runs the libp2p node … and federates"):
 * the node on the worker's own seed (its peer ID is the server name), a reservation on every
 * rendezvous listed in the origin's `/config.json`, `Libp2pFederationTransport` as the homeserver's
 * federation transport and the `/hyphae/http/1` listener in front of `Homeserver.handle`. A browser
 * cannot listen itself: other servers reach it through the rendezvous relay. Same pattern as the
 * Node runner's src/node/p2p.ts, without Node-only APIs.
 */
import { multiaddr } from "@multiformats/multiaddr";
import { lpStream } from "@libp2p/utils";
import type { ConnectionGater } from "@libp2p/interface";
import type { Homeserver } from "../homeserver/homeserver.ts";
import type { Logger } from "../homeserver/context.ts";
import { MAX_JSON_BODY_LIMIT } from "../homeserver/http.ts";
import { peerIdFromServerName, privateKeyFromSeed } from "../transport/identity.ts";
import { createP2PNode } from "../transport/node.ts";
import type { P2PNode } from "../transport/node.ts";
import { HTTP_PROTOCOL, Libp2pFederationTransport, serveHttp } from "../transport/http.ts";

const LOOPBACK = /^\/(ip4\/127\.|ip6\/::1\/|dns4?\/localhost\/|dns6?\/localhost\/)/;

/** Whether a rendezvous address is one the browser's default gater refuses: plain `ws://` or loopback. */
export function isLocalRendezvous(addr: string): boolean {
  try {
    const text = multiaddr(addr).toString();
    return LOOPBACK.test(text) || /\/ws(\/|$)/.test(text);
  } catch {
    return false;
  }
}

/**
 * The browser's default gater refuses insecure websockets and private addresses. A deployment whose
 * own rendezvous is such an address (a local test setup, `npm start`) needs them; any other keeps
 * the default.
 */
export function gaterFor(rendezvous: readonly string[]): ConnectionGater | undefined {
  return rendezvous.some(isLocalRendezvous) ? { denyDialMultiaddr: () => false } : undefined;
}

/** A started P2P side of the worker. */
export interface WorkerP2P {
  readonly node: P2PNode;
  readonly transport: Libp2pFederationTransport;
  readonly rendezvous: readonly string[];
  /** Starts answering `/hyphae/http/1` with `homeserver`. */
  serve(homeserver: Homeserver, serverName: string): Promise<void>;
  /** Peers (other than rendezvous nodes) connected now, and the rendezvous nodes we are on. */
  state(): { peers: number; rendezvousConnected: number };
  /** Milliseconds for one tiny federation request to `server` on a new stream (see {@link roundTrip}). */
  roundTrip(server: string): Promise<number>;
  close(): Promise<void>;
}

/** Starts the node and the transport on `seed`; `serve` plugs the homeserver in once it is built. */
export async function startWorkerP2P(seed: Uint8Array, rendezvous: readonly string[], logger: Logger): Promise<WorkerP2P> {
  const gater = gaterFor(rendezvous);
  const node = await createP2PNode({ privateKey: await privateKeyFromSeed(seed), rendezvous, logger, ...(gater ? { connectionGater: gater } : {}) });
  const transport = new Libp2pFederationTransport(node, { logger });
  let stopServing: (() => Promise<void>) | undefined;
  return {
    node,
    transport,
    rendezvous,
    serve: async (homeserver, serverName) => {
      stopServing = await serveHttp(node, (request, info) => homeserver.handle(request, { transportOrigin: info.peerServer }), {
        serverName,
        maxBodyBytes: () => MAX_JSON_BODY_LIMIT,
        logger,
      });
    },
    state: () => {
      const peers = new Set(node.libp2p.getConnections().filter((c) => !node.isRendezvous(c.remotePeer)).map((c) => c.remotePeer.toString()));
      return { peers: peers.size, rendezvousConnected: node.connectedRendezvous().length };
    },
    roundTrip: (server) => roundTrip(node, server),
    close: async () => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([stopServing?.(), new Promise((r) => (timer = setTimeout(r, 2_000)))]);
      clearTimeout(timer);
      await node.stop();
    },
  };
}

/**
 * A diagnostic (`{ hyphae: "peer-rtt" }`, used by `npm run bench -- swp2p`): times
 * `GET /_matrix/federation/v1/version` to `server` on a NEW `/hyphae/http/1` stream — open and
 * negotiate the stream, one small frame out, the answer's frames back — without the federation
 * transport's stream opened in advance. The raw relayed round trip that browser-to-browser message
 * latency is compared to.
 */
async function roundTrip(node: P2PNode, server: string): Promise<number> {
  const signal = AbortSignal.timeout(10_000);
  const started = performance.now();
  const stream = await node.openStream(peerIdFromServerName(server), HTTP_PROTOCOL, signal);
  try {
    const lp = lpStream(stream);
    const head = new TextEncoder().encode(JSON.stringify({ method: "GET", path: "/_matrix/federation/v1/version", headers: [] }));
    await lp.writeV([head, new Uint8Array(0)], { signal });
    // The answer: its head frame, body frames, the empty end frame.
    const answer = JSON.parse(new TextDecoder().decode((await lp.read({ signal })).subarray())) as { status?: unknown };
    while ((await lp.read({ signal })).byteLength > 0);
    if (answer.status !== 200) throw new Error(`${server} answered ${String(answer.status)}`);
    return performance.now() - started;
  } finally {
    await stream.close({ signal }).catch((err: unknown) => stream.abort(err instanceof Error ? err : new Error(String(err))));
  }
}
