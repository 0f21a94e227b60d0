/**
 * Every event buildEvent creates verifies — checked with code written here from the spec text
 * ("Signing events", "Calculating the reference hash/content hash", the room versions' redaction
 * and event ID fragments), node:crypto SHA-256 and tweetnacl, not with the creating code path.
 */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import nacl from "tweetnacl";
import { MatrixError } from "../../../src/homeserver/errors.ts";
import type { EventWithId } from "../../../src/homeserver/events/types.ts";
import { buildEvent } from "../../../src/homeserver/rooms/build.ts";
import { roomVersion } from "../../../src/homeserver/rooms/versions.ts";
import { alice, bob, keyFor, room, seedFor } from "./builder.ts";

type J = Record<string, unknown>;

/** Canonical JSON for the plain values used here: sorted keys, no whitespace (appendices "Canonical JSON"). */
function canon(v: unknown): string {
  if (Array.isArray(v)) return "[" + v.map(canon).join(",") + "]";
  if (v !== null && typeof v === "object") {
    const o = v as J;
    return "{" + Object.keys(o).sort().map((k) => JSON.stringify(k) + ":" + canon(o[k])).join(",") + "}";
  }
  return JSON.stringify(v);
}
const sha256 = (s: string): Buffer => createHash("sha256").update(Buffer.from(s, "utf8")).digest();
const b64 = (b: Uint8Array): string => Buffer.from(b).toString("base64").replace(/=+$/, "");
const b64url = (b: Uint8Array): string => b64(b).replace(/\+/g, "-").replace(/\//g, "_");

/** The redaction algorithm, written out per version from the room version texts. */
function redacted(e: J, v: number): J {
  const top = ["event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures", "depth", "prev_events", "auth_events", "origin_server_ts"];
  if (v < 11) top.push("origin", "membership", "prev_state");
  const keep: Record<string, string[] | "all"> = {
    "m.room.member": v >= 9 ? ["membership", "join_authorised_via_users_server"] : ["membership"],
    "m.room.create": v >= 11 ? "all" : ["creator"],
    "m.room.join_rules": v >= 8 ? ["join_rule", "allow"] : ["join_rule"],
    "m.room.power_levels": ["ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default", ...(v >= 11 ? ["invite"] : [])],
    "m.room.history_visibility": ["history_visibility"],
  };
  if (v < 6) keep["m.room.aliases"] = ["aliases"];
  if (v >= 11) keep["m.room.redaction"] = ["redacts"];
  const out: J = {};
  for (const k of top) if (k in e) out[k] = e[k];
  const c = e.content as J;
  const rule = keep[e.type as string];
  out.content = rule === "all" ? c : Object.fromEntries(Object.entries(c).filter(([k]) => rule?.includes(k)));
  return out;
}

/** Verifies one built event independently; returns its recomputed reference hash. */
function verify(e: EventWithId, v: number, server: string): Buffer {
  const pdu = e.pdu as unknown as J;
  // Content hash: drop unsigned, signatures, hashes; canonical JSON; SHA-256; unpadded base64.
  const { unsigned: _u, signatures: _s, hashes: _h, ...forHash } = pdu;
  expect((pdu.hashes as J).sha256).toBe(b64(sha256(canon(forHash))));
  // Signature: over the redacted event without signatures/unsigned, with the server's public key.
  const { signatures: sigs, unsigned: _u2, ...red } = redacted(pdu, v);
  const sig = Buffer.from(((sigs as J)[server] as J)["ed25519:test"] as string, "base64");
  const pub = nacl.sign.keyPair.fromSeed(seedFor(server)).publicKey;
  expect(nacl.sign.detached.verify(Buffer.from(canon(red), "utf8"), sig, pub)).toBe(true);
  // Reference hash: redacted, minus signatures and unsigned.
  const ref = sha256(canon(red));
  if (v <= 2) {
    expect(e.eventId).toMatch(new RegExp(`^\\$[A-Za-z0-9_-]+:${server.replace(".", "\\.")}$`));
    expect(pdu.event_id).toBe(e.eventId);
  } else {
    expect(pdu.event_id).toBeUndefined();
    expect(e.eventId).toBe("$" + (v === 3 ? b64(ref) : b64url(ref)));
  }
  // origin is a PDU field up to v10 only; redacts moved into content in v11.
  expect("origin" in pdu).toBe(v <= 10);
  return ref;
}

describe.each(["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"])("buildEvent, room version %s", (vs) => {
  const v = Number(vs);
  it("hashes, signs and names every event so that it verifies independently", async () => {
    const r = room(vs);
    await r.create(alice);
    await r.join(alice);
    await r.powerLevels(alice, { users: v >= 12 ? { [bob]: 50 } : { [alice]: 100 }, invite: 0, notifications: { room: 20 } });
    await r.send(alice, "m.room.join_rules", { join_rule: "public", extra: "dropped when redacted" }, { stateKey: "" });
    await r.join(bob);
    const msg = await r.send(bob, "m.room.message", { body: "héllo ☃ \u{1F600}", msgtype: "m.text" });
    const red = await r.send(alice, "m.room.redaction", { reason: "r" }, { redacts: msg.eventId });
    const refs = new Map<string, Buffer>();
    for (const e of r.events.values()) refs.set(e.eventId, verify(e, v, e.pdu.sender.split(":")[1]!));
    // prev_events/auth_events: [id, {sha256: reference hash}] pairs in v1/v2, plain IDs after.
    for (const e of r.events.values()) {
      for (const p of [...e.pdu.prev_events, ...e.pdu.auth_events]) {
        if (v <= 2) {
          const [id, h] = p as [string, { sha256: string }];
          expect(h.sha256).toBe(b64(refs.get(id)!));
        } else expect(typeof p).toBe("string");
      }
    }
    if (v >= 11) {
      expect(red.pdu.content.redacts).toBe(msg.eventId);
      expect(red.pdu.redacts).toBeUndefined();
    } else expect(red.pdu.redacts).toBe(msg.eventId);
    const create = [...r.events.values()].find((e) => e.pdu.type === "m.room.create")!;
    if (v >= 12) {
      // v12: the create event has no room_id; the room ID is its event ID with `!`.
      expect(create.pdu.room_id).toBeUndefined();
      expect(create.roomId).toBe("!" + b64url(refs.get(create.eventId)!));
      expect(r.roomId).toBe("!" + create.eventId.slice(1));
    } else expect(create.pdu.room_id).toBe(r.roomId);
    // depth is max(prev depth) + 1.
    expect(red.pdu.depth).toBe(msg.pdu.depth + 1);
  });
});

describe("buildEvent limits", () => {
  const base = { roomId: "!r:a.test", sender: alice, content: {}, prevEvents: [], authEvents: [], depth: 1, originServerTs: 1, origin: "a.test" };
  const build = (over: J, v = "10") => buildEvent({ ...base, type: "m.x", ...over } as never, roomVersion(v)!, keyFor("a.test"));
  const code = async (p: Promise<unknown>): Promise<string> => {
    try {
      await p;
      return "ok";
    } catch (e) {
      return e instanceof MatrixError ? `${e.status} ${e.errcode}` : String(e);
    }
  };
  it("rejects over-long type, state_key, sender and room_id with 413 M_TOO_LARGE", async () => {
    expect(await code(build({ type: "t".repeat(255) }))).toBe("ok");
    expect(await code(build({ type: "t".repeat(256) }))).toBe("413 M_TOO_LARGE");
    expect(await code(build({ stateKey: "é".repeat(128) }))).toBe("413 M_TOO_LARGE"); // 256 bytes in UTF-8
    expect(await code(build({ sender: "@" + "a".repeat(250) + ":a.test" }))).toBe("413 M_TOO_LARGE");
    expect(await code(build({ roomId: "!" + "r".repeat(250) + ":a.test" }))).toBe("413 M_TOO_LARGE");
  });
  it("rejects events over 65536 bytes of canonical JSON with 413 M_TOO_LARGE", async () => {
    expect(await code(build({ content: { body: "x".repeat(64_000) } }))).toBe("ok");
    expect(await code(build({ content: { body: "x".repeat(65_536) } }))).toBe("413 M_TOO_LARGE");
  });
  it("rejects floats in v6+ with 400 M_BAD_JSON, a missing room ID with 400", async () => {
    expect(await code(build({ content: { n: 1.5 } }, "6"))).toBe("400 M_BAD_JSON");
    expect(await code(build({ content: { n: 2 ** 60 } }, "10"))).toBe("400 M_BAD_JSON");
    expect(await code(build({ roomId: undefined }))).toBe("400 M_BAD_JSON");
    expect(await code(build({ roomId: undefined, type: "m.room.create", stateKey: "" }, "12"))).toBe("ok");
  });
  it("caps the depth at the version's limit", async () => {
    const e = await build({ depth: 2 ** 53 + 10 }, "10");
    expect(e.pdu.depth).toBe(2 ** 53 - 1);
  });
});
