import { describe, it, expect } from "vitest";
import { SERVER, testServer } from "./accountHarness.ts";
import type { TestServer } from "./accountHarness.ts";
import { createAccount } from "../../../src/homeserver/services/accounts.ts";

const V1 = "/_matrix/client/v1/admin";
const WHOIS = "/_matrix/client/v3/admin/whois";
const enc = encodeURIComponent;

/** An admin account logged in on a device, as shared-secret registration with `admin: true` makes it. */
async function admin(s: TestServer, localpart = "root"): Promise<{ userId: string; token: string }> {
  const created = await createAccount(s.hs.services, { localpart, password: "pw", admin: true, login: {} });
  return { userId: created.userId, token: created.session!.accessToken };
}

async function setup() {
  const s = await testServer();
  const root = await admin(s);
  const alice = await s.register("alice");
  const bob = await s.register("bob");
  return { s, root, alice, bob };
}

describe("admin whois (GET /_matrix/client/v3/admin/whois/{userId})", () => {
  it("lists devices with their last connection (address, time, user agent)", async () => {
    const s = await testServer();
    const root = await admin(s);
    await s.register("alice");
    const login = await s.hs.handle(
      new Request("http://localhost/_matrix/client/v3/login", {
        method: "POST",
        headers: { "User-Agent": "TestClient/1.0", "x-hyphae-client-address": "10.0.0.7" },
        body: JSON.stringify({ type: "m.login.password", user: "alice", password: "correct horse", device_id: "PHONE" }),
      }),
    );
    expect(login.status).toBe(200);
    const r = await s.call("GET", `${WHOIS}/${enc(`@alice:${SERVER}`)}`, undefined, { token: root.token });
    expect(r.status).toBe(200);
    expect(r.body.user_id).toBe(`@alice:${SERVER}`);
    expect(Object.keys(r.body.devices)).toHaveLength(2);
    expect(r.body.devices.PHONE).toEqual({ sessions: [{ connections: [{ ip: "10.0.0.7", last_seen: expect.any(Number), user_agent: "TestClient/1.0" }] }] });
  });

  it("lets a user look up themselves, and nobody else", async () => {
    const { s, alice, bob } = await setup();
    const self = await s.call("GET", `${WHOIS}/${enc(alice.userId)}`, undefined, { token: alice.token });
    expect(self.status).toBe(200);
    expect(Object.keys(self.body.devices)).toEqual([alice.deviceId]);
    const other = await s.call("GET", `${WHOIS}/${enc(bob.userId)}`, undefined, { token: alice.token });
    expect([other.status, other.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
  });

  it("answers errors: no token, bad token, unknown and remote users", async () => {
    const { s, root } = await setup();
    expect((await s.call("GET", `${WHOIS}/${enc(`@alice:${SERVER}`)}`)).body.errcode).toBe("M_MISSING_TOKEN");
    expect((await s.call("GET", `${WHOIS}/${enc(`@alice:${SERVER}`)}`, undefined, { token: "nope" })).body.errcode).toBe("M_UNKNOWN_TOKEN");
    const unknown = await s.call("GET", `${WHOIS}/${enc(`@ghost:${SERVER}`)}`, undefined, { token: root.token });
    expect([unknown.status, unknown.body.errcode]).toEqual([404, "M_NOT_FOUND"]);
    const remote = await s.call("GET", `${WHOIS}/${enc("@alice:elsewhere.test")}`, undefined, { token: root.token });
    expect([remote.status, remote.body.errcode]).toEqual([400, "M_INVALID_PARAM"]);
  });
});

describe.each([
  ["lock", "locked"],
  ["suspend", "suspended"],
] as const)("admin %s (GET/PUT /_matrix/client/v1/admin/%s/{userId})", (path, field) => {
  it("an admin sets and reads the flag", async () => {
    const { s, root, alice } = await setup();
    const url = `${V1}/${path}/${enc(alice.userId)}`;
    expect((await s.call("GET", url, undefined, { token: root.token })).body).toEqual({ [field]: false });
    expect((await s.call("PUT", url, { [field]: true }, { token: root.token })).body).toEqual({ [field]: true });
    expect((await s.call("GET", url, undefined, { token: root.token })).body).toEqual({ [field]: true });
    expect((await s.call("PUT", url, { [field]: false }, { token: root.token })).body).toEqual({ [field]: false });
    expect((await s.call("GET", url, undefined, { token: root.token })).body).toEqual({ [field]: false });
  });

  it("checks authorisation before looking the account up", async () => {
    const { s, alice, bob } = await setup();
    // A non-admin learns nothing about whether the account exists.
    for (const target of [bob.userId, `@ghost:${SERVER}`, "@x:elsewhere.test"]) {
      const r = await s.call("GET", `${V1}/${path}/${enc(target)}`, undefined, { token: alice.token });
      expect([r.status, r.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
      const w = await s.call("PUT", `${V1}/${path}/${enc(target)}`, { [field]: true }, { token: alice.token });
      expect([w.status, w.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
    }
    expect((await s.call("GET", `${V1}/${path}/${enc(bob.userId)}`)).body.errcode).toBe("M_MISSING_TOKEN");
    expect((await s.call("PUT", `${V1}/${path}/${enc(bob.userId)}`, { [field]: true }, { token: "bad" })).body.errcode).toBe("M_UNKNOWN_TOKEN");
  });

  it("answers 404 for unknown or deactivated users, 400 for remote ones", async () => {
    const { s, root, bob } = await setup();
    const unknown = await s.call("PUT", `${V1}/${path}/${enc(`@ghost:${SERVER}`)}`, { [field]: true }, { token: root.token });
    expect([unknown.status, unknown.body.errcode]).toEqual([404, "M_NOT_FOUND"]);
    const deact = await s.call("POST", "/_matrix/client/v3/account/deactivate", { auth: { type: "m.login.password", identifier: { type: "m.id.user", user: "bob" }, password: "correct horse" } }, { token: bob.token });
    expect(deact.status).toBe(200);
    expect((await s.call("GET", `${V1}/${path}/${enc(bob.userId)}`, undefined, { token: root.token })).status).toBe(404);
    const remote = await s.call("GET", `${V1}/${path}/${enc("@x:elsewhere.test")}`, undefined, { token: root.token });
    expect([remote.status, remote.body.errcode]).toEqual([400, "M_INVALID_PARAM"]);
  });

  it("refuses the admin's own account and other admins", async () => {
    const { s, root } = await setup();
    const own = await s.call("PUT", `${V1}/${path}/${enc(root.userId)}`, { [field]: true }, { token: root.token });
    expect([own.status, own.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
    // Reading one's own status is fine.
    expect((await s.call("GET", `${V1}/${path}/${enc(root.userId)}`, undefined, { token: root.token })).body).toEqual({ [field]: false });
    const other = await admin(s, "root2");
    const r = await s.call("PUT", `${V1}/${path}/${enc(other.userId)}`, { [field]: true }, { token: root.token });
    expect([r.status, r.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
  });

  it("validates the body", async () => {
    const { s, root, alice } = await setup();
    const url = `${V1}/${path}/${enc(alice.userId)}`;
    expect((await s.call("PUT", url, {}, { token: root.token })).body.errcode).toBe("M_MISSING_PARAM");
    expect((await s.call("PUT", url, { [field]: "yes" }, { token: root.token })).body.errcode).toBe("M_BAD_JSON");
    expect((await s.call("PUT", url, undefined, { token: root.token, rawBody: "{" })).body.errcode).toBe("M_NOT_JSON");
  });
});

describe("locked accounts", () => {
  it("answer 401 M_USER_LOCKED with soft_logout everywhere but logout, and recover when unlocked", async () => {
    const { s, root, alice } = await setup();
    await s.call("PUT", `${V1}/lock/${enc(alice.userId)}`, { locked: true }, { token: root.token });
    const roomId = `!r:${SERVER}`;
    for (const [method, path, body] of [
      ["GET", "/_matrix/client/v3/account/whoami"], ["GET", "/_matrix/client/v3/sync"], ["GET", "/_matrix/client/v3/capabilities"],
      ["POST", `/_matrix/client/v3/rooms/${enc(roomId)}/kick`, { user_id: `@bob:${SERVER}` }],
      ["POST", `/_matrix/client/v3/rooms/${enc(roomId)}/ban`, { user_id: `@bob:${SERVER}` }],
      ["POST", "/_matrix/media/v3/upload", { any: "bytes" }],
      ["POST", "/_matrix/media/v1/create", undefined],
    ] as const) {
      const r = await s.call(method, path, body, { token: alice.token });
      expect([r.status, r.body.errcode, r.body.soft_logout]).toEqual([401, "M_USER_LOCKED", true]);
    }
    // A fresh login is refused too: no new access token while locked.
    const login = await s.call("POST", "/_matrix/client/v3/login", { type: "m.login.password", user: "alice", password: "correct horse" });
    expect([login.status, login.body.errcode]).toEqual([401, "M_USER_LOCKED"]);
    // The token survives the lock ("SHOULD NOT invalidate access tokens").
    await s.call("PUT", `${V1}/lock/${enc(alice.userId)}`, { locked: false }, { token: root.token });
    expect((await s.call("GET", "/_matrix/client/v3/account/whoami", undefined, { token: alice.token })).status).toBe(200);
  });

  it("may still log out", async () => {
    const { s, root, alice } = await setup();
    await s.call("PUT", `${V1}/lock/${enc(alice.userId)}`, { locked: true }, { token: root.token });
    expect((await s.call("POST", "/_matrix/client/v3/logout", {}, { token: alice.token })).status).toBe(200);
    expect((await s.call("GET", "/_matrix/client/v3/account/whoami", undefined, { token: alice.token })).body.errcode).toBe("M_UNKNOWN_TOKEN");
  });

  it("may not refresh", async () => {
    const { s, root, alice } = await setup();
    const login = await s.call("POST", "/_matrix/client/v3/login", { type: "m.login.password", user: "alice", password: "correct horse", refresh_token: true });
    await s.call("PUT", `${V1}/lock/${enc(alice.userId)}`, { locked: true }, { token: root.token });
    const r = await s.call("POST", "/_matrix/client/v3/refresh", { refresh_token: login.body.refresh_token });
    expect([r.status, r.body.errcode, r.body.soft_logout]).toEqual([401, "M_USER_LOCKED", true]);
  });
});

describe("suspended accounts", () => {
  it("may read, leave and redact their own events; everything the spec lists is refused with 403 M_USER_SUSPENDED", async () => {
    const { s, root, alice, bob } = await setup();
    const tok = { token: alice.token };
    const room = (await s.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, tok)).body.room_id as string;
    const other = (await s.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, { token: bob.token })).body.room_id as string;
    await s.call("POST", `/_matrix/client/v3/join/${enc(room)}`, {}, { token: bob.token });
    const mine = (await s.call("PUT", `/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/t1`, { msgtype: "m.text", body: "hi" }, tok)).body.event_id as string;
    const bobs = (await s.call("PUT", `/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/t1`, { msgtype: "m.text", body: "yo" }, { token: bob.token })).body.event_id as string;
    // The test clock stands still, and a v12 room ID is the hash of its create event: move it on.
    s.advance(1);
    const third = (await s.call("POST", "/_matrix/client/v3/createRoom", {}, tok)).body.room_id as string;

    expect((await s.call("PUT", `${V1}/suspend/${enc(alice.userId)}`, { suspended: true }, { token: root.token })).status).toBe(200);

    const refused: [string, string, unknown][] = [
      ["POST", "/_matrix/client/v3/createRoom", {}],
      ["PUT", `/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/t2`, { msgtype: "m.text", body: "no" }],
      ["PUT", `/_matrix/client/v3/rooms/${enc(room)}/state/m.room.topic/`, { topic: "no" }],
      ["PUT", `/_matrix/client/v3/rooms/${enc(room)}/redact/${enc(bobs)}/r1`, {}],
      ["PUT", `/_matrix/client/v3/rooms/${enc(room)}/send/m.room.redaction/r2`, { redacts: bobs }],
      ["POST", `/_matrix/client/v3/join/${enc(other)}`, {}],
      ["POST", `/_matrix/client/v3/rooms/${enc(other)}/join`, {}],
      ["POST", `/_matrix/client/v3/knock/${enc(other)}`, {}],
      ["POST", `/_matrix/client/v3/rooms/${enc(room)}/invite`, { user_id: `@carol:${SERVER}` }],
      ["PUT", `/_matrix/client/v3/profile/${enc(alice.userId)}/displayname`, { displayname: "Al" }],
      ["DELETE", `/_matrix/client/v3/profile/${enc(alice.userId)}/avatar_url`, undefined],
      ["PUT", `/_matrix/client/v3/directory/room/${enc(`#x:${SERVER}`)}`, { room_id: room }],
      ["PUT", `/_matrix/client/v3/directory/list/room/${enc(room)}`, { visibility: "public" }],
      ["POST", `/_matrix/client/v3/rooms/${enc(room)}/upgrade`, { new_version: "12" }],
      // Moderating others and uploading media (issue 12: they were still allowed).
      ["POST", `/_matrix/client/v3/rooms/${enc(room)}/kick`, { user_id: bob.userId }],
      ["POST", `/_matrix/client/v3/rooms/${enc(room)}/ban`, { user_id: bob.userId }],
      ["POST", `/_matrix/client/v3/rooms/${enc(room)}/unban`, { user_id: bob.userId }],
      ["POST", "/_matrix/media/v3/upload", { any: "bytes" }],
      ["POST", "/_matrix/media/r0/upload", { any: "bytes" }],
      ["POST", "/_matrix/media/v1/create", undefined],
      ["PUT", `/_matrix/media/v3/upload/${SERVER}/someid`, { any: "bytes" }],
    ];
    for (const [method, path, body] of refused) {
      const r = await s.call(method, path, body, tok);
      expect([method, path, r.status, r.body.errcode]).toEqual([method, path, 403, "M_USER_SUSPENDED"]);
    }

    // Allowed: reading, syncing, redacting one's own event, leaving.
    expect((await s.call("GET", "/_matrix/client/v3/sync", undefined, tok)).status).toBe(200);
    expect((await s.call("GET", `/_matrix/client/v3/rooms/${enc(room)}/messages?dir=b`, undefined, tok)).status).toBe(200);
    expect((await s.call("PUT", `/_matrix/client/v3/rooms/${enc(room)}/redact/${enc(mine)}/r3`, {}, tok)).status).toBe(200);
    expect((await s.call("POST", `/_matrix/client/v3/rooms/${enc(room)}/leave`, {}, tok)).status).toBe(200);
    const leaveByState = await s.call("PUT", `/_matrix/client/v3/rooms/${enc(third)}/state/m.room.member/${enc(alice.userId)}`, { membership: "leave" }, tok);
    expect(leaveByState.status).toBe(200);

    // Lifting the suspension restores the actions.
    await s.call("PUT", `${V1}/suspend/${enc(alice.userId)}`, { suspended: false }, { token: root.token });
    expect((await s.call("POST", `/_matrix/client/v3/join/${enc(other)}`, {}, tok)).status).toBe(200);
  });
});

describe("m.account_moderation capability", () => {
  it("is advertised to server admins and omitted for everyone else", async () => {
    const { s, root, alice } = await setup();
    const forAdmin = await s.call("GET", "/_matrix/client/v3/capabilities", undefined, { token: root.token });
    expect(forAdmin.body.capabilities["m.account_moderation"]).toEqual({ suspend: true, lock: true });
    const forUser = await s.call("GET", "/_matrix/client/v3/capabilities", undefined, { token: alice.token });
    expect(forUser.body.capabilities).not.toHaveProperty("m.account_moderation");
  });

  it("tells a suspended user that profile changes are off", async () => {
    const { s, root, alice } = await setup();
    const caps = async () => (await s.call("GET", "/_matrix/client/v3/capabilities", undefined, { token: alice.token })).body.capabilities;
    expect((await caps())["m.set_displayname"]).toEqual({ enabled: true });
    await s.call("PUT", `${V1}/suspend/${enc(alice.userId)}`, { suspended: true }, { token: root.token });
    expect((await caps())["m.set_displayname"]).toEqual({ enabled: false });
    expect((await caps())["m.set_avatar_url"]).toEqual({ enabled: false });
  });
});
