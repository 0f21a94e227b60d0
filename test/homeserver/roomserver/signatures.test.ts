/**
 * Every event the server creates verifies: content hash, signature and event ID, checked with code
 * written here from the spec (canonical JSON, redaction algorithm, reference hash) and tweetnacl,
 * independent of the code path that built the events.
 */
import { describe, it, expect } from "vitest";
import { createHash } from "node:crypto";
import nacl from "tweetnacl";
import { TestServer, SEED, SERVER, room } from "./harness.ts";

/** Canonical JSON (appendices "Canonical JSON"): sorted keys, no whitespace, UTF-8. */
function canonical(v: unknown): string {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(",")}}`;
}

const b64 = (buf: Uint8Array): string => Buffer.from(buf).toString("base64").replace(/=+$/, "");
const b64url = (buf: Uint8Array): string => b64(buf).replace(/\+/g, "-").replace(/\//g, "_");
const sha256 = (s: string): Uint8Array => new Uint8Array(createHash("sha256").update(Buffer.from(s, "utf8")).digest());

/** The redaction algorithm (rooms/v*.md "Redactions"), for the versions under test. */
function redact(e: Record<string, any>, v: number): Record<string, any> {
  const top = v >= 11
    ? ["event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures", "depth", "prev_events", "auth_events", "origin_server_ts"]
    : ["event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures", "depth", "prev_events", "prev_state", "auth_events", "origin", "origin_server_ts", "membership"];
  const out: Record<string, any> = {};
  for (const k of top) if (k in e) out[k] = e[k];
  const c = e.content ?? {};
  const keep = (...ks: string[]): Record<string, unknown> => Object.fromEntries(ks.filter((k) => k in c).map((k) => [k, c[k]]));
  switch (e.type) {
    case "m.room.member": {
      const m = keep("membership", ...(v >= 9 ? ["join_authorised_via_users_server"] : []));
      if (v >= 11 && c.third_party_invite?.signed) m.third_party_invite = { signed: c.third_party_invite.signed };
      out.content = m;
      break;
    }
    case "m.room.create": out.content = v >= 11 ? c : keep("creator"); break;
    case "m.room.join_rules": out.content = keep("join_rule", ...(v >= 8 ? ["allow"] : [])); break;
    case "m.room.power_levels": out.content = keep("ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default", ...(v >= 11 ? ["invite"] : [])); break;
    case "m.room.history_visibility": out.content = keep("history_visibility"); break;
    case "m.room.aliases": out.content = v <= 5 ? keep("aliases") : {}; break;
    case "m.room.redaction": out.content = v >= 11 ? keep("redacts") : {}; break;
    default: out.content = {};
  }
  return out;
}

const publicKey = nacl.sign.keyPair.fromSeed(SEED).publicKey;

async function populate(t: TestServer, version: string): Promise<void> {
  const alice = await t.user("alice", { displayname: "Älice ☃" });
  const bob = await t.user("bob");
  const roomId = await t.createRoom(alice, {
    room_version: version, preset: "private_chat", name: "n", topic: "t", room_alias_name: `a${version}`, invite: [bob.userId],
    initial_state: [{ type: "m.room.join_rules", content: { join_rule: "public" } }],
  });
  await t.join(bob, roomId);
  const msg = await t.send(bob, roomId, { msgtype: "m.text", body: "héllo 👋", n: 1 });
  await t.send(alice, roomId, { body: "reply", "m.relates_to": { rel_type: "m.thread", event_id: msg } });
  await t.ok("PUT", room(roomId, `/redact/${encodeURIComponent(msg)}/r`), alice, { reason: "x" });
  await t.ok("POST", room(roomId, "/kick"), alice, { user_id: bob.userId });
}

describe.each(["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"])("room version %s", (version) => {
  it("every stored event has a valid content hash, signature and event ID", async () => {
    const t = await TestServer.start();
    try {
      await populate(t, version);
      const v = Number(version);
      const rows = await t.hs.services.store.read((tx) => tx.range<any>("events", {}));
      expect(rows.length).toBeGreaterThanOrEqual(12);
      for (const { key: eventId, value } of rows) {
        const pdu = value.pdu as Record<string, any>;
        // content hash: sha256 over the event without unsigned, signatures, hashes
        const { unsigned: _u, signatures, hashes, ...forHash } = pdu;
        expect(hashes.sha256, `hash of ${eventId}`).toBe(b64(sha256(canonical(forHash))));
        // signature: over the redacted event without signatures/unsigned
        const red = redact(pdu, v);
        const { signatures: _s, unsigned: _u2, ...signed } = red;
        const sig = Buffer.from(signatures[SERVER]["ed25519:auto"], "base64");
        expect(nacl.sign.detached.verify(Buffer.from(canonical(signed), "utf8"), sig, publicKey), `signature of ${eventId}`).toBe(true);
        // event ID: v1/v2 carry it; v3 base64, v4+ URL-safe base64 of the reference hash
        if (v <= 2) {
          expect(pdu.event_id).toBe(eventId);
          expect(eventId).toMatch(new RegExp(`^\\$[^:]+:${SERVER}$`));
        } else {
          const { signatures: _s2, unsigned: _u3, event_id: _e, ...ref } = red;
          const h = sha256(canonical(ref));
          expect(eventId).toBe("$" + (v === 3 ? b64(h) : b64url(h)));
          expect(pdu.event_id).toBeUndefined();
        }
        // v12 room IDs come from the create event; others are !random:server
        if (v >= 12) {
          if (pdu.type === "m.room.create") expect(pdu.room_id).toBeUndefined();
          expect(value.roomId).toMatch(/^![A-Za-z0-9_-]{43}$/);
          if (pdu.type === "m.room.create") expect(value.roomId).toBe("!" + eventId.slice(1));
        } else {
          expect(pdu.room_id).toBe(value.roomId);
        }
        expect("origin" in pdu).toBe(v < 11);
      }
    } finally {
      await t.close();
    }
  });
});
