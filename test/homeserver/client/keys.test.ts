import { describe, it, expect, beforeEach } from "vitest";
import nacl from "tweetnacl";
import { fixture, SERVER } from "./e2eeFixture.ts";
import type { Fixture } from "./e2eeFixture.ts";
import { deviceListChanges, e2eeSyncSection } from "../../../src/homeserver/services/e2ee.ts";
import { currentStreamPos } from "../../../src/homeserver/context.ts";
import { canonicalJsonBytes } from "../../../src/homeserver/crypto/canonicalJson.ts";
import { encodeBase64 } from "../../../src/homeserver/crypto/base64.ts";

const ALICE = `@alice:${SERVER}`;
const BOB = `@bob:${SERVER}`;

const deviceKeys = (userId: string, deviceId: string, curve = "curve") => ({
  user_id: userId,
  device_id: deviceId,
  algorithms: ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
  keys: { [`curve25519:${deviceId}`]: `${curve}${deviceId}`, [`ed25519:${deviceId}`]: `ed${deviceId}` },
  signatures: { [userId]: { [`ed25519:${deviceId}`]: "sig" } },
});

/** A real ed25519 key pair and a signer for Matrix JSON. */
function keyPair() {
  const kp = nacl.sign.keyPair();
  const pub = encodeBase64(kp.publicKey);
  const sign = (obj: Record<string, unknown>, userId: string) => {
    const { signatures, unsigned: _u, ...rest } = obj as { signatures?: Record<string, Record<string, string>>; unsigned?: unknown };
    const sig = encodeBase64(nacl.sign.detached(canonicalJsonBytes(rest), kp.secretKey));
    return { ...rest, signatures: { ...signatures, [userId]: { ...signatures?.[userId], [`ed25519:${pub}`]: sig } } };
  };
  return { pub, sign };
}

const crossKey = (userId: string, usage: string, pub: string) => ({ user_id: userId, usage: [usage], keys: { [`ed25519:${pub}`]: pub } });

describe("keys/upload, query, claim", () => {
  let f: Fixture;
  let alice: string;
  let bob: string;
  beforeEach(async () => {
    f = await fixture();
    alice = await f.device("alice", "ADEV", "Alice's phone");
    bob = await f.device("bob", "BDEV");
  });

  it("stores device keys and one-time keys and returns the counts", async () => {
    const r = await f.call("POST", "/_matrix/client/v3/keys/upload", alice, {
      device_keys: deviceKeys(ALICE, "ADEV"),
      one_time_keys: { "signed_curve25519:AAAA": { key: "k1" }, "signed_curve25519:AAAB": { key: "k2" }, "curve25519:AAAC": "k3" },
    });
    expect(r.status).toBe(200);
    expect(r.json.one_time_key_counts).toEqual({ signed_curve25519: 2, curve25519: 1 });
    const again = await f.call("POST", "/_matrix/client/r0/keys/upload", alice, { device_keys: deviceKeys(ALICE, "ADEV") });
    expect(again.json.one_time_key_counts).toEqual({ signed_curve25519: 2, curve25519: 1 });
  });

  it("rejects device keys that differ from the stored ones, and keys of another device", async () => {
    await f.call("POST", "/_matrix/client/v3/keys/upload", alice, { device_keys: deviceKeys(ALICE, "ADEV") });
    const r = await f.call("POST", "/_matrix/client/v3/keys/upload", alice, { device_keys: deviceKeys(ALICE, "ADEV", "other") });
    expect(r.status).toBe(400);
    const wrongDevice = await f.call("POST", "/_matrix/client/v3/keys/upload", alice, { device_keys: deviceKeys(ALICE, "XDEV") });
    expect(wrongDevice.status).toBe(400);
    const wrongUser = await f.call("POST", "/_matrix/client/v3/keys/upload", alice, { device_keys: deviceKeys(BOB, "ADEV") });
    expect(wrongUser.status).toBe(400);
  });

  it("rejects a one-time key ID reused with different content", async () => {
    await f.call("POST", "/_matrix/client/v3/keys/upload", alice, { one_time_keys: { "signed_curve25519:AAAA": { key: "k1" } } });
    const same = await f.call("POST", "/_matrix/client/v3/keys/upload", alice, { one_time_keys: { "signed_curve25519:AAAA": { key: "k1" } } });
    expect(same.status).toBe(200);
    const r = await f.call("POST", "/_matrix/client/v3/keys/upload", alice, { one_time_keys: { "signed_curve25519:AAAA": { key: "other" } } });
    expect(r.status).toBe(400);
    expect(r.json.errcode).toBe("M_INVALID_PARAM");
  });

  it("requires authentication", async () => {
    const r = await f.call("POST", "/_matrix/client/v3/keys/upload", undefined, {});
    expect(r.status).toBe(401);
    expect(r.json.errcode).toBe("M_MISSING_TOKEN");
  });

  it("answers keys/query with device keys, display names and failures for remote servers", async () => {
    await f.call("POST", "/_matrix/client/v3/keys/upload", alice, { device_keys: deviceKeys(ALICE, "ADEV") });
    const r = await f.call("POST", "/_matrix/client/v3/keys/query", bob, { device_keys: { [ALICE]: [], "@x:elsewhere.example": [] } });
    expect(r.status).toBe(200);
    const dk = (r.json.device_keys as Record<string, Record<string, Record<string, unknown>>>)[ALICE]!;
    expect(Object.keys(dk)).toEqual(["ADEV"]);
    expect(dk.ADEV!.unsigned).toEqual({ device_display_name: "Alice's phone" });
    expect(dk.ADEV!.keys).toEqual(deviceKeys(ALICE, "ADEV").keys);
    expect(r.json.failures).toHaveProperty("elsewhere.example");
    const filtered = await f.call("POST", "/_matrix/client/v3/keys/query", bob, { device_keys: { [ALICE]: ["NOPE"] } });
    expect(filtered.json.device_keys).toEqual({ [ALICE]: {} });
    expect(filtered.json.failures).toEqual({});
  });

  it("claims one-time keys once each, then the fallback key, then nothing", async () => {
    await f.call("POST", "/_matrix/client/v3/keys/upload", alice, {
      one_time_keys: { "signed_curve25519:AAAA": { key: "k1" } },
      fallback_keys: { "signed_curve25519:FFFF": { key: "fb", fallback: true } },
    });
    const body = { one_time_keys: { [ALICE]: { ADEV: "signed_curve25519" } } };
    const first = await f.call("POST", "/_matrix/client/v3/keys/claim", bob, body);
    expect(first.json.one_time_keys).toEqual({ [ALICE]: { ADEV: { "signed_curve25519:AAAA": { key: "k1" } } } });
    let section = await f.hs.services.store.read((tx) => e2eeSyncSection(tx, ALICE, "ADEV", 0, 100));
    expect(section.device_one_time_keys_count.signed_curve25519).toBe(0);
    expect(section.device_unused_fallback_key_types).toEqual(["signed_curve25519"]);

    const second = await f.call("POST", "/_matrix/client/v3/keys/claim", bob, body);
    expect(second.json.one_time_keys).toEqual({ [ALICE]: { ADEV: { "signed_curve25519:FFFF": { key: "fb", fallback: true } } } });
    section = await f.hs.services.store.read((tx) => e2eeSyncSection(tx, ALICE, "ADEV", 0, 100));
    expect(section.device_unused_fallback_key_types).toEqual([]);

    // The fallback key keeps being handed out (marked used) until replaced.
    const third = await f.call("POST", "/_matrix/client/v3/keys/claim", bob, body);
    expect(third.json.one_time_keys).toEqual(second.json.one_time_keys);

    // A new fallback key is unused again.
    await f.call("POST", "/_matrix/client/v3/keys/upload", alice, { fallback_keys: { "signed_curve25519:GGGG": { key: "fb2", fallback: true } } });
    section = await f.hs.services.store.read((tx) => e2eeSyncSection(tx, ALICE, "ADEV", 0, 100));
    expect(section.device_unused_fallback_key_types).toEqual(["signed_curve25519"]);
  });

  it("hands out one-time keys oldest upload first, whatever their IDs", async () => {
    await f.call("POST", "/_matrix/client/v3/keys/upload", alice, { one_time_keys: { "signed_curve25519:zzzz": { key: "old" } } });
    await f.call("POST", "/_matrix/client/v3/keys/upload", alice, { one_time_keys: { "signed_curve25519:AAAA": { key: "new" } } });
    const body = { one_time_keys: { [ALICE]: { ADEV: "signed_curve25519" } } };
    expect((await f.call("POST", "/_matrix/client/v3/keys/claim", bob, body)).json.one_time_keys).toEqual({ [ALICE]: { ADEV: { "signed_curve25519:zzzz": { key: "old" } } } });
    expect((await f.call("POST", "/_matrix/client/v3/keys/claim", bob, body)).json.one_time_keys).toEqual({ [ALICE]: { ADEV: { "signed_curve25519:AAAA": { key: "new" } } } });
    // Another algorithm is not claimed by mistake.
    await f.call("POST", "/_matrix/client/v3/keys/upload", alice, { one_time_keys: { "curve25519:BBBB": "plain" } });
    expect((await f.call("POST", "/_matrix/client/v3/keys/claim", bob, body)).json.one_time_keys).toEqual({});
  });

  it("returns nothing for a device with no keys left at all", async () => {
    const r = await f.call("POST", "/_matrix/client/v3/keys/claim", bob, { one_time_keys: { [ALICE]: { ADEV: "signed_curve25519" } } });
    expect(r.status).toBe(200);
    expect(r.json.one_time_keys).toEqual({});
    expect(r.json.failures).toEqual({});
  });
});

describe.each([
  ["from the window of news", undefined],
  ["by scanning room members", 0],
] as const)("device list changes, %s", (_name, windowLimit) => {
  const changesFor = (f: Fixture, userId: string, since: number, upTo: number) =>
    f.hs.services.store.read((tx) => deviceListChanges(tx, userId, since, upTo, windowLimit));

  it("reports keys changes of users sharing a room, new members, and users who left", async () => {
    const f = await fixture();
    const alice = await f.device("alice", "ADEV");
    const bob = await f.device("bob", "BDEV");
    await f.device("carol", "CDEV");
    const CAROL = `@carol:${SERVER}`;
    await f.membership(ALICE, "!r:x", "join");
    await f.membership(BOB, "!r:x", "join");
    const since = await currentStreamPos(f.hs.services.store);

    await f.call("POST", "/_matrix/client/v3/keys/upload", bob, { device_keys: deviceKeys(BOB, "BDEV") });
    await f.membership(CAROL, "!r:x", "join");
    let upTo = await currentStreamPos(f.hs.services.store);
    let lists = await changesFor(f, ALICE, since, upTo);
    expect(lists).toEqual({ changed: [BOB, CAROL], left: [] });

    // An initial sync carries no device list changes.
    lists = (await f.hs.services.store.read((tx) => e2eeSyncSection(tx, ALICE, "ADEV", 0, upTo))).device_lists;
    expect(lists).toEqual({ changed: [], left: [] });

    const since2 = upTo;
    await f.membership(BOB, "!r:x", "leave");
    upTo = await currentStreamPos(f.hs.services.store);
    lists = await changesFor(f, ALICE, since2, upTo);
    expect(lists).toEqual({ changed: [], left: [BOB] });

    // keys/changes takes sync tokens.
    const changes = await f.call("GET", `/_matrix/client/v3/keys/changes?from=s${since}&to=s${upTo}`, alice);
    expect(changes.status).toBe(200);
    expect(changes.json.changed).toEqual([CAROL]);
    expect(changes.json.left).toEqual([BOB]);
    const bad = await f.call("GET", `/_matrix/client/v3/keys/changes?from=nonsense&to=s1`, alice);
    expect(bad.status).toBe(400);
  });

  it("reports everyone in a room we joined, and everyone who shares no other room when we leave", async () => {
    const f = await fixture();
    const CAROL = `@carol:${SERVER}`;
    await f.membership(BOB, "!r:x", "join");
    await f.membership(CAROL, "!r:x", "join");
    await f.membership(CAROL, "!other:x", "join");
    await f.membership(ALICE, "!other:x", "join");
    const since = await currentStreamPos(f.hs.services.store);
    await f.membership(ALICE, "!r:x", "join");
    let upTo = await currentStreamPos(f.hs.services.store);
    expect(await changesFor(f, ALICE, since, upTo)).toEqual({ changed: [ALICE, BOB, CAROL], left: [] });
    const since2 = upTo;
    await f.membership(ALICE, "!r:x", "leave");
    upTo = await currentStreamPos(f.hs.services.store);
    // Carol still shares !other:x with Alice; Bob shares nothing any more.
    expect(await changesFor(f, ALICE, since2, upTo)).toEqual({ changed: [], left: [BOB] });
  });

  it("does not report users who share no room", async () => {
    const f = await fixture();
    const bob = await f.device("bob", "BDEV");
    await f.membership(ALICE, "!r:x", "join");
    await f.membership(BOB, "!other:x", "join");
    const since = await currentStreamPos(f.hs.services.store);
    await f.call("POST", "/_matrix/client/v3/keys/upload", bob, { device_keys: deviceKeys(BOB, "BDEV") });
    const upTo = await currentStreamPos(f.hs.services.store);
    const lists = await changesFor(f, ALICE, since, upTo);
    expect(lists.changed).toEqual([]);
  });
});

describe("cross-signing", () => {
  it("uploads without UIA the first time, requires UIA to replace, and hides user-signing keys from others", async () => {
    const f = await fixture();
    const alice = await f.device("alice", "ADEV");
    const bob = await f.device("bob", "BDEV");
    await f.call("POST", "/_matrix/client/v3/keys/upload", alice, { device_keys: deviceKeys(ALICE, "ADEV") });
    const master = keyPair();
    const ssk = keyPair();
    const usk = keyPair();
    const body = {
      master_key: crossKey(ALICE, "master", master.pub),
      self_signing_key: master.sign(crossKey(ALICE, "self_signing", ssk.pub), ALICE),
      user_signing_key: master.sign(crossKey(ALICE, "user_signing", usk.pub), ALICE),
    };
    const first = await f.call("POST", "/_matrix/client/v3/keys/device_signing/upload", alice, body);
    expect(first.status).toBe(200);
    // The same keys again: nothing is replaced, so no UIA.
    expect((await f.call("POST", "/_matrix/client/v3/keys/device_signing/upload", alice, body)).status).toBe(200);

    const master2 = keyPair();
    const replace = await f.call("POST", "/_matrix/client/v3/keys/device_signing/upload", alice, { master_key: crossKey(ALICE, "master", master2.pub) });
    expect(replace.status).toBe(401);
    expect(replace.json.flows).toBeDefined();
    expect(typeof replace.json.session).toBe("string");

    // Completing UIA (this fixture account has no password, so the dummy stage proves identity).
    const done = await f.call("POST", "/_matrix/client/v3/keys/device_signing/upload", alice, {
      master_key: crossKey(ALICE, "master", master2.pub),
      auth: { type: "m.login.dummy", session: replace.json.session },
    });
    expect(done.status).toBe(200);
    const afterReplace = await f.call("POST", "/_matrix/client/v3/keys/query", bob, { device_keys: { [ALICE]: [] } });
    expect((afterReplace.json.master_keys as Record<string, unknown>)[ALICE]).toEqual(crossKey(ALICE, "master", master2.pub));
    // The old subkeys were signed by the replaced master key: they are gone.
    expect(afterReplace.json.self_signing_keys).toEqual({});
    await f.call("POST", "/_matrix/client/v3/keys/device_signing/upload", alice, {
      auth: { type: "m.login.dummy" },
      ...body,
    });

    const asBob = await f.call("POST", "/_matrix/client/v3/keys/query", bob, { device_keys: { [ALICE]: [] } });
    expect((asBob.json.master_keys as Record<string, unknown>)[ALICE]).toEqual(body.master_key);
    expect((asBob.json.self_signing_keys as Record<string, unknown>)[ALICE]).toEqual(body.self_signing_key);
    expect(asBob.json.user_signing_keys).toEqual({});
    const asAlice = await f.call("POST", "/_matrix/client/v3/keys/query", alice, { device_keys: { [ALICE]: [] } });
    expect((asAlice.json.user_signing_keys as Record<string, unknown>)[ALICE]).toEqual(body.user_signing_key);
  });

  it("rejects a self-signing key not signed by the master key", async () => {
    const f = await fixture();
    const alice = await f.device("alice", "ADEV");
    const master = keyPair();
    const other = keyPair();
    const ssk = keyPair();
    const r = await f.call("POST", "/_matrix/client/v3/keys/device_signing/upload", alice, {
      master_key: crossKey(ALICE, "master", master.pub),
      self_signing_key: other.sign(crossKey(ALICE, "self_signing", ssk.pub), ALICE),
    });
    expect(r.status).toBe(400);
    expect(r.json.errcode).toBe("M_INVALID_SIGNATURE");
  });

  it("merges valid signatures into stored keys and reports invalid ones", async () => {
    const f = await fixture();
    const alice = await f.device("alice", "ADEV");
    const bob = await f.device("bob", "BDEV");
    await f.membership(ALICE, "!r:x", "join");
    await f.membership(BOB, "!r:x", "join");
    const dk = deviceKeys(ALICE, "ADEV");
    await f.call("POST", "/_matrix/client/v3/keys/upload", alice, { device_keys: dk });
    const master = keyPair();
    const ssk = keyPair();
    await f.call("POST", "/_matrix/client/v3/keys/device_signing/upload", alice, {
      master_key: crossKey(ALICE, "master", master.pub),
      self_signing_key: master.sign(crossKey(ALICE, "self_signing", ssk.pub), ALICE),
    });
    const since = await currentStreamPos(f.hs.services.store);
    const signed = ssk.sign(dk, ALICE);
    const forged = keyPair().sign(dk, ALICE);
    const r = await f.call("POST", "/_matrix/client/v3/keys/signatures/upload", alice, { [ALICE]: { ADEV: signed, NODEV: signed } });
    expect(r.status).toBe(200);
    expect(r.json.failures).toEqual({ [ALICE]: { NODEV: expect.objectContaining({ errcode: "M_NOT_FOUND" }) } });
    const q = await f.call("POST", "/_matrix/client/v3/keys/query", bob, { device_keys: { [ALICE]: [] } });
    const stored = (q.json.device_keys as Record<string, Record<string, { signatures: Record<string, Record<string, string>> }>>)[ALICE]!.ADEV!;
    expect(stored.signatures[ALICE]).toEqual({ ...dk.signatures[ALICE], ...signed.signatures[ALICE] });
    const upTo = await currentStreamPos(f.hs.services.store);
    const lists = (await f.hs.services.store.read((tx) => e2eeSyncSection(tx, BOB, "BDEV", since, upTo))).device_lists;
    expect(lists.changed).toEqual([ALICE]);

    const bad = await f.call("POST", "/_matrix/client/v3/keys/signatures/upload", alice, { [ALICE]: { ADEV: forged } });
    expect(bad.json.failures).toEqual({ [ALICE]: { ADEV: expect.objectContaining({ errcode: "M_INVALID_SIGNATURE" }) } });
  });
});

describe("dehydrated devices", () => {
  it("are not implemented and say so with 404 M_UNRECOGNIZED", async () => {
    const f = await fixture();
    const alice = await f.device("alice", "ADEV");
    for (const path of ["/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device", "/_matrix/client/v1/dehydrated_device"]) {
      const r = await f.call("GET", path, alice);
      expect(r.status, path).toBe(404);
      expect(r.json.errcode).toBe("M_UNRECOGNIZED");
    }
  });
});

describe("signed JSON without a canonical form", () => {
  // Found by test/homeserver/robustness.test.ts: floats reached canonicalJson() and answered 500.
  it("answers 400 M_BAD_JSON on keys/upload, device_signing/upload and signatures/upload", async () => {
    const f = await fixture();
    const alice = await f.device("alice", "ADEV");
    await f.call("POST", "/_matrix/client/v3/keys/upload", alice, { one_time_keys: { "signed_curve25519:AAAA": { key: "k1" } } });
    const cases: [string, unknown][] = [
      ["/keys/upload", { device_keys: { ...deviceKeys(ALICE, "ADEV"), keys: { "ed25519:ADEV": 1.5 } } }],
      // the same key ID as a stored one-time key, compared in canonical form
      ["/keys/upload", { one_time_keys: { "signed_curve25519:AAAA": { key: 5e-324 } } }],
      ["/keys/upload", { fallback_keys: { "signed_curve25519:BBBB": { key: "x", n: 2 ** 60 } } }],
      ["/keys/device_signing/upload", { master_key: { ...crossKey(ALICE, "master", "pub"), n: 0.5 } }],
      ["/keys/signatures/upload", { [ALICE]: { ADEV: { ...deviceKeys(ALICE, "ADEV"), keys: [[0.5]] } } }],
    ];
    for (const [path, body] of cases) {
      const r = await f.call("POST", `/_matrix/client/v3${path}`, alice, body);
      expect([path, r.status, r.json.errcode]).toEqual([path, 400, "M_BAD_JSON"]);
    }
  });
});
