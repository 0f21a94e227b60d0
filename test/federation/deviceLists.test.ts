/**
 * Device lists across servers (server-server API "Device Management"), with real federated joins on
 * the harness network: a device added after another server joined reaches that server's clients
 * (`device_lists.changed`, `/keys/query`); a server that newly shares a room with a user is sent
 * that user's devices as `m.device_list_update` EDUs, both when a remote user joins a room of ours
 * and when our user joins a room of theirs; and a cached list is not trusted across a time when
 * no update could reach us (our server out of every room the user is in).
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Federation, FedServer } from "./harness.ts";
import { createFederation } from "./harness.ts";
import { eventually } from "./fedtools.ts";
import { naclSigner } from "../../src/homeserver/crypto/ed25519.ts";
import { signJson } from "../../src/homeserver/crypto/signing.ts";
import { encodeBase64 } from "../../src/homeserver/crypto/base64.ts";

let fed: Federation | undefined;
afterEach(async () => {
  await fed?.close();
  fed = undefined;
});

const enc = encodeURIComponent;
const FAST = { federationSenderOptions: { minBackoffMs: 20, maxBackoffMs: 200 } };

interface Device {
  userId: string;
  token: string;
  deviceId: string;
}

/** EDUs of each `PUT /send` a server received, by type. */
type EduLog = { origin: string; edu_type: string; content: Record<string, any> }[];

/** Servers whose inbound `/send` answers 503 for now (the sender keeps the transaction and retries). */
const holding = new Set<string>();

async function setup(): Promise<{ a: FedServer; b: FedServer; edusAtA: EduLog; edusAtB: EduLog }> {
  holding.clear();
  fed = await createFederation(["a.test", "b.test"], {}, FAST);
  const [a, b] = fed.servers as [FedServer, FedServer];
  const log = (server: FedServer, into: EduLog): void =>
    fed!.network.attach(server.name, async (request) => {
      if (request.method === "PUT" && new URL(request.url).pathname.startsWith("/_matrix/federation/v1/send/")) {
        if (holding.has(server.name)) return new Response(JSON.stringify({ errcode: "M_UNKNOWN", error: "held by the test" }), { status: 503 });
        const body = (await request.clone().json()) as { origin: string; edus?: { edu_type: string; content: Record<string, any> }[] };
        for (const e of body.edus ?? []) into.push({ origin: body.origin, ...e });
      }
      return server.hs.handle(request);
    });
  const edusAtA: EduLog = [];
  const edusAtB: EduLog = [];
  log(a, edusAtA);
  log(b, edusAtB);
  return { a, b, edusAtA, edusAtB };
}

/** Logs `localpart` in on a new device (registering first if needed) and uploads validly self-signed device keys. */
async function device(server: FedServer, localpart: string, register: boolean): Promise<Device> {
  if (register) await server.register(localpart);
  const login = await server.call("POST", "/_matrix/client/v3/login", { type: "m.login.password", identifier: { type: "m.id.user", user: localpart }, password: "correct horse" });
  expect(login.status).toBe(200);
  const { user_id: userId, access_token: token, device_id: deviceId } = login.body as { user_id: string; access_token: string; device_id: string };
  const signer = naclSigner(crypto.getRandomValues(new Uint8Array(32)));
  const deviceKeys = await signJson(
    {
      user_id: userId,
      device_id: deviceId,
      algorithms: ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
      keys: { [`curve25519:${deviceId}`]: encodeBase64(crypto.getRandomValues(new Uint8Array(32))), [`ed25519:${deviceId}`]: encodeBase64(signer.publicKey) },
    },
    { entity: userId, keyId: `ed25519:${deviceId}`, signer },
  );
  expect((await server.call("POST", "/_matrix/client/v3/keys/upload", { device_keys: deviceKeys }, token)).status).toBe(200);
  return { userId, token, deviceId };
}

async function sync(s: FedServer, token: string, since?: string): Promise<Record<string, any>> {
  const r = await s.call("GET", `/_matrix/client/v3/sync?timeout=0${since ? `&since=${enc(since)}` : ""}`, undefined, token);
  expect(r.status).toBe(200);
  return r.body;
}

/** The device IDs of `userId` that a client of `s` gets from `/keys/query`. */
async function queriedDevices(s: FedServer, token: string, userId: string): Promise<string[]> {
  const r = await s.call("POST", "/_matrix/client/v3/keys/query", { device_keys: { [userId]: [] } }, token);
  expect(r.status).toBe(200);
  expect(r.body.failures).toEqual({});
  return Object.keys(r.body.device_keys[userId] ?? {}).sort();
}

async function publicRoom(s: FedServer, token: string): Promise<string> {
  const r = await s.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, token);
  expect(r.status).toBe(200);
  return r.body.room_id as string;
}

async function join(s: FedServer, token: string, roomId: string, via: string): Promise<void> {
  const r = await s.call("POST", `/_matrix/client/v3/join/${enc(roomId)}?server_name=${via}`, {}, token);
  expect(r, JSON.stringify(r.body)).toMatchObject({ status: 200 });
}

const updatesFor = (log: EduLog, userId: string, deviceId?: string) =>
  log.filter((e) => e.edu_type === "m.device_list_update" && e.content.user_id === userId && (deviceId === undefined || e.content.device_id === deviceId));

describe("device lists between servers", () => {
  it("a device added on A after B joined reaches B's /sync device_lists.changed and /keys/query", async () => {
    const { a, b, edusAtB } = await setup();
    const alice1 = await device(a, "alice", true);
    const bob = await device(b, "bob", true);
    const roomId = await publicRoom(a, alice1.token);
    await join(b, bob.token, roomId, "a.test");
    // Bob's client learns Alice's device (B fetches and caches the list).
    expect(await queriedDevices(b, bob.token, alice1.userId)).toEqual([alice1.deviceId]);
    const s0 = await sync(b, bob.token);

    const alice2 = await device(a, "alice", false);
    await eventually(async () => (await sync(b, bob.token, s0.next_batch)).device_lists?.changed?.includes(alice1.userId), "alice in B's device_lists.changed");
    expect(updatesFor(edusAtB, alice1.userId, alice2.deviceId).length).toBeGreaterThan(0);
    expect(await queriedDevices(b, bob.token, alice1.userId)).toEqual([alice1.deviceId, alice2.deviceId].sort());
  });

  it("a server newly sharing a room with a user is sent the user's devices, when their user joins ours and when ours joins theirs", async () => {
    const { a, b, edusAtA, edusAtB } = await setup();
    const alice = await device(a, "alice", true);
    const bob = await device(b, "bob", true);
    const s0 = await sync(b, bob.token);
    const roomId = await publicRoom(a, alice.token);
    await join(b, bob.token, roomId, "a.test");

    // A announces Alice's device to B, which had never shared a room with her; B announces Bob's to A.
    await eventually(() => updatesFor(edusAtB, alice.userId, alice.deviceId).length > 0, "A's m.device_list_update for alice at B");
    expect(updatesFor(edusAtB, alice.userId, alice.deviceId)[0]!.content).toMatchObject({ stream_id: expect.any(Number), prev_id: expect.any(Array) });
    expect(updatesFor(edusAtB, alice.userId, alice.deviceId)[0]!.content.keys).toMatchObject({ user_id: alice.userId, device_id: alice.deviceId });
    await eventually(() => updatesFor(edusAtA, bob.userId, bob.deviceId).length > 0, "B's m.device_list_update for bob at A");

    // Each side's client sees the other user as changed and gets their devices.
    await eventually(async () => (await sync(b, bob.token, s0.next_batch)).device_lists?.changed?.includes(alice.userId), "alice in B's device_lists.changed");
    expect(await queriedDevices(b, bob.token, alice.userId)).toEqual([alice.deviceId]);
    expect(await queriedDevices(a, alice.token, bob.userId)).toEqual([bob.deviceId]);

    // A second room between the same servers announces nothing new.
    const before = updatesFor(edusAtB, alice.userId).length;
    const second = await publicRoom(a, alice.token);
    await join(b, bob.token, second, "a.test");
    const marker = await publicRoom(a, alice.token);
    await join(b, bob.token, marker, "a.test");
    await a.call("PUT", `/_matrix/client/v3/rooms/${enc(marker)}/send/m.room.message/m1`, { msgtype: "m.text", body: "flush" }, alice.token);
    await eventually(async () => {
      const page = await b.call("GET", `/_matrix/client/v3/rooms/${enc(marker)}/messages?dir=b&limit=5`, undefined, bob.token);
      return (page.body.chunk as { content?: { body?: string } }[]).some((e) => e.content?.body === "flush");
    }, "the flush message at B");
    expect(updatesFor(edusAtB, alice.userId).length).toBe(before);
  });

  it("a cached list is not trusted after our server was out of every room the user is in", async () => {
    const { a, b } = await setup();
    const alice1 = await device(a, "alice", true);
    const bob = await device(b, "bob", true);
    const roomId = await publicRoom(a, alice1.token);
    await join(b, bob.token, roomId, "a.test");
    expect(await queriedDevices(b, bob.token, alice1.userId)).toEqual([alice1.deviceId]);

    // Bob leaves: B is in no room with Alice, so A sends it no update for her new device.
    expect((await b.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {}, bob.token)).status).toBe(200);
    await eventually(async () => {
      const m = await a.call("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.member/${enc(bob.userId)}`, undefined, alice1.token);
      return m.body.membership === "leave";
    }, "bob's leave at A");
    const alice2 = await device(a, "alice", false);
    await eventually(async () => (await a.hs.services.federationSender!.idle()) || undefined, "A's queues to drain");

    // Bob joins again. B must not answer from the list it cached before: A's announcement of
    // Alice's devices is held back, so only B's own rule can make it fetch again.
    holding.add("b.test");
    await join(b, bob.token, roomId, "a.test");
    expect(await queriedDevices(b, bob.token, alice1.userId)).toEqual([alice1.deviceId, alice2.deviceId].sort());
  });

});
