/**
 * The rendezvous network with real `npm run rendezvous` processes and bare libp2p peers: relay
 * reservations, two rendezvous nodes joined with --peer forming one network (kad-dht findPeer),
 * a 1 MB transfer through the relay, and `/hyphae/peers/1`.
 */
import { afterEach, describe, expect, it } from "vitest";
import { multiaddr } from "@multiformats/multiaddr";
import type { Peer, SpawnedRendezvous } from "./helpers.ts";
import { askPeers, getHealth, randomBytes, reserved, sendBulk, serveBulk, sha256, spawnRendezvous, startPeer, until } from "./helpers.ts";

const processes: SpawnedRendezvous[] = [];
const peers: Peer[] = [];

async function rendezvous(args: string[] = []): Promise<SpawnedRendezvous> {
  const r = await spawnRendezvous(["--port", "0", "--health-port", "0", ...args]);
  processes.push(r);
  return r;
}

async function peer(reserveOn?: string): Promise<Peer> {
  const p = await startPeer(reserveOn);
  peers.push(p);
  return p;
}

afterEach(async () => {
  await Promise.all(peers.splice(0).map(async (p) => p.stop()));
  await Promise.all(processes.splice(0).map((r) => r.stop()));
});

describe("the rendezvous network", () => {
  it("gives a peer a relay reservation through which another peer reaches it", async () => {
    const r = await rendezvous();
    const a = await peer(r.addr);
    const relayAddr = await reserved(a, r.peerId);
    expect(relayAddr).toBe(`${r.addr}/p2p-circuit/p2p/${a.peerId.toString()}`);
    const health = await getHealth(r.healthUrl!);
    expect(health.reservations).toBe(1);

    // A peer with no reservation of its own reaches A through the relay (no default limits: an
    // ordinary protocol stream runs, which a limited relayed connection would refuse).
    const b = await peer();
    await serveBulk(a);
    const data = randomBytes(200_000);
    const got = await sendBulk(b, relayAddr, data);
    expect(got).toMatchObject({ size: data.length, digest: await sha256(data) });
    const viaRelay = b.getConnections(a.peerId);
    expect(viaRelay.some((c) => c.remoteAddr.toString().includes("/p2p-circuit"))).toBe(true);
  });

  it("joins two rendezvous nodes into one network: a peer on R2 finds a peer on R1 and moves 1 MB both ways", async () => {
    const r1 = await rendezvous();
    const r2 = await rendezvous(["--peer", r1.addr]);
    await until(async () => (await getHealth(r2.healthUrl!)).rendezvous.includes(r1.peerId), 15_000, "R2 joining R1");
    // (R1 counts R2 as a rendezvous once identify told it R2's agent version.)
    await until(async () => (await getHealth(r1.healthUrl!)).rendezvous.includes(r2.peerId), 10_000, "R1 seeing R2");

    const a = await peer(r1.addr);
    const b = await peer(r2.addr);
    await reserved(a, r1.peerId);
    await reserved(b, r2.peerId);
    await serveBulk(a);
    await serveBulk(b);
    // Neither knows the other: only the DHT can tell them.
    expect(await b.peerStore.has(a.peerId)).toBe(false);
    expect(await a.peerStore.has(b.peerId)).toBe(false);

    // A lookup made before the DHT's routing tables hold the other rendezvous (they fill once
    // identify has run on each connection) finds nothing; a peer asks again, as this does.
    const find = (from: Peer, target: Peer) => until(() => from.peerRouting.findPeer(target.peerId, { signal: AbortSignal.timeout(10_000) }), 30_000, "findPeer");
    const foundA = await find(b, a);
    // (The peer store keeps addresses without the trailing /p2p/<peer>.)
    expect(foundA.multiaddrs.map((m) => m.toString().replace(/\/p2p\/[^/]+$/, ""))).toContain(`${r1.addr}/p2p-circuit`);
    const foundB = await find(a, b);
    expect(foundB.multiaddrs.map((m) => m.toString().replace(/\/p2p\/[^/]+$/, ""))).toContain(`${r2.addr}/p2p-circuit`);

    const data = randomBytes(1024 * 1024);
    const digest = await sha256(data);
    expect(await sendBulk(b, a.peerId, data)).toMatchObject({ size: data.length, digest });
    expect(await sendBulk(a, b.peerId, data)).toMatchObject({ size: data.length, digest });
    // Through R1's relay (B → A) and R2's relay (A → B): neither peer listens anywhere else.
    expect(b.getConnections(a.peerId).map((c) => c.remoteAddr.toString()).join(" ")).toContain(`${r1.peerId}/p2p-circuit`);
  });

  it("lists online peers over /hyphae/peers/1, its own and its neighbours', and drops a disconnected peer whose reservation lives on", async () => {
    const r1 = await rendezvous();
    const r2 = await rendezvous(["--peer", r1.addr]);
    await until(async () => (await getHealth(r2.healthUrl!)).rendezvous.includes(r1.peerId), 15_000, "R2 joining R1");
    const a = await peer(r1.addr);
    const c = await peer(r1.addr);
    const b = await peer(r2.addr);
    await Promise.all([reserved(a, r1.peerId), reserved(c, r1.peerId), reserved(b, r2.peerId)]);

    const asker = await peer();
    const ids = (f: { peers: { id: string }[] }) => f.peers.map((p) => p.id).sort();
    // Listed peers ask too: asking does not make a peer look like a rendezvous node (libp2p adds
    // the protocols a remote opened streams for to its peer-store entry).
    await askPeers(a, r1.addr);
    await askPeers(b, r2.addr);
    const frame = await askPeers(asker, r1.addr);
    expect(ids(frame)).toEqual([a, b, c].map((p) => p.peerId.toString()).sort());
    // Rendezvous nodes are not peers.
    expect(ids(frame)).not.toContain(r2.peerId);
    const entryA = frame.peers.find((p) => p.id === a.peerId.toString())!;
    expect(entryA.addrs).toContain(`${r1.addr}/p2p-circuit/p2p/${a.peerId.toString()}`);
    const entryB = frame.peers.find((p) => p.id === b.peerId.toString())!;
    expect(entryB.addrs).toContain(`${r2.addr}/p2p-circuit/p2p/${b.peerId.toString()}`);
    // Every address given is a dialable multiaddr naming its peer.
    for (const p of frame.peers) for (const addr of p.addrs) expect(multiaddr(addr).getComponents().at(-1)?.value).toBe(p.id);
    // R2 answers the same set from its side.
    expect(ids(await askPeers(asker, r2.addr))).toEqual(ids(frame));

    // C goes away; its reservation outlives the connection, the list does not.
    await c.stop();
    await until(async () => !ids(await askPeers(asker, r1.addr)).includes(c.peerId.toString()), 10_000, "C dropped from R1's list");
    const health = await getHealth(r1.healthUrl!);
    expect(health.reservations).toBe(2);
    expect(health.onlinePeers).toBe(1);
    expect(ids(await askPeers(asker, r1.addr))).toEqual([a, b].map((p) => p.peerId.toString()).sort());
    // R2 learns it from R1 within its 10-second cache.
    await until(async () => !ids(await askPeers(asker, r2.addr)).includes(c.peerId.toString()), 15_000, "C dropped from R2's list");
  });
});
