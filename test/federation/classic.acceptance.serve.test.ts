/**
 * The federation issue's acceptance, first part, between two `npm run serve` processes in classic
 * mode over real HTTPS (test/federation/classic.ts): a user on A creates a room with an alias and a
 * user on B joins it by that alias (/query/directory, make_join, send_join over HTTPS), and messages
 * then flow both ways through the outbound queues and inbound /send.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ClassicFederation, ClassicNode } from "./classic.ts";
import { eventually, startClassicFederation } from "./classic.ts";

let fed: ClassicFederation;
let a: ClassicNode;
let b: ClassicNode;

beforeAll(async () => {
  fed = await startClassicFederation(2);
  [a, b] = fed.nodes as [ClassicNode, ClassicNode];
}, 240_000);
afterAll(async () => {
  await fed?.close();
}, 60_000);

describe("acceptance over HTTPS between two npm run serve processes", () => {
  it("a user on B joins A's room by its alias over HTTPS, and messages flow both ways", async () => {
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const created = await a.call("POST", "/_matrix/client/v3/createRoom", { room_alias_name: "lobby", preset: "public_chat", name: "Lobby" }, alice.token);
    expect(created.status, a.output()).toBe(200);
    const roomId = created.body.room_id as string;
    const alias = `#lobby:${a.name}`;

    // B resolves the alias through A's /query/directory and joins through make_join/send_join.
    const joined = await b.call("POST", `/_matrix/client/v3/join/${encodeURIComponent(alias)}`, {}, bob.token);
    expect(joined, b.output()).toEqual({ status: 200, body: { room_id: roomId } });

    // A sees B's user join.
    await eventually("A sees bob's join", async () => {
      const members = await a.call("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/joined_members`, undefined, alice.token);
      return members.body.joined?.[bob.userId] ? true : undefined;
    });

    // B holds the room's state as A sent it: the same name, both members.
    const state = await b.call("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.name/`, undefined, bob.token);
    expect(state).toEqual({ status: 200, body: { name: "Lobby" } });
    const onB = await b.call("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/joined_members`, undefined, bob.token);
    expect(Object.keys(onB.body.joined as object).sort()).toEqual([alice.userId, bob.userId].sort());

    // Messages both ways: each side's client reads the other's message in /messages.
    const say = async (node: ClassicNode, token: string, txn: string, body: string) => {
      const sent = await node.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${txn}`, { msgtype: "m.text", body }, token);
      expect(sent.status, node.output()).toBe(200);
    };
    const sees = (node: ClassicNode, token: string, body: string) =>
      eventually(`${node.name} sees "${body}"`, async () => {
        const page = await node.call("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=20`, undefined, token);
        return (page.body.chunk as { content?: { body?: string } }[] | undefined)?.some((e) => e.content?.body === body) ? true : undefined;
      });
    await say(a, alice.token, "a1", "hello from A");
    await sees(b, bob.token, "hello from A");
    await say(b, bob.token, "b1", "hello from B");
    await sees(a, alice.token, "hello from B");
  }, 180_000);
});
