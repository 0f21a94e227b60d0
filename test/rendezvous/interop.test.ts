/**
 * Hyphae's own P2P node (src/transport) against real `npm run rendezvous` processes: two rendezvous
 * nodes joined with --peer, a Hyphae peer on each; each lists the other as online
 * (`/hyphae/peers/1` through its own rendezvous) and reaches it (kad-dht through the other one).
 */
import { afterEach, describe, expect, it } from "vitest";
import { Libp2pFederationTransport } from "../../src/transport/http.ts";
import { privateKeyFromSeed, serverNameFromPeerId } from "../../src/transport/identity.ts";
import { createP2PNode } from "../../src/transport/node.ts";
import type { P2PNode } from "../../src/transport/node.ts";
import { dhtClient } from "../../src/transport/dht.ts";
import type { SpawnedRendezvous } from "./helpers.ts";
import { getHealth, spawnRendezvous, until } from "./helpers.ts";

const processes: SpawnedRendezvous[] = [];
const nodes: P2PNode[] = [];

async function hyphaePeer(rendezvous: string): Promise<{ node: P2PNode; name: string }> {
  const node = await createP2PNode({
    privateKey: await privateKeyFromSeed(crypto.getRandomValues(new Uint8Array(32))),
    rendezvous: [rendezvous],
    dht: dhtClient(),
    // Loopback addresses are dialled in tests.
    connectionGater: { denyDialMultiaddr: () => false },
  });
  nodes.push(node);
  return { node, name: serverNameFromPeerId(node.peerId)! };
}

afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.stop()));
  await Promise.all(processes.splice(0).map((r) => r.stop()));
});

describe("Hyphae peers on the rendezvous network", () => {
  it("list and reach each other across two joined rendezvous nodes", async () => {
    const r1 = await spawnRendezvous(["--port", "0", "--health-port", "0"]);
    processes.push(r1);
    const r2 = await spawnRendezvous(["--port", "0", "--health-port", "0", "--peer", r1.addr]);
    processes.push(r2);
    await until(async () => (await getHealth(r2.healthUrl!)).rendezvous.includes(r1.peerId), 15_000, "R2 joining R1");

    const alice = await hyphaePeer(r1.addr);
    const bob = await hyphaePeer(r2.addr);
    const aliceTransport = new Libp2pFederationTransport(alice.node, { peersCacheMs: 0 });
    const bobTransport = new Libp2pFederationTransport(bob.node, { peersCacheMs: 0 });
    await until(async () => (await bobTransport.onlineServers()).includes(alice.name), 20_000, "Bob seeing Alice online");
    await until(async () => (await aliceTransport.onlineServers()).includes(bob.name), 20_000, "Alice seeing Bob online");

    const conn = await bob.node.connect(alice.node.peerId, AbortSignal.timeout(20_000));
    expect(conn.remotePeer.equals(alice.node.peerId)).toBe(true);
    await bob.node.libp2p.services.ping.ping(alice.node.peerId, { signal: AbortSignal.timeout(10_000) });
  });
});
