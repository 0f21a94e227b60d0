/**
 * Table-driven tests of the authorisation rules: every rule of every version family (v1, v3, v6,
 * v7, v8, v10, v11, v12), each with an allowed and a denied case.
 */
import { describe, expect, it } from "vitest";
import nacl from "tweetnacl";
import { canonicalJsonBytes } from "../../../src/homeserver/crypto/canonicalJson.ts";
import { encodeBase64 } from "../../../src/homeserver/crypto/base64.ts";
import type { Pdu } from "../../../src/homeserver/events/types.ts";
import { stateKeyOf } from "../../../src/homeserver/events/types.ts";
import type { AuthResult } from "../../../src/homeserver/rooms/auth.ts";
import { authStateKeysFor, checkAuth, checkAuthEvents, mayApplyRedaction } from "../../../src/homeserver/rooms/auth.ts";
import { userPowerLevel } from "../../../src/homeserver/rooms/powerLevels.ts";
import type { RoomVersionRules } from "../../../src/homeserver/rooms/versions.ts";
import { roomVersion } from "../../../src/homeserver/rooms/versions.ts";
import type { TestRoom } from "./builder.ts";
import { alice, bob, carol, dave, room } from "./builder.ts";

const FAMILIES = ["1", "3", "6", "7", "8", "10", "11", "12"];

/** alice creates, joins, sets power levels (alice 100 unless v12 creator; `users` extra) and a join rule. */
async function basic(version: string, opts: { joinRule?: string; users?: Record<string, number>; pl?: Record<string, unknown>; createExtra?: Record<string, unknown> } = {}): Promise<TestRoom> {
  const r = room(version);
  await r.create(alice, opts.createExtra);
  await r.join(alice);
  const users: Record<string, number> = r.version.privilegedCreators ? {} : { [alice]: 100 };
  await r.powerLevels(alice, { users: { ...users, ...opts.users }, ...opts.pl });
  await r.joinRule(alice, opts.joinRule ?? "public");
  return r;
}

type Case = {
  rule: string;
  /** Which versions the case applies to (default: all families). */
  when?: (v: RoomVersionRules) => boolean;
  allow: (v: string) => Promise<AuthResult>;
  deny: (v: string) => Promise<AuthResult>;
};

/** A create event PDU for direct checks (auth does not look at hashes or signatures). */
function createPdu(v: RoomVersionRules, over: Partial<Pdu> & { content?: Record<string, unknown> } = {}): Pdu {
  const content: Record<string, unknown> = { room_version: v.id, ...(v.creatorInContent ? { creator: alice } : {}) };
  const pdu: Pdu = {
    type: "m.room.create", state_key: "", sender: alice, content, prev_events: [], auth_events: [], depth: 1,
    origin_server_ts: 1, hashes: { sha256: "x" }, signatures: {},
    ...(v.roomIdFromCreate ? {} : { room_id: "!c:a.test" }),
  };
  return { ...pdu, ...over, content: { ...content, ...over.content } };
}
const checkCreate = (v: string, over: Partial<Pdu> & { content?: Record<string, unknown> } = {}): AuthResult =>
  checkAuth(createPdu(roomVersion(v)!, over), "$c:a.test", new Map(), roomVersion(v)!);

/** A third-party invite setup: alice publishes a key; returns a `signed` block signer. */
async function tpiRoom(v: string): Promise<{ r: TestRoom; sign: (mxid: string, token: string, bad?: boolean) => Record<string, unknown> }> {
  const r = await basic(v);
  const kp = nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(9));
  await r.send(alice, "m.room.third_party_invite", { display_name: "b…", key_validity_url: "https://id.test/v", public_key: encodeBase64(kp.publicKey) }, { stateKey: "tok" });
  const sign = (mxid: string, token: string, bad = false): Record<string, unknown> => {
    const signed = { mxid, sender: alice, token };
    const sig = nacl.sign.detached(canonicalJsonBytes(signed), kp.secretKey);
    if (bad) sig[0]! ^= 1;
    return { display_name: "b…", signed: { ...signed, signatures: { "id.test": { "ed25519:0": encodeBase64(sig) } } } };
  };
  return { r, sign };
}

const CASES: Case[] = [
  // ---- 1. m.room.create
  { rule: "1.1 create without prev_events / with prev_events",
    allow: async (v) => checkCreate(v), deny: async (v) => checkCreate(v, { prev_events: ["$x"] }) },
  { rule: "1.2 (v1–v11) room_id domain is the sender's", when: (v) => v.createRoomIdDomainCheck,
    allow: async (v) => checkCreate(v), deny: async (v) => checkCreate(v, { room_id: "!c:b.test" }) },
  { rule: "1.2 (v12) create has no room_id", when: (v) => !v.createRoomIdDomainCheck,
    allow: async (v) => checkCreate(v), deny: async (v) => checkCreate(v, { room_id: "!c" }) },
  { rule: "1.3 room_version recognised",
    allow: async (v) => checkCreate(v, { content: { room_version: "9" } }), deny: async (v) => checkCreate(v, { content: { room_version: "999" } }) },
  { rule: "1.4 (v1–v10) creator required", when: (v) => v.creatorInContent,
    allow: async (v) => checkCreate(v), deny: async (v) => { const p = createPdu(roomVersion(v)!); delete p.content.creator; return checkAuth(p, "$c:a.test", new Map(), roomVersion(v)!); } },
  { rule: "1.4 (v11+) no creator needed", when: (v) => !v.creatorInContent,
    allow: async (v) => checkCreate(v, { content: { creator: undefined } }), deny: async (v) => checkCreate(v, { prev_events: ["$p"] }) },
  { rule: "1.4 (v12) additional_creators are valid user IDs", when: (v) => v.privilegedCreators,
    allow: async (v) => checkCreate(v, { content: { additional_creators: [bob] } }),
    deny: async (v) => checkCreate(v, { content: { additional_creators: [bob, "not-a-user"] } }) },
  // ---- v12 rule 2
  { rule: "2 (v12) room_id is the create event's ID", when: (v) => v.roomIdFromCreate,
    allow: async (v) => (await basic(v)).attempt(alice, "m.room.topic", { topic: "t" }, { stateKey: "" }),
    deny: async (v) => { const r = await basic(v); const e = await r.build(alice, "m.room.topic", { topic: "t" }, { stateKey: "" }); return checkAuth({ ...e.pdu, room_id: "!" + "A".repeat(43) }, e.eventId, r.authState(), r.version); } },
  { rule: "3.5 auth state from another room",
    allow: async (v) => (await basic(v)).attempt(alice, "m.room.topic", { topic: "t" }, { stateKey: "" }),
    deny: async (v) => {
      const r = await basic(v); const other = await basic(v);
      const st = r.authState(); st.set(stateKeyOf("m.room.power_levels", ""), other.authState().get(stateKeyOf("m.room.power_levels", ""))!);
      if (!r.version.roomIdFromCreate) { const plPdu = st.get(stateKeyOf("m.room.power_levels", ""))!; expect(plPdu.room_id).not.toBe(r.roomId); }
      const e = await r.build(alice, "m.room.topic", { topic: "t" }, { stateKey: "" });
      return checkAuth(e.pdu, e.eventId, st, r.version);
    } },
  // ---- 4. m.federate
  { rule: "4 m.federate false keeps other servers out",
    allow: async (v) => (await basic(v, { createExtra: { "m.federate": false } })).tryMember(dave, dave, "join"),
    deny: async (v) => (await basic(v, { createExtra: { "m.federate": false } })).tryMember(bob, bob, "join") },
  // ---- v1–v5 rule 4: aliases
  { rule: "4 (v1–v5) m.room.aliases: state_key must be the sender's domain", when: (v) => v.specialCaseAliases,
    // Allowed although carol never joined: the aliases rule comes before the membership rule.
    allow: async (v) => (await basic(v)).attempt(carol, "m.room.aliases", { aliases: ["#x:c.test"] }, { stateKey: "c.test" }),
    deny: async (v) => (await basic(v)).attempt(carol, "m.room.aliases", { aliases: ["#x:a.test"] }, { stateKey: "a.test" }) },
  { rule: "(v6+) m.room.aliases is an ordinary state event", when: (v) => !v.specialCaseAliases,
    allow: async (v) => (await basic(v)).attempt(alice, "m.room.aliases", { aliases: ["#x:b.test"] }, { stateKey: "b.test" }),
    deny: async (v) => (await basic(v)).attempt(carol, "m.room.aliases", { aliases: ["#x:c.test"] }, { stateKey: "c.test" }) },
  // ---- 5. m.room.member
  { rule: "5.1 member needs membership",
    allow: async (v) => (await basic(v)).tryMember(bob, bob, "join"),
    deny: async (v) => (await basic(v)).attempt(bob, "m.room.member", { displayname: "b" }, { stateKey: bob }) },
  { rule: "5.2 (v8+) join_authorised_via_users_server must be signed by that user's server", when: (v) => v.restrictedJoins,
    allow: async (v) => (await basic(v, { joinRule: "restricted" })).attempt(bob, "m.room.member", { membership: "join", join_authorised_via_users_server: alice }, { stateKey: bob }),
    deny: async (v) => (await basic(v, { joinRule: "restricted" })).attempt(bob, "m.room.member", { membership: "join", join_authorised_via_users_server: alice }, { stateKey: bob, cosign: false }) },
  { rule: "5.3.1 the creator's first join after the create event",
    allow: async (v) => { const r = room(v); await r.create(alice); return r.tryMember(alice, alice, "join"); },
    deny: async (v) => { const r = room(v); await r.create(alice); return r.tryMember(bob, bob, "join"); } },
  { rule: "5.3.2 join: sender must be the state_key",
    allow: async (v) => (await basic(v)).tryMember(bob, bob, "join"),
    deny: async (v) => (await basic(v)).tryMember(alice, bob, "join") },
  { rule: "5.3.3 join: banned users cannot join",
    allow: async (v) => (await basic(v)).tryMember(bob, bob, "join"),
    deny: async (v) => { const r = await basic(v); await r.ban(alice, bob); return r.tryMember(bob, bob, "join"); } },
  { rule: "5.3.4 join rule invite: invited users may join",
    allow: async (v) => { const r = await basic(v, { joinRule: "invite" }); await r.invite(alice, bob); return r.tryMember(bob, bob, "join"); },
    deny: async (v) => (await basic(v, { joinRule: "invite" })).tryMember(bob, bob, "join") },
  { rule: "5.3.4 (v7+) join rule knock behaves like invite for joins", when: (v) => v.knocking,
    allow: async (v) => { const r = await basic(v, { joinRule: "knock" }); await r.invite(alice, bob); return r.tryMember(bob, bob, "join"); },
    deny: async (v) => (await basic(v, { joinRule: "knock" })).tryMember(bob, bob, "join") },
  { rule: "(v1–v6) join rule knock is unknown: even invited users cannot join", when: (v) => !v.knocking,
    allow: async (v) => { const r = await basic(v, { joinRule: "invite" }); await r.invite(alice, bob); return r.tryMember(bob, bob, "join"); },
    deny: async (v) => { const r = await basic(v, { joinRule: "knock" }); await r.invite(alice, bob); return r.tryMember(bob, bob, "join"); } },
  { rule: "5.3.5 (v8+) restricted: authorised by a joined user who can invite", when: (v) => v.restrictedJoins,
    allow: async (v) => (await basic(v, { joinRule: "restricted" })).tryMember(bob, bob, "join", { join_authorised_via_users_server: alice }),
    // dave (a.test, so the signature is there) is not joined.
    deny: async (v) => (await basic(v, { joinRule: "restricted" })).tryMember(bob, bob, "join", { join_authorised_via_users_server: dave }) },
  { rule: "5.3.5.2 (v8+) restricted: the authorising user needs the invite level", when: (v) => v.restrictedJoins,
    allow: async (v) => { const r = await basic(v, { joinRule: "public", pl: { invite: 0 } }); await r.join(dave); await r.joinRule(alice, "restricted"); return r.tryMember(bob, bob, "join", { join_authorised_via_users_server: dave }); },
    deny: async (v) => { const r = await basic(v, { joinRule: "restricted", pl: { invite: 50 } }); await r.joinRule(alice, "public"); await r.join(dave); await r.joinRule(alice, "restricted"); return r.tryMember(bob, bob, "join", { join_authorised_via_users_server: dave }); } },
  { rule: "5.3.5.1 (v8+) restricted: invited users join without authorisation", when: (v) => v.restrictedJoins,
    allow: async (v) => { const r = await basic(v, { joinRule: "restricted" }); await r.invite(alice, bob); return r.tryMember(bob, bob, "join"); },
    deny: async (v) => (await basic(v, { joinRule: "restricted" })).tryMember(bob, bob, "join") },
  { rule: "(v1–v7) restricted is an unknown join rule", when: (v) => !v.restrictedJoins,
    allow: async (v) => (await basic(v, { joinRule: "public" })).tryMember(bob, bob, "join"),
    deny: async (v) => (await basic(v, { joinRule: "restricted" })).tryMember(bob, bob, "join") },
  { rule: "5.3.5 (v10+) knock_restricted allows restricted joins", when: (v) => v.knockRestricted,
    allow: async (v) => (await basic(v, { joinRule: "knock_restricted" })).tryMember(bob, bob, "join", { join_authorised_via_users_server: alice }),
    deny: async (v) => (await basic(v, { joinRule: "knock_restricted" })).tryMember(bob, bob, "join") },
  { rule: "(v8–v9) knock_restricted is unknown", when: (v) => v.restrictedJoins && !v.knockRestricted,
    allow: async (v) => (await basic(v, { joinRule: "restricted" })).tryMember(bob, bob, "join", { join_authorised_via_users_server: alice }),
    deny: async (v) => (await basic(v, { joinRule: "knock_restricted" })).tryMember(bob, bob, "join", { join_authorised_via_users_server: alice }) },
  { rule: "5.3.6/5.3.7 public allows joins, anything else rejects",
    allow: async (v) => (await basic(v, { joinRule: "public" })).tryMember(bob, bob, "join"),
    deny: async (v) => (await basic(v, { joinRule: "private" })).tryMember(bob, bob, "join") },
  { rule: "5.4.2 invite: sender must be joined",
    allow: async (v) => (await basic(v)).tryMember(alice, bob, "invite"),
    deny: async (v) => (await basic(v)).tryMember(carol, bob, "invite") },
  { rule: "5.4.3 invite: target must not be joined",
    allow: async (v) => (await basic(v)).tryMember(alice, bob, "invite"),
    deny: async (v) => { const r = await basic(v); await r.join(bob); return r.tryMember(alice, bob, "invite"); } },
  { rule: "5.4.3 invite: target must not be banned",
    allow: async (v) => (await basic(v)).tryMember(alice, bob, "invite"),
    deny: async (v) => { const r = await basic(v); await r.ban(alice, bob); return r.tryMember(alice, bob, "invite"); } },
  { rule: "5.4.4/5.4.5 invite level",
    allow: async (v) => { const r = await basic(v, { pl: { invite: 0 } }); await r.join(dave); return r.tryMember(dave, bob, "invite"); },
    deny: async (v) => { const r = await basic(v, { pl: { invite: 50 } }); await r.join(dave); return r.tryMember(dave, bob, "invite"); } },
  { rule: "5.4.1.1 3pid invite: target not banned",
    allow: async (v) => { const { r, sign } = await tpiRoom(v); return r.tryMember(alice, bob, "invite", { third_party_invite: sign(bob, "tok") }); },
    deny: async (v) => { const { r, sign } = await tpiRoom(v); await r.ban(alice, bob); return r.tryMember(alice, bob, "invite", { third_party_invite: sign(bob, "tok") }); } },
  { rule: "5.4.1.2 3pid invite: signed present",
    allow: async (v) => { const { r, sign } = await tpiRoom(v); return r.tryMember(alice, bob, "invite", { third_party_invite: sign(bob, "tok") }); },
    deny: async (v) => { const { r } = await tpiRoom(v); return r.tryMember(alice, bob, "invite", { third_party_invite: { display_name: "x" } }); } },
  { rule: "5.4.1.3 3pid invite: signed has mxid and token",
    allow: async (v) => { const { r, sign } = await tpiRoom(v); return r.tryMember(alice, bob, "invite", { third_party_invite: sign(bob, "tok") }); },
    deny: async (v) => { const { r } = await tpiRoom(v); return r.tryMember(alice, bob, "invite", { third_party_invite: { signed: { mxid: bob } } }); } },
  { rule: "5.4.1.4 3pid invite: mxid is the state_key",
    allow: async (v) => { const { r, sign } = await tpiRoom(v); return r.tryMember(alice, bob, "invite", { third_party_invite: sign(bob, "tok") }); },
    deny: async (v) => { const { r, sign } = await tpiRoom(v); return r.tryMember(alice, bob, "invite", { third_party_invite: sign(carol, "tok") }); } },
  { rule: "5.4.1.5 3pid invite: a third_party_invite with that token exists",
    allow: async (v) => { const { r, sign } = await tpiRoom(v); return r.tryMember(alice, bob, "invite", { third_party_invite: sign(bob, "tok") }); },
    deny: async (v) => { const { r, sign } = await tpiRoom(v); return r.tryMember(alice, bob, "invite", { third_party_invite: sign(bob, "other") }); } },
  { rule: "5.4.1.6 3pid invite: same sender as the third_party_invite",
    allow: async (v) => { const { r, sign } = await tpiRoom(v); return r.tryMember(alice, bob, "invite", { third_party_invite: sign(bob, "tok") }); },
    deny: async (v) => { const { r, sign } = await tpiRoom(v); await r.join(dave); return r.tryMember(dave, bob, "invite", { third_party_invite: sign(bob, "tok") }); } },
  { rule: "5.4.1.7.2 3pid invite: keys listed in public_keys count too",
    allow: async (v) => {
      const r = await basic(v);
      const kp = nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(5));
      await r.send(alice, "m.room.third_party_invite", { public_key: "AAAA", public_keys: [{ public_key: encodeBase64(kp.publicKey) }] }, { stateKey: "t2" });
      const signed = { mxid: bob, sender: alice, token: "t2" };
      const sig = encodeBase64(nacl.sign.detached(canonicalJsonBytes(signed), kp.secretKey));
      return r.tryMember(alice, bob, "invite", { third_party_invite: { signed: { ...signed, signatures: { "id.test": { "ed25519:1": sig } } } } });
    },
    deny: async (v) => {
      const r = await basic(v);
      const kp = nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(5));
      const other = nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(6));
      await r.send(alice, "m.room.third_party_invite", { public_key: "AAAA", public_keys: [{ public_key: encodeBase64(other.publicKey) }] }, { stateKey: "t2" });
      const signed = { mxid: bob, sender: alice, token: "t2" };
      const sig = encodeBase64(nacl.sign.detached(canonicalJsonBytes(signed), kp.secretKey));
      return r.tryMember(alice, bob, "invite", { third_party_invite: { signed: { ...signed, signatures: { "id.test": { "ed25519:1": sig } } } } });
    } },
  { rule: "5.4.1.7/8 3pid invite: signature by a published key",
    allow: async (v) => { const { r, sign } = await tpiRoom(v); return r.tryMember(alice, bob, "invite", { third_party_invite: sign(bob, "tok") }); },
    deny: async (v) => { const { r, sign } = await tpiRoom(v); return r.tryMember(alice, bob, "invite", { third_party_invite: sign(bob, "tok", true) }); } },
  { rule: "5.5.1 leave: own leave from join / invite",
    allow: async (v) => { const r = await basic(v, { joinRule: "invite" }); await r.invite(alice, bob); return r.tryMember(bob, bob, "leave"); },
    deny: async (v) => (await basic(v)).tryMember(bob, bob, "leave") },
  { rule: "5.5.1 (v7+) leave: rescinding a knock", when: (v) => v.knocking,
    allow: async (v) => { const r = await basic(v, { joinRule: "knock" }); await r.member(bob, bob, "knock"); return r.tryMember(bob, bob, "leave"); },
    deny: async (v) => { const r = await basic(v, { joinRule: "knock" }); await r.member(bob, bob, "knock"); await r.member(alice, bob, "ban"); return r.tryMember(bob, bob, "leave"); } },
  { rule: "5.5.2 kick: sender must be joined",
    allow: async (v) => { const r = await basic(v); await r.join(bob); return r.tryMember(alice, bob, "leave"); },
    deny: async (v) => { const r = await basic(v); await r.join(bob); await r.send(alice, "m.room.member", { membership: "leave" }, { stateKey: alice }); return r.tryMember(alice, bob, "leave"); } },
  { rule: "5.5.3 unban needs the ban level",
    allow: async (v) => { const r = await basic(v); await r.ban(alice, bob); return r.tryMember(alice, bob, "leave"); },
    deny: async (v) => { const r = await basic(v, { users: { [dave]: 60 }, pl: { kick: 50, ban: 70 } }); await r.join(dave); await r.ban(alice, bob); return r.tryMember(dave, bob, "leave"); } },
  { rule: "5.5.4/5.5.5 kick: kick level and a lower target",
    allow: async (v) => { const r = await basic(v); await r.join(bob); return r.tryMember(alice, bob, "leave"); },
    deny: async (v) => { const r = await basic(v); await r.join(bob); return r.tryMember(bob, alice, "leave"); } },
  { rule: "5.6.1 ban: sender must be joined",
    allow: async (v) => (await basic(v)).tryMember(alice, bob, "ban"),
    deny: async (v) => { const r = await basic(v, { users: { [carol]: 100 } }); return r.tryMember(carol, bob, "ban"); } },
  { rule: "5.6.2/5.6.3 ban: ban level and a lower target",
    allow: async (v) => (await basic(v)).tryMember(alice, bob, "ban"),
    deny: async (v) => { const r = await basic(v, { users: { [dave]: 40 } }); await r.join(dave); return r.tryMember(dave, bob, "ban"); } },
  { rule: "5.7.1 (v7+) knock: join rule must be knock", when: (v) => v.knocking,
    allow: async (v) => (await basic(v, { joinRule: "knock" })).tryMember(bob, bob, "knock"),
    deny: async (v) => (await basic(v, { joinRule: "invite" })).tryMember(bob, bob, "knock") },
  { rule: "5.7.1 (v10+) knock: knock_restricted allows knocking", when: (v) => v.knockRestricted,
    allow: async (v) => (await basic(v, { joinRule: "knock_restricted" })).tryMember(bob, bob, "knock"),
    deny: async (v) => (await basic(v, { joinRule: "restricted" })).tryMember(bob, bob, "knock") },
  { rule: "5.7.2 (v7+) knock: sender must be the state_key", when: (v) => v.knocking,
    allow: async (v) => (await basic(v, { joinRule: "knock" })).tryMember(bob, bob, "knock"),
    deny: async (v) => (await basic(v, { joinRule: "knock" })).tryMember(alice, bob, "knock") },
  { rule: "5.7.3/5.7.4 (v7+) knock: not when banned, invited or joined", when: (v) => v.knocking,
    allow: async (v) => (await basic(v, { joinRule: "knock" })).tryMember(bob, bob, "knock"),
    deny: async (v) => { const r = await basic(v, { joinRule: "knock" }); await r.ban(alice, bob); return r.tryMember(bob, bob, "knock"); } },
  { rule: "(v1–v6) knock is an unknown membership", when: (v) => !v.knocking,
    allow: async (v) => (await basic(v)).tryMember(bob, bob, "join"),
    deny: async (v) => (await basic(v, { joinRule: "knock" })).tryMember(bob, bob, "knock") },
  { rule: "5.8 unknown membership",
    allow: async (v) => (await basic(v)).tryMember(bob, bob, "join"),
    deny: async (v) => (await basic(v)).tryMember(bob, bob, "wander") },
  // ---- 6–9
  { rule: "6 sender must be joined",
    allow: async (v) => (await basic(v)).attempt(alice, "m.room.message", { body: "hi" }),
    deny: async (v) => (await basic(v)).attempt(bob, "m.room.message", { body: "hi" }) },
  { rule: "7 m.room.third_party_invite needs the invite level",
    allow: async (v) => (await basic(v, { pl: { invite: 50 } })).attempt(alice, "m.room.third_party_invite", { public_key: "k" }, { stateKey: "t" }),
    deny: async (v) => { const r = await basic(v, { pl: { invite: 50, state_default: 0 } }); await r.join(bob); return r.attempt(bob, "m.room.third_party_invite", { public_key: "k" }, { stateKey: "t" }); } },
  { rule: "8 the event type's required power level",
    allow: async (v) => { const r = await basic(v, { pl: { events: { "m.room.name": 50 } } }); return r.attempt(alice, "m.room.name", { name: "n" }, { stateKey: "" }); },
    deny: async (v) => { const r = await basic(v, { pl: { events: { "m.room.name": 50 } } }); await r.join(bob); return r.attempt(bob, "m.room.name", { name: "n" }, { stateKey: "" }); } },
  { rule: "8 events_default for message events",
    allow: async (v) => { const r = await basic(v, { pl: { events_default: 0 } }); await r.join(bob); return r.attempt(bob, "m.room.message", { body: "x" }); },
    deny: async (v) => { const r = await basic(v, { pl: { events_default: 10 } }); await r.join(bob); return r.attempt(bob, "m.room.message", { body: "x" }); } },
  { rule: "9 state_key starting with @ must be the sender",
    allow: async (v) => (await basic(v)).attempt(alice, "m.custom", {}, { stateKey: alice }),
    deny: async (v) => (await basic(v)).attempt(alice, "m.custom", {}, { stateKey: bob }) },
  // ---- 10. m.room.power_levels
  { rule: "10.1 (v10+) level properties are integers", when: (v) => v.integerPowerLevels,
    allow: async (v) => (await basic(v)).attempt(alice, "m.room.power_levels", { users: pu(v), ban: 50 }, { stateKey: "" }),
    deny: async (v) => (await basic(v)).attempt(alice, "m.room.power_levels", { users: pu(v), ban: "50" }, { stateKey: "" }) },
  { rule: "(v1–v9) stringy power levels are accepted; strings that are not integers are not", when: (v) => v.stringyPowerLevels,
    allow: async (v) => (await basic(v)).attempt(alice, "m.room.power_levels", { users: { [alice]: " +100 ", [bob]: "007" }, ban: "50" }, { stateKey: "" }),
    deny: async (v) => (await basic(v)).attempt(alice, "m.room.power_levels", { users: { [alice]: 100, [bob]: "1.5" } }, { stateKey: "" }) },
  { rule: "10.2 (v10+) events and notifications map to integers", when: (v) => v.integerPowerLevels,
    allow: async (v) => (await basic(v)).attempt(alice, "m.room.power_levels", { users: pu(v), events: { "m.x": 5 }, notifications: { room: 50 } }, { stateKey: "" }),
    deny: async (v) => (await basic(v)).attempt(alice, "m.room.power_levels", { users: pu(v), notifications: { room: "50" } }, { stateKey: "" }) },
  { rule: "10.3 users keys are user IDs",
    allow: async (v) => (await basic(v)).attempt(alice, "m.room.power_levels", { users: { ...pu(v), [bob]: 10 } }, { stateKey: "" }),
    deny: async (v) => (await basic(v)).attempt(alice, "m.room.power_levels", { users: { ...pu(v), "bob": 10 } }, { stateKey: "" }) },
  { rule: "10.3 users values are integers",
    allow: async (v) => (await basic(v)).attempt(alice, "m.room.power_levels", { users: { ...pu(v), [bob]: 10 } }, { stateKey: "" }),
    deny: async (v) => (await basic(v)).attempt(alice, "m.room.power_levels", { users: { ...pu(v), [bob]: true } }, { stateKey: "" }) },
  { rule: "10.4 (v12) creators cannot be listed in users", when: (v) => v.privilegedCreators,
    allow: async (v) => (await basic(v)).attempt(alice, "m.room.power_levels", { users: { [bob]: 100 } }, { stateKey: "" }),
    deny: async (v) => (await basic(v)).attempt(alice, "m.room.power_levels", { users: { [alice]: 100 } }, { stateKey: "" }) },
  { rule: "10.4 (v12) additional creators cannot be listed either", when: (v) => v.privilegedCreators,
    allow: async (v) => (await basic(v, { createExtra: { additional_creators: [bob] } })).attempt(alice, "m.room.power_levels", { users: { [carol]: 100 } }, { stateKey: "" }),
    deny: async (v) => (await basic(v, { createExtra: { additional_creators: [bob] } })).attempt(alice, "m.room.power_levels", { users: { [bob]: 0 } }, { stateKey: "" }) },
  { rule: "10.6 changing a level above the sender's",
    allow: async (v) => { const r = await modRoom(v); return r.attempt(bob, "m.room.power_levels", modPl(r, { kick: 40 }), { stateKey: "" }); },
    deny: async (v) => { const r = await modRoom(v); return r.attempt(bob, "m.room.power_levels", modPl(r, { ban: 60 }), { stateKey: "" }); } },
  { rule: "10.6.1 a current level above the sender's cannot be changed",
    allow: async (v) => { const r = await modRoom(v); return r.attempt(bob, "m.room.power_levels", modPl(r, { redact: 50 }), { stateKey: "" }); },
    deny: async (v) => { const r = await modRoom(v); return r.attempt(bob, "m.room.power_levels", modPl(r, { state_default: 40 }), { stateKey: "" }); } },
  { rule: "10.7 events entries above the sender's cannot be changed or removed",
    allow: async (v) => { const r = await modRoom(v); return r.attempt(bob, "m.room.power_levels", modPl(r, { events: { "m.room.power_levels": 50, "m.room.name": 100, "m.y": 20 } }), { stateKey: "" }); },
    deny: async (v) => { const r = await modRoom(v); return r.attempt(bob, "m.room.power_levels", modPl(r, { events: { "m.room.power_levels": 50 } }), { stateKey: "" }); } },
  { rule: "10.8 events entries cannot be set above the sender's",
    allow: async (v) => { const r = await modRoom(v); return r.attempt(bob, "m.room.power_levels", modPl(r, { events: { "m.room.power_levels": 50, "m.room.name": 100, "m.z": 50 } }), { stateKey: "" }); },
    deny: async (v) => { const r = await modRoom(v); return r.attempt(bob, "m.room.power_levels", modPl(r, { events: { "m.room.power_levels": 50, "m.room.name": 100, "m.z": 51 } }), { stateKey: "" }); } },
  { rule: "10.7 (v6+) notifications are checked like events", when: (v) => v.limitNotificationsPowerLevels,
    allow: async (v) => { const r = await modRoom(v); return r.attempt(bob, "m.room.power_levels", modPl(r, { notifications: { room: 100, x: 1 } }), { stateKey: "" }); },
    deny: async (v) => { const r = await modRoom(v); return r.attempt(bob, "m.room.power_levels", modPl(r, { notifications: { room: 50 } }), { stateKey: "" }); } },
  { rule: "(v1–v5) notifications are not checked", when: (v) => !v.limitNotificationsPowerLevels,
    allow: async (v) => { const r = await modRoom(v); return r.attempt(bob, "m.room.power_levels", modPl(r, { notifications: { room: 50 } }), { stateKey: "" }); },
    deny: async (v) => { const r = await modRoom(v); return r.attempt(bob, "m.room.power_levels", modPl(r, { ban: 60 }), { stateKey: "" }); } },
  { rule: "10.9 users entries at or above the sender's cannot be changed (own entry can)",
    allow: async (v) => { const r = await modRoom(v); return r.attempt(bob, "m.room.power_levels", modPl(r, { users: { ...pu(v), [bob]: 10, [dave]: 50, [carol]: 0 } }), { stateKey: "" }); },
    deny: async (v) => { const r = await modRoom(v); return r.attempt(bob, "m.room.power_levels", modPl(r, { users: { ...pu(v), [bob]: 50, [dave]: 0, [carol]: 10 } }), { stateKey: "" }); } },
  { rule: "10.10 users entries cannot be set above the sender's",
    allow: async (v) => { const r = await modRoom(v); return r.attempt(bob, "m.room.power_levels", modPl(r, { users: { ...pu(v), [bob]: 50, [dave]: 50, [carol]: 50 } }), { stateKey: "" }); },
    deny: async (v) => { const r = await modRoom(v); return r.attempt(bob, "m.room.power_levels", modPl(r, { users: { ...pu(v), [bob]: 50, [dave]: 50, [carol]: 51 } }), { stateKey: "" }); } },
  // ---- v1/v2 rule 11: redactions
  { rule: "11 (v1–v2) redaction: redact level or same event-ID domain", when: (v) => v.redactionAuthRule,
    allow: async (v) => { const r = await basic(v); await r.join(bob); const m = await r.send(bob, "m.room.message", { body: "x" }); return r.attempt(bob, "m.room.redaction", {}, { redacts: m.eventId }); },
    deny: async (v) => { const r = await basic(v); await r.join(bob); const m = await r.send(alice, "m.room.message", { body: "x" }); return r.attempt(bob, "m.room.redaction", {}, { redacts: m.eventId }); } },
  { rule: "(v3+) redactions are not special in the auth rules", when: (v) => !v.redactionAuthRule,
    allow: async (v) => { const r = await basic(v); await r.join(bob); const m = await r.send(alice, "m.room.message", { body: "x" }); return r.attempt(bob, "m.room.redaction", {}, { redacts: m.eventId }); },
    deny: async (v) => { const r = await basic(v, { pl: { events: { "m.room.redaction": 10 } } }); await r.join(bob); const m = await r.send(alice, "m.room.message", { body: "x" }); return r.attempt(bob, "m.room.redaction", {}, { redacts: m.eventId }); } },
  // ---- v12 creators
  { rule: "(v12) creators have infinite power: an additional creator cannot be banned", when: (v) => v.privilegedCreators,
    allow: async (v) => { const r = await basic(v, { createExtra: { additional_creators: [bob] } }); await r.join(bob); return r.tryMember(bob, dave, "ban"); },
    deny: async (v) => { const r = await basic(v, { createExtra: { additional_creators: [bob] } }); await r.join(bob); return r.tryMember(bob, alice, "ban"); } },
];

/** The `users` map a version allows alice to be in (v12 creators are not listed). */
function pu(v: string): Record<string, number> {
  return roomVersion(v)!.privilegedCreators ? {} : { [alice]: 100 };
}

/** A room where bob is a moderator (50), dave 50, carol 10, with some high entries bob may not touch. */
async function modRoom(v: string): Promise<TestRoom> {
  const r = await basic(v, {
    users: { [bob]: 50, [dave]: 50, [carol]: 10 },
    pl: { kick: 50, ban: 50, redact: 20, state_default: 60, events: { "m.room.power_levels": 50, "m.room.name": 100 }, notifications: { room: 100 } },
  });
  await r.join(bob);
  return r;
}
/** The current power levels content with `over` applied. */
function modPl(r: TestRoom, over: Record<string, unknown>): Record<string, unknown> {
  const cur = r.authState().get(stateKeyOf("m.room.power_levels", ""))!.content;
  return { ...cur, ...over };
}

describe.each(FAMILIES)("auth rules, room version %s", (v) => {
  const rules = roomVersion(v)!;
  for (const c of CASES) {
    if (c.when && !c.when(rules)) continue;
    it(`${c.rule}: allowed`, async () => {
      const res = await c.allow(v);
      expect(res, JSON.stringify(res)).toEqual({ allowed: true });
    });
    it(`${c.rule}: denied`, async () => {
      const res = await c.deny(v);
      expect(res.allowed, "expected a denial").toBe(false);
    });
  }
});

describe("auth events selection and checks", () => {
  it("selects create (v1–v11 only), power levels, sender and target members, join rules, 3pid and authorising member", () => {
    const content = { membership: "join", join_authorised_via_users_server: carol };
    const v11 = authStateKeysFor("m.room.member", bob, bob, content, roomVersion("11")!);
    expect(v11).toEqual([
      stateKeyOf("m.room.create", ""), stateKeyOf("m.room.power_levels", ""), stateKeyOf("m.room.member", bob),
      stateKeyOf("m.room.join_rules", ""), stateKeyOf("m.room.member", carol),
    ]);
    expect(authStateKeysFor("m.room.member", bob, bob, content, roomVersion("12")!)).not.toContain(stateKeyOf("m.room.create", ""));
    // v7 has no restricted joins: the authorising member is not selected.
    expect(authStateKeysFor("m.room.member", bob, bob, content, roomVersion("7")!)).not.toContain(stateKeyOf("m.room.member", carol));
    const inv = authStateKeysFor("m.room.member", bob, alice, { membership: "invite", third_party_invite: { signed: { token: "t" } } }, roomVersion("10")!);
    expect(inv).toContain(stateKeyOf("m.room.third_party_invite", "t"));
    expect(inv).toContain(stateKeyOf("m.room.member", bob));
    expect(authStateKeysFor("m.room.create", "", alice, {}, roomVersion("10")!)).toEqual([]);
  });

  it.each(FAMILIES)("checkAuthEvents in v%s: duplicates, unselected, rejected, foreign, missing create", async (v) => {
    const r = await basic(v);
    await r.join(bob);
    const e = await r.build(bob, "m.room.message", { body: "x" });
    const entries = (ids: string[]) => ids.map((id) => ({ eventId: id, pdu: r.events.get(id)!.pdu }));
    const authIds = (e.pdu.auth_events as unknown[]).map((x) => (Array.isArray(x) ? String(x[0]) : String(x)));
    expect(checkAuthEvents(e.pdu, entries(authIds), r.version)).toEqual({ allowed: true });
    // 3.1 duplicates
    expect(checkAuthEvents(e.pdu, entries([...authIds, authIds[authIds.length - 1]!]), r.version).allowed).toBe(false);
    // 3.2 an entry the selection does not name (the join rules, for a message)
    expect(checkAuthEvents(e.pdu, entries([...authIds, r.state.get(stateKeyOf("m.room.join_rules", ""))!]), r.version).allowed).toBe(false);
    // 3.3 a rejected entry
    expect(checkAuthEvents(e.pdu, entries(authIds).map((a, i) => (i === 0 ? { ...a, rejected: true } : a)), r.version).allowed).toBe(false);
    // 3.5 an entry from another room
    const foreign = entries(authIds).map((a) => (a.pdu.type === "m.room.power_levels" ? { ...a, pdu: { ...a.pdu, room_id: "!other:a.test" } } : a));
    expect(checkAuthEvents(e.pdu, foreign, r.version).allowed).toBe(false);
    const createId = r.state.get(stateKeyOf("m.room.create", ""))!;
    if (r.version.createInAuthEvents) {
      // 2.4 (v1–v11) the create event must be among them
      expect(checkAuthEvents(e.pdu, entries(authIds.filter((id) => id !== createId)), r.version).allowed).toBe(false);
    } else {
      // 3.2 (v12) the create event must not be
      expect(checkAuthEvents(e.pdu, entries([createId, ...authIds]), r.version).allowed).toBe(false);
    }
  });
});

describe("power levels", () => {
  it("defaults: creator 100 without a power levels event (v1–v11), Infinity for v12 creators", async () => {
    for (const v of ["1", "11"]) {
      const r = room(v);
      await r.create(alice);
      expect(userPowerLevel(alice, r.authState(), r.version)).toBe(100);
      expect(userPowerLevel(bob, r.authState(), r.version)).toBe(0);
    }
    const r = await basic("12", { createExtra: { additional_creators: [bob] }, users: { [carol]: 30 } });
    expect(userPowerLevel(alice, r.authState(), r.version)).toBe(Infinity);
    expect(userPowerLevel(bob, r.authState(), r.version)).toBe(Infinity);
    expect(userPowerLevel(carol, r.authState(), r.version)).toBe(30);
  });
  it("v1 floats are truncated and strings parsed (\"floaty\"/\"stringy\" power levels)", async () => {
    const r = await basic("1");
    const st = r.authState();
    const pl = st.get(stateKeyOf("m.room.power_levels", ""))!;
    st.set(stateKeyOf("m.room.power_levels", ""), { ...pl, content: { users: { [bob]: 50.57, [carol]: " -007 ", [dave]: "1e3" }, users_default: "5" } });
    expect(userPowerLevel(bob, st, r.version)).toBe(50);
    expect(userPowerLevel(carol, st, r.version)).toBe(-7);
    expect(userPowerLevel(dave, st, r.version)).toBe(5); // not an integer string: the default applies
    // v10+ reads only integers.
    expect(userPowerLevel(carol, st, roomVersion("10")!)).toBe(0);
  });
});

describe("handling redactions (v3+)", () => {
  it.each(["3", "10", "12"])("v%s: applies for the redact level or the same sender domain", async (v) => {
    const r = await basic(v, { users: { [carol]: 0 } });
    await r.join(bob);
    await r.join(dave);
    await r.join(carol);
    const byAlice = await r.send(alice, "m.room.message", { body: "a" });
    const byCarol = await r.send(carol, "m.room.message", { body: "c" });
    const redBob = await r.build(bob, "m.room.redaction", {}, { redacts: byAlice.eventId });
    const redDave = await r.build(dave, "m.room.redaction", {}, { redacts: byAlice.eventId });
    const redAlice = await r.build(alice, "m.room.redaction", {}, { redacts: byCarol.eventId });
    // bob (b.test, level 0 < redact 50) may not redact alice's (a.test) event.
    expect(mayApplyRedaction(redBob.pdu, byAlice.pdu, r.authState(), r.version)).toBe(false);
    // dave shares alice's server.
    expect(mayApplyRedaction(redDave.pdu, byAlice.pdu, r.authState(), r.version)).toBe(true);
    // alice has the redact level.
    expect(mayApplyRedaction(redAlice.pdu, byCarol.pdu, r.authState(), r.version)).toBe(true);
  });
});

describe("defaults without a power levels event", () => {
  it("state_default is 50 and events_default 0 even without a power levels event", async () => {
    const r = room("10");
    await r.create(alice);
    await r.join(alice);
    await r.joinRule(alice, "public"); // alice is 100 as the creator
    await r.join(bob);
    expect((await r.attempt(bob, "m.room.topic", { topic: "t" }, { stateKey: "" })).allowed).toBe(false);
    expect((await r.attempt(bob, "m.room.message", { body: "m" })).allowed).toBe(true);
    expect((await r.attempt(alice, "m.room.topic", { topic: "t" }, { stateKey: "" })).allowed).toBe(true);
  });
});
