/**
 * Issue 12, "Account deactivation with erase: true" (account_deactivation.yaml): users who join
 * after the erasure are served redacted copies of the account's messages; users who could see
 * them before keep the full copies; without `erase` nothing changes.
 */
import { describe, it, expect } from "vitest";
import { testServer } from "./accountHarness.ts";
import type { TestServer } from "./accountHarness.ts";

const V3 = "/_matrix/client/v3";
type User = { userId: string; token: string };

async function deactivate(t: TestServer, u: User, erase: boolean): Promise<void> {
  const localpart = u.userId.slice(1, u.userId.indexOf(":"));
  const r = await t.call("POST", `${V3}/account/deactivate`, { erase, auth: { type: "m.login.password", identifier: { type: "m.id.user", user: localpart }, password: "pw" } }, { token: u.token });
  expect(r.status).toBe(200);
}

/** The message bodies a user is served by /messages, /event, /context and an initial /sync for one event. */
async function views(t: TestServer, u: User, roomId: string, eventId: string): Promise<Record<string, unknown>> {
  const r = encodeURIComponent(roomId);
  const messages = (await t.call("GET", `${V3}/rooms/${r}/messages?dir=b&limit=50`, undefined, { token: u.token })).body.chunk as { event_id: string; content: unknown }[];
  const event = (await t.call("GET", `${V3}/rooms/${r}/event/${encodeURIComponent(eventId)}`, undefined, { token: u.token })).body;
  const context = (await t.call("GET", `${V3}/rooms/${r}/context/${encodeURIComponent(eventId)}?limit=0`, undefined, { token: u.token })).body;
  const sync = (await t.call("GET", `${V3}/sync?filter=${encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 50 } } }))}`, undefined, { token: u.token })).body;
  const timeline = sync.rooms.join[roomId].timeline.events as { event_id: string; content: unknown }[];
  return {
    messages: messages.find((e) => e.event_id === eventId)?.content,
    event: event.content,
    context: context.event?.content,
    sync: timeline.find((e) => e.event_id === eventId)?.content,
  };
}

const all = (content: unknown) => ({ messages: content, event: content, context: content, sync: content });

async function scene(erase: boolean) {
  const t = await testServer();
  const alice = await t.register("alice", "pw");
  const bob = await t.register("bob", "pw");
  const carol = await t.register("carol", "pw");
  const dave = await t.register("dave", "pw");
  const roomId = (await t.call("POST", `${V3}/createRoom`, { preset: "public_chat", power_level_content_override: { events: { "m.room.topic": 0 } } }, { token: bob.token })).body.room_id as string;
  const r = encodeURIComponent(roomId);
  await t.call("POST", `${V3}/join/${r}`, {}, { token: alice.token });
  const secret = (await t.call("PUT", `${V3}/rooms/${r}/send/m.room.message/s1`, { msgtype: "m.text", body: "my secret" }, { token: alice.token })).body.event_id as string;
  const topic = (await t.call("PUT", `${V3}/rooms/${r}/state/m.room.topic/`, { topic: "alice's topic" }, { token: alice.token })).body.event_id as string;
  expect(secret).toBeTypeOf("string");
  // Carol joins after the message but before the erasure: she had visibility on it (shared history).
  await t.call("POST", `${V3}/join/${r}`, {}, { token: carol.token });
  await deactivate(t, alice, erase);
  await t.call("POST", `${V3}/join/${r}`, {}, { token: dave.token });
  return { t, alice, bob, carol, dave, roomId, secret, topic };
}

describe("deactivation with erase: true", () => {
  it("users who join after the erasure get redacted copies of the account's messages everywhere", async () => {
    const { t, dave, roomId, secret } = await scene(true);
    expect(await views(t, dave, roomId, secret)).toEqual(all({}));
    // No redaction was sent: the copy is redacted, not the event (no redacted_because).
    const event = (await t.call("GET", `${V3}/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(secret)}`, undefined, { token: dave.token })).body;
    expect(event.unsigned?.redacted_because).toBeUndefined();
    expect(event.sender).toBe("@alice:hs.test");
  });

  it("users who were in the room before the erasure keep the full message", async () => {
    const { t, bob, carol, roomId, secret } = await scene(true);
    expect(await views(t, bob, roomId, secret)).toEqual(all({ msgtype: "m.text", body: "my secret" }));
    expect(await views(t, carol, roomId, secret)).toEqual(all({ msgtype: "m.text", body: "my secret" }));
  });

  it("search does not match the redacted copies by their text (and still does for earlier members)", async () => {
    const { t, bob, dave, secret } = await scene(true);
    const search = async (u: User) =>
      ((await t.call("POST", `${V3}/search`, { search_categories: { room_events: { search_term: "secret" } } }, { token: u.token })).body.search_categories.room_events.results as { result: { event_id: string } }[]).map((r) => r.result.event_id);
    expect(await search(dave)).toEqual([]);
    expect(await search(bob)).toEqual([secret]);
  });

  it("the account's state events keep their content (the room's state stays whole)", async () => {
    const { t, dave, roomId, topic } = await scene(true);
    const got = (await t.call("GET", `${V3}/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(topic)}`, undefined, { token: dave.token })).body;
    expect(got.content).toEqual({ topic: "alice's topic" });
  });

  it("without erase, later joiners see the messages unchanged", async () => {
    const { t, dave, roomId, secret } = await scene(false);
    expect(await views(t, dave, roomId, secret)).toEqual(all({ msgtype: "m.text", body: "my secret" }));
  });
});
