/**
 * `npm run rendezvous` as an operator runs it: the identity file, restarts, the health endpoint,
 * the status line, signals, --peer redialling, and usage errors.
 */
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { SpawnedRendezvous } from "./helpers.ts";
import { getHealth, runRendezvous, spawnRendezvous, until } from "./helpers.ts";

const processes: SpawnedRendezvous[] = [];
let dir: string;

async function rendezvous(args: string[]): Promise<SpawnedRendezvous> {
  const r = await spawnRendezvous(args);
  processes.push(r);
  return r;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "hyphae-rv-"));
});

afterEach(async () => {
  await Promise.all(processes.splice(0).map((r) => r.stop()));
  await rm(dir, { recursive: true, force: true });
});

const portOf = (addr: string): string => /\/tcp\/(\d+)\//.exec(addr)![1]!;

describe("npm run rendezvous", () => {
  it("creates its key file (0600, 32 bytes) and keeps its peer ID across a restart on the same key", async () => {
    const key = join(dir, "sub", "rendezvous.key");
    const first = await rendezvous(["--port", "0", "--key", key]);
    expect(first.addr).toMatch(new RegExp(`^/ip4/127\\.0\\.0\\.1/tcp/\\d+/ws/p2p/${first.peerId}$`));
    const info = await stat(key);
    expect(info.mode & 0o777).toBe(0o600);
    expect(info.size).toBe(32);
    const seed = await readFile(key);
    expect(await first.stop("SIGINT")).toEqual({ code: 0, signal: null });
    expect(first.output()).toContain("rendezvous stopped (SIGINT)");

    const second = await rendezvous(["--port", "0", "--key", key]);
    expect(second.peerId).toBe(first.peerId);
    expect(await readFile(key)).toEqual(seed);
    // Without --key, a new identity each start.
    const other = await rendezvous(["--port", "0"]);
    expect(other.peerId).not.toBe(first.peerId);
  });

  it("refuses a key file that is not a 32-byte seed (exit 1, one line)", async () => {
    const key = join(dir, "bad.key");
    await writeFile(key, "not a seed");
    const run = await runRendezvous(["--port", "0", "--key", key]);
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe(`rendezvous: cannot start: key file ${key} must hold exactly 32 bytes (an ed25519 seed), found 10; refusing to start`);
  });

  it("serves GET /health and prints a status line every status_interval_seconds", async () => {
    const config = join(dir, "rendezvous.json");
    await writeFile(config, JSON.stringify({ port: 0, health_port: 0, status_interval_seconds: 1 }));
    const r = await rendezvous(["--config", config]);
    const h = await getHealth(r.healthUrl!);
    expect(h).toMatchObject({ peerId: r.peerId, addrs: [r.addr], connections: 0, connectedPeers: [], onlinePeers: 0, rendezvous: [], reservations: 0 });
    expect(h.relay).toMatchObject({ activeCircuits: 0, relayedBytes: 0, refusedReservations: 0, refusedCircuits: 0 });
    expect(h.uptimeSeconds).toBeGreaterThanOrEqual(0);
    expect(h.memory.rssBytes).toBeGreaterThan(0);
    const other = await fetch(r.healthUrl!.replace("/health", "/elsewhere"));
    expect(other.status).toBe(404);
    await other.body?.cancel();
    const post = await fetch(r.healthUrl!, { method: "POST" });
    expect(post.status).toBe(405);
    await post.body?.cancel();
    await until(() => /rendezvous status peers=0 reservations=0 circuits=0 relayed_bytes=0 connections=0 rendezvous=0/.test(r.output()), 10_000, "a status line");
  });

  it("redials a --peer rendezvous that went away once it is back", async () => {
    const key = join(dir, "r1.key");
    let r1 = await rendezvous(["--port", "0", "--key", key, "--health-port", "0"]);
    const r2 = await rendezvous(["--port", "0", "--peer", r1.addr, "--health-port", "0"]);
    await until(async () => (await getHealth(r2.healthUrl!)).rendezvous.includes(r1.peerId), 15_000, "R2 joining R1");
    expect(r2.output()).toContain(`rendezvous joined ${r1.addr}`);

    await r1.stop();
    processes.splice(processes.indexOf(r1), 1);
    await until(async () => (await getHealth(r2.healthUrl!)).rendezvous.length === 0, 10_000, "R2 noticing R1 gone");
    // Same key and port: the address R2 was given is valid again.
    r1 = await rendezvous(["--port", portOf(r1.addr), "--key", key, "--health-port", "0"]);
    await until(async () => (await getHealth(r2.healthUrl!)).rendezvous.includes(r1.peerId), 40_000, "R2 rejoining R1");
    // (R1 counts R2 as a rendezvous once identify told it R2's protocols.)
    await until(async () => (await getHealth(r1.healthUrl!)).rendezvous.includes(r2.peerId), 10_000, "R1 seeing R2");
  });

  it("exits 2 with the usage for bad flags", async () => {
    const cases: [string[], string][] = [
      [["--port", "http"], "--port must be a port number (0-65535)"],
      [["--port"], "--port needs a value"],
      [["--bogus"], "unknown argument --bogus"],
      [["--host", "example.org"], "--host must be an IPv4 or IPv6 address"],
      [["--peer", "/ip4/127.0.0.1/tcp/4001/ws"], "--peer must end in /p2p/<peer id>"],
      [["--peer", "not-a-multiaddr"], "--peer is not a multiaddr"],
      [["--config", "/nonexistent/rendezvous.json"], "cannot read config file /nonexistent/rendezvous.json"],
    ];
    const runs = await Promise.all(cases.map(([args]) => runRendezvous(args)));
    runs.forEach((run, i) => {
      expect(run.code, cases[i]![0].join(" ")).toBe(2);
      expect(run.stderr).toContain(`rendezvous: ${cases[i]![1]}`);
      expect(run.stderr).toContain("Usage: npm run rendezvous --");
      expect(run.stdout).toBe("");
    });
  });

  it("exits 2 for config files with unknown keys or bad limits", async () => {
    const files: [unknown, string][] = [
      [{ port: 0, limits: { max_circuits_per_peer: 0 } }, "limits.max_circuits_per_peer must be an integer ≥ 1"],
      [{ port: 0, limits: { max_circuit: 1 } }, 'unknown key "limits.max_circuit"'],
      [{ prot: 4001 }, `config file ${join(dir, "2.json")}: unknown key "prot"`],
      [{ peers: "/ip4/127.0.0.1/tcp/1/ws" }, "peers must be a list of multiaddrs"],
    ];
    await Promise.all(files.map(([json], i) => writeFile(join(dir, `${i}.json`), JSON.stringify(json))));
    await writeFile(join(dir, "broken.json"), "{");
    const runs = await Promise.all([...files.map((_, i) => runRendezvous(["--config", join(dir, `${i}.json`)])), runRendezvous(["--config", join(dir, "broken.json")])]);
    const expected = [...files.map(([, m]) => m), `config file ${join(dir, "broken.json")} is not JSON`];
    runs.forEach((run, i) => {
      expect(run.code).toBe(2);
      expect(run.stderr).toContain(`rendezvous: ${expected[i]}`);
    });
  });

  it("exits 1 with one line when its port is taken, and 0 with the usage on --help", async () => {
    const r = await rendezvous(["--port", "0"]);
    const run = await runRendezvous(["--port", portOf(r.addr)]);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(`rendezvous: cannot start: cannot listen on /ip4/127.0.0.1/tcp/${portOf(r.addr)}/ws: listen EADDRINUSE: address already in use 127.0.0.1:${portOf(r.addr)}\n`);
    const help = await runRendezvous(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("Usage: npm run rendezvous --");
  });
});
