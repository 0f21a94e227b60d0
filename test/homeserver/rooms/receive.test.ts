/** The checks on receipt of a PDU, in spec order: drop, redact, reject, soft-fail, accept. */
import { describe, expect, it } from "vitest";
import { naclVerifier, publicKeyFromSeed } from "../../../src/homeserver/crypto/ed25519.ts";
import type { JsonObject } from "../../../src/homeserver/crypto/signing.ts";
import type { StateMap } from "../../../src/homeserver/events/types.ts";
import { stateKeyOf } from "../../../src/homeserver/events/types.ts";
import type { ReceiveInputs } from "../../../src/homeserver/rooms/receive.ts";
import { checkFormat, receivePdu, stateAfterEvent } from "../../../src/homeserver/rooms/receive.ts";
import type { TestRoom } from "./builder.ts";
import { alice, bob, carol, room, seedFor } from "./builder.ts";

const keys: ReceiveInputs["keys"] = (server, keyId) => (keyId === "ed25519:test" ? publicKeyFromSeed(seedFor(server)) : undefined);
const inputs = (r: TestRoom, extra: Partial<ReceiveInputs> = {}): ReceiveInputs => ({
  keys, verifier: naclVerifier, fetchEvent: (id) => r.events.get(id), ...extra,
});
const clone = <T>(x: T): T => structuredClone(x);

async function base(v: string): Promise<TestRoom> {
  const r = room(v);
  await r.create(alice);
  await r.join(alice);
  await r.powerLevels(alice, { users: r.version.privilegedCreators ? {} : { [alice]: 100 } });
  await r.joinRule(alice, "public");
  await r.join(bob);
  return r;
}

describe.each(["1", "3", "5", "6", "10", "11", "12"])("receivePdu, room version %s", (v) => {
  it("accepts a valid event against its auth events, the state before it and the current state", async () => {
    const r = await base(v);
    const e = await r.build(bob, "m.room.message", { body: "hi" });
    const res = await receivePdu(clone(e.pdu), r.version, inputs(r, { stateBefore: r.snapshot(), currentState: r.snapshot() }));
    expect(res.outcome).toBe("accept");
    expect(res.event!.eventId).toBe(e.eventId);
    expect(res.event!.roomId).toBe(r.roomId);
    expect(res.redacted).toBeUndefined();
  });

  it("accepts every event of the room's own history (create included)", async () => {
    const r = await base(v);
    for (const e of r.events.values()) {
      expect((await receivePdu(clone(e.pdu), r.version, inputs(r))).outcome).toBe("accept");
    }
  });

  it("1. drops malformed events", async () => {
    const r = await base(v);
    const e = await r.build(bob, "m.room.message", { body: "hi" });
    for (const mutate of [
      (p: JsonObject) => delete p.sender,
      (p: JsonObject) => (p.depth = -1),
      (p: JsonObject) => (p.content = "x"),
      (p: JsonObject) => (p.prev_events = r.version.referencePairs ? ["$a:b"] : [["$a", { sha256: "x" }]]),
      (p: JsonObject) => (p.type = "t".repeat(256)),
      (p: JsonObject) => (p.room_id = 5),
    ]) {
      const p = clone(e.pdu) as JsonObject;
      mutate(p);
      const res = await receivePdu(p, r.version, inputs(r));
      expect(res.outcome).toBe("drop");
    }
  });

  it("1. (v6+) drops non-canonical JSON such as floats", async () => {
    const r = await base(v);
    const e = await r.build(bob, "m.room.message", { body: "hi" });
    const p = clone(e.pdu) as JsonObject;
    (p.content as JsonObject).n = 1.5;
    const reason = checkFormat(p, r.version);
    if (r.version.strictCanonicalJson) expect(reason).toBe("not canonical JSON");
    else expect(reason).toBeUndefined();
  });

  it("2. drops events without a valid signature of the sender's server", async () => {
    const r = await base(v);
    const e = await r.build(bob, "m.room.message", { body: "hi" });
    const forged = await r.build(bob, "m.room.message", { body: "hi" }, { signer: "c.test" });
    expect((await receivePdu(clone(forged.pdu), r.version, inputs(r))).outcome).toBe("drop");
    // A changed essential field breaks the signature (it covers the redacted form).
    const p = clone(e.pdu);
    p.origin_server_ts += 1;
    expect((await receivePdu(p, r.version, inputs(r))).outcome).toBe("drop");
    // Unknown keys are ignored, leaving no signature to accept.
    expect((await receivePdu(clone(e.pdu), r.version, inputs(r, { keys: () => undefined }))).outcome).toBe("drop");
  });

  it("3. keeps the redacted copy when the content hash does not match", async () => {
    const r = await base(v);
    const e = await r.build(bob, "m.room.message", { body: "hi" });
    const p = clone(e.pdu);
    p.content = { body: "tampered" }; // not covered by the signature, covered by the hash
    const res = await receivePdu(p, r.version, inputs(r));
    expect(res.outcome).toBe("accept");
    expect(res.redacted).toBe(true);
    expect(res.event!.pdu.content).toEqual({});
    expect(res.event!.eventId).toBe(e.eventId);
  });

  it("4. rejects events not allowed by their own auth events", async () => {
    const r = await base(v);
    // carol never joined: her message cites create + power levels only; rule 6 fails.
    const e = await r.build(carol, "m.room.message", { body: "hi" });
    const res = await receivePdu(clone(e.pdu), r.version, inputs(r));
    expect(res.outcome).toBe("reject");
    expect(res.reason).toMatch(/auth events: sender is not joined/);
    // Citing an event the selection does not name is rule 3.2.
    const jr = r.state.get(stateKeyOf("m.room.join_rules", ""))!;
    const auth = [...(await r.build(bob, "m.room.message", { body: "x" })).pdu.auth_events.map((x) => (Array.isArray(x) ? String(x[0]) : String(x))), jr];
    const bad = await r.build(bob, "m.room.message", { body: "x" }, { auth });
    expect((await receivePdu(clone(bad.pdu), r.version, inputs(r))).outcome).toBe("reject");
  });

  it("4. asks for unknown auth events instead of deciding", async () => {
    const r = await base(v);
    const e = await r.build(bob, "m.room.message", { body: "hi" });
    const pl = r.state.get(stateKeyOf("m.room.power_levels", ""))!;
    const res = await receivePdu(clone(e.pdu), r.version, inputs(r, { fetchEvent: (id) => (id === pl ? undefined : r.events.get(id)) }));
    expect(res.outcome).toBe("drop");
    expect(res.missingAuthEvents).toEqual([pl]);
  });

  it("4. rejects events whose auth events were rejected", async () => {
    const r = await base(v);
    const e = await r.build(bob, "m.room.message", { body: "hi" });
    const bobJoin = r.state.get(stateKeyOf("m.room.member", bob))!;
    const res = await receivePdu(clone(e.pdu), r.version, inputs(r, {
      fetchEvent: (id) => (id === bobJoin ? { ...r.events.get(id)!, rejected: "x" } : r.events.get(id)),
    }));
    expect(res.outcome).toBe("reject");
  });

  it("5. rejects events not allowed by the state before them; 6. soft-fails against the current state", async () => {
    const r = await base(v);
    const fork = r.branch();
    const msg = await fork.build(bob, "m.room.message", { body: "evading" });
    const before: StateMap = fork.snapshot();
    await r.member(alice, bob, "ban");
    // Against the state before it (bob joined) it passes; the current state (bob banned) soft-fails it.
    const soft = await receivePdu(clone(msg.pdu), r.version, inputs(r, { stateBefore: before, currentState: r.snapshot() }));
    expect(soft.outcome).toBe("soft-fail");
    // If the state before the event already has the ban, the event is rejected.
    const rej = await receivePdu(clone(msg.pdu), r.version, inputs(r, { stateBefore: r.snapshot() }));
    expect(rej.outcome).toBe("reject");
    expect(rej.reason).toMatch(/state before the event/);
  });

  it("stateAfterEvent replaces the state event's key and leaves messages out", async () => {
    const r = await base(v);
    const before = r.snapshot();
    const msg = await r.build(bob, "m.room.message", { body: "x" });
    expect(stateAfterEvent(before, msg)).toBe(before);
    const t = await r.build(alice, "m.room.topic", { topic: "t" }, { stateKey: "" });
    expect(stateAfterEvent(before, t).get(stateKeyOf("m.room.topic", ""))).toBe(t.eventId);
  });
});

describe("receivePdu: version specifics", () => {
  it("v1/v2 need a signature from the event ID's domain too", async () => {
    const r = await base("1");
    const e = await r.build(bob, "m.room.message", { body: "hi" });
    // Re-home the event ID onto c.test (the signature then no longer covers it, so re-sign as bob's
    // server only): the event lacks c.test's signature and is dropped.
    const p = clone(e.pdu) as JsonObject;
    p.event_id = "$other:c.test";
    const { hashAndSignEvent } = await import("../../../src/homeserver/events/hashes.ts");
    const { keyFor } = await import("./builder.ts");
    const { signatures: _s, hashes: _h, ...unsigned } = p;
    const resigned = await hashAndSignEvent(unsigned, r.version, keyFor("b.test"));
    const res = await receivePdu(resigned, r.version, inputs(r));
    expect(res.outcome).toBe("drop");
    expect(res.reason).toBe("no valid signature from c.test");
  });

  it.each(["8", "10", "12"])("v%s: a restricted join must be validly signed by the authorising server (rule 5.2)", async (v) => {
    const r = await base(v);
    await r.joinRule(alice, "restricted", { allow: [] });
    const ok = await r.build(carol, "m.room.member", { membership: "join", join_authorised_via_users_server: alice }, { stateKey: carol });
    expect((await receivePdu(clone(ok.pdu), r.version, inputs(r, { stateBefore: r.snapshot() }))).outcome).toBe("accept");
    // A signature entry for a.test that does not verify.
    const bad = clone(ok.pdu);
    bad.signatures["a.test"] = { "ed25519:test": bad.signatures["c.test"]!["ed25519:test"]! };
    const res = await receivePdu(bad, r.version, inputs(r));
    expect(res.outcome).toBe("reject");
  });

  it("v12: the create event is fetched through the room ID and must not be rejected", async () => {
    const r = await base("12");
    const e = await r.build(bob, "m.room.message", { body: "hi" });
    const createId = "$" + r.roomId.slice(1);
    expect(r.events.has(createId)).toBe(true);
    const res = await receivePdu(clone(e.pdu), r.version, inputs(r, {
      fetchEvent: (id) => (id === createId ? { ...r.events.get(id)!, rejected: true } : r.events.get(id)),
    }));
    expect(res.outcome).toBe("reject");
    // A v12 create event carrying a room_id is not a valid event.
    const create = clone(r.events.get(createId)!.pdu) as JsonObject;
    create.room_id = r.roomId;
    expect((await receivePdu(create, r.version, inputs(r))).outcome).toBe("drop");
  });

  it("expectedEventId: a PDU that hashes to another ID is dropped", async () => {
    const r = await base("10");
    const e = await r.build(bob, "m.room.message", { body: "hi" });
    expect((await receivePdu(clone(e.pdu), r.version, inputs(r, { expectedEventId: "$nope" }))).outcome).toBe("drop");
    expect((await receivePdu(clone(e.pdu), r.version, inputs(r, { expectedEventId: e.eventId }))).outcome).toBe("accept");
  });
});

describe("receivePdu: key validity and list limits", () => {
  it("passes the event's timestamp to the key lookup only where the version enforces validity (v5+)", async () => {
    for (const [v, expectTs] of [["4", false], ["5", true], ["12", true]] as const) {
      const r = await base(v);
      const e = await r.build(bob, "m.room.message", { body: "hi" });
      const seen: (number | undefined)[] = [];
      const res = await receivePdu(clone(e.pdu), r.version, inputs(r, { keys: (s, k, at) => (seen.push(at), keys(s, k, at)) }));
      expect(res.outcome).toBe("accept");
      expect(seen[0]).toBe(expectTs ? e.pdu.origin_server_ts : undefined);
      // A key that was not valid at that time is treated as unknown: dropped.
      const expired = await receivePdu(clone(e.pdu), r.version, inputs(r, { keys: (s, k, at) => (at !== undefined ? undefined : keys(s, k, at)) }));
      expect(expired.outcome).toBe(expectTs ? "drop" : "accept");
    }
  });
  it("drops events with more than 20 prev_events or 10 auth_events", async () => {
    const r = await base("10");
    const e = await r.build(bob, "m.room.message", { body: "hi" });
    const p = clone(e.pdu) as JsonObject;
    p.prev_events = Array.from({ length: 21 }, (_, i) => `$p${i}`);
    expect(checkFormat(p, r.version)).toBe("prev_events has too many entries");
    p.prev_events = [];
    p.auth_events = Array.from({ length: 11 }, (_, i) => `$a${i}`);
    expect(checkFormat(p, r.version)).toBe("auth_events has too many entries");
  });
});

describe("receivePdu: v1–v5 floats", () => {
  it("drops (does not throw on) an event whose content has a float", async () => {
    const r = await base("3");
    const e = await r.build(bob, "m.room.message", { body: "hi" });
    const p = clone(e.pdu) as JsonObject;
    (p.content as JsonObject).n = 1.5;
    expect(checkFormat(p, r.version)).toBeUndefined();
    const res = await receivePdu(p, r.version, inputs(r));
    expect(res.outcome).toBe("drop");
    expect(res.reason).toMatch(/canonical JSON/);
  });
});
