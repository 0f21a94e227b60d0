import { describe, it, expect, beforeEach } from "vitest";
import { fixture } from "./e2eeFixture.ts";
import type { Fixture } from "./e2eeFixture.ts";

const ALG = "m.megolm_backup.v1.curve25519-aes-sha2";
const kd = (first: number, forwarded = 0, verified = false, c = "x") => ({
  first_message_index: first,
  forwarded_count: forwarded,
  is_verified: verified,
  session_data: { ephemeral: "e", ciphertext: c, mac: "m" },
});

describe("key backup", () => {
  let f: Fixture;
  let t: string;
  const base = "/_matrix/client/v3/room_keys";
  beforeEach(async () => {
    f = await fixture();
    t = await f.device("alice", "ADEV");
  });

  it("serves room and session IDs named like Object.prototype members", async () => {
    // Found by the robustness fuzzer: a room ID `__proto__` made every later GET room_keys/keys answer 500.
    await f.call("POST", `${base}/version`, t, { algorithm: ALG, auth_data: { public_key: "pk" } });
    for (const [room, session] of [["__proto__", "__proto__"], ["constructor", "toString"], ["!r:x", "__proto__"]]) {
      expect((await f.call("PUT", `${base}/keys/${room}/${session}?version=1`, t, kd(1))).status).toBe(200);
    }
    const all = await f.call("GET", `${base}/keys?version=1`, t);
    expect(all.status).toBe(200);
    const text = JSON.stringify(all.json);
    expect(JSON.parse(text)).toEqual(JSON.parse(
      `{"rooms":{"__proto__":{"sessions":{"__proto__":${JSON.stringify(kd(1))}}},"constructor":{"sessions":{"toString":${JSON.stringify(kd(1))}}},"!r:x":{"sessions":{"__proto__":${JSON.stringify(kd(1))}}}}}`,
    ));
    expect(Object.keys((await f.call("GET", `${base}/keys/__proto__?version=1`, t)).json.sessions as object)).toEqual(["__proto__"]);
  });

  it("answers 404 M_NOT_FOUND when there is no backup", async () => {
    const r = await f.call("GET", `${base}/version`, t);
    expect(r.status).toBe(404);
    expect(r.json.errcode).toBe("M_NOT_FOUND");
    expect((await f.call("GET", `${base}/version/1`, t)).status).toBe(404);
    expect((await f.call("GET", `${base}/keys?version=1`, t)).status).toBe(404);
  });

  it("creates, reads, updates and deletes versions; numbers are not reused", async () => {
    const c = await f.call("POST", `${base}/version`, t, { algorithm: ALG, auth_data: { public_key: "pk" } });
    expect(c.json).toEqual({ version: "1" });
    const latest = await f.call("GET", `${base}/version`, t);
    expect(latest.json).toEqual({ algorithm: ALG, auth_data: { public_key: "pk" }, count: 0, etag: "0", version: "1" });
    expect((await f.call("GET", `${base}/version/1`, t)).json).toEqual(latest.json);

    const upd = await f.call("PUT", `${base}/version/1`, t, { algorithm: ALG, auth_data: { public_key: "pk", signatures: {} }, version: "1" });
    expect(upd.status).toBe(200);
    expect((await f.call("GET", `${base}/version`, t)).json.auth_data).toEqual({ public_key: "pk", signatures: {} });
    const wrongAlg = await f.call("PUT", `${base}/version/1`, t, { algorithm: "other", auth_data: {} });
    expect(wrongAlg.status).toBe(400);
    expect(wrongAlg.json.errcode).toBe("M_INVALID_PARAM");
    const wrongVersion = await f.call("PUT", `${base}/version/1`, t, { algorithm: ALG, auth_data: {}, version: "2" });
    expect(wrongVersion.status).toBe(400);
    expect((await f.call("PUT", `${base}/version/7`, t, { algorithm: ALG, auth_data: {} })).status).toBe(404);

    expect((await f.call("DELETE", `${base}/version/1`, t)).status).toBe(200);
    expect((await f.call("GET", `${base}/version`, t)).status).toBe(404);
    expect((await f.call("DELETE", `${base}/version/1`, t)).status).toBe(404);
    expect((await f.call("POST", `${base}/version`, t, { algorithm: ALG, auth_data: {} })).json).toEqual({ version: "2" });
  });

  it("stores keys at all three levels, keeps the better key, and counts with an etag", async () => {
    await f.call("POST", `${base}/version`, t, { algorithm: ALG, auth_data: {} });
    let r = await f.call("PUT", `${base}/keys?version=1`, t, { rooms: { "!a:x": { sessions: { s1: kd(5) } } } });
    expect(r.json).toEqual({ count: 1, etag: "1" });
    r = await f.call("PUT", `${base}/keys/!b:x?version=1`, t, { sessions: { s2: kd(0) } });
    expect(r.json).toEqual({ count: 2, etag: "2" });
    r = await f.call("PUT", `${base}/keys/!b:x/s3?version=1`, t, kd(0));
    expect(r.json).toEqual({ count: 3, etag: "3" });

    // A worse key (higher first_message_index) does not replace; a verified one does.
    r = await f.call("PUT", `${base}/keys/!a:x/s1?version=1`, t, kd(9, 0, false, "worse"));
    expect(r.json).toEqual({ count: 3, etag: "3" });
    expect((await f.call("GET", `${base}/keys/!a:x/s1?version=1`, t)).json).toEqual(kd(5));
    await f.call("PUT", `${base}/keys/!a:x/s1?version=1`, t, kd(9, 0, true, "verified"));
    expect((await f.call("GET", `${base}/keys/!a:x/s1?version=1`, t)).json).toEqual(kd(9, 0, true, "verified"));
    // Among verified keys, lower first_message_index wins, then lower forwarded_count.
    await f.call("PUT", `${base}/keys/!a:x/s1?version=1`, t, kd(9, 3, true, "more forwarded"));
    expect(((await f.call("GET", `${base}/keys/!a:x/s1?version=1`, t)).json.session_data as { ciphertext: string }).ciphertext).toBe("verified");

    const all = await f.call("GET", `${base}/keys?version=1`, t);
    expect(Object.keys(all.json.rooms as object).sort()).toEqual(["!a:x", "!b:x"]);
    expect(Object.keys((all.json.rooms as Record<string, { sessions: object }>)["!b:x"]!.sessions).sort()).toEqual(["s2", "s3"]);
    expect((await f.call("GET", `${base}/keys/!none:x?version=1`, t)).json).toEqual({ sessions: {} });
    const missing = await f.call("GET", `${base}/keys/!a:x/nope?version=1`, t);
    expect(missing.status).toBe(404);
    expect(missing.json.errcode).toBe("M_NOT_FOUND");
    expect((await f.call("GET", `${base}/version`, t)).json.count).toBe(3);

    r = await f.call("DELETE", `${base}/keys/!b:x/s3?version=1`, t);
    expect(r.json.count).toBe(2);
    r = await f.call("DELETE", `${base}/keys/!b:x?version=1`, t);
    expect(r.json.count).toBe(1);
    r = await f.call("DELETE", `${base}/keys?version=1`, t);
    expect(r.json.count).toBe(0);
    expect((await f.call("GET", `${base}/keys?version=1`, t)).json).toEqual({ rooms: {} });
  });

  it("refuses uploads to a version that is not the current one", async () => {
    await f.call("POST", `${base}/version`, t, { algorithm: ALG, auth_data: {} });
    await f.call("POST", `${base}/version`, t, { algorithm: ALG, auth_data: {} });
    const r = await f.call("PUT", `${base}/keys/!a:x/s1?version=1`, t, kd(0));
    expect(r.status).toBe(403);
    expect(r.json).toMatchObject({ errcode: "M_WRONG_ROOM_KEYS_VERSION", current_version: "2" });
    const unknown = await f.call("PUT", `${base}/keys/!a:x/s1?version=99`, t, kd(0));
    expect(unknown.status).toBe(404);
    const noParam = await f.call("PUT", `${base}/keys/!a:x/s1`, t, kd(0));
    expect(noParam.status).toBe(400);
    expect(noParam.json.errcode).toBe("M_MISSING_PARAM");
    const badBody = await f.call("PUT", `${base}/keys/!a:x/s1?version=2`, t, { first_message_index: "x" });
    expect(badBody.status).toBe(400);
  });

  it("keeps users' backups apart", async () => {
    const bob = await f.device("bob", "BDEV");
    await f.call("POST", `${base}/version`, t, { algorithm: ALG, auth_data: {} });
    expect((await f.call("GET", `${base}/version`, bob)).status).toBe(404);
    expect((await f.call("POST", `${base}/version`, bob, { algorithm: ALG, auth_data: {} })).json).toEqual({ version: "1" });
  });
});
