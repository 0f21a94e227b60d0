/**
 * Redactions received over federation take effect on the receiving server when the spec allows
 * them ("Redactions": the redaction's sender is on the target sender's server, or has the redact
 * power level), and not otherwise. Found by the classic-mode flows over HTTPS, where Alice's
 * redacted reaction stayed whole on Bob's server.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Federation, FedServer } from "./harness.ts";
import { createFederation } from "./harness.ts";
import { eventually } from "./fedtools.ts";
import { buildRemote, deliver, holdQueues, lastPos, sendTxn, sharedRoom, storedOn, svc, wire } from "./pduHelpers.ts";
import { persist } from "../../src/homeserver/roomserver/persist.ts";

let fed: Federation | undefined;
afterEach(async () => {
  await fed?.close();
  fed = undefined;
});

const enc = encodeURIComponent;

async function two(): Promise<[FedServer, FedServer]> {
  fed = await createFederation(["a.test", "b.test"], {}, { federationSenderOptions: { minBackoffMs: 20, maxBackoffMs: 100 } });
  const [a, b] = fed.servers as [FedServer, FedServer];
  // B gets exactly what the test delivers.
  holdQueues(fed, b);
  return [a, b];
}

describe("redactions received over federation", () => {
  it("a sender's redaction of their own event, and an admin's of another server's event, apply on the receiver", async () => {
    const [a, b] = await two();
    const { roomId, alice, bob } = await sharedRoom(a, b);
    const from = await lastPos(a, roomId);
    const msg = await a.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/m1`, { msgtype: "m.text", body: "regret" }, alice.token);
    const reaction = await a.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.reaction/r1`, { "m.relates_to": { rel_type: "m.annotation", event_id: msg.body.event_id, key: "x" } }, alice.token);
    const redaction = await a.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/redact/${enc(msg.body.event_id)}/d1`, {}, alice.token);
    const redactReaction = await a.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/redact/${enc(reaction.body.event_id)}/d2`, {}, alice.token);
    expect([msg.status, reaction.status, redaction.status, redactReaction.status]).toEqual([200, 200, 200, 200]);
    expect((await deliver(a, b, roomId, from)).status).toBe(200);

    expect((await storedOn(b, msg.body.event_id))?.redactedBy).toBe(redaction.body.event_id);
    const seen = await b.call("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(msg.body.event_id)}`, undefined, bob.token);
    expect(seen.body.content).toEqual({});
    expect(seen.body.unsigned.redacted_because.event_id).toBe(redaction.body.event_id);
    // The redacted reaction no longer counts as a relation.
    const rel = await b.call("GET", `/_matrix/client/v1/rooms/${enc(roomId)}/relations/${enc(msg.body.event_id)}`, undefined, bob.token);
    expect(rel.body.chunk).toEqual([]);

    // Bob's message, redacted by Alice (power level 100, another server): applies on B too.
    const bobMsg = await b.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/b1`, { msgtype: "m.text", body: "spam" }, bob.token);
    expect(bobMsg.status).toBe(200);
    await eventually(async () => (await storedOn(a, bobMsg.body.event_id))?.streamPos !== undefined, "bob's message on A");
    const from2 = await lastPos(a, roomId);
    const modRedaction = await a.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/redact/${enc(bobMsg.body.event_id)}/d3`, { reason: "spam" }, alice.token);
    expect(modRedaction.status).toBe(200);
    expect((await deliver(a, b, roomId, from2)).status).toBe(200);
    expect((await storedOn(b, bobMsg.body.event_id))?.redactedBy).toBe(modRedaction.body.event_id);
  });

  it("a redaction by a user of another server without the redact power level is stored but redacts nothing", async () => {
    const [a, b] = await two();
    // Version 11: `redacts` in content, where the test's event builder puts it.
    const { roomId, alice, bob } = await sharedRoom(a, b, { preset: "public_chat", room_version: "11" });
    const msg = await a.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/m1`, { msgtype: "m.text", body: "keep me" }, alice.token);
    expect(msg.status).toBe(200);
    // B's own client could not send this (403 there); a server may still send it.
    const from = await lastPos(a, roomId);
    expect((await deliver(a, b, roomId, from - 1)).status).toBe(200);
    const forged = await buildRemote(b, roomId, { sender: bob.userId, type: "m.room.redaction", content: { redacts: msg.body.event_id } });
    const sent = await sendTxn(b, a, [wire(forged)]);
    expect(sent.body.pdus[forged.eventId]).toEqual({});
    expect((await storedOn(a, forged.eventId))?.streamPos).toBeDefined();
    expect((await storedOn(a, msg.body.event_id))?.redactedBy).toBeUndefined();
    const seen = await a.call("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(msg.body.event_id)}`, undefined, alice.token);
    expect(seen.body.content.body).toBe("keep me");
  });

  it("a redaction that arrives before the event it redacts takes effect when that event arrives", async () => {
    const [a, b] = await two();
    const { roomId, alice, bob } = await sharedRoom(a, b, { preset: "public_chat", room_version: "11" });
    const msg = await a.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/m1`, { msgtype: "m.text", body: "late" }, alice.token);
    const reaction = await a.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.reaction/r1`, { "m.relates_to": { rel_type: "m.annotation", event_id: msg.body.event_id, key: "x" } }, alice.token);
    expect([msg.status, reaction.status]).toEqual([200, 200]);
    const msgEvent = (await storedOn(a, msg.body.event_id))!;
    const reactionEvent = (await storedOn(a, reaction.body.event_id))!;
    // Alice's server redacts the reaction on a branch beside it (its prev is the event before the
    // message): B can store the redaction without the reaction, which it does not have yet.
    const prev = (msgEvent.pdu.prev_events as string[])[0]!;
    const redaction = await buildRemote(a, roomId, { sender: alice.userId, type: "m.room.redaction", content: { redacts: reaction.body.event_id } }, { prevEvents: [prev] });
    const first = await sendTxn(a, b, [wire(redaction)]);
    expect(first.body.pdus[redaction.eventId]).toEqual({});
    expect((await storedOn(b, redaction.eventId))?.streamPos).toBeDefined();
    expect(await storedOn(b, reaction.body.event_id)).toBeUndefined();

    // Now the message and the reaction arrive: the reaction is stored redacted, and counts for nothing.
    const later = await sendTxn(a, b, [wire(msgEvent), wire(reactionEvent)]);
    expect(later.body.pdus).toEqual({ [msg.body.event_id]: {}, [reaction.body.event_id]: {} });
    expect((await storedOn(b, reaction.body.event_id))?.redactedBy).toBe(redaction.eventId);
    const seen = await b.call("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(reaction.body.event_id)}`, undefined, bob.token);
    expect(seen.body.content).toEqual({});
    const rel = await b.call("GET", `/_matrix/client/v1/rooms/${enc(roomId)}/relations/${enc(msg.body.event_id)}`, undefined, bob.token);
    expect(rel.body.chunk).toEqual([]);
    // The message itself is untouched, and nothing waits any more.
    expect((await storedOn(b, msg.body.event_id))?.redactedBy).toBeUndefined();
    expect(await b.store.read((tx) => tx.range("redactions_pending"))).toEqual([]);
  });

  it("a waiting redaction by a user of another server without the redact power level redacts nothing when its target comes", async () => {
    const [a, b] = await two();
    const { roomId, alice, bob } = await sharedRoom(a, b, { preset: "public_chat", room_version: "11" });
    const msg = await a.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/m1`, { msgtype: "m.text", body: "mine" }, alice.token);
    const msgEvent = (await storedOn(a, msg.body.event_id))!;
    const prev = (msgEvent.pdu.prev_events as string[])[0]!;
    // Bob's server (not the message's, Bob at power 0) sends a redaction of it before it has it.
    const forged = await buildRemote(b, roomId, { sender: bob.userId, type: "m.room.redaction", content: { redacts: msg.body.event_id } }, { prevEvents: [prev] });
    expect((await persist(svc(b), roomId, [{ kind: "new", event: forged }]))[0]!.outcome).toBe("accepted");
    expect((await sendTxn(a, b, [wire(msgEvent)])).body.pdus).toEqual({ [msg.body.event_id]: {} });
    expect((await storedOn(b, msg.body.event_id))?.redactedBy).toBeUndefined();
    expect(await b.store.read((tx) => tx.range("redactions_pending"))).toEqual([]);
  });
});
