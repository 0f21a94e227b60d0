/**
 * Receiving PDUs (`PUT /send`) and serving them (`/event`, `/state`, `/state_ids`, `/event_auth`,
 * `/backfill`, `/get_missing_events`, `/timestamp_to_event`) between real homeservers on the
 * in-memory network, with real keys and signatures.
 */
import { afterEach, describe, expect, it } from "vitest";
import { authorizationHeader } from "../../src/homeserver/federation/xmatrix.ts";
import { stateKeyOf } from "../../src/homeserver/events/types.ts";
import type { Federation, FedServer } from "./harness.ts";
import { createFederation } from "./harness.ts";
import { eventually } from "./fedtools.ts";
import { buildRemote, currentStateIds, deliver, fedCall, holdQueues, lastPos, sendTxn, sharedRoom, storedOn, svc, timelineAfter, wire } from "./pduHelpers.ts";

let fed: Federation | undefined;
afterEach(async () => {
  await fed?.close();
  fed = undefined;
});

/** Outbound queues retry fast here, so a reconnection is noticed within a test's deadline. */
const FAST_QUEUES = { federationSenderOptions: { minBackoffMs: 20, maxBackoffMs: 100 } };

/**
 * A and B. With `hold`, B refuses the transactions of A's outbound queue, so that B gets exactly
 * what a test sends it (pieces of a chain, forged copies) and nothing else.
 */
async function two(hold = true): Promise<[FedServer, FedServer]> {
  fed = await createFederation(["a.test", "b.test"], {}, FAST_QUEUES);
  const [a, b] = fed.servers as [FedServer, FedServer];
  if (hold) holdQueues(fed, b);
  return [a, b];
}

const NAME = stateKeyOf("m.room.name", "");

describe("PUT /send: receiving PDUs", () => {
  it("A's outbound queue delivers a message to B's /send, and B's user reads it", async () => {
    const [a, b] = await two(false);
    const { roomId, alice, bob } = await sharedRoom(a, b);
    const sent = await a.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/q1`, { msgtype: "m.text", body: "queued" }, alice.token);
    expect(sent.status).toBe(200);
    await eventually(async () => (await storedOn(b, sent.body.event_id))?.streamPos !== undefined, "the message on B");
    const seen = await b.call("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(sent.body.event_id)}`, undefined, bob.token);
    expect(seen.body.content.body).toBe("queued");
  });

  it("stores a remote message in the timeline, where B's user reads it", async () => {
    const [a, b] = await two();
    const { roomId, alice, bob } = await sharedRoom(a, b);
    const from = await lastPos(a, roomId);
    const sent = await a.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/x1`, { msgtype: "m.text", body: "hello B" }, alice.token);
    expect(sent.status).toBe(200);
    const r = await deliver(a, b, roomId, from);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ pdus: { [sent.body.event_id]: {} } });
    expect((await storedOn(b, sent.body.event_id))?.streamPos).toBeDefined();
    const seen = await b.call("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(sent.body.event_id)}`, undefined, bob.token);
    expect(seen.status).toBe(200);
    expect(seen.body.content.body).toBe("hello B");
    // Both servers hold the same current state.
    expect(await currentStateIds(b, roomId)).toEqual(await currentStateIds(a, roomId));
  });
});

describe("forged input is refused and nothing of it is stored", () => {
  it("a request without or with a wrong X-Matrix signature: 401 M_UNAUTHORIZED, nothing processed", async () => {
    const [a, b] = await two();
    const { roomId, alice } = await sharedRoom(a, b);
    const from = await lastPos(a, roomId);
    await a.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/f1`, { msgtype: "m.text", body: "x" }, alice.token);
    const [event] = await timelineAfter(a, roomId, from);
    const uri = "/_matrix/federation/v1/send/forged1";
    const body = { origin: "a.test", origin_server_ts: 1, pdus: [wire(event!)] };
    const bare = await b.hs.handle(new Request(`https://b.test${uri}`, { method: "PUT", body: JSON.stringify(body) }));
    expect(bare.status).toBe(401);
    expect((await bare.json()).errcode).toBe("M_UNAUTHORIZED");
    // Signed over another body: the signature does not cover what arrives.
    const auth = await authorizationHeader(svc(a).signingKey, "b.test", "PUT", uri, { ...body, pdus: [] });
    const wrong = await b.hs.handle(new Request(`https://b.test${uri}`, { method: "PUT", headers: { Authorization: auth }, body: JSON.stringify(body) }));
    expect(wrong.status).toBe(401);
    expect((await wrong.json()).errcode).toBe("M_UNAUTHORIZED");
    expect(await storedOn(b, event!.eventId)).toBeUndefined();
  });

  it("a PDU with a bad signature is dropped; one with a bad content hash is stored redacted", async () => {
    const [a, b] = await two();
    const { roomId, alice, bob } = await sharedRoom(a, b);
    const from = await lastPos(a, roomId);
    await a.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/s1`, { msgtype: "m.text", body: "signed" }, alice.token);
    await a.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/s2`, { msgtype: "m.text", body: "original" }, alice.token);
    const [e1, e2] = await timelineAfter(a, roomId, from);
    const badSig = wire(e1!);
    const sig = badSig.signatures["a.test"]!;
    const keyId = Object.keys(sig)[0]!;
    badSig.signatures = { "a.test": { [keyId]: (sig[keyId]![0] === "A" ? "B" : "A") + sig[keyId]!.slice(1) } };
    // Content changed after signing: the signature (over the redacted event) still holds, the hash does not.
    const badHash = { ...wire(e2!), content: { msgtype: "m.text", body: "tampered" } };
    const r = await sendTxn(a, b, [badSig]);
    expect(r.status).toBe(200);
    expect(r.body.pdus[e1!.eventId].error).toMatch(/signature/);
    expect(await storedOn(b, e1!.eventId)).toBeUndefined();
    // (Its genuine copy is then fetched as the next event's missing prev, from A.)
    const r2 = await sendTxn(a, b, [badHash]);
    expect(r2.body.pdus[e2!.eventId]).toEqual({});
    expect((await storedOn(b, e1!.eventId))?.pdu.signatures).toEqual(e1!.pdu.signatures);
    const stored = await storedOn(b, e2!.eventId);
    expect(stored?.pdu.content).toEqual({});
    const seen = await b.call("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(e2!.eventId)}`, undefined, bob.token);
    expect(seen.body.content).toEqual({});
  });

  it("an auth-rule violation is stored rejected and never becomes current state", async () => {
    const [a, b] = await two();
    const { roomId, bob } = await sharedRoom(a, b);
    const mallory = await a.register("mallory");
    // A forges a name change by a user who never joined, citing the room's real auth events.
    const forged = await buildRemote(a, roomId, { sender: mallory.userId, type: "m.room.name", stateKey: "", content: { name: "pwned" } }, {
      authKeys: [stateKeyOf("m.room.create", ""), stateKeyOf("m.room.power_levels", "")],
    });
    const nameBefore = (await currentStateIds(b, roomId)).get(NAME);
    const r = await sendTxn(a, b, [wire(forged)]);
    expect(r.status).toBe(200);
    const stored = await storedOn(b, forged.eventId);
    expect(stored?.rejected).toBeTruthy();
    expect((await currentStateIds(b, roomId)).get(NAME)).toBe(nameBefore);
    const state = await b.call("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state`, undefined, bob.token);
    expect(state.body.some((e: { event_id: string }) => e.event_id === forged.eventId)).toBe(false);
    // Not served over federation either.
    expect((await fedCall(a, b, "GET", `/_matrix/federation/v1/event/${encodeURIComponent(forged.eventId)}`)).status).toBe(404);
  });

  it("an event allowed by its own auth events but not by the state before it is rejected (a banned user citing their old join)", async () => {
    const [a, b] = await two();
    const { roomId, alice, bob } = await sharedRoom(a, b);
    const r = encodeURIComponent(roomId);
    const mallory = await a.register("mallory");
    let from = await lastPos(a, roomId);
    expect((await a.call("POST", `/_matrix/client/v3/rooms/${r}/join`, {}, mallory.token)).status).toBe(200);
    const joinId = (await currentStateIds(a, roomId)).get(stateKeyOf("m.room.member", mallory.userId))!;
    expect((await a.call("POST", `/_matrix/client/v3/rooms/${r}/ban`, { user_id: mallory.userId }, alice.token)).status).toBe(200);
    for (const v of Object.values((await deliver(a, b, roomId, from)).body.pdus)) expect(v).toEqual({});
    from = await lastPos(b, roomId);
    const createId = (await currentStateIds(a, roomId)).get(stateKeyOf("m.room.create", ""))!;
    const plId = (await currentStateIds(a, roomId)).get(stateKeyOf("m.room.power_levels", ""))!;
    const forged = await buildRemote(a, roomId, { sender: mallory.userId, type: "m.room.message", content: { msgtype: "m.text", body: "still here" } }, {
      // v12 rooms (IDs without a server name) leave the create event out of auth_events.
      authEvents: roomId.includes(":") ? [createId, plId, joinId] : [plId, joinId],
    });
    expect((await sendTxn(a, b, [wire(forged)])).status).toBe(200);
    const stored = await storedOn(b, forged.eventId);
    expect(stored?.rejected).toMatch(/ban|join|member/i);
    expect(stored?.streamPos).toBeUndefined();
    expect(await timelineAfter(b, roomId, from)).toEqual([]);
    const msgs = await b.call("GET", `/_matrix/client/v3/rooms/${r}/messages?dir=b&limit=5`, undefined, bob.token);
    expect(msgs.body.chunk.some((e: { event_id: string }) => e.event_id === forged.eventId)).toBe(false);
  });

  it("an event for a room this server is not in is refused", async () => {
    const [a, b] = await two();
    const alice = await a.register("alice");
    const created = await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, alice.token);
    const roomId = created.body.room_id as string;
    const first = (await timelineAfter(a, roomId)).at(-1);
    const r = await sendTxn(a, b, [wire(first!)]);
    expect(r.status).toBe(200);
    expect(r.body.pdus[first!.eventId].error).toMatch(/not in the room/);
    expect(await storedOn(b, first!.eventId)).toBeUndefined();
    expect(await b.store.read((tx) => tx.get("rooms", roomId))).toBeUndefined();
  });

  it("an oversized transaction (over 50 PDUs or 100 EDUs) is refused with 400", async () => {
    const [a, b] = await two();
    const { roomId, alice } = await sharedRoom(a, b);
    const from = await lastPos(a, roomId);
    await a.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/o1`, { msgtype: "m.text", body: "x" }, alice.token);
    const [event] = await timelineAfter(a, roomId, from);
    const tooMany = await sendTxn(a, b, Array.from({ length: 51 }, () => wire(event!)));
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.errcode).toBe("M_BAD_JSON");
    const tooManyEdus = await sendTxn(a, b, [wire(event!)], Array.from({ length: 101 }, () => ({ edu_type: "m.presence", content: { push: [] } })));
    expect(tooManyEdus.status).toBe(400);
    expect(await storedOn(b, event!.eventId)).toBeUndefined();
    const notList = await fedCall(a, b, "PUT", "/_matrix/federation/v1/send/test-bad1", undefined, { origin: "a.test", origin_server_ts: 1, pdus: {} });
    expect(notList.status).toBe(400);
  });

  it("a duplicate transaction ID is answered from the first, and its new content is not processed", async () => {
    const [a, b] = await two();
    const { roomId, alice } = await sharedRoom(a, b);
    const from = await lastPos(a, roomId);
    await a.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/d1`, { msgtype: "m.text", body: "one" }, alice.token);
    await a.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/d2`, { msgtype: "m.text", body: "two" }, alice.token);
    const [e1, e2] = await timelineAfter(a, roomId, from);
    const first = await sendTxn(a, b, [wire(e1!)], [], "test-same");
    expect(first.body).toEqual({ pdus: { [e1!.eventId]: {} } });
    const again = await sendTxn(a, b, [wire(e2!)], [], "test-same");
    expect(again).toEqual(first);
    expect(await storedOn(b, e2!.eventId)).toBeUndefined();
    // Concurrent retries get the same answer too.
    const [x, y] = await Promise.all([sendTxn(a, b, [wire(e2!)], [], "test-race"), sendTxn(a, b, [wire(e2!)], [], "test-race")]);
    expect(x).toEqual(y);
    expect((await storedOn(b, e2!.eventId))?.streamPos).toBeDefined();
    // A day later the first answer is gone: the ID names a new transaction.
    fed!.advance(25 * 3600 * 1000);
    await sendTxn(a, b, [], [], "test-sweeper");
    const late = await sendTxn(a, b, [], [], "test-same");
    expect(late.body).toEqual({ pdus: {} });
  });

  it("PDUs from a server the room's ACL denies are refused, and the room is not served to it", async () => {
    const [a, b] = await two();
    const { roomId, alice } = await sharedRoom(a, b);
    let from = await lastPos(a, roomId);
    // Alice denies her own server (the ACL binds B; A is asked to honour it too, but B checks).
    const acl = await a.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.server_acl/`, { allow: ["*"], deny: ["a.test"] }, alice.token);
    expect(acl.status).toBe(200);
    expect((await deliver(a, b, roomId, from)).body.pdus[acl.body.event_id]).toEqual({});
    from = await lastPos(a, roomId);
    const msg = await a.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/acl1`, { msgtype: "m.text", body: "after ACL" }, alice.token);
    const r = await deliver(a, b, roomId, from);
    expect(r.body.pdus[msg.body.event_id].error).toMatch(/ACL/);
    expect(await storedOn(b, msg.body.event_id)).toBeUndefined();
    // Serving the room to A is refused as well.
    expect((await fedCall(a, b, "GET", `/_matrix/federation/v1/state_ids/${encodeURIComponent(roomId)}`, [["event_id", acl.body.event_id]])).status).toBe(403);
  });
});

/** Alice sends `n` messages on A; returns their event IDs. */
async function sendMany(a: FedServer, roomId: string, token: string, n: number, tag: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await a.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${tag}${i}`, { msgtype: "m.text", body: `${tag} ${i}` }, token);
    expect(r.status).toBe(200);
    ids.push(r.body.event_id);
  }
  return ids;
}

describe("missing events", () => {
  it("missing prev_events are fetched with /get_missing_events and join the timeline in order", async () => {
    const [a, b] = await two();
    const { roomId, alice } = await sharedRoom(a, b);
    const ids = await sendMany(a, roomId, alice.token, 3, "m");
    const last = (await b.store.read((tx) => tx.get("rooms", roomId))) ? await lastPos(b, roomId) : -1;
    const r = await sendTxn(a, b, [wire((await storedOn(a, ids[2]!))!)]);
    expect(r.body.pdus[ids[2]!]).toEqual({});
    const onB = (await timelineAfter(b, roomId, last)).map((e) => e.eventId);
    expect(onB).toEqual(ids);
    expect(await currentStateIds(b, roomId)).toEqual(await currentStateIds(a, roomId));
  });

  it("a gap larger than one /get_missing_events is bridged with /state_ids; unknown auth events come from /event_auth as outliers", async () => {
    const [a, b] = await two();
    const { roomId, alice } = await sharedRoom(a, b);
    const carol = await a.register("carol");
    expect((await a.call("POST", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/join`, {}, carol.token)).status).toBe(200);
    await a.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.topic/`, { topic: "set in the gap" }, alice.token);
    await sendMany(a, roomId, alice.token, 30, "g");
    const last = await a.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/c1`, { msgtype: "m.text", body: "carol speaks" }, carol.token);
    const r = await sendTxn(a, b, [wire((await storedOn(a, last.body.event_id))!)]);
    expect(r.body.pdus[last.body.event_id]).toEqual({});
    const stored = await storedOn(b, last.body.event_id);
    expect(stored?.streamPos).toBeDefined();
    expect(stored?.rejected).toBeUndefined();
    // Carol's join reached B as an outlier (an auth event), and as current state through /state_ids.
    const carolJoin = (await currentStateIds(a, roomId)).get(stateKeyOf("m.room.member", carol.userId))!;
    expect((await storedOn(b, carolJoin))?.outlier).toBe(true);
    expect(await currentStateIds(b, roomId)).toEqual(await currentStateIds(a, roomId));
    // The gap's older half is not on B (only what get_missing_events returned).
    expect((await timelineAfter(b, roomId)).length).toBeLessThan((await timelineAfter(a, roomId)).length);
    // When the outlier itself arrives in a transaction, it joins B's timeline.
    expect((await sendTxn(a, b, [wire((await storedOn(a, carolJoin))!)])).body.pdus[carolJoin]).toEqual({});
    const promoted = await storedOn(b, carolJoin);
    expect(promoted?.outlier).toBeUndefined();
    expect(promoted?.streamPos).toBeDefined();
    expect(await currentStateIds(b, roomId)).toEqual(await currentStateIds(a, roomId));
  });
});

describe("serving events and state to other servers", () => {
  it("/event, /state, /state_ids, /event_auth, /backfill, /get_missing_events, /timestamp_to_event", async () => {
    fed = await createFederation(["a.test", "b.test", "c.test"]);
    const [a, b, c] = fed.servers as [FedServer, FedServer, FedServer];
    const { roomId, alice } = await sharedRoom(a, b);
    fed.advance(1000);
    const ids = await sendMany(a, roomId, alice.token, 4, "s");
    const r = encodeURIComponent(roomId);
    const e = (id: string) => encodeURIComponent(id);
    const aStored = (await storedOn(a, ids[3]!))!;

    const one = await fedCall(b, a, "GET", `/_matrix/federation/v1/event/${e(ids[3]!)}`);
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({ origin: "a.test", pdus: [wire(aStored)] });

    const sid = await fedCall(b, a, "GET", `/_matrix/federation/v1/state_ids/${r}`, [["event_id", ids[3]!]]);
    expect(sid.status).toBe(200);
    expect(new Set(sid.body.pdu_ids)).toEqual(new Set((await currentStateIds(a, roomId)).values()));
    expect(sid.body.auth_chain_ids.length).toBeGreaterThan(0);
    const full = await fedCall(b, a, "GET", `/_matrix/federation/v1/state/${r}`, [["event_id", ids[3]!]]);
    expect(full.status).toBe(200);
    expect(full.body.pdus.length).toBe(sid.body.pdu_ids.length);
    expect(full.body.auth_chain.length).toBe(sid.body.auth_chain_ids.length);

    const auth = await fedCall(b, a, "GET", `/_matrix/federation/v1/event_auth/${r}/${e(ids[3]!)}`);
    expect(auth.status).toBe(200);
    expect(auth.body.auth_chain.some((p: { type: string }) => p.type === "m.room.create")).toBe(true);

    const back = await fedCall(b, a, "GET", `/_matrix/federation/v1/backfill/${r}`, [["v", ids[3]!], ["limit", "3"]]);
    expect(back.status).toBe(200);
    expect(back.body.pdus.map((p: { content: { body: string } }) => p.content.body)).toEqual(["s 3", "s 2", "s 1"]);

    const gme = await fedCall(b, a, "POST", `/_matrix/federation/v1/get_missing_events/${r}`, undefined, { earliest_events: [ids[0]!], latest_events: [ids[3]!], limit: 10 });
    expect(gme.status).toBe(200);
    expect(gme.body.events.map((p: { content: { body: string } }) => p.content.body)).toEqual(["s 1", "s 2"]);

    const ts = await fedCall(b, a, "GET", `/_matrix/federation/v1/timestamp_to_event/${r}`, [["ts", String(fed.now())], ["dir", "b"]]);
    expect(ts.status).toBe(200);
    expect(ts.body.origin_server_ts).toBe(fed.now());

    // C is not in the room: 403 on every room endpoint; unknown rooms and events: 404.
    for (const [method, path, query, body] of [
      ["GET", `/_matrix/federation/v1/event/${e(ids[3]!)}`],
      ["GET", `/_matrix/federation/v1/state_ids/${r}`, [["event_id", ids[3]!]]],
      ["GET", `/_matrix/federation/v1/state/${r}`, [["event_id", ids[3]!]]],
      ["GET", `/_matrix/federation/v1/event_auth/${r}/${e(ids[3]!)}`],
      ["GET", `/_matrix/federation/v1/backfill/${r}`, [["v", ids[3]!], ["limit", "3"]]],
      ["POST", `/_matrix/federation/v1/get_missing_events/${r}`, undefined, { earliest_events: [], latest_events: [ids[3]!] }],
      ["GET", `/_matrix/federation/v1/timestamp_to_event/${r}`, [["ts", "0"], ["dir", "f"]]],
    ] as [string, string, [string, string][] | undefined, unknown][]) {
      const res = await fedCall(c, a, method, path, query, body);
      expect(res.status, path).toBe(403);
      expect(res.body.errcode, path).toBe("M_FORBIDDEN");
    }
    expect((await fedCall(b, a, "GET", `/_matrix/federation/v1/state_ids/${encodeURIComponent("!nowhere:a.test")}`, [["event_id", ids[3]!]])).status).toBe(404);
    expect((await fedCall(b, a, "GET", `/_matrix/federation/v1/event/${e("$nope")}`)).status).toBe(404);
    expect((await fedCall(b, a, "GET", `/_matrix/federation/v1/state_ids/${r}`, [["event_id", "$nope"]])).status).toBe(404);
    expect((await fedCall(b, a, "GET", `/_matrix/federation/v1/state_ids/${r}`)).status).toBe(400);
    expect((await fedCall(b, a, "GET", `/_matrix/federation/v1/timestamp_to_event/${r}`, [["ts", "0"], ["dir", "f"]])).status).toBe(200);
    expect((await fedCall(b, a, "GET", `/_matrix/federation/v1/timestamp_to_event/${r}`, [["ts", String(fed.now() + 1)], ["dir", "f"]])).status).toBe(404);
  });

  it("events a server may not see by history visibility are served redacted", async () => {
    const [a, b] = await two();
    const alice = await a.register("alice");
    const created = await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", state_key: "", content: { history_visibility: "joined" } }] }, alice.token);
    const roomId = created.body.room_id as string;
    const before = await sendMany(a, roomId, alice.token, 1, "secret");
    // B joins now (helper: seed + join over /send).
    const { seedFrom, buildRemote: build } = await import("./pduHelpers.ts");
    await seedFrom(a, b, roomId);
    const bob = await b.register("bob");
    const join = await build(b, roomId, { sender: bob.userId, type: "m.room.member", stateKey: bob.userId, content: { membership: "join" } });
    expect((await sendTxn(b, a, [wire(join)])).body.pdus[join.eventId]).toEqual({});
    const after = await sendMany(a, roomId, alice.token, 1, "public");
    const hidden = await fedCall(b, a, "GET", `/_matrix/federation/v1/event/${encodeURIComponent(before[0]!)}`);
    expect(hidden.status).toBe(200);
    expect(hidden.body.pdus[0].content).toEqual({});
    const shown = await fedCall(b, a, "GET", `/_matrix/federation/v1/event/${encodeURIComponent(after[0]!)}`);
    expect(shown.body.pdus[0].content.body).toBe("public 0");
  });
});

describe("a fork: both servers send while partitioned", () => {
  it("after reconnection the outbound queues deliver both branches and both servers hold the same current state (state resolution v2.1)", async () => {
    const [a, b] = await two(false);
    const { roomId, alice, bob } = await sharedRoom(a, b);
    const r = encodeURIComponent(roomId);
    const sameOnBoth = async (ids: string[]) => {
      for (const s of [a, b]) for (const id of ids) if ((await storedOn(s, id))?.streamPos === undefined) return false;
      const sa = await currentStateIds(a, roomId);
      const sb = await currentStateIds(b, roomId);
      return JSON.stringify([...sa].sort()) === JSON.stringify([...sb].sort()) ? sa : false;
    };
    // Bob may change the name too.
    const pl = (await a.call("GET", `/_matrix/client/v3/rooms/${r}/state/m.room.power_levels/`, undefined, alice.token)).body;
    const plSet = await a.call("PUT", `/_matrix/client/v3/rooms/${r}/state/m.room.power_levels/`, { ...pl, users: { ...pl.users, [bob.userId]: 50 } }, alice.token);
    expect(plSet.status).toBe(200);
    await eventually(() => sameOnBoth([plSet.body.event_id]), "the power levels on B");

    // B is cut off; both sides change the room name and go on talking.
    fed!.network.setOnline("b.test", false);
    fed!.advance(10);
    const nameA = await a.call("PUT", `/_matrix/client/v3/rooms/${r}/state/m.room.name/`, { name: "named on A" }, alice.token);
    const topicA = await a.call("PUT", `/_matrix/client/v3/rooms/${r}/state/m.room.topic/`, { topic: "topic from A" }, alice.token);
    fed!.advance(10);
    const nameB = await b.call("PUT", `/_matrix/client/v3/rooms/${r}/state/m.room.name/`, { name: "named on B" }, bob.token);
    const msgB = await b.call("PUT", `/_matrix/client/v3/rooms/${r}/send/m.room.message/fb`, { msgtype: "m.text", body: "B while cut off" }, bob.token);
    for (const x of [nameA, topicA, nameB, msgB]) expect(x.status).toBe(200);
    // Nothing crosses the partition.
    expect(await storedOn(b, nameA.body.event_id)).toBeUndefined();
    expect(await storedOn(a, nameB.body.event_id)).toBeUndefined();

    fed!.network.setOnline("b.test", true);
    const state = await eventually(() => sameOnBoth([nameA.body.event_id, topicA.body.event_id, nameB.body.event_id, msgB.body.event_id]), "both branches on both servers, one current state");
    // v2.1: the two names are not power events, so they are ordered along the power-levels
    // mainline (the same for both), then by origin_server_ts: B's later name wins on both servers.
    expect(state.get(NAME)).toBe(nameB.body.event_id);
    expect(state.get(stateKeyOf("m.room.topic", ""))).toBe(topicA.body.event_id);

    // The next event merges the branches; both servers still agree.
    const merged = await a.call("PUT", `/_matrix/client/v3/rooms/${r}/send/m.room.message/after`, { msgtype: "m.text", body: "merged" }, alice.token);
    expect((await storedOn(a, merged.body.event_id))!.pdu.prev_events.length).toBe(2);
    await eventually(() => sameOnBoth([merged.body.event_id]), "the merging event on B");
    const nameOnB = await b.call("GET", `/_matrix/client/v3/rooms/${r}/state/m.room.name/`, undefined, bob.token);
    expect(nameOnB.body.name).toBe("named on B");
  });
});
