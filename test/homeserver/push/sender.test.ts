/**
 * Push notifications through the homeserver's handler with a real `fetch` and a real HTTP push
 * gateway: what is sent for a message and an invite (both formats), who is not notified, retry
 * after a gateway failure, rejected pushkeys, and the pushers a password change or device
 * deletion removes.
 */
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { TestServer, room } from "../roomserver/harness.ts";
import type { TestUser } from "../roomserver/harness.ts";
import { startGateway } from "./gateway.ts";
import { tokenHash } from "../../../src/homeserver/auth/tokens.ts";
import type { TestGateway } from "./gateway.ts";

let t: TestServer;
let gw: TestGateway;
let alice: TestUser;
let bob: TestUser;

const pusher = (url: string, extra: Record<string, unknown> = {}, data: Record<string, unknown> = {}): Record<string, unknown> => ({
  kind: "http", app_id: "org.example.app", pushkey: "bob-key", app_display_name: "App", device_display_name: "Phone", lang: "en",
  data: { url, custom: "kept", ...data }, ...extra,
});

/** Waits until the push queue is empty (every queued notification settled), bounded. */
async function queueDrained(ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while ((await t.hs.services.store.read((tx) => tx.count("push_queue"))) > 0) {
    if (Date.now() > end) throw new Error("push queue not drained");
    await new Promise((r) => setTimeout(r, 20));
  }
}

beforeEach(async () => {
  gw = await startGateway();
  t = await TestServer.start(undefined, { fetch });
  alice = await t.user("alice", { displayname: "Alice" });
  bob = await t.user("bob");
});
afterEach(async () => {
  await t.close();
  await gw.close();
});

describe("push gateway notifications", () => {
  it("a message in a one-to-one room reaches the gateway with the event, counts, device and tweaks", async () => {
    await t.ok("POST", "/pushers/set", bob, pusher(gw.url));
    const roomId = await t.createRoom(alice, { name: "Lunch", preset: "public_chat" });
    await t.join(bob, roomId);
    const eventId = await t.send(alice, roomId, "hello bob");
    const [r] = await gw.waitFor(1);
    expect(r!.path).toBe("/_matrix/push/v1/notify");
    expect(r!.contentType).toMatch(/^application\/json/);
    const n = r!.body.notification;
    expect(n).toMatchObject({
      event_id: eventId,
      room_id: roomId,
      type: "m.room.message",
      sender: alice.userId,
      sender_display_name: "Alice",
      room_name: "Lunch",
      prio: "high",
      content: { msgtype: "m.text", body: "hello bob" },
      counts: { unread: 1 },
    });
    expect(n.user_is_target).toBeUndefined();
    expect(n.devices).toHaveLength(1);
    const d = n.devices[0];
    // data is forwarded without url; tweaks from .m.rule.room_one_to_one.
    expect(d).toMatchObject({ app_id: "org.example.app", pushkey: "bob-key", data: { custom: "kept" }, tweaks: { sound: "default" } });
    expect(d.data.url).toBeUndefined();
    expect(d.pushkey_ts).toBeTypeOf("number");
    expect(d.pushkey_ts).toBeLessThan(1e11); // seconds, not milliseconds

    // A second message: the unread count grows; after a read receipt it starts again.
    const second = await t.send(alice, roomId, "still there?");
    expect((await gw.waitFor(2))[1]!.body.notification.counts).toEqual({ unread: 2 });
    await t.ok("POST", room(roomId, `/receipt/m.read/${encodeURIComponent(second)}`), bob, {});
    await t.send(alice, roomId, "third");
    expect((await gw.waitFor(3))[2]!.body.notification.counts).toEqual({ unread: 1 });
    await queueDrained();
  });

  it("an invite reaches the invitee's gateway; event_id_only sends only the IDs, counts and devices", async () => {
    await t.ok("POST", "/pushers/set", bob, pusher(gw.url, {}, { format: "event_id_only" }));
    const roomId = await t.createRoom(alice, { name: "Secret plans" });
    await t.invite(alice, roomId, bob.userId);
    const [r] = await gw.waitFor(1);
    const n = r!.body.notification;
    expect(n.event_id).toMatch(/^\$/);
    expect(n.room_id).toBe(roomId);
    expect(n.devices[0]).toMatchObject({ app_id: "org.example.app", pushkey: "bob-key", data: { format: "event_id_only", custom: "kept" }, tweaks: { sound: "default" } });
    expect(n.counts).toEqual({});
    for (const field of ["type", "sender", "content", "room_name", "sender_display_name", "user_is_target"]) expect(n[field]).toBeUndefined();
  });

  it("the full format of an invite says the user is its target", async () => {
    await t.ok("POST", "/pushers/set", bob, pusher(gw.url));
    const roomId = await t.createRoom(alice);
    await t.invite(alice, roomId, bob.userId);
    const n = (await gw.waitFor(1))[0]!.body.notification;
    expect(n).toMatchObject({ type: "m.room.member", sender: alice.userId, user_is_target: true, content: { membership: "invite" } });
  });

  it("notifies nobody for their own events, events that the rules silence, ignored senders and rooms they are not in", async () => {
    const carol = await t.user("carol");
    await t.ok("POST", "/pushers/set", bob, pusher(gw.url));
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, roomId);
    await t.join(carol, roomId);
    const other = await t.createRoom(alice, { preset: "public_chat" });
    await t.send(bob, roomId, "my own message");
    await t.send(alice, roomId, { msgtype: "m.notice", body: "a notice" });
    await t.send(alice, other, "bob is not in this room");
    await t.ok("PUT", `/user/${encodeURIComponent(bob.userId)}/account_data/m.ignored_user_list`, bob, { ignored_users: { [carol.userId]: {} } });
    await t.send(carol, roomId, "ignored");
    const marker = await t.send(alice, roomId, "this one notifies");
    const got = await gw.waitFor(1);
    await queueDrained();
    expect(got.map((r) => r.body.notification.event_id)).toEqual([marker]);
    expect(gw.received).toHaveLength(1);
  });

  it("retries a failing gateway with backoff and delivers in order", async () => {
    await t.ok("POST", "/pushers/set", bob, pusher(gw.url));
    let failures = 2;
    gw.respond = () => (failures-- > 0 ? { status: 503 } : { status: 200 });
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, roomId);
    const first = await t.send(alice, roomId, "one");
    const second = await t.send(alice, roomId, "two");
    // 503, retry after 1 s: 503, retry after 2 s: 200, then the second.
    const got = await gw.waitFor(4, 8000);
    expect(got.map((r) => r.body.notification.event_id)).toEqual([first, first, first, second]);
    await queueDrained();
  }, 15_000);

  it("removes a pusher whose pushkey the gateway rejects, and sends it nothing more", async () => {
    await t.ok("POST", "/pushers/set", bob, pusher(gw.url));
    await t.ok("POST", "/pushers/set", bob, pusher(gw.url, { pushkey: "good-key", append: true }));
    gw.respond = (r) => ({ status: 200, rejected: r.body.notification.devices.map((d: any) => d.pushkey).filter((k: string) => k === "bob-key") });
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, roomId);
    await t.send(alice, roomId, "hi");
    await gw.waitFor(2);
    await queueDrained();
    expect((await t.ok("GET", "/pushers", bob)).pushers.map((p: any) => p.pushkey)).toEqual(["good-key"]);
    await t.send(alice, roomId, "again");
    await gw.waitFor(3);
    await queueDrained();
    expect(gw.received.slice(2).map((r) => r.body.notification.devices[0].pushkey)).toEqual(["good-key"]);
  });

  it("GET /pushers shows the spec's Pusher object only", async () => {
    await t.ok("POST", "/pushers/set", bob, pusher(gw.url));
    const [p] = (await t.ok("GET", "/pushers", bob)).pushers;
    expect(Object.keys(p).sort()).toEqual(["app_display_name", "app_id", "data", "device_display_name", "kind", "lang", "pushkey"]);
  });
});

describe("pushers and sessions", () => {
  /** A second device of bob's with its own token. */
  async function secondDevice(): Promise<string> {
    const token = "tok_bob_second";
    await t.hs.services.store.write(async (tx) => {
      tx.put("devices", `${bob.userId}\u001fPHONE2`, { userId: bob.userId, deviceId: "PHONE2", createdAt: 1 });
      tx.put("access_tokens", tokenHash(token), { userId: bob.userId, deviceId: "PHONE2" });
      tx.put("device_tokens", `${bob.userId}\u001fPHONE2\u001f${tokenHash(token)}`, true);
    });
    return token;
  }
  const pushkeys = async (): Promise<string[]> => (await t.ok("GET", "/pushers", bob)).pushers.map((p: any) => p.pushkey).sort();

  it("a password change deletes the pushers of the other access tokens", async () => {
    const other = await secondDevice();
    await t.ok("POST", "/pushers/set", bob, pusher(gw.url, { pushkey: "mine" }));
    await t.ok("POST", "/pushers/set", other, pusher(gw.url, { pushkey: "theirs", append: true }));
    expect(await pushkeys()).toEqual(["mine", "theirs"]);
    // bob has no password: the dummy stage is enough; the other device stays logged in.
    const first = await t.req("POST", "/account/password", bob, { new_password: "new secret", logout_devices: false });
    const session = first.body.session as string;
    await t.ok("POST", "/account/password", bob, { new_password: "new secret", logout_devices: false, auth: { type: "m.login.dummy", session } });
    expect(await pushkeys()).toEqual(["mine"]);
    expect((await t.req("GET", "/account/whoami", other)).status).toBe(200);
  });

  it("deleting a device (logout) deletes its pushers", async () => {
    const other = await secondDevice();
    await t.ok("POST", "/pushers/set", bob, pusher(gw.url, { pushkey: "mine" }));
    await t.ok("POST", "/pushers/set", other, pusher(gw.url, { pushkey: "theirs", append: true }));
    await t.ok("POST", "/logout", other, {});
    expect(await pushkeys()).toEqual(["mine"]);
  });
});
