/**
 * Real homeservers behind `/hyphae/http/1`: a peer whose libp2p key does not match the server name it
 * signs as is refused 401, forged or missing X-Matrix headers are refused as in classic mode, and
 * two homeservers federate over libp2p (a user on B joins a room on A by room ID and reads its
 * messages).
 */
import { afterEach, describe, expect, it } from "vitest";
import { createHomeserver } from "../../src/homeserver/homeserver.ts";
import type { Homeserver } from "../../src/homeserver/homeserver.ts";
import { createMemoryStore } from "../../src/storage/memory.ts";
import { createSigner } from "../../src/homeserver/crypto/ed25519.ts";
import { authorizationHeader } from "../../src/homeserver/federation/xmatrix.ts";
import { federationUrl } from "../../src/homeserver/federation/transport.ts";
import { LIMITER_NAMES } from "../../src/homeserver/auth/rateLimit.ts";
import type { HomeserverConfig } from "../../src/homeserver/context.ts";
import { Libp2pFederationTransport, serveHttp } from "../../src/transport/http.ts";
import { closeAll, startPeer, startRendezvous, until } from "./p2pHarness.ts";

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
  const transport = new Libp2pFederationTransport(peer.node);
  const hs: Homeserver = await createHomeserver({
    store: createMemoryStore(),
    seed: peer.seed,
    serverName: peer.serverName,
    federationTransport: transport,
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
  return { ...peer, hs, transport, call, register };
}

describe("homeservers over libp2p", () => {
  it("refuses a peer signing as a server whose key it does not hold, and forged X-Matrix headers", async () => {
    const rendezvous = await startRendezvous();
    const a = await p2pHomeserver(rendezvous.addr);
    await a.register("alice");
    const b = await startPeer({ rendezvous: [rendezvous.addr] });
    const mallory = await startPeer({ rendezvous: [rendezvous.addr] });
    const bKey = { entity: b.serverName, keyId: "ed25519:auto", signer: await createSigner(b.seed) };
    const malloryKey = { entity: mallory.serverName, keyId: "ed25519:auto", signer: await createSigner(mallory.seed) };
    const path = `/_matrix/federation/v1/query/profile?user_id=${encodeURIComponent(`@alice:${a.serverName}`)}`;
    const ask = async (from: typeof b, authorization?: string) => {
      const response = await new Libp2pFederationTransport(from.node).request(
        a.serverName,
        new Request(federationUrl(a.serverName, path), { headers: authorization ? { Authorization: authorization } : {} }),
      );
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };

    // B's key, B's peer: accepted.
    expect(await ask(b, await authorizationHeader(bKey, a.serverName, "GET", path))).toMatchObject({ status: 200 });
    // Mallory replays or forges B's signed request from its own peer: refused.
    const forged = await ask(mallory, await authorizationHeader(bKey, a.serverName, "GET", path));
    expect(forged).toMatchObject({ status: 401, body: { errcode: "M_UNAUTHORIZED" } });
    expect(String(forged.body.error)).toContain("not the server that sent it");
    // As in classic mode: no header, a bad signature, another destination.
    expect(await ask(mallory)).toMatchObject({ status: 401, body: { errcode: "M_UNAUTHORIZED" } });
    const good = await authorizationHeader(malloryKey, a.serverName, "GET", path);
    expect(await ask(mallory, good.replace(/sig="[^"]+"/, `sig="${"A".repeat(86)}"`))).toMatchObject({ status: 401, body: { errcode: "M_UNAUTHORIZED" } });
    expect(await ask(mallory, await authorizationHeader(malloryKey, b.serverName, "GET", path))).toMatchObject({ status: 401, body: { errcode: "M_UNAUTHORIZED" } });
    // Mallory speaking for itself is fine.
    expect(await ask(mallory, good)).toMatchObject({ status: 200 });
  }, 60_000);

  it("a user on B joins a room on A by room ID and messages flow both ways", async () => {
    const rendezvous = await startRendezvous();
    const a = await p2pHomeserver(rendezvous.addr);
    const b = await p2pHomeserver(rendezvous.addr);
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const created = await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, alice.token);
    const roomId = created.body.room_id as string;
    const joined = await b.call("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}?via=${a.serverName}`, {}, bob.token);
    expect(joined).toEqual({ status: 200, body: { room_id: roomId } });
    const say = (s: typeof a, token: string, txn: string, body: string) =>
      s.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${txn}`, { msgtype: "m.text", body }, token);
    const sees = (s: typeof a, token: string, body: string) =>
      until(`${body} arrives`, async () => {
        const page = await s.call("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=20`, undefined, token);
        return (page.body.chunk as { content?: { body?: string } }[]).some((e) => e.content?.body === body);
      }, 20_000);
    expect((await say(a, alice.token, "1", "hello from A")).status).toBe(200);
    await sees(b, bob.token, "hello from A");
    expect((await say(b, bob.token, "1", "hello from B")).status).toBe(200);
    await sees(a, alice.token, "hello from B");
  }, 90_000);
});
