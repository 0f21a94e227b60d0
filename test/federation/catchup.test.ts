/**
 * Catch-up from any peer (issue 10 item 7; federation/catchup.ts): a server that was offline gets
 * what it missed from whichever member server is online, even when the sender never is online
 * together with it.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Federation, FedServer } from "./harness.ts";
import { createFederation } from "./harness.ts";
import { eventually } from "./fedtools.ts";
import { buildRemote, storedOn, wire } from "./pduHelpers.ts";

let fed: Federation | undefined;
afterEach(async () => {
  await fed?.close();
  fed = undefined;
});

const FAST = { federationSenderOptions: { minBackoffMs: 20, maxBackoffMs: 200 } };
const enc = encodeURIComponent;
const range = (n: number, tag: string): string[] => Array.from({ length: n }, (_, i) => `${tag}${i + 1}`);

interface Room {
  roomId: string;
  alice: { userId: string; token: string };
  bob: { userId: string; token: string };
  carol: { userId: string; token: string };
}

/** A public room on A with Bob (B) and Carol (C) joined through the real join protocol; every server sees all three joined. */
async function threeServerRoom(a: FedServer, b: FedServer, c: FedServer): Promise<Room> {
  const alice = await a.register("alice");
  const bob = await b.register("bob");
  const carol = await c.register("carol");
  const created = await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, alice.token);
  expect(created.status).toBe(200);
  const roomId = created.body.room_id as string;
  expect((await b.call("POST", `/_matrix/client/v3/join/${enc(roomId)}?server_name=a.test`, {}, bob.token)).status).toBe(200);
  expect((await c.call("POST", `/_matrix/client/v3/join/${enc(roomId)}?server_name=a.test`, {}, carol.token)).status).toBe(200);
  for (const [s, token] of [[a, alice.token], [b, bob.token], [c, carol.token]] as const) {
    await eventually(async () => {
      const r = await s.call("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/joined_members`, undefined, token);
      return r.status === 200 && Object.keys(r.body.joined).length === 3;
    }, `three members on ${s.name}`);
  }
  return { roomId, alice, bob, carol };
}

async function send(s: FedServer, roomId: string, token: string, body: string): Promise<string> {
  const r = await s.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${body}`, { msgtype: "m.text", body }, token);
  expect(r.status).toBe(200);
  return r.body.event_id as string;
}

/** The message bodies of the room's timeline in a `/sync` since `since`. */
async function syncedBodies(s: FedServer, token: string, roomId: string, since: string): Promise<string[]> {
  const r = await s.call("GET", `/_matrix/client/v3/sync?since=${enc(since)}&timeout=0`, undefined, token);
  expect(r.status).toBe(200);
  const events = (r.body.rooms?.join?.[roomId]?.timeline?.events ?? []) as { type: string; content: { body?: string } }[];
  return events.filter((e) => e.type === "m.room.message").map((e) => e.content.body!);
}

async function syncToken(s: FedServer, token: string): Promise<string> {
  const r = await s.call("GET", "/_matrix/client/v3/sync?timeout=0", undefined, token);
  expect(r.status).toBe(200);
  return r.body.next_batch as string;
}

/** Every federation request a server receives, as `METHOD path`. */
function recordInbound(fed: Federation, server: FedServer): string[] {
  const seen: string[] = [];
  fed.network.attach(server.name, (request) => {
    seen.push(`${request.method} ${new URL(request.url).pathname}`);
    return server.hs.handle(request);
  });
  return seen;
}

/** A's user writes 5 messages while C is offline; B gets them; A goes offline. */
async function missedWhileOffline(fed: Federation, room: Room): Promise<{ since: string; ids: string[] }> {
  const [a, b, c] = fed.servers as [FedServer, FedServer, FedServer];
  const since = await syncToken(c, room.carol.token);
  fed.network.setOnline(c.name, false);
  const ids: string[] = [];
  for (const m of range(5, "m")) ids.push(await send(a, room.roomId, room.alice.token, m));
  await eventually(async () => {
    for (const id of ids) if (!(await storedOn(b, id))?.streamPos) return false;
    return true;
  }, "the 5 messages on B");
  fed.network.setOnline(a.name, false);
  return { since, ids };
}

describe("catch-up from any peer", () => {
  it("C, offline while A wrote 5 messages, gets them from B in order though A is never online with it", async () => {
    fed = await createFederation(["a.test", "b.test", "c.test"], {}, FAST);
    const [a, b, c] = fed.servers as [FedServer, FedServer, FedServer];
    const room = await threeServerRoom(a, b, c);
    const { since } = await missedWhileOffline(fed, room);
    const fromB = recordInbound(fed, b);
    fed.network.setOnline(c.name, true);
    const bodies = await eventually(async () => {
      const got = await syncedBodies(c, room.carol.token, room.roomId, since);
      return got.length >= 5 && got;
    }, "the 5 messages in C's /sync");
    expect(bodies).toEqual(range(5, "m"));
    expect(fromB.some((r) => r.includes("/get_missing_events/"))).toBe(true);
  });

  it("pages through get_missing_events when the gap is larger than one request", async () => {
    fed = await createFederation(["a.test", "b.test", "c.test"], {}, { ...FAST, catchUpOptions: { eventsPerRequest: 2, eventsPerBatch: 2 } });
    const [a, b, c] = fed.servers as [FedServer, FedServer, FedServer];
    const room = await threeServerRoom(a, b, c);
    const { since } = await missedWhileOffline(fed, room);
    const fromB = recordInbound(fed, b);
    fed.network.setOnline(c.name, true);
    const bodies = await eventually(async () => {
      const got = await syncedBodies(c, room.carol.token, room.roomId, since);
      return got.length >= 5 && got;
    }, "the 5 messages in C's /sync");
    expect(bodies).toEqual(range(5, "m"));
    // The newest through /event, the other 4 in two pages of 2, all collected by the catch-up pass
    // itself (the receiver had nothing left to fetch).
    expect(c.hs.services.catchUp!.results.find((r) => r.server === "b.test" && r.fetched > 0)).toMatchObject({ fetched: 5, requests: 4 });
    expect(fromB.filter((r) => r.includes("/get_missing_events/")).length).toBe(2);
    expect(fromB.filter((r) => /state_ids|\/state\//.test(r))).toEqual([]);
  });

  it("the same when C restarts while offline", async () => {
    fed = await createFederation(["a.test", "b.test", "c.test"], {}, FAST);
    const [a, b, c0] = fed.servers as [FedServer, FedServer, FedServer];
    const room = await threeServerRoom(a, b, c0);
    const { since } = await missedWhileOffline(fed, room);
    const c = await fed.restart(c0);
    fed.network.setOnline(c.name, true);
    const bodies = await eventually(async () => {
      const got = await syncedBodies(c, room.carol.token, room.roomId, since);
      return got.length >= 5 && got;
    }, "the 5 messages in C's /sync after its restart");
    expect(bodies).toEqual(range(5, "m"));
  });

  it("at start-up, C asks the room's online servers without waiting for a reachability signal", async () => {
    fed = await createFederation(["a.test", "b.test", "c.test"], {}, FAST);
    const [a, b, c0] = fed.servers as [FedServer, FedServer, FedServer];
    const room = await threeServerRoom(a, b, c0);
    const since = await syncToken(c0, room.carol.token);
    // C stays on the network (no reachability signal later) but refuses every inbound request.
    fed.network.attach(c0.name, () => Promise.resolve(Response.json({ errcode: "M_UNKNOWN", error: "down" }, { status: 503 })));
    const ids: string[] = [];
    for (const m of range(5, "m")) ids.push(await send(a, room.roomId, room.alice.token, m));
    await eventually(async () => {
      for (const id of ids) if (!(await storedOn(b, id))?.streamPos) return false;
      return true;
    }, "the 5 messages on B");
    fed.network.setOnline(a.name, false);
    const c = await fed.restart(c0);
    const bodies = await eventually(async () => {
      const got = await syncedBodies(c, room.carol.token, room.roomId, since);
      return got.length >= 5 && got;
    }, "the 5 messages in C's /sync after start-up");
    expect(bodies).toEqual(range(5, "m"));
    expect(c.hs.services.catchUp!.results.some((r) => r.server === "b.test" && r.fetched >= 5)).toBe(true);
  });

  it("a room with nothing missed costs one probe per server and no get_missing_events", async () => {
    fed = await createFederation(["a.test", "b.test", "c.test"], {}, FAST);
    const [a, b, c] = fed.servers as [FedServer, FedServer, FedServer];
    await threeServerRoom(a, b, c);
    const fromA = recordInbound(fed, a);
    const fromB = recordInbound(fed, b);
    const before = c.hs.services.catchUp!.results.length;
    fed.network.setOnline(c.name, false);
    fed.network.setOnline(c.name, true);
    await eventually(() => c.hs.services.catchUp!.results.length >= before + 2, "C's passes with A and B");
    await c.hs.services.catchUp!.idle();
    const probes = (seen: string[]) => seen.filter((r) => r.includes("/timestamp_to_event/")).length;
    expect(probes(fromA)).toBe(1);
    expect(probes(fromB)).toBe(1);
    expect([...fromA, ...fromB].filter((r) => /get_missing_events|\/event\/|state_ids|backfill/.test(r))).toEqual([]);
  });

  it("forged events offered during catch-up are refused; the genuine ones arrive", async () => {
    fed = await createFederation(["a.test", "b.test", "c.test"], {}, FAST);
    const [a, b, c] = fed.servers as [FedServer, FedServer, FedServer];
    const room = await threeServerRoom(a, b, c);
    const { since } = await missedWhileOffline(fed, room);
    // B adds to its get_missing_events answer: an event claiming Alice as sender but signed by B,
    // and one "signed" by a.test with a signature that is not A's.
    const claimed = await buildRemote(b, room.roomId, { sender: room.alice.userId, type: "m.room.message", content: { msgtype: "m.text", body: "forged-by-b" } });
    const garbage = await buildRemote(b, room.roomId, { sender: room.alice.userId, type: "m.room.message", content: { msgtype: "m.text", body: "forged-sig" } });
    const garbagePdu = { ...wire(garbage), signatures: { "a.test": { "ed25519:auto": "A".repeat(86) } } };
    fed.network.attach(b.name, async (request) => {
      const response = await b.hs.handle(request);
      if (!new URL(request.url).pathname.includes("/get_missing_events/")) return response;
      const body = (await response.json()) as { events: unknown[] };
      return Response.json({ events: [...body.events, wire(claimed), garbagePdu] }, { status: response.status });
    });
    fed.network.setOnline(c.name, true);
    const bodies = await eventually(async () => {
      const got = await syncedBodies(c, room.carol.token, room.roomId, since);
      return got.length >= 5 && got;
    }, "the 5 genuine messages in C's /sync");
    await c.hs.services.catchUp!.idle();
    expect(bodies).toEqual(range(5, "m"));
    // Both were offered (5 genuine + 2 forged) and went through the checks on receipt.
    expect(c.hs.services.catchUp!.results.some((r) => r.server === "b.test" && r.fetched === 7)).toBe(true);
    expect(await storedOn(c, claimed.eventId)).toBeUndefined();
    expect(await storedOn(c, garbage.eventId)).toBeUndefined();
  });
});
