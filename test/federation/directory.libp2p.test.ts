/**
 * The global room directory over real libp2p (loopback websockets, a rendezvous as in the transport
 * tests): the directory service works unchanged on `Libp2pFederationTransport`'s `onlineServers()`
 * (the rendezvous's peer list): B's user finds A's published room in B's own `/publicRooms` and
 * joins it without `via`.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createHomeserver } from "../../src/homeserver/homeserver.ts";
import type { Homeserver } from "../../src/homeserver/homeserver.ts";
import { createMemoryStore } from "../../src/storage/memory.ts";
import { LIMITER_NAMES } from "../../src/homeserver/auth/rateLimit.ts";
import type { HomeserverConfig } from "../../src/homeserver/context.ts";
import { Libp2pFederationTransport, serveHttp } from "../../src/transport/http.ts";
import { closeAll, startPeer, startRendezvous, until } from "../transport/p2pHarness.ts";

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
  await closeAll();
});

const unlimited = (): HomeserverConfig["rateLimits"] =>
  Object.fromEntries(LIMITER_NAMES.map((n) => [n, { perSecond: 1_000_000, burstCount: 1_000_000 }])) as HomeserverConfig["rateLimits"];

/** A homeserver on its own libp2p peer (server name = the peer's key). */
async function p2pHomeserver(rendezvous: string) {
  const peer = await startPeer({ rendezvous: [rendezvous] });
  const hs: Homeserver = await createHomeserver({
    store: createMemoryStore(),
    seed: peer.seed,
    serverName: peer.serverName,
    federationTransport: new Libp2pFederationTransport(peer.node),
    config: { passwordIterations: 10, rateLimits: unlimited() },
  });
  closers.push(() => hs.close());
  await serveHttp(peer.node, (request, info) => hs.handle(request, { transportOrigin: info.peerServer }), { serverName: peer.serverName });
  const call = async (method: string, path: string, body?: unknown, token?: string) => {
    const headers: Record<string, string> = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    const res = await hs.handle(new Request(`http://localhost${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) }));
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : {}) as Record<string, any> };
  };
  const register = async (localpart: string) => {
    const r = await call("POST", "/_matrix/client/v3/register", { username: localpart, password: "correct horse", auth: { type: "m.login.dummy" } });
    return { userId: r.body.user_id as string, token: r.body.access_token as string };
  };
  return { ...peer, hs, call, register };
}

describe("the global room directory over libp2p", () => {
  it("B's user finds A's published room in B's own /publicRooms and joins it without via", async () => {
    const rendezvous = await startRendezvous();
    const a = await p2pHomeserver(rendezvous.addr);
    const b = await p2pHomeserver(rendezvous.addr);
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const created = await a.call("POST", "/_matrix/client/v3/createRoom", { name: "Over libp2p", preset: "public_chat", visibility: "public" }, alice.token);
    const roomId = created.body.room_id as string;

    // B refreshes from the servers the rendezvous lists (bounded: until A is online there).
    const directory = b.hs.services.directory!;
    await until("A's room in B's directory", async () => {
      await directory.refreshAll();
      const list = await b.call("GET", "/_matrix/client/v3/publicRooms", undefined, bob.token);
      return (list.body.chunk as { room_id: string }[]).some((r) => r.room_id === roomId);
    }, 30_000);
    const entry = (await b.call("GET", "/_matrix/client/v3/publicRooms", undefined, bob.token)).body.chunk.find((r: any) => r.room_id === roomId);
    expect(entry).toMatchObject({ name: "Over libp2p", num_joined_members: 1 });

    const joined = await b.call("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {}, bob.token);
    expect(joined).toEqual({ status: 200, body: { room_id: roomId } });
  }, 90_000);
});
