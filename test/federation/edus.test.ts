/**
 * EDUs both ways (issue 9 item 7): typing, receipts, presence, to-device, device-list and signing
 * key updates leave a server through its queues and reach the other server's users' `/sync`
 * exactly once; what an origin may not say (users of other servers, rooms the user is not in) is
 * ignored. Until the inbound `/send` lands, the recorder stands in for it and hands each new
 * transaction's EDUs to the receiver's real `receiveEdus`.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Federation, FedServer } from "./harness.ts";
import { createFederation } from "./harness.ts";
import { Recorder, drained, eventually, mirrorRoom, queued, remoteMembership } from "./fedtools.ts";
import { receiveEdus } from "../../src/homeserver/federation/edus.ts";
import { encodeBase64 } from "../../src/homeserver/crypto/base64.ts";

let fed: Federation | undefined;
afterEach(async () => {
  await fed?.close();
  fed = undefined;
});

const FAST = { federationSenderOptions: { minBackoffMs: 20, maxBackoffMs: 200 } };

interface User {
  userId: string;
  token: string;
  deviceId: string;
}

interface Setup {
  a: FedServer;
  b: FedServer;
  recA: Recorder;
  recB: Recorder;
  roomId: string;
  alice: User;
  bob: User;
  /** Bob's join, an event both servers hold. */
  bobJoin: string;
}

async function user(s: FedServer, localpart: string): Promise<User> {
  const u = await s.register(localpart);
  const who = await s.call("GET", "/_matrix/client/v3/account/whoami", undefined, u.token);
  return { ...u, deviceId: who.body.device_id as string };
}

/** Alice on a.test and Bob on b.test share a room both servers hold. */
async function setup(): Promise<Setup> {
  fed = await createFederation(["a.test", "b.test"], {}, FAST);
  const [a, b] = fed.servers as [FedServer, FedServer];
  const recA = new Recorder(fed, "a.test");
  const recB = new Recorder(fed, "b.test");
  recA.deliverEdus = recB.deliverEdus = true;
  const alice = await user(a, "alice");
  const r = await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, alice.token);
  const roomId = r.body.room_id as string;
  await mirrorRoom(a, b, roomId);
  const bob = await user(b, "bob");
  const bobJoin = await remoteMembership(a, b, roomId, bob.userId, "join", [b]);
  // Each server announces its user's devices to the other, newly sharing a room with them: out of
  // the way before the tests count EDUs.
  await drained(a, b);
  recA.clear();
  recB.clear();
  return { a, b, recA, recB, roomId, alice, bob, bobJoin };
}

async function sync(s: FedServer, token: string, since?: string): Promise<Record<string, any>> {
  const r = await s.call("GET", `/_matrix/client/v3/sync?timeout=0${since ? `&since=${encodeURIComponent(since)}` : ""}`, undefined, token);
  expect(r.status).toBe(200);
  return r.body;
}

const ephemeral = (s: Record<string, any>, roomId: string, type: string): any => s.rooms?.join?.[roomId]?.ephemeral?.events?.find((e: any) => e.type === type);
const enc = encodeURIComponent;

/** Waits for a sync after `since` that satisfies `pick`, and returns it. */
async function syncUntil(s: FedServer, token: string, since: string, pick: (r: Record<string, any>) => unknown, what: string): Promise<Record<string, any>> {
  return eventually(async () => {
    const r = await sync(s, token, since);
    return pick(r) ? r : undefined;
  }, what);
}

describe("EDUs between servers", () => {
  it("typing reaches the other server's members, start and stop", async () => {
    const { a, b, roomId, alice, bob, recB } = await setup();
    const s0 = await sync(b, bob.token);
    expect((await a.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/typing/${enc(alice.userId)}`, { typing: true, timeout: 20_000 }, alice.token)).status).toBe(200);
    const s1 = await syncUntil(b, bob.token, s0.next_batch, (r) => ephemeral(r, roomId, "m.typing")?.content.user_ids.includes(alice.userId), "alice typing at b");
    expect(recB.edus("m.typing")[0]!.content).toEqual({ room_id: roomId, user_id: alice.userId, typing: true });
    expect((await a.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/typing/${enc(alice.userId)}`, { typing: false }, alice.token)).status).toBe(200);
    await syncUntil(b, bob.token, s1.next_batch, (r) => ephemeral(r, roomId, "m.typing")?.content.user_ids.length === 0, "alice stopped typing at b");
  });

  it("a read receipt reaches the other server's /sync once; a private one never leaves", async () => {
    const { a, b, roomId, alice, bob, bobJoin, recB } = await setup();
    const s0 = await sync(b, bob.token);
    expect((await a.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/receipt/m.read.private/${enc(bobJoin)}`, {}, alice.token)).status).toBe(200);
    expect((await a.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/receipt/m.read/${enc(bobJoin)}`, {}, alice.token)).status).toBe(200);
    const s1 = await syncUntil(b, bob.token, s0.next_batch, (r) => ephemeral(r, roomId, "m.receipt"), "the receipt at b");
    expect(ephemeral(s1, roomId, "m.receipt").content).toEqual({ [bobJoin]: { "m.read": { [alice.userId]: { ts: expect.any(Number) } } } });
    await eventually(async () => (await queued(a, "b.test")) === 0, "a's queue to drain");
    expect(recB.edus("m.receipt")).toHaveLength(1);
    // The same EDU again (a server resending it) is nothing new.
    await receiveEdus(b.hs.services, "a.test", recB.edus("m.receipt"));
    expect(ephemeral(await sync(b, bob.token, s1.next_batch), roomId, "m.receipt")).toBeUndefined();
  });

  it("presence reaches users sharing a room, once", async () => {
    const { a, b, alice, bob, recB } = await setup();
    const s0 = await sync(b, bob.token, (await sync(b, bob.token)).next_batch);
    expect((await a.call("PUT", `/_matrix/client/v3/presence/${enc(alice.userId)}/status`, { presence: "online", status_msg: "hi" }, alice.token)).status).toBe(200);
    const s1 = await syncUntil(b, bob.token, s0.next_batch, (r) => r.presence?.events?.some((e: any) => e.sender === alice.userId), "alice's presence at b");
    expect(s1.presence.events.find((e: any) => e.sender === alice.userId).content).toMatchObject({ presence: "online", status_msg: "hi", currently_active: true });
    await receiveEdus(b.hs.services, "a.test", recB.edus("m.presence"));
    expect((await sync(b, bob.token, s1.next_batch)).presence?.events ?? []).toEqual([]);
  });

  it("to-device messages for remote users are delivered once (the client's retry and a resent EDU add nothing)", async () => {
    const { a, b, alice, bob, recB } = await setup();
    const s0 = await sync(b, bob.token);
    const body = { messages: { [bob.userId]: { [bob.deviceId]: { hello: 1 } } } };
    expect((await a.call("PUT", "/_matrix/client/v3/sendToDevice/m.test/t1", body, alice.token)).status).toBe(200);
    expect((await a.call("PUT", "/_matrix/client/v3/sendToDevice/m.test/t1", body, alice.token)).status).toBe(200);
    const s1 = await syncUntil(b, bob.token, s0.next_batch, (r) => r.to_device?.events?.length, "the message at b");
    expect(s1.to_device.events).toEqual([{ sender: alice.userId, type: "m.test", content: { hello: 1 } }]);
    await eventually(async () => (await queued(a, "b.test")) === 0, "a's queue to drain");
    expect(recB.edus("m.direct_to_device")).toHaveLength(1);
    const edu = recB.edus("m.direct_to_device")[0]!;
    expect(typeof edu.content.message_id === "string" && [...edu.content.message_id].length <= 32).toBe(true);
    await receiveEdus(b.hs.services, "a.test", [edu]);
    expect((await sync(b, bob.token, s1.next_batch)).to_device?.events ?? []).toEqual([]);
    // "*": every device of the user.
    expect((await a.call("PUT", "/_matrix/client/v3/sendToDevice/m.test/t2", { messages: { [bob.userId]: { "*": { all: true } } } }, alice.token)).status).toBe(200);
    await syncUntil(b, bob.token, s1.next_batch, (r) => r.to_device?.events?.some((e: any) => e.content.all === true), "the * message at b");
  });

  it("device list and cross-signing changes mark the user changed on the other server", async () => {
    const { a, b, alice, bob, recB } = await setup();
    const s0 = await sync(b, bob.token);
    expect((await a.call("PUT", `/_matrix/client/v3/devices/${enc(alice.deviceId)}`, { display_name: "phone" }, alice.token)).status).toBe(200);
    const s1 = await syncUntil(b, bob.token, s0.next_batch, (r) => r.device_lists?.changed?.includes(alice.userId), "alice changed at b");
    const update = recB.edus("m.device_list_update").find((e) => e.content.device_display_name === "phone")!;
    expect(update.content).toMatchObject({ user_id: alice.userId, device_id: alice.deviceId, stream_id: expect.any(Number), prev_id: expect.any(Array) });
    // A resent update is no news.
    await receiveEdus(b.hs.services, "a.test", [update]);
    expect((await sync(b, bob.token, s1.next_batch)).device_lists?.changed ?? []).not.toContain(alice.userId);

    const pub = encodeBase64(new Uint8Array(32).fill(7));
    const master = { user_id: alice.userId, usage: ["master"], keys: { [`ed25519:${pub}`]: pub } };
    expect((await a.call("POST", "/_matrix/client/v3/keys/device_signing/upload", { master_key: master }, alice.token)).status).toBe(200);
    await syncUntil(b, bob.token, s1.next_batch, (r) => r.device_lists?.changed?.includes(alice.userId), "alice changed again at b");
    expect(recB.edus("m.signing_key_update").at(-1)!.content).toEqual({ user_id: alice.userId, master_key: master });

    // Each update names the one before it.
    expect((await a.call("PUT", `/_matrix/client/v3/devices/${enc(alice.deviceId)}`, { display_name: "tablet" }, alice.token)).status).toBe(200);
    const next = await eventually(() => recB.edus("m.device_list_update").find((e) => e.content.device_display_name === "tablet"), "the second update");
    expect(next.content.prev_id).toEqual([update.content.stream_id]);
    expect(next.content.stream_id).toBeGreaterThan(update.content.stream_id);
  });

  it("ignores what the origin may not say", async () => {
    const { b, roomId, bob, bobJoin } = await setup();
    const mallory = "@mallory:a.test";
    const s0 = await sync(b, bob.token);
    await receiveEdus(b.hs.services, "c.test", [
      // Users of another server.
      { edu_type: "m.typing", content: { room_id: roomId, user_id: "@alice:a.test", typing: true } },
      { edu_type: "m.receipt", content: { [roomId]: { "m.read": { "@alice:a.test": { event_ids: [bobJoin], data: { ts: 1 } } } } } },
      { edu_type: "m.direct_to_device", content: { sender: "@alice:a.test", type: "m.x", message_id: "m1", messages: { [bob.userId]: { "*": { x: 1 } } } } },
      { edu_type: "m.presence", content: { push: [{ user_id: "@alice:a.test", presence: "online", last_active_ago: 0 }] } },
      { edu_type: "m.device_list_update", content: { user_id: "@alice:a.test", device_id: "D", stream_id: 99, prev_id: [] } },
    ]);
    await receiveEdus(b.hs.services, "a.test", [
      // A user of the origin who is not in the room (or in no room here).
      { edu_type: "m.typing", content: { room_id: roomId, user_id: mallory, typing: true } },
      { edu_type: "m.receipt", content: { [roomId]: { "m.read": { [mallory]: { event_ids: [bobJoin], data: { ts: 1 } } } } } },
      { edu_type: "m.presence", content: { push: [{ user_id: mallory, presence: "online", last_active_ago: 0 }] } },
      { edu_type: "m.device_list_update", content: { user_id: mallory, device_id: "D", stream_id: 1, prev_id: [] } },
      // Malformed and unknown EDUs.
      { edu_type: "m.typing", content: { room_id: roomId } },
      { edu_type: "m.receipt", content: "nope" },
      { edu_type: "org.example.unknown", content: {} },
      null,
      "x",
    ]);
    const s1 = await sync(b, bob.token, s0.next_batch);
    expect(ephemeral(s1, roomId, "m.typing")).toBeUndefined();
    expect(ephemeral(s1, roomId, "m.receipt")).toBeUndefined();
    expect(s1.presence?.events ?? []).toEqual([]);
    expect(s1.to_device?.events ?? []).toEqual([]);
    expect(s1.device_lists?.changed ?? []).toEqual([]);
  });

  it("EDUs queued while the other server is down survive a restart of the sender and arrive", async () => {
    const { a: a0, b, roomId, alice, bob, bobJoin } = await setup();
    const s0 = await sync(b, bob.token);
    fed!.network.setOnline("b.test", false);
    expect((await a0.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/receipt/m.read/${enc(bobJoin)}`, {}, alice.token)).status).toBe(200);
    expect((await a0.call("PUT", `/_matrix/client/v3/presence/${enc(alice.userId)}/status`, { presence: "unavailable" }, alice.token)).status).toBe(200);
    expect((await a0.call("PUT", "/_matrix/client/v3/sendToDevice/m.test/t1", { messages: { [bob.userId]: { [bob.deviceId]: { n: 1 } } } }, alice.token)).status).toBe(200);
    await eventually(async () => (await queued(a0, "b.test")) === 3, "3 EDUs queued");
    const a = await fed!.restart(a0);
    fed!.network.setOnline("b.test", true);
    const got = { receipt: false, presence: false, toDevice: false };
    let since = s0.next_batch as string;
    await eventually(async () => {
      const r = await sync(b, bob.token, since);
      since = r.next_batch;
      got.receipt ||= ephemeral(r, roomId, "m.receipt") !== undefined;
      got.presence ||= r.presence?.events?.some((e: any) => e.sender === alice.userId && e.content.presence === "unavailable") ?? false;
      got.toDevice ||= r.to_device?.events?.some((e: any) => e.content.n === 1) ?? false;
      return got.receipt && got.presence && got.toDevice;
    }, "every EDU at b");
    await eventually(async () => (await queued(a, "b.test")) === 0, "a's queue to drain");
  });
});
