/**
 * Federation queries both ways, through several real homeservers on the in-memory network:
 * profiles, device lists and keys (query, claim, the remote device list cache), the published room
 * directory, and media (multipart answers, fetching and caching remote media).
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Federation, FedServer } from "./harness.ts";
import { createFederation } from "./harness.ts";
import { authorizationHeader } from "../../src/homeserver/federation/xmatrix.ts";
import { naclSigner } from "../../src/homeserver/crypto/ed25519.ts";
import { signJson } from "../../src/homeserver/crypto/signing.ts";
import { encodeBase64 } from "../../src/homeserver/crypto/base64.ts";
import { nextStreamPos } from "../../src/homeserver/context.ts";
import { key, pos } from "../../src/storage/store.ts";
import { markStale, devicesOf } from "../../src/homeserver/federation/deviceLists.ts";
import { recordDeviceListChange } from "../../src/homeserver/services/e2ee.ts";

let fed: Federation | undefined;
afterEach(async () => {
  await fed?.close();
  fed = undefined;
});

async function start(names = ["a.test", "b.test"]): Promise<FedServer[]> {
  fed = await createFederation(names);
  return fed.servers;
}

/** A federation request from `from` to `to`, signed (or not) as the spec says. */
async function fedCall(from: FedServer, to: FedServer, method: string, uri: string, body?: unknown, sign = true): Promise<{ status: number; body: any; res: Response }> {
  const headers: Record<string, string> = {};
  if (sign) headers.Authorization = await authorizationHeader(from.hs.services.signingKey, to.name, method, uri, body);
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await to.hs.handle(new Request(`https://${to.name}${uri}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) }));
  const text = await res.clone().text();
  let parsed: any = {};
  try {
    parsed = JSON.parse(text);
  } catch {
    /* media */
  }
  return { status: res.status, body: parsed, res };
}

/** A user with a device that uploaded signed device keys, one-time keys and a fallback key. */
async function e2eeUser(server: FedServer, localpart: string, otks = 2): Promise<{ userId: string; token: string; deviceId: string }> {
  const { userId, token } = await server.register(localpart);
  const deviceId = (await server.call("GET", "/_matrix/client/v3/account/whoami", undefined, token)).body.device_id as string;
  const signer = naclSigner(new Uint8Array(32).fill(localpart.length + 40));
  const signingKey = { entity: userId, keyId: `ed25519:${deviceId}`, signer };
  const deviceKeys = await signJson(
    {
      user_id: userId,
      device_id: deviceId,
      algorithms: ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
      keys: { [`curve25519:${deviceId}`]: encodeBase64(new Uint8Array(32).fill(9)), [`ed25519:${deviceId}`]: encodeBase64(signer.publicKey) },
    },
    signingKey,
  );
  const one_time_keys: Record<string, unknown> = {};
  for (let i = 0; i < otks; i++) one_time_keys[`signed_curve25519:AAAA${i}`] = await signJson({ key: encodeBase64(new Uint8Array(32).fill(i + 1)) }, signingKey);
  const fallback_keys = { "signed_curve25519:FALL": await signJson({ key: encodeBase64(new Uint8Array(32).fill(99)), fallback: true }, signingKey) };
  const r = await server.call("POST", "/_matrix/client/v3/keys/upload", { device_keys: deviceKeys, one_time_keys, fallback_keys }, token);
  expect(r.status).toBe(200);
  return { userId, token, deviceId };
}

/**
 * Records that the users are joined to one room on `server` (membership rows and member state, as
 * the room server writes them): the device list cache is trusted only for users sharing a room
 * with a local user. Written straight into the tables so that these tests do not depend on
 * federated joins.
 */
async function shareRoom(server: FedServer, roomId: string, userIds: string[]): Promise<void> {
  const p = await server.store.write(async (tx) => {
    let p = 0;
    for (const userId of userIds) {
      p = await nextStreamPos(tx);
      const eventId = `$m${p}_${server.name}`;
      tx.put("memberships", key(userId, roomId), { membership: "join", eventId, streamPos: p });
      tx.put("room_state", key(roomId, "m.room.member", userId), eventId);
      const pdu = { type: "m.room.member", state_key: userId, sender: userId, room_id: roomId, content: { membership: "join" } };
      tx.put("events", eventId, { eventId, roomId, pdu, streamPos: p });
      tx.put("stream", pos(p), { roomId, eventId });
    }
    return p;
  });
  server.hs.services.notifier.notify(p);
}

describe("profiles of other servers' users", () => {
  it("serves /query/profile for local users, whole or one field, and refuses what it must", async () => {
    const [a, b] = await start();
    const bob = await b.register("bob");
    await b.call("PUT", `/_matrix/client/v3/profile/${bob.userId}/displayname`, { displayname: "Bob B" }, bob.token);
    await b.call("PUT", `/_matrix/client/v3/profile/${bob.userId}/m.tz`, { "m.tz": "Europe/Paris" }, bob.token);
    const q = (query: string, sign = true) => fedCall(a!, b!, "GET", `/_matrix/federation/v1/query/profile${query ? `?${query}` : ""}`, undefined, sign);
    const uid = encodeURIComponent(bob.userId);
    expect(await q(`user_id=${uid}`)).toMatchObject({ status: 200, body: { displayname: "Bob B", "m.tz": "Europe/Paris" } });
    const field = await q(`user_id=${uid}&field=displayname`);
    expect(field.status).toBe(200);
    expect(field.body).toEqual({ displayname: "Bob B" });
    expect((await q(`user_id=${uid}&field=avatar_url`)).body.errcode).toBe("M_NOT_FOUND");
    expect(await q(`user_id=${encodeURIComponent("@nobody:b.test")}`)).toMatchObject({ status: 404, body: { errcode: "M_NOT_FOUND" } });
    expect(await q(`user_id=${encodeURIComponent("@x:a.test")}`)).toMatchObject({ status: 400, body: { errcode: "M_INVALID_PARAM" } });
    expect(await q("")).toMatchObject({ status: 400, body: { errcode: "M_MISSING_PARAM" } });
    expect(await q(`user_id=${uid}`, false)).toMatchObject({ status: 401, body: { errcode: "M_UNAUTHORIZED" } });
  });

  it("answers a client's GET /profile for a remote user by asking their server", async () => {
    const [a, b] = await start();
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    await b.call("PUT", `/_matrix/client/v3/profile/${bob.userId}/displayname`, { displayname: "Bob B" }, bob.token);
    await b.call("PUT", `/_matrix/client/v3/profile/${bob.userId}/avatar_url`, { avatar_url: "mxc://b.test/avatar" }, bob.token);
    const p = `/_matrix/client/v3/profile/${encodeURIComponent(bob.userId)}`;
    expect(await a.call("GET", p, undefined, alice.token)).toEqual({ status: 200, body: { displayname: "Bob B", avatar_url: "mxc://b.test/avatar" } });
    expect(await a.call("GET", `${p}/displayname`, undefined, alice.token)).toEqual({ status: 200, body: { displayname: "Bob B" } });
    expect(await a.call("GET", `${p}/avatar_url`, undefined, alice.token)).toEqual({ status: 200, body: { avatar_url: "mxc://b.test/avatar" } });
    expect((await a.call("GET", `${p}/m.tz`, undefined, alice.token)).status).toBe(404);
    const nobody = await a.call("GET", `/_matrix/client/v3/profile/${encodeURIComponent("@nobody:b.test")}`, undefined, alice.token);
    expect(nobody).toMatchObject({ status: 404, body: { errcode: "M_NOT_FOUND" } });
    fed!.network.setOnline("b.test", false);
    const down = await a.call("GET", p, undefined, alice.token);
    expect(down.status).toBe(502);
    expect(down.body.errcode).toBe("M_UNKNOWN");
  });
});

describe("keys and device lists across servers", () => {
  it("serves /user/keys/query, /user/devices and /user/keys/claim for local users only", async () => {
    const [a, b] = await start();
    const bob = await e2eeUser(b, "bob");
    const query = await fedCall(a, b, "POST", "/_matrix/federation/v1/user/keys/query", { device_keys: { [bob.userId]: [], "@carol:a.test": [] } });
    expect(query.status).toBe(200);
    expect(Object.keys(query.body.device_keys)).toEqual([bob.userId]);
    expect(query.body.device_keys[bob.userId][bob.deviceId]).toMatchObject({ user_id: bob.userId, device_id: bob.deviceId });

    const devices = await fedCall(a, b, "GET", `/_matrix/federation/v1/user/devices/${encodeURIComponent(bob.userId)}`);
    expect(devices.status).toBe(200);
    expect(devices.body.user_id).toBe(bob.userId);
    expect(devices.body.stream_id).toBeGreaterThan(0);
    expect(devices.body.devices).toEqual([{ device_id: bob.deviceId, keys: query.body.device_keys[bob.userId][bob.deviceId] }]);
    // A new device moves the stream_id on.
    await e2eeUser(b, "bob2");
    const again = await fedCall(a, b, "GET", `/_matrix/federation/v1/user/devices/${encodeURIComponent(bob.userId)}`);
    expect(again.body.stream_id).toBe(devices.body.stream_id);
    await b.call("PUT", `/_matrix/client/v3/devices/${bob.deviceId}`, { display_name: "Bob's phone" }, bob.token);
    const renamed = await fedCall(a, b, "GET", `/_matrix/federation/v1/user/devices/${encodeURIComponent(bob.userId)}`);
    expect(renamed.body.devices[0].device_display_name).toBe("Bob's phone");

    expect((await fedCall(a, b, "GET", `/_matrix/federation/v1/user/devices/${encodeURIComponent("@x:a.test")}`)).status).toBe(400);

    const claim = (body: unknown) => fedCall(a!, b!, "POST", "/_matrix/federation/v1/user/keys/claim", body);
    const first = await claim({ one_time_keys: { [bob.userId]: { [bob.deviceId]: "signed_curve25519" } } });
    expect(first.status).toBe(200);
    const firstKey = Object.keys(first.body.one_time_keys[bob.userId][bob.deviceId]);
    const second = await claim({ one_time_keys: { [bob.userId]: { [bob.deviceId]: "signed_curve25519" } } });
    const secondKey = Object.keys(second.body.one_time_keys[bob.userId][bob.deviceId]);
    expect(firstKey).toHaveLength(1);
    expect(secondKey).toHaveLength(1);
    expect(secondKey).not.toEqual(firstKey);
    // With the one-time keys used up, the fallback key.
    const third = await claim({ one_time_keys: { [bob.userId]: { [bob.deviceId]: "signed_curve25519" } } });
    expect(Object.keys(third.body.one_time_keys[bob.userId][bob.deviceId])).toEqual(["signed_curve25519:FALL"]);

    for (const bad of [{}, { one_time_keys: [] }, { one_time_keys: { [bob.userId]: { [bob.deviceId]: 5 } } }]) {
      expect((await claim(bad)).status).toBe(400);
    }
    expect((await fedCall(a, b, "POST", "/_matrix/federation/v1/user/keys/query", { device_keys: { [bob.userId]: "all" } })).status).toBe(400);
    expect((await fedCall(a, b, "POST", "/_matrix/federation/v1/user/keys/query", { device_keys: {} }, false)).status).toBe(401);
  });

  it("fans keys/query and keys/claim out to remote servers, with failures for unreachable ones", async () => {
    const [a, b, c] = await start(["a.test", "b.test", "c.test"]);
    const alice = await e2eeUser(a, "alice");
    const bob = await e2eeUser(b, "bob");
    const carol = await e2eeUser(c, "carol");
    fed!.network.setOnline("c.test", false);

    // Bob has cross-signing keys: the master key and the self-signing key it signed.
    const master = naclSigner(new Uint8Array(32).fill(77));
    const masterId = encodeBase64(master.publicKey);
    const selfSigning = naclSigner(new Uint8Array(32).fill(78));
    const master_key = { user_id: bob.userId, usage: ["master"], keys: { [`ed25519:${masterId}`]: masterId } };
    const self_signing_key = await signJson(
      { user_id: bob.userId, usage: ["self_signing"], keys: { [`ed25519:${encodeBase64(selfSigning.publicKey)}`]: encodeBase64(selfSigning.publicKey) } },
      { entity: bob.userId, keyId: `ed25519:${masterId}`, signer: master },
    );
    expect((await b.call("POST", "/_matrix/client/v3/keys/device_signing/upload", { master_key, self_signing_key }, bob.token)).status).toBe(200);

    const q = await a.call("POST", "/_matrix/client/v3/keys/query", { device_keys: { [alice.userId]: [], [bob.userId]: [], [carol.userId]: [] } }, alice.token);
    expect(q.status).toBe(200);
    expect(q.body.master_keys[bob.userId]).toEqual(master_key);
    expect(q.body.self_signing_keys[bob.userId]).toEqual(self_signing_key);
    expect(q.body.user_signing_keys[bob.userId]).toBeUndefined();
    expect(Object.keys(q.body.device_keys).sort()).toEqual([alice.userId, bob.userId]);
    expect(q.body.device_keys[bob.userId][bob.deviceId]).toMatchObject({ user_id: bob.userId, device_id: bob.deviceId });
    expect(Object.keys(q.body.failures)).toEqual(["c.test"]);
    expect(q.body.failures["c.test"].status).toBe(503);

    // A device filter applies to remote users too.
    const filtered = await a.call("POST", "/_matrix/client/v3/keys/query", { device_keys: { [bob.userId]: ["NOPE"] } }, alice.token);
    expect(filtered.body.device_keys).toEqual({ [bob.userId]: {} });
    expect(filtered.body.failures).toEqual({});

    const claim = await a.call(
      "POST",
      "/_matrix/client/v3/keys/claim",
      { one_time_keys: { [bob.userId]: { [bob.deviceId]: "signed_curve25519" }, [carol.userId]: { [carol.deviceId]: "signed_curve25519" }, [alice.userId]: { [alice.deviceId]: "signed_curve25519" } } },
      alice.token,
    );
    expect(claim.status).toBe(200);
    const bobKeys = claim.body.one_time_keys[bob.userId][bob.deviceId];
    expect(Object.keys(bobKeys)).toHaveLength(1);
    expect(Object.keys(bobKeys)[0]).toMatch(/^signed_curve25519:AAAA/);
    // The claimed key is the one bob uploaded, signed by his device.
    expect(Object.values(bobKeys)[0]).toMatchObject({ signatures: { [bob.userId]: { [`ed25519:${bob.deviceId}`]: expect.any(String) } } });
    expect(Object.keys(claim.body.one_time_keys[alice.userId][alice.deviceId])).toHaveLength(1);
    expect(claim.body.one_time_keys[carol.userId]).toBeUndefined();
    expect(Object.keys(claim.body.failures)).toEqual(["c.test"]);
  });

  it("drops remote device keys whose self-signature does not verify", async () => {
    const [a, b] = await start();
    const alice = await a.register("alice");
    const bob = await e2eeUser(b, "bob");
    // B's stored keys altered behind its back (as a server that tampers with them would serve them).
    await b.store.write(async (tx) => {
      const k = await tx.get<Record<string, any>>("device_keys", key(bob.userId, bob.deviceId));
      tx.put("device_keys", key(bob.userId, bob.deviceId), { ...k, keys: { ...k!.keys, [`curve25519:${bob.deviceId}`]: encodeBase64(new Uint8Array(32).fill(3)) } });
    });
    const q = await a.call("POST", "/_matrix/client/v3/keys/query", { device_keys: { [bob.userId]: [] } }, alice.token);
    expect(q.body.device_keys).toEqual({ [bob.userId]: {} });
  });

  it("takes from a server only what it may say: its own users, the devices and algorithms asked for", async () => {
    const [a, b] = await start();
    const alice = await a.register("alice");
    const bob = await e2eeUser(b, "bob");
    const bobKeys = (await fedCall(a, b, "POST", "/_matrix/federation/v1/user/keys/query", { device_keys: { [bob.userId]: [] } })).body.device_keys[bob.userId][bob.deviceId];
    // evil.test answers for B's user too, files bob's keys under its own user, and hands out keys nobody asked for.
    fed!.network.attach("evil.test", async (req) => {
      const path = new URL(req.url).pathname;
      if (path.endsWith("/user/keys/query")) {
        return Response.json({
          device_keys: { [bob.userId]: { [bob.deviceId]: bobKeys }, "@eve:evil.test": { [bob.deviceId]: bobKeys, EVE: { ...bobKeys, device_id: "EVE" } } },
          master_keys: { "@eve:evil.test": { user_id: bob.userId, usage: ["master"], keys: { "ed25519:x": "x" } } },
        });
      }
      if (path.endsWith("/user/keys/claim")) {
        return Response.json({ one_time_keys: { [bob.userId]: { [bob.deviceId]: { "signed_curve25519:X": "k" } }, "@eve:evil.test": { EVE: { "other_alg:Y": "k" }, OTHER: { "signed_curve25519:Z": "k" } } } });
      }
      if (path.startsWith("/_matrix/federation/v1/user/devices/")) return Response.json({ user_id: bob.userId, stream_id: 1, devices: [] });
      return Response.json({ errcode: "M_UNRECOGNIZED" }, { status: 404 });
    });
    const q = await a.call("POST", "/_matrix/client/v3/keys/query", { device_keys: { "@eve:evil.test": [] } }, alice.token);
    expect(q.body).toMatchObject({ device_keys: { "@eve:evil.test": {} }, master_keys: {}, failures: {} });
    expect(q.body.device_keys[bob.userId]).toBeUndefined();
    const c = await a.call("POST", "/_matrix/client/v3/keys/claim", { one_time_keys: { "@eve:evil.test": { EVE: "signed_curve25519" } } }, alice.token);
    expect(c.body).toEqual({ one_time_keys: {}, failures: {} });
    await expect(devicesOf(a.hs.services, "@eve:evil.test")).rejects.toMatchObject({ name: "FederationError", status: 502 });
    // An unreachable server: devicesOf says so.
    fed!.network.setOnline("evil.test", false);
    await expect(devicesOf(a.hs.services, "@eve:evil.test")).rejects.toMatchObject({ name: "FederationError", status: 0 });
  });

  it("caches the device lists of users sharing a room, refetches after markStale, and tells local clients", async () => {
    const [a, b] = await start();
    const alice = await e2eeUser(a, "alice");
    const bob = await e2eeUser(b, "bob");
    const query = () => a.call("POST", "/_matrix/client/v3/keys/query", { device_keys: { [bob.userId]: [] } }, alice.token);

    // Not sharing a room: nothing is cached, so B being offline is a failure.
    expect(Object.keys((await query()).body.device_keys[bob.userId])).toEqual([bob.deviceId]);
    fed!.network.setOnline("b.test", false);
    expect(Object.keys((await query()).body.failures)).toEqual(["b.test"]);
    fed!.network.setOnline("b.test", true);

    await shareRoom(a, "!shared:a.test", [alice.userId, bob.userId]);
    expect((await query()).body.failures).toEqual({});
    // Now cached: answered while B is offline.
    fed!.network.setOnline("b.test", false);
    const cached = await query();
    expect(cached.body.failures).toEqual({});
    expect(Object.keys(cached.body.device_keys[bob.userId])).toEqual([bob.deviceId]);
    expect((await devicesOf(a.hs.services, bob.userId)).devices.map((d) => d.device_id)).toEqual([bob.deviceId]);

    // Bob gets a second device; B tells A (the m.device_list_update handler calls markStale).
    fed!.network.setOnline("b.test", true);
    const sync = await a.call("GET", "/_matrix/client/v3/sync?timeout=0", undefined, alice.token);
    const bobPhone = await b.call("POST", "/_matrix/client/v3/login", { type: "m.login.password", identifier: { type: "m.id.user", user: "bob" }, password: "correct horse", device_id: "PHONE" });
    expect(bobPhone.status).toBe(200);
    await markStale(a.hs.services, bob.userId);
    const next = await a.call("GET", `/_matrix/client/v3/sync?timeout=0&since=${sync.body.next_batch}`, undefined, alice.token);
    expect(next.body.device_lists.changed).toContain(bob.userId);

    // Stale: B is asked again (offline: a failure, not the old list).
    fed!.network.setOnline("b.test", false);
    expect(Object.keys((await query()).body.failures)).toEqual(["b.test"]);
    fed!.network.setOnline("b.test", true);
    const fresh = await devicesOf(a.hs.services, bob.userId);
    expect(fresh.devices.map((d) => d.device_id)).toEqual([bob.deviceId]); // PHONE uploaded no keys
    expect(fresh.streamId).toBeGreaterThan(0);
    fed!.network.setOnline("b.test", false);
    expect((await query()).body.failures).toEqual({});

    // Any device-list change recorded for bob (what the EDU handler may write instead) also makes it stale.
    const p = await a.store.write((tx) => recordDeviceListChange(tx, bob.userId));
    a.hs.services.notifier.notify(p);
    expect(Object.keys((await query()).body.failures)).toEqual(["b.test"]);
  });
});

describe("the published room directory of another server", () => {
  async function publish(server: FedServer, token: string, name: string, extra: Record<string, unknown> = {}): Promise<string> {
    const r = await server.call("POST", "/_matrix/client/v3/createRoom", { name, visibility: "public", preset: "public_chat", ...extra }, token);
    expect(r.status).toBe(200);
    return r.body.room_id;
  }

  it("serves GET and POST /publicRooms over federation, with filter and pagination", async () => {
    const [a, b] = await start();
    const bob = await b.register("bob");
    const r1 = await publish(b, bob.token, "Rust lovers");
    const r2 = await publish(b, bob.token, "Gardening");
    const space = await publish(b, bob.token, "Space of things", { creation_content: { type: "m.space" } });
    const all = await fedCall(a, b, "GET", "/_matrix/federation/v1/publicRooms");
    expect(all.status).toBe(200);
    expect(all.body.chunk.map((r: any) => r.room_id).sort()).toEqual([r1, r2, space].sort());
    expect(all.body.total_room_count_estimate).toBe(3);

    const page1 = await fedCall(a, b, "GET", "/_matrix/federation/v1/publicRooms?limit=2");
    expect(page1.body.chunk).toHaveLength(2);
    const page2 = await fedCall(a, b, "GET", `/_matrix/federation/v1/publicRooms?limit=2&since=${page1.body.next_batch}`);
    expect(page2.body.chunk).toHaveLength(1);
    expect(new Set([...page1.body.chunk, ...page2.body.chunk].map((r: any) => r.room_id)).size).toBe(3);

    const search = await fedCall(a, b, "POST", "/_matrix/federation/v1/publicRooms", { filter: { generic_search_term: "rust" } });
    expect(search.body.chunk.map((r: any) => r.room_id)).toEqual([r1]);
    const spaces = await fedCall(a, b, "POST", "/_matrix/federation/v1/publicRooms", { filter: { room_types: ["m.space"] } });
    expect(spaces.body.chunk.map((r: any) => r.room_id)).toEqual([space]);
    const bridged = await fedCall(a, b, "POST", "/_matrix/federation/v1/publicRooms", { third_party_instance_id: "irc-libera" });
    expect(bridged.body.chunk).toEqual([]);

    expect((await fedCall(a, b, "GET", "/_matrix/federation/v1/publicRooms?limit=lots")).status).toBe(400);
    expect((await fedCall(a, b, "POST", "/_matrix/federation/v1/publicRooms", { limit: "x" })).status).toBe(400);
    expect((await fedCall(a, b, "POST", "/_matrix/federation/v1/publicRooms", { filter: 3 })).status).toBe(400);
    expect((await fedCall(a, b, "GET", "/_matrix/federation/v1/publicRooms", undefined, false)).status).toBe(401);
  });

  it("answers a client's /publicRooms?server= from the remote server (GET and POST)", async () => {
    const [a, b] = await start();
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const r1 = await publish(b, bob.token, "Rust lovers");
    await publish(b, bob.token, "Gardening");
    await publish(a, alice.token, "Alice's own room");

    const get = await a.call("GET", "/_matrix/client/v3/publicRooms?server=b.test&limit=1", undefined, alice.token);
    expect(get.status).toBe(200);
    expect(get.body.chunk).toHaveLength(1);
    expect(get.body.next_batch).toEqual(expect.any(String));
    const rest = await a.call("GET", `/_matrix/client/v3/publicRooms?server=b.test&since=${get.body.next_batch}`, undefined, alice.token);
    expect(rest.body.chunk).toHaveLength(1);
    expect(rest.body.chunk[0].room_id).not.toBe(get.body.chunk[0].room_id);

    const post = await a.call("POST", "/_matrix/client/v3/publicRooms?server=b.test", { filter: { generic_search_term: "RUST" } }, alice.token);
    expect(post.status).toBe(200);
    expect(post.body.chunk.map((r: any) => r.room_id)).toEqual([r1]);
    expect(post.body.chunk[0].name).toBe("Rust lovers");

    const local = await a.call("GET", "/_matrix/client/v3/publicRooms", undefined, alice.token);
    expect(local.body.chunk.map((r: any) => r.name)).toEqual(["Alice's own room"]);

    expect((await a.call("GET", "/_matrix/client/v3/publicRooms?server=bad%20name", undefined, alice.token)).status).toBe(400);
    fed!.network.setOnline("b.test", false);
    const down = await a.call("POST", "/_matrix/client/v3/publicRooms?server=b.test", {}, alice.token);
    expect(down.status).toBe(502);
  });
});
