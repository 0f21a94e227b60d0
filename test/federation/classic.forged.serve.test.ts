/**
 * The federation issue's forged-input acceptance over real HTTPS between two `npm run serve`
 * processes in classic mode. The test speaks for B with B's own signing key (read from B's data
 * directory), so A checks every request and PDU against the key it fetches from B over HTTPS:
 * a request without or with a wrong X-Matrix signature (401), a PDU with a bad signature (dropped),
 * a bad content hash (stored redacted), an auth-rule violation (rejected, never current state), an
 * event for a room A is not in, an oversized transaction (400) and a repeated transaction ID
 * (answered from the first) — and nothing of the refused input is served.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { createSigner } from "../../src/homeserver/crypto/ed25519.ts";
import type { JsonObject, SigningKey } from "../../src/homeserver/crypto/signing.ts";
import { authorizationHeader } from "../../src/homeserver/federation/xmatrix.ts";
import { eventIdOf, hashAndSignEvent } from "../../src/homeserver/events/hashes.ts";
import { roomVersion } from "../../src/homeserver/rooms/versions.ts";
import { SEED_FILE } from "../../src/node/identity.ts";
import type { ClassicFederation, ClassicNode, Reply } from "./classic.ts";
import { eventually, startClassicFederation } from "./classic.ts";

let fed: ClassicFederation;
let a: ClassicNode;
let b: ClassicNode;
/** B's signing key, as B itself uses it. */
let bKey: SigningKey;
let alice: { userId: string; token: string };
let bob: { userId: string; token: string };
let roomId: string;
let txnCounter = 0;

const rules = roomVersion("12")!;

/** A federation request to A signed with `key` (B's, unless forged). */
async function asB(method: string, path: string, body?: unknown, key: SigningKey = bKey): Promise<Reply> {
  const auth = await authorizationHeader(key, a.name, method, path, body);
  return a.https(path, { method, headers: { Authorization: auth, "Content-Type": "application/json" }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
}

/** `PUT /send/{txnId}` to A as B. */
function sendTxn(pdus: unknown[], txnId = `forged${++txnCounter}`): Promise<Reply> {
  return asB("PUT", `/_matrix/federation/v1/send/${txnId}`, { origin: b.name, origin_server_ts: Date.now(), pdus, edus: [] });
}

/** The room's state on A, by state key, as alice reads it. */
async function stateOnA(): Promise<Map<string, { event_id: string; content: Record<string, unknown> }>> {
  const state = await a.call("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state`, undefined, alice.token);
  expect(state.status).toBe(200);
  return new Map((state.body as unknown as { type: string; state_key: string; event_id: string; content: Record<string, unknown> }[]).map((e) => [`${e.type}|${e.state_key}`, e]));
}

/** An event from bob (on B) in the room, built on A's newest event, hashed and signed with B's key. */
async function bobEvent(type: string, content: JsonObject, extra: JsonObject = {}): Promise<{ pdu: JsonObject; eventId: string }> {
  const state = await stateOnA();
  const latest = await a.call("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=1`, undefined, alice.token);
  const prevId = (latest.body.chunk as { event_id: string }[])[0]!.event_id;
  const prev = await asB("GET", `/_matrix/federation/v1/event/${encodeURIComponent(prevId)}`);
  expect(prev.status, a.output()).toBe(200);
  const depth = ((prev.body.pdus as { depth: number }[])[0]!.depth) + 1;
  const event: JsonObject = {
    room_id: roomId,
    sender: bob.userId,
    type,
    content,
    origin_server_ts: Date.now(),
    depth,
    prev_events: [prevId],
    // Room version 12: the create event is implied by the room ID, not listed.
    auth_events: [state.get("m.room.power_levels|")!.event_id, state.get(`m.room.member|${bob.userId}`)!.event_id],
    ...extra,
  };
  const pdu = await hashAndSignEvent(event, rules, bKey);
  return { pdu, eventId: await eventIdOf(pdu, rules) };
}

/** `pdu` with `changes`, hashed and signed again with B's key. */
function resigned(pdu: JsonObject, changes: JsonObject): Promise<JsonObject> {
  const { hashes: _h, signatures: _s, unsigned: _u, ...rest } = pdu;
  return hashAndSignEvent({ ...rest, ...changes }, rules, bKey);
}

/** What alice gets for an event on A. */
function eventOnA(eventId: string): Promise<Reply> {
  return a.call("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(eventId)}`, undefined, alice.token);
}

beforeAll(async () => {
  fed = await startClassicFederation(2);
  [a, b] = fed.nodes as [ClassicNode, ClassicNode];
  const seed = new Uint8Array(await readFile(join(b.dataDir, SEED_FILE)));
  const keys = await b.https("/_matrix/key/v2/server");
  bKey = { entity: b.name, keyId: Object.keys(keys.body.verify_keys as object)[0]!, signer: await createSigner(seed) };
  alice = await a.register("alice");
  bob = await b.register("bob");
  const created = await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, alice.token);
  roomId = created.body.room_id as string;
  const joined = await b.call("POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}?server_name=${encodeURIComponent(a.name)}`, {}, bob.token);
  expect(joined.status, b.output()).toBe(200);
  await eventually("A sees bob joined", async () => ((await stateOnA()).get(`m.room.member|${bob.userId}`)?.content.membership === "join" ? true : undefined));
}, 240_000);
afterAll(async () => {
  await fed?.close();
}, 60_000);

describe("forged federation input over HTTPS is refused and nothing of it is stored", () => {
  it("a genuine PDU signed with B's key is accepted (the baseline the forgeries differ from)", async () => {
    const { pdu, eventId } = await bobEvent("m.room.message", { msgtype: "m.text", body: "genuine" });
    const sent = await sendTxn([pdu]);
    expect(sent).toEqual({ status: 200, body: { pdus: { [eventId]: {} } } });
    const seen = await eventOnA(eventId);
    expect(seen.status).toBe(200);
    expect(seen.body.content).toEqual({ msgtype: "m.text", body: "genuine" });
  });

  it("requests without or with a wrong X-Matrix signature: 401, the PDU not stored", async () => {
    const { pdu, eventId } = await bobEvent("m.room.message", { msgtype: "m.text", body: "unsigned request" });
    const body = { origin: b.name, origin_server_ts: Date.now(), pdus: [pdu], edus: [] };
    const unsigned = await a.https(`/_matrix/federation/v1/send/nosig${++txnCounter}`, { method: "PUT", body: JSON.stringify(body) });
    expect(unsigned.status).toBe(401);
    expect(unsigned.body.errcode).toBe("M_UNAUTHORIZED");
    // Signed by another key under B's name.
    const impostor: SigningKey = { ...bKey, signer: await createSigner(new Uint8Array(32).fill(7)) };
    const wrong = await asB("PUT", `/_matrix/federation/v1/send/wrongsig${++txnCounter}`, body, impostor);
    expect(wrong.status).toBe(401);
    expect(wrong.body.errcode).toBe("M_UNAUTHORIZED");
    // A body other than the one signed.
    const auth = await authorizationHeader(bKey, a.name, "PUT", `/_matrix/federation/v1/send/swapped${++txnCounter}`, { ...body, pdus: [] });
    const swapped = await a.https(`/_matrix/federation/v1/send/swapped${txnCounter}`, { method: "PUT", headers: { Authorization: auth }, body: JSON.stringify(body) });
    expect(swapped.status).toBe(401);
    expect((await eventOnA(eventId)).status).toBe(404);
  });

  it("a PDU with a bad signature is dropped", async () => {
    const { pdu, eventId } = await bobEvent("m.room.message", { msgtype: "m.text", body: "bad signature" });
    const sigs = pdu.signatures as Record<string, Record<string, string>>;
    const forged = { ...pdu, signatures: { [b.name]: { [bKey.keyId]: sigs[b.name]![bKey.keyId]!.replace(/^./, (c) => (c === "A" ? "B" : "A")) } } };
    const sent = await sendTxn([forged]);
    expect(sent.status).toBe(200);
    expect(sent.body.pdus[eventId].error).toEqual(expect.any(String));
    expect((await eventOnA(eventId)).status).toBe(404);
  });

  it("a PDU whose content does not match its hash is stored redacted", async () => {
    const { pdu, eventId } = await bobEvent("m.room.message", { msgtype: "m.text", body: "original" });
    // The signature covers the redacted form, so it still verifies; the content hash does not.
    const tampered = { ...pdu, content: { msgtype: "m.text", body: "tampered" } };
    const sent = await sendTxn([tampered]);
    expect(sent.status).toBe(200);
    const seen = await eventually("the event on A", async () => {
      const r = await eventOnA(eventId);
      return r.status === 200 ? r : undefined;
    });
    expect(seen.body.content).toEqual({});
  });

  it("an event that breaks the auth rules is rejected and never becomes current state", async () => {
    const before = await stateOnA();
    // Bob (power 0) raises himself to 100.
    const pl = before.get("m.room.power_levels|")!.content;
    const { pdu, eventId } = await bobEvent("m.room.power_levels", { ...pl, users: { ...(pl.users as object), [bob.userId]: 100 } }, { state_key: "" });
    const sent = await sendTxn([pdu]);
    // Handled (stored as rejected), so the per-PDU result may or may not carry an error.
    expect(sent.status).toBe(200);
    expect(Object.keys(sent.body.pdus as object)).toEqual([eventId]);
    const after = await stateOnA();
    expect(after.get("m.room.power_levels|")!.event_id).toBe(before.get("m.room.power_levels|")!.event_id);
    expect((await eventOnA(eventId)).status).toBe(404);
  });

  it("an event for a room A is not in is refused and not stored", async () => {
    const { pdu } = await bobEvent("m.room.message", { msgtype: "m.text", body: "elsewhere" });
    const elsewhere = await resigned(pdu, { room_id: "!nosuchroomanywhere" });
    const eventId = await eventIdOf(elsewhere, rules);
    const sent = await sendTxn([elsewhere]);
    expect(sent.status).toBe(200);
    expect(sent.body.pdus[eventId].error).toEqual(expect.any(String));
    const fetched = await asB("GET", `/_matrix/federation/v1/event/${encodeURIComponent(eventId)}`);
    expect(fetched.status).toBe(404);
  });

  it("a transaction of 51 PDUs is refused with 400 and none of them stored", async () => {
    const { pdu } = await bobEvent("m.room.message", { msgtype: "m.text", body: "one of 51" });
    const pdus: JsonObject[] = [];
    for (let i = 0; i < 51; i++) pdus.push(await resigned(pdu, { content: { msgtype: "m.text", body: `one of 51 (${i})` } }));
    const sent = await sendTxn(pdus);
    expect(sent.status).toBe(400);
    expect((await eventOnA(await eventIdOf(pdus[0]!, rules))).status).toBe(404);
  });

  it("a repeated transaction ID is answered from the first, and its new content ignored", async () => {
    const first = await bobEvent("m.room.message", { msgtype: "m.text", body: "first under this ID" });
    const answer = await sendTxn([first.pdu], "repeated1");
    expect(answer).toEqual({ status: 200, body: { pdus: { [first.eventId]: {} } } });
    const second = await bobEvent("m.room.message", { msgtype: "m.text", body: "second under the same ID" }, { prev_events: [first.eventId], depth: (first.pdu.depth as number) + 1 });
    const again = await sendTxn([second.pdu], "repeated1");
    expect(again).toEqual(answer);
    expect((await eventOnA(second.eventId)).status).toBe(404);
  });
});

describe("a fork over HTTPS", () => {
  it("A and B change the topic while partitioned; once both are up again they hold the same state", async () => {
    const topic = async (node: ClassicNode, token: string, text: string) => {
      const r = await node.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.topic/`, { topic: text }, token);
      expect(r.status, node.output()).toBe(200);
      return r.body.event_id as string;
    };
    const stateIds = async (node: ClassicNode, token: string): Promise<Record<string, string>> => {
      const r = await node.call("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state`, undefined, token);
      expect(r.status, node.output()).toBe(200);
      return Object.fromEntries((r.body as unknown as { type: string; state_key: string; event_id: string }[]).map((e) => [`${e.type}|${e.state_key}`, e.event_id]));
    };
    // Bob may change the topic too.
    const pl = (await stateOnA()).get("m.room.power_levels|")!.content;
    const raised = await a.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.power_levels/`, { ...pl, users: { ...(pl.users as object), [bob.userId]: 50 } }, alice.token);
    expect(raised.status, a.output()).toBe(200);
    await eventually("B sees bob's new power level", async () => {
      const r = await b.call("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.power_levels/`, undefined, bob.token);
      return (r.body.users as Record<string, number> | undefined)?.[bob.userId] === 50 ? true : undefined;
    });
    // B is down while A writes; then A is down while B writes: each side's events wait in its queue.
    await fed.stop(b);
    const fromA = await topic(a, alice.token, "A's topic while B was away");
    await fed.stop(a);
    await fed.start(b);
    const fromB = await topic(b, bob.token, "B's topic while A was away");
    await fed.start(a);
    // Both branches reach both servers, and state resolution picks the same topic on each.
    const agreed = await eventually(
      "A and B agree on the room's state",
      async () => {
        const [onA, onB] = [await stateIds(a, alice.token), await stateIds(b, bob.token)];
        return JSON.stringify(onA) === JSON.stringify(onB) ? onA : undefined;
      },
      90_000,
    );
    expect([fromA, fromB]).toContain(agreed["m.room.topic|"]);
    // Each server holds the other's branch too.
    for (const [node, token, id] of [[a, alice.token, fromB], [b, bob.token, fromA]] as const) {
      const r = await node.call("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(id)}`, undefined, token);
      expect(r.status, node.output()).toBe(200);
    }
  }, 240_000);
});
