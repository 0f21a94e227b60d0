/**
 * The rest of the P2P issue's acceptance with real processes (test/p2p/p2pProcesses.ts): the
 * global directory and catch-up from a third peer on one rendezvous with three `npm run serve`
 * peers, and two rendezvous nodes joined with `--peer` carrying a room between their peers.
 */
import { afterEach, describe, expect, it } from "vitest";
import { eventually } from "../federation/classic.ts";
import { startP2PNetwork } from "./p2pProcesses.ts";
import type { P2PNetwork, P2PPeer } from "./p2pProcesses.ts";

let net: P2PNetwork | undefined;
afterEach(async () => {
  await net?.close();
  net = undefined;
}, 60_000);

const enc = encodeURIComponent;

/** A user's view of one room's messages, oldest first. */
async function bodies(p: P2PPeer, token: string, roomId: string): Promise<string[]> {
  const page = await p.call("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=100`, undefined, token);
  const chunk = (page.body.chunk ?? []) as { type: string; content?: { body?: string } }[];
  return chunk.filter((e) => e.type === "m.room.message").map((e) => e.content!.body!).reverse();
}

function sees(p: P2PPeer, token: string, roomId: string, expected: string[], ms = 90_000): Promise<string[]> {
  return eventually(`${p.name.slice(0, 8)} sees ${expected.join(", ")}`, async () => {
    const got = await bodies(p, token, roomId);
    return expected.every((m) => got.includes(m)) ? got : undefined;
  }, ms);
}

async function say(p: P2PPeer, token: string, roomId: string, txn: string, body: string): Promise<void> {
  const sent = await p.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${txn}`, { msgtype: "m.text", body }, token);
  expect(sent.status, p.output()).toBe(200);
}

/** Waits until `p`'s own /publicRooms lists `roomId` (answered from its cache, refreshed in the background). */
function findsInOwnDirectory(p: P2PPeer, token: string, roomId: string): Promise<Record<string, unknown>> {
  return eventually(`${p.name.slice(0, 8)} lists ${roomId} in its own directory`, async () => {
    const r = await p.call("POST", "/_matrix/client/v3/publicRooms", { limit: 50 }, token);
    return ((r.body.chunk ?? []) as Record<string, unknown>[]).find((room) => room.room_id === roomId);
  }, 120_000);
}

describe("P2P acceptance: directory and catch-up through a third peer", () => {
  it("Bob finds Alice's public room in his own directory and joins; Carol, offline while Alice sent 5 messages, gets them from Bob after Alice left", async () => {
    net = await startP2PNetwork(3);
    const [a, b, c] = net.peers as [P2PPeer, P2PPeer, P2PPeer];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const carol = await c.register("carol");
    const created = await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat", visibility: "public", name: "Global lobby" }, alice.token);
    expect(created.status, a.output()).toBe(200);
    const roomId = created.body.room_id as string;

    const listed = await findsInOwnDirectory(b, bob.token, roomId);
    expect(listed).toMatchObject({ name: "Global lobby", num_joined_members: 1 });
    // Picked from the directory: no server named, as a client joining from the list does.
    const joined = await b.call("POST", `/_matrix/client/v3/join/${enc(roomId)}`, {}, bob.token);
    expect(joined, b.output()).toEqual({ status: 200, body: { room_id: roomId } });
    await say(a, alice.token, roomId, "a1", "hello from Alice");
    await sees(b, bob.token, roomId, ["hello from Alice"]);
    await say(b, bob.token, roomId, "b1", "hello from Bob");
    await sees(a, alice.token, roomId, ["hello from Bob"]);

    const invited = await a.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, { user_id: carol.userId }, alice.token);
    expect(invited.status, a.output()).toBe(200);
    await eventually("carol joins", async () => {
      const r = await c.call("POST", `/_matrix/client/v3/join/${enc(roomId)}`, {}, carol.token);
      return r.status === 200 ? r : undefined;
    }, 60_000);
    await say(c, carol.token, roomId, "c1", "hello from Carol");
    await sees(b, bob.token, roomId, ["hello from Carol"]);
    await sees(a, alice.token, roomId, ["hello from Carol"]);

    // Carol's peer stops; Alice sends five messages; Bob has them; Alice's peer stops.
    await net.stop(c);
    const five = ["m1", "m2", "m3", "m4", "m5"].map((m) => `while Carol was away: ${m}`);
    for (const [i, body] of five.entries()) await say(a, alice.token, roomId, `away${i}`, body);
    await sees(b, bob.token, roomId, five);
    await net.stop(a);
    // Carol's peer comes back while Alice's is gone: only Bob can tell it what it missed.
    await net.start(c);
    const got = await sees(c, carol.token, roomId, five, 120_000);
    expect(got.filter((m) => m.startsWith("while Carol was away"))).toEqual(five);
    expect(got.indexOf("hello from Carol")).toBeLessThan(got.indexOf(five[0]!));
  }, 600_000);
});

describe("P2P acceptance: two rendezvous nodes form one network", () => {
  it("Alice on R1, Bob on R2: Bob finds Alice's room in his directory, joins it, and they chat", async () => {
    net = await startP2PNetwork(2, 2);
    const [a, b] = net.peers as [P2PPeer, P2PPeer];
    expect(a.output()).toContain(net.rendezvousNodes[0]!.addr.split("/p2p/")[1]);
    expect(b.output()).toContain(net.rendezvousNodes[1]!.addr.split("/p2p/")[1]);
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const created = await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat", visibility: "public", name: "Across rendezvous" }, alice.token);
    expect(created.status, a.output()).toBe(200);
    const roomId = created.body.room_id as string;

    await findsInOwnDirectory(b, bob.token, roomId);
    const joined = await b.call("POST", `/_matrix/client/v3/join/${enc(roomId)}`, {}, bob.token);
    expect(joined, b.output()).toEqual({ status: 200, body: { room_id: roomId } });
    await say(a, alice.token, roomId, "a1", "from R1");
    await sees(b, bob.token, roomId, ["from R1"]);
    await say(b, bob.token, roomId, "b1", "from R2");
    await sees(a, alice.token, roomId, ["from R2"]);
  }, 600_000);
});
