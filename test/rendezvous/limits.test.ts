/**
 * Per-peer limits of the real `npm run rendezvous` (set small in a --config file): the excess is
 * refused (reservations per IP, relayed connections per peer) or slowed (relayed bandwidth per
 * peer) while other peers keep their share.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { multiaddr } from "@multiformats/multiaddr";
import { afterEach, describe, expect, it } from "vitest";
import type { Peer, SpawnedRendezvous } from "./helpers.ts";
import { getHealth, randomBytes, reserved, sendBulk, serveBulk, sha256, spawnRendezvous, startPeer, until } from "./helpers.ts";

const processes: SpawnedRendezvous[] = [];
const peers: Peer[] = [];
const dirs: string[] = [];

async function rendezvousWith(config: Record<string, unknown>): Promise<SpawnedRendezvous> {
  const dir = await mkdtemp(join(tmpdir(), "hyphae-rv-"));
  dirs.push(dir);
  await writeFile(join(dir, "rendezvous.json"), JSON.stringify(config));
  const r = await spawnRendezvous(["--port", "0", "--health-port", "0", "--config", join(dir, "rendezvous.json")]);
  processes.push(r);
  return r;
}

async function peer(reserveOn?: string, start = true): Promise<Peer> {
  const p = await startPeer(reserveOn, start);
  peers.push(p);
  return p;
}

afterEach(async () => {
  await Promise.all(peers.splice(0).map(async (p) => p.stop()));
  await Promise.all(processes.splice(0).map((r) => r.stop()));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

describe("per-peer limits", () => {
  it("refuses a reservation beyond max_reservations_per_ip, and a relayed connection beyond max_circuits_per_peer", async () => {
    const r = await rendezvousWith({ limits: { max_reservations_per_ip: 2, max_circuits_per_peer: 1 } });
    const a = await peer(r.addr);
    const b = await peer(r.addr);
    const aAddr = await reserved(a, r.peerId);
    await reserved(b, r.peerId);

    // A third peer from the same IP is refused its reservation.
    const c = await peer(r.addr, false);
    await expect(c.start()).rejects.toThrow(/reservation failed with status PERMISSION_DENIED/);
    const refused = await getHealth(r.healthUrl!);
    expect(refused.relay.refusedReservations).toBe(1);
    expect(refused.reservations).toBe(2);

    // One relayed connection to A is allowed; a second one (from another peer) is refused.
    await serveBulk(a);
    const d = await peer();
    await d.dial(multiaddr(aAddr), { signal: AbortSignal.timeout(10_000) });
    const e = await peer();
    await expect(e.dial(multiaddr(aAddr), { signal: AbortSignal.timeout(10_000) })).rejects.toThrow(/PERMISSION_DENIED|permission/i);
    const health = await getHealth(r.healthUrl!);
    expect(health.relay.refusedCircuits).toBeGreaterThanOrEqual(1);
    expect(health.relay.activeCircuits).toBe(1);

    // When D's relayed connection closes, the slot is free again.
    await d.hangUp(a.peerId);
    await until(async () => (await getHealth(r.healthUrl!)).relay.activeCircuits === 0, 10_000, "D's circuit released");
    const data = randomBytes(100_000);
    expect(await sendBulk(e, aAddr, data)).toMatchObject({ size: data.length, digest: await sha256(data) });
  });

  it("slows a peer to bytes_per_second_per_peer without starving another pair", async () => {
    const rate = 256 * 1024;
    const r = await rendezvousWith({ limits: { bytes_per_second_per_peer: rate, burst_bytes_per_peer: rate } });
    const [a, c] = [await peer(r.addr), await peer(r.addr)];
    const [aAddr, cAddr] = [await reserved(a, r.peerId), await reserved(c, r.peerId)];
    await serveBulk(a);
    await serveBulk(c);
    const [b, d] = [await peer(), await peer()];

    // B floods A with 1 MiB: after the 256 KiB burst it moves at 256 KiB/s, so it takes ≥ 3 s.
    const flood = randomBytes(1024 * 1024);
    const flooding = sendBulk(b, aAddr, flood);
    // Meanwhile D sends C 128 KiB: within D's and C's own buckets, it is not held up by B and A.
    await until(async () => (await getHealth(r.healthUrl!)).relay.throttled > 0, 10_000, "B being throttled");
    const small = randomBytes(128 * 1024);
    const quick = await sendBulk(d, cAddr, small);
    expect(quick).toMatchObject({ size: small.length, digest: await sha256(small) });
    const slow = await flooding;
    expect(slow).toMatchObject({ size: flood.length, digest: await sha256(flood) });
    expect(slow.ms).toBeGreaterThan(((flood.length - rate) / rate) * 1000 * 0.9);
    expect(quick.ms).toBeLessThan(slow.ms / 2);
    expect((await getHealth(r.healthUrl!)).relay.relayedBytes).toBeGreaterThan(flood.length + small.length);
  });
});
