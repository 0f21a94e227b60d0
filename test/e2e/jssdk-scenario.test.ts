/**
 * Acceptance: two matrix-js-sdk clients on one `npm run serve` homeserver. They register, set
 * display names, create a room, invite, join, exchange messages, type, send receipts, edit
 * (m.replace), react (m.annotation), redact, and page back through history with /messages; each
 * side observes all of it through its own /sync.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, Direction, EventType, MsgType, RelationType } from "matrix-js-sdk";
import type { MatrixClient, MatrixEvent, Room } from "matrix-js-sdk";
import { startServe } from "./serve.ts";
import type { ServedHomeserver } from "./serve.ts";
import { call, register } from "./http.ts";
import type { Session } from "./http.ts";
import { startClientSynced } from "./jssdk.ts";

/** Polls `check` until it returns a value other than undefined/false; fails after `ms`. */
async function until<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A started js-sdk client, resolved after its first sync. */
async function startClient(base: string, s: Session, initialSyncLimit = 20, lazyLoadMembers = false, threadSupport = false): Promise<MatrixClient> {
  const client = createClient({ baseUrl: base, userId: s.user_id, accessToken: s.access_token, deviceId: s.device_id });
  await startClientSynced(client, `${s.user_id}/${s.device_id} first sync`, { initialSyncLimit, lazyLoadMembers, threadSupport });
  return client;
}

/** Finds the live-timeline event of `room` that satisfies `pred`. */
function findEvent(room: Room | null, pred: (e: MatrixEvent) => boolean): MatrixEvent | undefined {
  return room?.getLiveTimeline().getEvents().find(pred);
}

const bodyOf = (e: MatrixEvent): unknown => e.getContent()["body"];

let hs: ServedHomeserver;
let base: string;
let aliceSession: Session;
let bobSession: Session;
let alice: MatrixClient;
let bob: MatrixClient;
const extraClients: MatrixClient[] = [];
let configDir: string | undefined;

beforeAll(async () => {
  // Alice sends 30 messages in a row below: a conformance run raises rc_message as it would on Synapse.
  configDir = await mkdtemp(join(tmpdir(), "hyphae-scenario-"));
  const config = join(configDir, "hyphae.json");
  await writeFile(config, JSON.stringify({ rc_message: { per_second: 100, burst_count: 1000 } }));
  hs = await startServe({ args: ["--config", config] });
  base = hs.url;
  aliceSession = await register(base, "alice");
  bobSession = await register(base, "bob");
  alice = await startClient(base, aliceSession);
  bob = await startClient(base, bobSession);
}, 120_000);

afterAll(async () => {
  for (const c of [alice, bob, ...extraClients]) c?.stopClient();
  await hs?.stop();
  if (configDir) await rm(configDir, { recursive: true, force: true });
});

describe("matrix-js-sdk scenario on npm run serve", () => {
  let roomId: string;
  let aliceMsg: MatrixEvent;
  let bobMsg: MatrixEvent;

  it("both users set display names", async () => {
    await alice.setDisplayName("Alice Wonder");
    await bob.setDisplayName("Bob Builder");
    const profile = await bob.getProfileInfo(aliceSession.user_id);
    expect(profile.displayname).toBe("Alice Wonder");
  });

  it("Alice creates a room and invites Bob; Bob sees the invite through sync and joins", async () => {
    roomId = (await alice.createRoom({ name: "Scenario room", preset: "private_chat" as never })).room_id;
    await alice.invite(roomId, bobSession.user_id);
    const invited = await until("Bob's invite", () => {
      const r = bob.getRoom(roomId);
      return r?.getMyMembership() === "invite" ? r : undefined;
    });
    expect(invited.name).toBe("Scenario room");
    expect(invited.getDMInviter() ?? invited.getMember(bobSession.user_id)?.events.member?.getSender()).toBe(aliceSession.user_id);
    await bob.joinRoom(roomId);
    await until("Bob joined (Bob's view)", () => bob.getRoom(roomId)?.getMyMembership() === "join");
    await until("Bob joined (Alice's view)", () => alice.getRoom(roomId)?.getMember(bobSession.user_id)?.membership === "join");
    // Display names travel in the member events.
    expect(alice.getRoom(roomId)!.getMember(bobSession.user_id)!.name).toBe("Bob Builder");
    expect(bob.getRoom(roomId)!.getMember(aliceSession.user_id)!.name).toBe("Alice Wonder");
  });

  it("messages go both ways", async () => {
    const { event_id: a } = await alice.sendMessage(roomId, { msgtype: MsgType.Text, body: "Hello Bob" });
    aliceMsg = await until("Bob receives Alice's message", () => findEvent(bob.getRoom(roomId), (e) => e.getId() === a));
    expect(bodyOf(aliceMsg)).toBe("Hello Bob");
    expect(aliceMsg.getSender()).toBe(aliceSession.user_id);
    const { event_id: b } = await bob.sendMessage(roomId, { msgtype: MsgType.Text, body: "Hi Alice" });
    bobMsg = await until("Alice receives Bob's message", () => findEvent(alice.getRoom(roomId), (e) => e.getId() === b));
    expect(bodyOf(bobMsg)).toBe("Hi Alice");
    // Bob's message counts as unread for Alice until she reads it.
    await until("Alice's unread count", () => (alice.getRoom(roomId)!.getUnreadNotificationCount() ?? 0) >= 1);
  });

  it("typing notifications start and stop", async () => {
    await bob.sendTyping(roomId, true, 30_000);
    await until("Alice sees Bob typing", () => alice.getRoom(roomId)?.getMember(bobSession.user_id)?.typing === true);
    await bob.sendTyping(roomId, false, 0);
    await until("Alice sees Bob stop typing", () => alice.getRoom(roomId)?.getMember(bobSession.user_id)?.typing === false);
  });

  it("read receipts reach the other side and clear the unread count", async () => {
    const bobsEventInAlice = findEvent(alice.getRoom(roomId), (e) => e.getId() === bobMsg.getId())!;
    await alice.sendReadReceipt(bobsEventInAlice);
    await until("Bob sees Alice's receipt", () =>
      bob.getRoom(roomId)?.getReceiptsForEvent(findEvent(bob.getRoom(roomId), (e) => e.getId() === bobMsg.getId())!).some((r) => r.userId === aliceSession.user_id),
    );
    expect(bob.getRoom(roomId)!.getEventReadUpTo(aliceSession.user_id)).toBe(bobMsg.getId());
    await until("Alice's unread count cleared", () => alice.getRoom(roomId)!.getUnreadNotificationCount() === 0);
  });

  it("an edit (m.replace) replaces the content on both sides", async () => {
    await alice.sendMessage(roomId, {
      msgtype: MsgType.Text,
      body: "* Hello Bob, edited",
      "m.new_content": { msgtype: MsgType.Text, body: "Hello Bob, edited" },
      "m.relates_to": { rel_type: RelationType.Replace, event_id: aliceMsg.getId()! },
    } as never);
    for (const [who, client] of [["Bob", bob], ["Alice", alice]] as const) {
      await until(`${who} sees the edit`, () => {
        const original = findEvent(client.getRoom(roomId), (e) => e.getId() === aliceMsg.getId());
        return original?.replacingEvent() !== null && original?.replacingEvent() !== undefined && bodyOf(original) === "Hello Bob, edited";
      });
    }
    // The server bundles the edit with the original when it is served again.
    const fetched = await call(base, "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(aliceMsg.getId()!)}`, undefined, bobSession.access_token);
    expect((fetched.body.unsigned as Record<string, any>)["m.relations"]["m.replace"].content["m.new_content"].body).toBe("Hello Bob, edited");
  });

  it("a reaction (m.annotation) is seen by the other side", async () => {
    const { event_id: reactionId } = await bob.sendEvent(roomId, EventType.Reaction, {
      "m.relates_to": { rel_type: RelationType.Annotation, event_id: aliceMsg.getId()!, key: "👍" },
    });
    const reaction = await until("Alice sees the reaction", () => findEvent(alice.getRoom(roomId), (e) => e.getId() === reactionId));
    expect(reaction.getType()).toBe("m.reaction");
    expect(reaction.getRelation()).toMatchObject({ rel_type: "m.annotation", event_id: aliceMsg.getId(), key: "👍" });
    expect(reaction.getSender()).toBe(bobSession.user_id);
    const relations = await call(base, "GET", `/_matrix/client/v1/rooms/${encodeURIComponent(roomId)}/relations/${encodeURIComponent(aliceMsg.getId()!)}/m.annotation`, undefined, aliceSession.access_token);
    expect((relations.body.chunk as { event_id: string }[]).map((e) => e.event_id)).toContain(reactionId);
  });

  it("a redaction removes the content on both sides", async () => {
    await bob.redactEvent(roomId, bobMsg.getId()!);
    for (const [who, client] of [["Alice", alice], ["Bob", bob]] as const) {
      await until(`${who} sees the redaction`, () => findEvent(client.getRoom(roomId), (e) => e.getId() === bobMsg.getId())?.isRedacted());
      expect(bodyOf(findEvent(client.getRoom(roomId), (e) => e.getId() === bobMsg.getId())!)).toBeUndefined();
    }
  });

  it("history pages back through /messages (scrollback and createMessagesRequest)", async () => {
    const sent: string[] = [];
    for (let i = 0; i < 30; i++) {
      const body = `history ${i}`;
      await alice.sendMessage(roomId, { msgtype: MsgType.Text, body });
      sent.push(body);
    }
    // A fresh client for Bob with a short initial timeline (and lazy-loaded members) has to page
    // back for the rest.
    const login = await call(base, "POST", "/_matrix/client/v3/login", { type: "m.login.password", identifier: { type: "m.id.user", user: "bob" }, password: "pw-bob-secret" });
    expect(login.status).toBe(200);
    const bob2 = await startClient(base, login.body as unknown as Session, 5, true);
    extraClients.push(bob2);
    const room = await until("Bob's second device has the room", () => bob2.getRoom(roomId) ?? undefined);
    const initial = room.getLiveTimeline().getEvents().filter((e) => e.getType() === "m.room.message");
    expect(initial.length).toBeLessThanOrEqual(5);
    for (let i = 0; i < 10 && room.getLiveTimeline().getEvents().every((e) => e.getType() !== "m.room.create"); i++) {
      await bob2.scrollback(room, 20);
    }
    const events = room.getLiveTimeline().getEvents();
    expect(events[0]!.getType()).toBe("m.room.create");
    const bodies = events.filter((e) => e.getType() === "m.room.message" && !e.isRelation()).map(bodyOf);
    expect(bodies).toEqual(["Hello Bob, edited", undefined, ...sent]);
    // The raw request, from the live end backwards.
    const page = await bob2.createMessagesRequest(roomId, null, 10, Direction.Backward);
    expect(page.chunk.map((e) => e.content.body)).toEqual(sent.slice(-10).reverse());
    const next = await bob2.createMessagesRequest(roomId, page.end!, 10, Direction.Backward);
    expect(next.chunk.map((e) => e.content.body)).toEqual(sent.slice(-20, -10).reverse());
    // Lazy loading: the sender of the timeline is known by name; the full list loads on demand.
    expect(room.getMember(aliceSession.user_id)?.name).toBe("Alice Wonder");
    await room.loadMembersIfNeeded();
    expect(room.getJoinedMembers().map((m) => m.userId).sort()).toEqual([aliceSession.user_id, bobSession.user_id].sort());
  });

  it("threads: a reply in a thread is counted per thread and cleared by a threaded receipt", async () => {
    const login = await call(base, "POST", "/_matrix/client/v3/login", { type: "m.login.password", identifier: { type: "m.id.user", user: "alice" }, password: "pw-alice-secret" });
    const alice3 = await startClient(base, login.body as unknown as Session, 20, false, true);
    extraClients.push(alice3);
    const { event_id: rootId } = await alice.sendMessage(roomId, { msgtype: MsgType.Text, body: "thread root" });
    const { event_id: replyId } = await bob.sendMessage(roomId, {
      msgtype: MsgType.Text,
      body: "in the thread",
      "m.relates_to": { rel_type: RelationType.Thread, event_id: rootId, is_falling_back: true, "m.in_reply_to": { event_id: rootId } },
    } as never);
    const room = await until("Alice's thread client has the room", () => alice3.getRoom(roomId) ?? undefined);
    const thread = await until("the thread appears", () => room.getThread(rootId) ?? undefined);
    await until("the reply is in the thread", () => thread.timeline.some((e) => e.getId() === replyId));
    await until("the thread counts as unread", () => room.getThreadUnreadNotificationCount(rootId) >= 1);
    const reply = thread.timeline.find((e) => e.getId() === replyId)!;
    await alice3.sendReadReceipt(reply);
    await until("the thread's unread count clears", () => room.getThreadUnreadNotificationCount(rootId) === 0);
    const stored = await call(base, "GET", `/_matrix/client/v3/sync?filter=${encodeURIComponent(JSON.stringify({ room: { rooms: [roomId], timeline: { limit: 1 } } }))}`, undefined, bobSession.access_token);
    const receipts = ((stored.body.rooms as any).join[roomId].ephemeral.events as any[]).find((e) => e.type === "m.receipt");
    expect(receipts.content[replyId]["m.read"][aliceSession.user_id].thread_id).toBe(rootId);
  });

  it("each side's sync saw the other's profile, and the room summary is right", async () => {
    const aRoom = alice.getRoom(roomId)!;
    const bRoom = bob.getRoom(roomId)!;
    expect(aRoom.getJoinedMemberCount()).toBe(2);
    expect(bRoom.getJoinedMemberCount()).toBe(2);
    expect(bRoom.name).toBe("Scenario room");
  });
});
