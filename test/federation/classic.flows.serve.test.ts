/**
 * The federation issue's acceptance beyond join + messages, between three `npm run serve` processes
 * in classic mode over real HTTPS (test/federation/classic.ts): edits, reactions and redactions both
 * ways; typing, receipts and presence; an invite to a third server, a leave and a ban; media fetched
 * through the other server's authenticated endpoint; and delivery across restarts (the receiver
 * stopped, then the sender killed while its queue holds the backlog). One set of processes serves
 * every test; the tests run in order and build on the room made in `beforeAll`.
 */
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ClassicFederation, ClassicNode } from "./classic.ts";
import { eventually, startClassicFederation } from "./classic.ts";

interface User {
  userId: string;
  token: string;
}

let fed: ClassicFederation;
let a: ClassicNode;
let b: ClassicNode;
let c: ClassicNode;
let alice: User;
let bob: User;
let carol: User;
let dave: User;
/** A's public room `#flows:A`, which Bob joined by its alias. */
let roomId: string;

const enc = encodeURIComponent;
let txnCounter = 0;

/** Sends an event and returns its ID. */
async function send(node: ClassicNode, user: User, room: string, type: string, content: Record<string, unknown>): Promise<string> {
  const r = await node.call("PUT", `/_matrix/client/v3/rooms/${enc(room)}/send/${enc(type)}/t${++txnCounter}`, content, user.token);
  expect(r.status, `${r.status} ${JSON.stringify(r.body)}\n${node.output()}`).toBe(200);
  return r.body.event_id as string;
}

const say = (node: ClassicNode, user: User, room: string, body: string): Promise<string> => send(node, user, room, "m.room.message", { msgtype: "m.text", body });

/** The event as `node` serves it to `user`, once it has it (undefined until then). */
async function eventOn(node: ClassicNode, user: User, room: string, eventId: string): Promise<Record<string, any> | undefined> {
  const r = await node.call("GET", `/_matrix/client/v3/rooms/${enc(room)}/event/${enc(eventId)}`, undefined, user.token);
  return r.status === 200 ? r.body : undefined;
}

/** The event IDs of `/relations` for `eventId` (optionally one rel_type). */
async function relations(node: ClassicNode, user: User, room: string, eventId: string, relType?: string): Promise<string[]> {
  const r = await node.call("GET", `/_matrix/client/v1/rooms/${enc(room)}/relations/${enc(eventId)}${relType ? `/${enc(relType)}` : ""}?limit=50`, undefined, user.token);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return (r.body.chunk as { event_id: string }[]).map((e) => e.event_id);
}

async function sync(node: ClassicNode, user: User, since?: string): Promise<Record<string, any>> {
  const r = await node.call("GET", `/_matrix/client/v3/sync?timeout=0${since ? `&since=${enc(since)}` : ""}`, undefined, user.token);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body;
}

/** Polls `/sync` from `since` until `pick` finds something in it, and returns that. */
function syncUntil<T>(node: ClassicNode, user: User, since: string, what: string, pick: (s: Record<string, any>) => T | undefined, timeoutMs = 30_000): Promise<T> {
  return eventually(what, async () => pick(await sync(node, user, since)), timeoutMs);
}

const ephemeral = (s: Record<string, any>, room: string, type: string): Record<string, any> | undefined =>
  (s.rooms?.join?.[room]?.ephemeral?.events as Record<string, any>[] | undefined)?.find((e) => e.type === type);

/** A member's membership in `room` as `node` holds it. */
async function membership(node: ClassicNode, user: User, room: string, of: string): Promise<string | undefined> {
  const r = await node.call("GET", `/_matrix/client/v3/rooms/${enc(room)}/state/m.room.member/${enc(of)}`, undefined, user.token);
  return r.status === 200 ? (r.body.membership as string) : undefined;
}

/** The text bodies of the room's messages on `node`, oldest first. */
async function bodies(node: ClassicNode, user: User, room: string): Promise<string[]> {
  const r = await node.call("GET", `/_matrix/client/v3/rooms/${enc(room)}/messages?dir=b&limit=200`, undefined, user.token);
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return (r.body.chunk as { type: string; content: { body?: string } }[])
    .filter((e) => e.type === "m.room.message" && typeof e.content.body === "string")
    .map((e) => e.content.body!)
    .reverse();
}

beforeAll(async () => {
  fed = await startClassicFederation(3);
  [a, b, c] = fed.nodes as [ClassicNode, ClassicNode, ClassicNode];
  [alice, bob, carol, dave] = await Promise.all([a.register("alice"), b.register("bob"), c.register("carol"), c.register("dave")]);
  const created = await a.call("POST", "/_matrix/client/v3/createRoom", { room_alias_name: "flows", preset: "public_chat" }, alice.token);
  expect(created.status, a.output()).toBe(200);
  roomId = created.body.room_id as string;
  const joined = await b.call("POST", `/_matrix/client/v3/join/${enc(`#flows:${a.name}`)}`, {}, bob.token);
  expect(joined, b.output()).toEqual({ status: 200, body: { room_id: roomId } });
  await eventually("A sees bob's join", async () => ((await membership(a, alice, roomId, bob.userId)) === "join" ? true : undefined));
}, 240_000);
afterAll(async () => {
  await fed?.close();
}, 60_000);

describe("federation flows over HTTPS between three npm run serve processes", () => {
  it("federation is served on the HTTPS listener only; the plain HTTP one answers 404 M_UNRECOGNIZED", async () => {
    for (const path of ["/_matrix/federation/v1/version", "/_matrix/key/v2/server"]) {
      const plain = await fetch(`${a.httpUrl}${path}`);
      expect(plain.status, path).toBe(404);
      expect(await plain.json()).toEqual({ errcode: "M_UNRECOGNIZED", error: "Unrecognized request" });
      expect((await a.https(path)).status, path).toBe(200);
    }
    // An authenticated federation request over plain HTTP is not looked at either.
    const signed = await fetch(`${a.httpUrl}/_matrix/federation/v1/query/profile?user_id=${enc(alice.userId)}`, { headers: { Authorization: 'X-Matrix origin="x",key="ed25519:a",sig="x"' } });
    expect(signed.status).toBe(404);
    // The Client-Server API is on both.
    expect((await fetch(`${a.httpUrl}/_matrix/client/versions`)).status).toBe(200);
    expect((await a.https("/_matrix/client/versions")).status).toBe(200);
  });

  it("edits, reactions and redactions flow both ways and reach the other side's client", async () => {
    // A → B: Alice's message, then her edit of it.
    const m1 = await say(a, alice, roomId, "first draft");
    await eventually("B has m1", () => eventOn(b, bob, roomId, m1));
    const edit1 = await send(a, alice, roomId, "m.room.message", {
      msgtype: "m.text",
      body: "* final text",
      "m.new_content": { msgtype: "m.text", body: "final text" },
      "m.relates_to": { rel_type: "m.replace", event_id: m1 },
    });
    // B → A: Bob reacts to Alice's message.
    const reaction1 = await send(b, bob, roomId, "m.reaction", { "m.relates_to": { rel_type: "m.annotation", event_id: m1, key: "👍" } });

    // Bob's client sees the edit in /relations and aggregated on the original.
    await eventually("B lists the edit of m1", async () => ((await relations(b, bob, roomId, m1, "m.replace")).includes(edit1) ? true : undefined));
    const original = await eventOn(b, bob, roomId, m1);
    expect(original?.unsigned?.["m.relations"]?.["m.replace"]?.event_id).toBe(edit1);
    // Alice's client sees Bob's reaction.
    await eventually("A lists bob's reaction", async () => ((await relations(a, alice, roomId, m1, "m.annotation")).includes(reaction1) ? true : undefined));
    expect((await eventOn(a, alice, roomId, reaction1))?.sender).toBe(bob.userId);

    // B → A: Bob's message and his edit; A → B: Alice reacts to it.
    const m2 = await say(b, bob, roomId, "bob says hi");
    await eventually("A has m2", () => eventOn(a, alice, roomId, m2));
    const edit2 = await send(b, bob, roomId, "m.room.message", {
      msgtype: "m.text",
      body: "* bob says hello",
      "m.new_content": { msgtype: "m.text", body: "bob says hello" },
      "m.relates_to": { rel_type: "m.replace", event_id: m2 },
    });
    const reaction2 = await send(a, alice, roomId, "m.reaction", { "m.relates_to": { rel_type: "m.annotation", event_id: m2, key: "🎉" } });
    await eventually("A lists bob's edit of m2", async () => ((await relations(a, alice, roomId, m2, "m.replace")).includes(edit2) ? true : undefined));
    expect((await eventOn(a, alice, roomId, m2))?.unsigned?.["m.relations"]?.["m.replace"]?.event_id).toBe(edit2);
    await eventually("B lists alice's reaction", async () => ((await relations(b, bob, roomId, m2, "m.annotation")).includes(reaction2) ? true : undefined));

    // A → B: Alice redacts her reaction; Bob's client sees it redacted and gone from /relations.
    const redaction1 = await send(a, alice, roomId, "m.room.redaction", { redacts: reaction2, reason: "oops" });
    const redactedOnB = await eventually("B holds alice's reaction redacted", async () => {
      const e = await eventOn(b, bob, roomId, reaction2);
      return e?.unsigned?.redacted_because ? e : undefined;
    });
    expect(redactedOnB.content).toEqual({});
    expect(redactedOnB.unsigned.redacted_because.event_id).toBe(redaction1);
    expect(await relations(b, bob, roomId, m2, "m.annotation")).not.toContain(reaction2);

    // B → A: Bob redacts his own message; Alice's /messages shows it redacted.
    const redaction2 = await send(b, bob, roomId, "m.room.redaction", { redacts: m2 });
    await eventually("A's /messages shows m2 redacted", async () => {
      const page = await a.call("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=50`, undefined, alice.token);
      const e = (page.body.chunk as Record<string, any>[]).find((x) => x.event_id === m2);
      return e?.unsigned?.redacted_because?.event_id === redaction2 && Object.keys(e.content as object).length === 0 ? true : undefined;
    });
    // The redaction event itself reached A as Bob sent it.
    const onA = await eventOn(a, alice, roomId, redaction2);
    expect(onA?.content?.redacts ?? onA?.redacts).toBe(m2);
  }, 120_000);

  it("typing, read receipts and presence reach the other server's /sync, both ways", async () => {
    const bobSince = (await sync(b, bob)).next_batch as string;
    const aliceSince = (await sync(a, alice)).next_batch as string;
    const fromBob = await say(b, bob, roomId, "read me, alice");
    const fromAlice = await say(a, alice, roomId, "read me, bob");
    await eventually("A has bob's message", () => eventOn(a, alice, roomId, fromBob));
    await eventually("B has alice's message", () => eventOn(b, bob, roomId, fromAlice));

    // A → B: typing, a read receipt on Bob's message, presence with a status message.
    expect((await a.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/typing/${enc(alice.userId)}`, { typing: true, timeout: 30_000 }, alice.token)).status).toBe(200);
    expect((await a.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/receipt/m.read/${enc(fromBob)}`, {}, alice.token)).status).toBe(200);
    expect((await a.call("PUT", `/_matrix/client/v3/presence/${enc(alice.userId)}/status`, { presence: "online", status_msg: "at lunch" }, alice.token)).status).toBe(200);
    await syncUntil(b, bob, bobSince, "bob's /sync shows alice typing", (s) => ((ephemeral(s, roomId, "m.typing")?.content?.user_ids as string[] | undefined)?.includes(alice.userId) ? true : undefined));
    await syncUntil(b, bob, bobSince, "bob's /sync shows alice's receipt", (s) => (ephemeral(s, roomId, "m.receipt")?.content?.[fromBob]?.["m.read"]?.[alice.userId]?.ts ? true : undefined));
    await syncUntil(b, bob, bobSince, "bob's /sync shows alice's presence", (s) =>
      (s.presence?.events as Record<string, any>[] | undefined)?.find((e) => e.sender === alice.userId && e.content?.presence === "online" && e.content?.status_msg === "at lunch"),
    );

    // B → A: the same from Bob.
    expect((await b.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/typing/${enc(bob.userId)}`, { typing: true, timeout: 30_000 }, bob.token)).status).toBe(200);
    expect((await b.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/receipt/m.read/${enc(fromAlice)}`, {}, bob.token)).status).toBe(200);
    expect((await b.call("PUT", `/_matrix/client/v3/presence/${enc(bob.userId)}/status`, { presence: "unavailable", status_msg: "away" }, bob.token)).status).toBe(200);
    await syncUntil(a, alice, aliceSince, "alice's /sync shows bob typing", (s) => ((ephemeral(s, roomId, "m.typing")?.content?.user_ids as string[] | undefined)?.includes(bob.userId) ? true : undefined));
    await syncUntil(a, alice, aliceSince, "alice's /sync shows bob's receipt", (s) => (ephemeral(s, roomId, "m.receipt")?.content?.[fromAlice]?.["m.read"]?.[bob.userId]?.ts ? true : undefined));
    await syncUntil(a, alice, aliceSince, "alice's /sync shows bob's presence", (s) =>
      (s.presence?.events as Record<string, any>[] | undefined)?.find((e) => e.sender === bob.userId && e.content?.presence === "unavailable" && e.content?.status_msg === "away"),
    );

    // Typing stopped on A reaches B too.
    const beforeStop = (await sync(b, bob)).next_batch as string;
    expect((await a.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/typing/${enc(alice.userId)}`, { typing: false }, alice.token)).status).toBe(200);
    await syncUntil(b, bob, beforeStop, "bob's /sync shows alice stopped typing", (s) => {
      const ids = ephemeral(s, roomId, "m.typing")?.content?.user_ids as string[] | undefined;
      return ids && !ids.includes(alice.userId) ? true : undefined;
    });
  }, 120_000);

  it("media uploaded on A is downloaded byte for byte through B's authenticated media endpoint", async () => {
    const bytes = randomBytes(300 * 1024);
    const up = await fetch(`${a.httpUrl}/_matrix/media/v3/upload?filename=blob.bin`, {
      method: "POST",
      headers: { Authorization: `Bearer ${alice.token}`, "Content-Type": "application/x-test-blob" },
      body: bytes,
    });
    expect(up.status).toBe(200);
    const uri = ((await up.json()) as { content_uri: string }).content_uri;
    expect(uri.startsWith(`mxc://${a.name}/`)).toBe(true);
    const mediaId = uri.slice(`mxc://${a.name}/`.length);
    const url = `${b.httpUrl}/_matrix/client/v1/media/download/${a.name}/${enc(mediaId)}`;

    // Without a token: refused.
    const anonymous = await fetch(url);
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { errcode: string }).errcode).toBe("M_MISSING_TOKEN");

    // Twice: fetched over federation, then from B's cache; the same bytes and type both times.
    for (let i = 0; i < 2; i++) {
      const down = await fetch(url, { headers: { Authorization: `Bearer ${bob.token}` }, signal: AbortSignal.timeout(60_000) });
      expect(down.status, b.output()).toBe(200);
      expect(down.headers.get("content-type")).toBe("application/x-test-blob");
      expect(Buffer.from(await down.arrayBuffer()).equals(bytes)).toBe(true);
    }

    // Media A does not have: 404 through B.
    const missing = await fetch(`${b.httpUrl}/_matrix/client/v1/media/download/${a.name}/nosuchmedia`, { headers: { Authorization: `Bearer ${bob.token}` } });
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { errcode: string }).errcode).toBe("M_NOT_FOUND");
  }, 120_000);

  it("B stopped while A sends 20 messages gets all 20 in order after its restart; so does a backlog across a kill of A", async () => {
    // A room of its own, so the counts are exact.
    const created = await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, alice.token);
    expect(created.status).toBe(200);
    const room = created.body.room_id as string;
    const joined = await b.call("POST", `/_matrix/client/v3/join/${enc(room)}?server_name=${enc(a.name)}`, {}, bob.token);
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);
    await eventually("A sees bob in the restart room", async () => ((await membership(a, alice, room, bob.userId)) === "join" ? true : undefined));

    const expectAll = async (prefix: string): Promise<void> => {
      const want = Array.from({ length: 20 }, (_, i) => `${prefix} ${i}`);
      const got = await eventually(
        `B has all 20 "${prefix}" messages`,
        async () => {
          const seen = (await bodies(b, bob, room)).filter((x) => x.startsWith(`${prefix} `));
          return seen.length >= 20 ? seen : undefined;
        },
        // A's backoff for B (doubling from 2 s while B was down) may run before it tries again.
        150_000,
      );
      // In order, none twice.
      expect(got).toEqual(want);
    };

    // 1. B stopped; A sends 20; B comes back.
    await fed.stop(b);
    for (let i = 0; i < 20; i++) await say(a, alice, room, `while B was down ${i}`);
    await fed.start(b);
    await expectAll("while B was down");

    // 2. B stopped; A sends 20, which wait in A's queue for B; A is killed (no clean shutdown)
    //    with them still there, then A and B start again.
    await fed.stop(b);
    for (let i = 0; i < 20; i++) await say(a, alice, room, `queued on A ${i}`);
    const queuedForB = (): number => {
      const db = new DatabaseSync(join(a.dataDir, "homeserver.sqlite"), { readOnly: true });
      try {
        const row = db.prepare("SELECT count(*) AS n FROM t_federation_queue WHERE k >= ? AND k < ?").get(`${b.name}\u001f`, `${b.name}\u0020`) as { n: number };
        return Number(row.n);
      } finally {
        db.close();
      }
    };
    await eventually("A's queue holds the 20 events for B", async () => (queuedForB() >= 20 ? true : undefined));
    await fed.stop(a, "SIGKILL");
    expect(queuedForB()).toBeGreaterThanOrEqual(20);
    await fed.start(a);
    await fed.start(b);
    await expectAll("queued on A");
    // Nothing of the first backlog came twice either.
    expect((await bodies(b, bob, room)).filter((x) => x.startsWith("while B was down "))).toHaveLength(20);
  }, 420_000);

  it("C's user is invited and joins; B's user leaves; A bans a user of C, who can then not send", async () => {
    // A invites Carol on C; her client sees the invite and she joins through A.
    const carolSince = (await sync(c, carol)).next_batch as string;
    const invited = await a.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, { user_id: carol.userId }, alice.token);
    expect(invited.status, `${JSON.stringify(invited.body)}\n${a.output()}`).toBe(200);
    await syncUntil(c, carol, carolSince, "carol's /sync shows the invite", (s) => s.rooms?.invite?.[roomId]);
    const carolJoined = await c.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/join`, {}, carol.token);
    expect(carolJoined, c.output()).toEqual({ status: 200, body: { room_id: roomId } });
    await eventually("A sees carol joined", async () => ((await membership(a, alice, roomId, carol.userId)) === "join" ? true : undefined));
    await eventually("B sees carol joined", async () => ((await membership(b, bob, roomId, carol.userId)) === "join" ? true : undefined));
    const onC = await c.call("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/joined_members`, undefined, carol.token);
    expect(Object.keys(onC.body.joined as object).sort()).toEqual([alice.userId, bob.userId, carol.userId].sort());
    // Carol's message reaches A and B.
    await say(c, carol, roomId, "carol is here");
    await eventually("A has carol's message", async () => ((await bodies(a, alice, roomId)).includes("carol is here") ? true : undefined));
    await eventually("B has carol's message", async () => ((await bodies(b, bob, roomId)).includes("carol is here") ? true : undefined));

    // Dave, also on C, joins by the alias and speaks.
    const daveJoined = await c.call("POST", `/_matrix/client/v3/join/${enc(`#flows:${a.name}`)}`, {}, dave.token);
    expect(daveJoined.status, JSON.stringify(daveJoined.body)).toBe(200);
    await say(c, dave, roomId, "dave before the ban");
    await eventually("A has dave's message", async () => ((await bodies(a, alice, roomId)).includes("dave before the ban") ? true : undefined));

    // Bob leaves: A and C see it.
    expect((await b.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {}, bob.token)).status).toBe(200);
    await eventually("A sees bob's leave", async () => ((await membership(a, alice, roomId, bob.userId)) === "leave" ? true : undefined));
    await eventually("C sees bob's leave", async () => ((await membership(c, carol, roomId, bob.userId)) === "leave" ? true : undefined));

    // Alice bans Dave: C sees the ban, Dave's client is told, and C refuses his next message.
    const daveSince = (await sync(c, dave)).next_batch as string;
    const banned = await a.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/ban`, { user_id: dave.userId, reason: "spam" }, alice.token);
    expect(banned.status, JSON.stringify(banned.body)).toBe(200);
    await eventually("C sees dave's ban", async () => ((await membership(c, carol, roomId, dave.userId)) === "ban" ? true : undefined));
    await syncUntil(c, dave, daveSince, "dave's /sync shows his ban", (s) =>
      (s.rooms?.leave?.[roomId]?.timeline?.events as Record<string, any>[] | undefined)?.find((e) => e.type === "m.room.member" && e.state_key === dave.userId && e.content?.membership === "ban"),
    );
    const refused = await c.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/after-ban`, { msgtype: "m.text", body: "dave after the ban" }, dave.token);
    expect(refused.status).toBe(403);
    expect(refused.body.errcode).toBe("M_FORBIDDEN");
    // Carol still speaks after the ban, and A gets her message but nothing from Dave after his ban.
    await say(c, carol, roomId, "carol after the ban");
    await eventually("A has carol's later message", async () => ((await bodies(a, alice, roomId)).includes("carol after the ban") ? true : undefined));
    expect(await bodies(a, alice, roomId)).not.toContain("dave after the ban");
    // Bob, gone, no longer gets the room's messages.
    expect(await bodies(b, bob, roomId).catch(() => [])).not.toContain("carol after the ban");
  }, 180_000);
});
