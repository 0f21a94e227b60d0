/**
 * `/messages` backfill from other servers (issue 9 item 6; federation/backfill.ts): a server that
 * joined late serves the room's earlier history, fetched with `/backfill`, verified, stored as
 * backfilled and paginated in order; history visibility decides what comes and what is shown.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Federation, FedServer } from "./harness.ts";
import { createFederation } from "./harness.ts";
import { eventually } from "./fedtools.ts";
import { storedOn } from "./pduHelpers.ts";

let fed: Federation | undefined;
afterEach(async () => {
  await fed?.close();
  fed = undefined;
});

const FAST = { federationSenderOptions: { minBackoffMs: 20, maxBackoffMs: 200 } };
const enc = encodeURIComponent;
const range = (n: number, tag: string): string[] => Array.from({ length: n }, (_, i) => `${tag}${i + 1}`);

interface Ev {
  type: string;
  event_id: string;
  state_key?: string;
  content: { body?: string; membership?: string };
}

async function send(s: FedServer, roomId: string, token: string, body: string): Promise<string> {
  const r = await s.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${body}`, { msgtype: "m.text", body }, token);
  expect(r.status).toBe(200);
  return r.body.event_id as string;
}

/** Paginates `/messages` backwards from the newest event until no `end` is given; returns every event, oldest first. */
async function paginateBack(s: FedServer, roomId: string, token: string, limit = 10): Promise<{ events: Ev[]; pages: number; tokens: string[] }> {
  const out: Ev[] = [];
  const tokens: string[] = [];
  let from: string | undefined;
  for (let pages = 1; pages <= 50; pages++) {
    const r = await s.call("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=${limit}${from ? `&from=${enc(from)}` : ""}`, undefined, token);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    out.push(...(r.body.chunk as Ev[]));
    if (r.body.end === undefined) return { events: out.reverse(), pages, tokens };
    tokens.push(r.body.end as string);
    from = r.body.end as string;
  }
  throw new Error("pagination did not end");
}

const messages = (events: Ev[]): string[] => events.filter((e) => e.type === "m.room.message").map((e) => e.content.body!);

/** A room on A with `before` messages, then Bob of B joins. */
async function lateJoin(a: FedServer, b: FedServer, before: number, createBody: Record<string, unknown> = { preset: "public_chat" }) {
  const alice = await a.register("alice");
  const bob = await b.register("bob");
  const created = await a.call("POST", "/_matrix/client/v3/createRoom", createBody, alice.token);
  expect(created.status).toBe(200);
  const roomId = created.body.room_id as string;
  for (const m of range(before, "m")) await send(a, roomId, alice.token, m);
  expect((await b.call("POST", `/_matrix/client/v3/join/${enc(roomId)}?server_name=a.test`, {}, bob.token)).status).toBe(200);
  return { roomId, alice, bob };
}

describe("/messages backfill from other servers", () => {
  it("a late joiner paginates back to the room's creation and sees all 30 earlier messages in order", async () => {
    fed = await createFederation(["a.test", "b.test"], {}, FAST);
    const [a, b] = fed.servers as [FedServer, FedServer];
    const { roomId, bob } = await lateJoin(a, b, 30);
    // Before paginating, B holds none of the messages.
    const { events, tokens } = await paginateBack(b, roomId, bob.token);
    expect(messages(events)).toEqual(range(30, "m"));
    expect(events[0]!.type).toBe("m.room.create");
    expect(events.at(-1)).toMatchObject({ type: "m.room.member", state_key: bob.userId });
    // No event twice, and the pages went through the backfilled history with its own tokens.
    expect(new Set(events.map((e) => e.event_id)).size).toBe(events.length);
    expect(tokens.some((t) => t.startsWith("b"))).toBe(true);
    // A backfilled message is stored with state and no stream position, and only once.
    const m1 = events.find((e) => e.content.body === "m1")!;
    expect(await storedOn(b, m1.event_id)).toMatchObject({ backfilled: true });
    expect((await storedOn(b, m1.event_id))!.streamPos).toBeUndefined();
    // Paginating again asks nobody: the history is here now.
    const again = await paginateBack(b, roomId, bob.token, 7);
    expect(again.events.map((e) => e.event_id)).toEqual(events.map((e) => e.event_id));
  });

  it("forward pagination from a backfill token continues in order into the timeline", async () => {
    fed = await createFederation(["a.test", "b.test"], {}, FAST);
    const [a, b] = fed.servers as [FedServer, FedServer];
    const { roomId, bob } = await lateJoin(a, b, 12);
    const back = await paginateBack(b, roomId, bob.token, 5);
    const bToken = back.tokens.find((t) => t.startsWith("b"))!;
    const forward: Ev[] = [];
    let from = bToken;
    for (let i = 0; i < 20; i++) {
      const r = await b.call("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=f&limit=4&from=${enc(from)}`, undefined, bob.token);
      expect(r.status).toBe(200);
      forward.push(...(r.body.chunk as Ev[]));
      if ((r.body.chunk as Ev[]).length === 0) break;
      from = r.body.end as string;
    }
    // What follows the token, in order, ending with Bob's join.
    const ids = back.events.map((e) => e.event_id);
    const after = forward.map((e) => e.event_id);
    expect(after.length).toBeGreaterThan(0);
    expect(after).toEqual(ids.slice(ids.indexOf(after[0]!)));
    expect(forward.at(-1)).toMatchObject({ type: "m.room.member", state_key: bob.userId });
  });

  it("with history_visibility joined, the late joiner sees only what came after its join", async () => {
    fed = await createFederation(["a.test", "b.test"], {}, FAST);
    const [a, b] = fed.servers as [FedServer, FedServer];
    const { roomId, alice, bob } = await lateJoin(a, b, 5, {
      preset: "public_chat",
      initial_state: [{ type: "m.room.history_visibility", state_key: "", content: { history_visibility: "joined" } }],
    });
    for (const m of range(2, "after")) await send(a, roomId, alice.token, m);
    await eventually(async () => (await paginateBack(b, roomId, bob.token)).events.some((e) => e.content.body === "after2"), "the messages after the join on B");
    const { events } = await paginateBack(b, roomId, bob.token);
    // None of the 5 earlier messages (A sends them redacted, B shows none of them); the room's
    // first events, before its visibility was set to "joined", count as "shared" and are shown.
    expect(messages(events)).toEqual(["after1", "after2"]);
    expect(events.some((e) => e.type === "m.room.message" && e.content.body === undefined)).toBe(false);
    expect(events.filter((e) => e.type === "m.room.history_visibility").map((e) => (e.content as { history_visibility?: string }).history_visibility)).toEqual(["joined"]);
  });

  it("an unreachable server is skipped: history backfilled on B reaches C, a later joiner, while A is offline", async () => {
    fed = await createFederation(["a.test", "b.test", "c.test"], {}, FAST);
    const [a, b, c] = fed.servers as [FedServer, FedServer, FedServer];
    const { roomId, bob } = await lateJoin(a, b, 15);
    expect(messages((await paginateBack(b, roomId, bob.token)).events)).toEqual(range(15, "m"));
    const carol = await c.register("carol");
    expect((await c.call("POST", `/_matrix/client/v3/join/${enc(roomId)}?server_name=b.test`, {}, carol.token)).status).toBe(200);
    fed.network.setOnline(a.name, false);
    const { events } = await paginateBack(c, roomId, carol.token);
    expect(messages(events)).toEqual(range(15, "m"));
    expect(events[0]!.type).toBe("m.room.create");
  });

  it("with no other server reachable, pagination ends at the oldest event here", async () => {
    fed = await createFederation(["a.test", "b.test"], {}, FAST);
    const [a, b] = fed.servers as [FedServer, FedServer];
    const { roomId, bob } = await lateJoin(a, b, 5);
    fed.network.setOnline(a.name, false);
    const { events, pages } = await paginateBack(b, roomId, bob.token);
    expect(messages(events)).toEqual([]);
    expect(pages).toBe(1);
  });
});
