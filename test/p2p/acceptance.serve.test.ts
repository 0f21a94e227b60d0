/**
 * The P2P issue's acceptance with real processes (test/p2p/p2pProcesses.ts): one rendezvous and
 * three `npm run serve` peers in P2P mode, federating over libp2p. Alice creates a room, Bob joins it
 * by room ID through Alice's server, they chat both ways, Carol is invited and joins; the rendezvous
 * is restarted mid-conversation and nothing is lost; media uploaded on one peer is downloaded from
 * another.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually } from "../federation/classic.ts";
import { startP2PNetwork } from "./p2pProcesses.ts";
import type { P2PNetwork, P2PPeer } from "./p2pProcesses.ts";

let net: P2PNetwork;
let a: P2PPeer;
let b: P2PPeer;
let c: P2PPeer;

beforeAll(async () => {
  net = await startP2PNetwork(3);
  [a, b, c] = net.peers as [P2PPeer, P2PPeer, P2PPeer];
}, 240_000);
afterAll(async () => {
  await net?.close();
}, 60_000);

const enc = encodeURIComponent;

describe("P2P acceptance: npm run serve peers over libp2p", () => {
  it("names each peer by its key and prints where it listens", () => {
    for (const p of [a, b, c]) {
      expect(p.name).toMatch(/^[0-9a-f]{64}$/);
      expect(p.output()).toMatch(/Hyphae P2P listening on \/ip4\/127\.0\.0\.1\/tcp\/\d+\/ws\/p2p\/12D3KooW\S+/);
      expect(p.output()).not.toMatch(/not yet enabled/);
    }
    expect(new Set([a.name, b.name, c.name]).size).toBe(3);
  });

  it("join by room ID, chat both ways, invite a third peer, survive a rendezvous restart, share media", async () => {
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const carol = await c.register("carol");
    const created = await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat", name: "P2P lobby" }, alice.token);
    expect(created.status, a.output()).toBe(200);
    const roomId = created.body.room_id as string;

    const joined = await b.call("POST", `/_matrix/client/v3/join/${enc(roomId)}?server_name=${a.name}&via=${a.name}`, {}, bob.token);
    expect(joined, b.output()).toEqual({ status: 200, body: { room_id: roomId } });
    const name = await b.call("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.name/`, undefined, bob.token);
    expect(name).toEqual({ status: 200, body: { name: "P2P lobby" } });

    const say = async (p: P2PPeer, token: string, txn: string, body: string) => {
      const sent = await p.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${txn}`, { msgtype: "m.text", body }, token);
      expect(sent.status, p.output()).toBe(200);
    };
    const bodies = async (p: P2PPeer, token: string): Promise<string[]> => {
      const page = await p.call("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=f&limit=100`, undefined, token);
      return ((page.body.chunk ?? []) as { type: string; content?: { body?: string } }[]).filter((e) => e.type === "m.room.message").map((e) => e.content!.body!);
    };
    const sees = (p: P2PPeer, token: string, expected: string[]) =>
      eventually(`${p.name.slice(0, 8)} sees ${expected.join(", ")}`, async () => {
        const got = await bodies(p, token);
        return expected.every((m) => got.includes(m)) ? got : undefined;
      }, 60_000);

    await say(a, alice.token, "a1", "hello from A");
    await sees(b, bob.token, ["hello from A"]);
    await say(b, bob.token, "b1", "hello from B");
    await sees(a, alice.token, ["hello from B"]);

    // Carol on a third peer: invited over federation, joins through the inviter's server.
    const invited = await a.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, { user_id: carol.userId }, alice.token);
    expect(invited.status, a.output()).toBe(200);
    await eventually("carol joins", async () => {
      const r = await c.call("POST", `/_matrix/client/v3/join/${enc(roomId)}`, {}, carol.token);
      return r.status === 200 ? r : undefined;
    }, 60_000);
    await say(c, carol.token, "c1", "hello from C");
    await sees(a, alice.token, ["hello from C"]);
    await sees(b, bob.token, ["hello from A", "hello from B", "hello from C"]);
    // (What was said before Carol joined reaches her with /messages backfill, built by another part.)
    await sees(c, carol.token, ["hello from C"]);

    // The rendezvous goes away mid-conversation and comes back at the same address.
    await net.rendezvous.stop();
    await eventually("every peer notices", async () => ([a, b, c].every((p) => /lost the rendezvous/.test(p.output())) ? true : undefined), 30_000);
    await say(a, alice.token, "a2", "while the rendezvous is down");
    await net.rendezvous.start();
    await eventually("every peer is back on the rendezvous", async () => ([a, b, c].every((p) => (p.output().match(/connected to rendezvous/g) ?? []).length >= 2) ? true : undefined), 60_000);
    await say(b, bob.token, "b2", "after the restart");
    await say(c, carol.token, "c2", "carol after the restart");
    const since = ["hello from C", "while the rendezvous is down", "after the restart", "carol after the restart"];
    for (const [p, token] of [[a, alice.token], [b, bob.token], [c, carol.token]] as const) {
      const got = await sees(p, token, since);
      // In the room's order: what was sent before the outage comes before what was sent after it.
      expect(got.indexOf("hello from C")).toBeLessThan(got.indexOf("while the rendezvous is down"));
      expect(got.indexOf("while the rendezvous is down")).toBeLessThan(got.indexOf("after the restart"));
    }

    // Media uploaded on A, downloaded (3 MB, streamed over libp2p) through B.
    const media = new Uint8Array(3 * 1024 * 1024 + 17).map((_, i) => (i * 7 + (i >> 10)) & 0xff);
    const up = await fetch(`${a.httpUrl}/_matrix/media/v3/upload?filename=blob.bin`, { method: "POST", headers: { Authorization: `Bearer ${alice.token}`, "Content-Type": "application/octet-stream" }, body: media });
    expect(up.status).toBe(200);
    const mxc = ((await up.json()) as { content_uri: string }).content_uri;
    const [, server, mediaId] = /^mxc:\/\/([^/]+)\/(.+)$/.exec(mxc)!;
    expect(server).toBe(a.name);
    const down = await fetch(`${b.httpUrl}/_matrix/client/v1/media/download/${server}/${mediaId}`, { headers: { Authorization: `Bearer ${bob.token}` }, signal: AbortSignal.timeout(60_000) });
    expect(down.status, b.output()).toBe(200);
    expect(Buffer.compare(new Uint8Array(await down.arrayBuffer()), media)).toBe(0);
  }, 420_000);
});
