/**
 * Issue 12, "E2EE details": `/keys/query` carries `unsigned.device_display_name`, and key-backup
 * version creation takes every `auth_data` shape the spec allows for
 * `m.megolm_backup.v1.curve25519-aes-sha2` (definitions/key_backup_auth_data.yaml).
 */
import { describe, it, expect } from "vitest";
import { testServer } from "./accountHarness.ts";

const ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2";

describe("/keys/query", () => {
  it("carries unsigned.device_display_name, for the owner and for others, and follows renames", async () => {
    const { call, register } = await testServer();
    const a = await register("alice", "pw", { device_id: "ONE", initial_device_display_name: "Phone" });
    const b = await register("bob", "pw", { device_id: "BOB" });
    const deviceKeys = (deviceId: string, userId: string) => ({
      user_id: userId, device_id: deviceId, algorithms: ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
      keys: { [`ed25519:${deviceId}`]: "ed", [`curve25519:${deviceId}`]: "cu" }, signatures: {},
      // A client-supplied unsigned block is not stored or echoed.
      unsigned: { device_display_name: "forged" },
    });
    expect((await call("POST", "/_matrix/client/v3/keys/upload", { device_keys: deviceKeys("ONE", a.userId) }, { token: a.token })).status).toBe(200);
    expect((await call("POST", "/_matrix/client/v3/keys/upload", { device_keys: deviceKeys("BOB", b.userId) }, { token: b.token })).status).toBe(200);
    const query = async (token: string) => (await call("POST", "/_matrix/client/v3/keys/query", { device_keys: { [a.userId]: [], [b.userId]: [] } }, { token })).body.device_keys;
    for (const token of [a.token, b.token]) {
      const got = await query(token);
      expect(got[a.userId].ONE.unsigned).toEqual({ device_display_name: "Phone" });
      // A device without a display name has none to show (and nothing forged).
      expect(got[b.userId].BOB.unsigned).toBeUndefined();
    }
    await call("PUT", "/_matrix/client/v3/devices/ONE", { display_name: "Laptop" }, { token: a.token });
    expect((await query(b.token))[a.userId].ONE.unsigned).toEqual({ device_display_name: "Laptop" });
  });
});

describe("key backup versions", () => {
  it.each([
    ["public_key only", { public_key: "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo" }],
    ["empty signatures", { public_key: "abcdefg", signatures: {} }],
    ["signatures by a device and a cross-signing key", {
      public_key: "abcdefg",
      signatures: { "@alice:hs.test": { "ed25519:ONE": "sig1", "ed25519:bWFzdGVyIGtleQ": "sig2" } },
    }],
    ["extra fields a client adds (e.g. a passphrase's private_key_salt)", {
      public_key: "abcdefg", private_key_salt: "salt", private_key_iterations: 500000, signatures: {},
    }],
  ])("creates and returns a version whose auth_data has %s", async (_name, authData) => {
    const { call, register } = await testServer();
    const a = await register("alice", "pw", { device_id: "ONE" });
    const created = await call("POST", "/_matrix/client/v3/room_keys/version", { algorithm: ALGORITHM, auth_data: authData }, { token: a.token });
    expect(created.status).toBe(200);
    expect(typeof created.body.version).toBe("string");
    const got = await call("GET", `/_matrix/client/v3/room_keys/version/${created.body.version}`, undefined, { token: a.token });
    expect(got.body).toEqual({ algorithm: ALGORITHM, auth_data: authData, count: 0, etag: expect.any(String), version: created.body.version });
    // The same shapes update a version.
    const updated = await call("PUT", `/_matrix/client/v3/room_keys/version/${created.body.version}`, { algorithm: ALGORITHM, auth_data: { ...authData, signatures: { "@alice:hs.test": { "ed25519:ONE": "new" } } } }, { token: a.token });
    expect(updated.status).toBe(200);
  });

  it.each([
    ["no auth_data", { algorithm: ALGORITHM }],
    ["auth_data not an object", { algorithm: ALGORITHM, auth_data: "x" }],
    ["no algorithm", { auth_data: { public_key: "x" } }],
  ])("refuses %s with 400", async (_name, body) => {
    const { call, register } = await testServer();
    const a = await register("alice", "pw");
    const r = await call("POST", "/_matrix/client/v3/room_keys/version", body, { token: a.token });
    expect(r.status).toBe(400);
  });
});
