import { describe, it, expect } from "vitest";
import { SERVER, testServer } from "./accountHarness.ts";
import { key, pos, prefix } from "../../../src/storage/store.ts";

const pw = (user: string, password: string, session?: string) => ({
  type: "m.login.password",
  identifier: { type: "m.id.user", user },
  password,
  ...(session ? { session } : {}),
});

describe("devices", () => {
  it("lists, shows, renames; 404 for unknown devices", async () => {
    const { call, register } = await testServer();
    const a = await register("alice", "pw", { device_id: "ONE" });
    const got = await call("GET", "/_matrix/client/v3/devices/ONE", undefined, { token: a.token });
    expect(got.body).toMatchObject({ device_id: "ONE", last_seen_ts: expect.any(Number) });
    expect((await call("PUT", "/_matrix/client/v3/devices/ONE", { display_name: "Desk" }, { token: a.token })).status).toBe(200);
    expect((await call("GET", "/_matrix/client/r0/devices/ONE", undefined, { token: a.token })).body.display_name).toBe("Desk");
    expect((await call("GET", "/_matrix/client/v3/devices/NOPE", undefined, { token: a.token })).status).toBe(404);
    expect((await call("PUT", "/_matrix/client/v3/devices/NOPE", { display_name: "x" }, { token: a.token })).status).toBe(404);
    expect((await call("PUT", "/_matrix/client/v3/devices/ONE", { display_name: 3 }, { token: a.token })).body.errcode).toBe("M_BAD_JSON");
    // Another user's device is not visible.
    const b = await register("bob");
    expect((await call("GET", "/_matrix/client/v3/devices/ONE", undefined, { token: b.token })).status).toBe(404);
  });

  it("last_seen follows the device's requests, at most one write per five minutes", async () => {
    const { call, register, advance } = await testServer();
    const a = await register("alice", "pw", { device_id: "ONE" });
    const seen = async () => (await call("GET", "/_matrix/client/v3/devices/ONE", undefined, { token: a.token })).body;
    const atLogin = (await seen()).last_seen_ts as number;
    advance(60_000);
    // Within the interval of the last write: not written again.
    await call("GET", "/_matrix/client/v3/account/whoami", undefined, { token: a.token, from: "10.1.2.3" });
    expect((await seen()).last_seen_ts).toBe(atLogin);
    advance(5 * 60_000);
    await call("GET", "/_matrix/client/v3/account/whoami", undefined, { token: a.token, from: "10.9.9.9" });
    expect(await seen()).toMatchObject({ last_seen_ts: atLogin + 6 * 60_000, last_seen_ip: "10.9.9.9" });
  });

  it("DELETE /devices/{id} needs the password through UIA, then removes tokens, keys, to-device rows and records a device-list change", async () => {
    const { hs, call, register } = await testServer();
    const a = await register("alice", "pw", { device_id: "KEEP" });
    const other = await call("POST", "/_matrix/client/v3/login", { type: "m.login.password", user: "alice", password: "pw", device_id: "GONE" });
    const userId = `@alice:${SERVER}`;
    // Rows the e2ee and to-device areas would have written for GONE.
    await hs.services.store.write(async (tx) => {
      tx.put("device_keys", key(userId, "GONE"), { device_id: "GONE" });
      tx.put("one_time_keys", key(userId, "GONE", "signed_curve25519:AAA"), { key: "x" });
      tx.put("fallback_keys", key(userId, "GONE", "signed_curve25519"), { keyId: "B", key: "y", used: false });
      tx.put("to_device", key(userId, "GONE", pos(1)), { sender: userId, type: "m.test", content: {} });
      tx.put("device_keys", key(userId, "KEEP"), { device_id: "KEEP" });
    });
    const before = await hs.services.store.read((tx) => tx.get<number>("settings", "stream_pos"));

    const probe = await call("DELETE", "/_matrix/client/v3/devices/GONE", {}, { token: a.token });
    expect(probe.status).toBe(401);
    expect(probe.body.flows).toEqual([{ stages: ["m.login.password"] }]);
    const wrong = await call("DELETE", "/_matrix/client/v3/devices/GONE", { auth: pw("alice", "bad", probe.body.session) }, { token: a.token });
    expect([wrong.status, wrong.body.errcode, wrong.body.session]).toEqual([401, "M_FORBIDDEN", probe.body.session]);
    // The password of another user does not count either: 403, as Synapse answers it.
    await register("bob", "bobpw");
    const otherUser = await call("DELETE", "/_matrix/client/v3/devices/GONE", { auth: pw("bob", "bobpw", probe.body.session) }, { token: a.token });
    expect(otherUser.status).toBe(403);
    const ok = await call("DELETE", "/_matrix/client/v3/devices/GONE", { auth: pw("alice", "pw", probe.body.session) }, { token: a.token });
    expect(ok.status).toBe(200);

    expect((await call("GET", "/_matrix/client/v3/account/whoami", undefined, { token: other.body.access_token })).body.errcode).toBe("M_UNKNOWN_TOKEN");
    const rows = await hs.services.store.read(async (tx) => ({
      device: await tx.get("devices", key(userId, "GONE")),
      keys: await tx.get("device_keys", key(userId, "GONE")),
      otk: await tx.count("one_time_keys", { prefix: prefix(userId, "GONE") }),
      fallback: await tx.count("fallback_keys", { prefix: prefix(userId, "GONE") }),
      toDevice: await tx.count("to_device", { prefix: prefix(userId, "GONE") }),
      kept: await tx.get("device_keys", key(userId, "KEEP")),
      stream: await tx.range<{ userId: string }>("device_list_stream", { gt: pos(before!) }),
    }));
    expect(rows).toMatchObject({ device: undefined, keys: undefined, otk: 0, fallback: 0, toDevice: 0, kept: { device_id: "KEEP" } });
    expect(rows.stream.map((r) => r.value.userId)).toContain(userId);
    expect((await call("GET", "/_matrix/client/v3/account/whoami", undefined, { token: a.token })).status).toBe(200);
  });

  it("POST /delete_devices deletes several devices after UIA (no session needed when auth comes first)", async () => {
    const { call, register } = await testServer();
    const a = await register("alice", "pw");
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) ids.push((await call("POST", "/_matrix/client/v3/login", { type: "m.login.password", user: "alice", password: "pw" })).body.device_id);
    expect((await call("POST", "/_matrix/client/v3/delete_devices", { devices: "X" }, { token: a.token })).body.errcode).toBe("M_MISSING_PARAM");
    const r = await call("POST", "/_matrix/client/v3/delete_devices", { devices: ids, auth: pw(`@alice:${SERVER}`, "pw") }, { token: a.token });
    expect(r.status).toBe(200);
    const left = await call("GET", "/_matrix/client/v3/devices", undefined, { token: a.token });
    expect(left.body.devices.map((d: { device_id: string }) => d.device_id)).toEqual([a.deviceId]);
  });

  it("UIA for an account without a password is the dummy stage (its token is all there is)", async () => {
    const { call } = await testServer();
    const r = await call("POST", "/_matrix/client/v3/register", { username: "nopw", auth: { type: "m.login.dummy" } });
    const probe = await call("POST", "/_matrix/client/v3/delete_devices", { devices: [] }, { token: r.body.access_token });
    expect(probe.body.flows).toEqual([{ stages: ["m.login.dummy"] }]);
  });

  it("limits failed UIA password stages per user (rc_login.failed_attempts)", async () => {
    const { call, register } = await testServer();
    const a = await register("alice", "pw");
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      statuses.push((await call("POST", "/_matrix/client/v3/delete_devices", { devices: [], auth: pw("alice", "bad") }, { token: a.token, from: `10.1.1.${i}` })).status);
    }
    expect(statuses).toEqual([401, 401, 401, 429]);
  });
});

describe("password change and deactivation", () => {
  it("changes the password and logs out other devices by default", async () => {
    const { call, register } = await testServer();
    const a = await register("alice", "old");
    const other = await call("POST", "/_matrix/client/v3/login", { type: "m.login.password", user: "alice", password: "old" });
    expect((await call("POST", "/_matrix/client/v3/account/password", { auth: pw("alice", "old") }, { token: a.token })).body.errcode).toBe("M_MISSING_PARAM");
    const r = await call("POST", "/_matrix/client/v3/account/password", { new_password: "new", auth: pw("alice", "old") }, { token: a.token });
    expect(r.status).toBe(200);
    expect((await call("GET", "/_matrix/client/v3/account/whoami", undefined, { token: a.token })).status).toBe(200);
    expect((await call("GET", "/_matrix/client/v3/account/whoami", undefined, { token: other.body.access_token })).status).toBe(401);
    expect((await call("POST", "/_matrix/client/v3/login", { type: "m.login.password", user: "alice", password: "old" })).status).toBe(403);
    expect((await call("POST", "/_matrix/client/v3/login", { type: "m.login.password", user: "alice", password: "new" })).status).toBe(200);
  });

  it("keeps other devices with logout_devices: false", async () => {
    const { call, register } = await testServer();
    const a = await register("alice", "old");
    const other = await call("POST", "/_matrix/client/v3/login", { type: "m.login.password", user: "alice", password: "old" });
    await call("POST", "/_matrix/client/v3/account/password", { new_password: "new", logout_devices: false, auth: pw("alice", "old") }, { token: a.token });
    expect((await call("GET", "/_matrix/client/v3/account/whoami", undefined, { token: other.body.access_token })).status).toBe(200);
  });

  it("deactivation revokes every token and blocks login", async () => {
    const { call, register } = await testServer();
    const a = await register("alice", "pw");
    const r = await call("POST", "/_matrix/client/v3/account/deactivate", { auth: pw("alice", "pw") }, { token: a.token });
    expect(r).toMatchObject({ status: 200, body: { id_server_unbind_result: "no-support" } });
    expect((await call("GET", "/_matrix/client/v3/account/whoami", undefined, { token: a.token })).status).toBe(401);
    // The password is gone with the account, so the login fails as for an unknown user.
    const login = await call("POST", "/_matrix/client/v3/login", { type: "m.login.password", user: "alice", password: "pw" });
    expect(login.status).toBe(403);
  });
});

describe("third-party identifiers (none are supported)", () => {
  it("lists no 3PIDs and refuses to add, bind or send tokens", async () => {
    const { call, register } = await testServer();
    const a = await register("alice", "pw");
    expect((await call("GET", "/_matrix/client/v3/account/3pid", undefined, { token: a.token })).body).toEqual({ threepids: [] });
    const add = await call("POST", "/_matrix/client/v3/account/3pid/add", { client_secret: "s", sid: "1" }, { token: a.token });
    expect([add.status, add.body.errcode]).toEqual([403, "M_THREEPID_DENIED"]);
    const bind = await call("POST", "/_matrix/client/v3/account/3pid/bind", { client_secret: "s", sid: "1", id_server: "id.example", id_access_token: "t" }, { token: a.token });
    expect(bind.body.errcode).toBe("M_THREEPID_DENIED");
    for (const path of ["/account/3pid/delete", "/account/3pid/unbind"]) {
      const r = await call("POST", `/_matrix/client/v3${path}`, { medium: "email", address: "a@example.org" }, { token: a.token });
      expect(r.body).toEqual({ id_server_unbind_result: "no-support" });
    }
    for (const path of ["/register/email/requestToken", "/register/msisdn/requestToken", "/account/password/email/requestToken", "/account/3pid/msisdn/requestToken"]) {
      const r = await call("POST", `/_matrix/client/v3${path}`, { client_secret: "s", email: "a@example.org", send_attempt: 1 });
      expect([r.status, r.body.errcode]).toEqual([403, "M_THREEPID_DENIED"]);
    }
  });
});

describe("deactivation and rooms", () => {
  it("leaves the rooms the account had joined", async () => {
    const { createRoom } = await import("../../../src/homeserver/roomserver/create.ts");
    const { membershipOf } = await import("../../../src/homeserver/roomserver/state.ts");
    const { hs, call, register } = await testServer();
    const a = await register("alice", "pw");
    const { roomId } = await createRoom(hs.services, a.userId, {});
    expect(await hs.services.store.read((tx) => membershipOf(tx, roomId, a.userId))).toBe("join");
    expect((await call("POST", "/_matrix/client/v3/account/deactivate", { auth: pw("alice", "pw") }, { token: a.token })).status).toBe(200);
    expect(await hs.services.store.read((tx) => membershipOf(tx, roomId, a.userId))).toBe("leave");
  });
});
