/**
 * Outbound delivery (issue 9 item 10): per-destination queues in the store, one transaction in
 * flight per destination, batches of ≤ 50 PDUs, the same transaction ID on every retry, backoff
 * that ends when the destination is heard from, order kept, nothing lost across a restart of
 * either side.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Federation, FedServer } from "./harness.ts";
import { createFederation } from "./harness.ts";
import { Recorder, drained, eventually, queued, remoteMembership } from "./fedtools.ts";

let fed: Federation | undefined;
afterEach(async () => {
  await fed?.close();
  fed = undefined;
});

const FAST = { federationSenderOptions: { minBackoffMs: 20, maxBackoffMs: 200 } };

/**
 * A public room on `a` made by a fresh user, with `@bob:b.test` joined (signed by b). The device
 * list `a` then announces to b (a server newly sharing a room with alice) is delivered, and `rec`
 * forgets it, before the test starts.
 */
async function roomWithRemote(a: FedServer, b: FedServer, rec: Recorder): Promise<{ roomId: string; token: string; userId: string }> {
  const alice = await a.register("alice");
  const r = await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, alice.token);
  expect(r.status).toBe(200);
  const roomId = r.body.room_id as string;
  await remoteMembership(a, b, roomId, "@bob:b.test", "join");
  await drained(a);
  rec.clear();
  return { roomId, ...alice };
}

async function send(a: FedServer, roomId: string, token: string, body: string): Promise<string> {
  const r = await a.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${body}`, { msgtype: "m.text", body }, token);
  expect(r.status).toBe(200);
  return r.body.event_id as string;
}

const bodies = (rec: Recorder): string[] => rec.pdus().filter((p) => p.type === "m.room.message").map((p) => p.content.body as string);
const range = (n: number, tag: string): string[] => Array.from({ length: n }, (_, i) => `${tag}${i + 1}`);

describe("outbound PDU delivery", () => {
  it("sends each local event to the other servers of its room, once, in order", async () => {
    fed = await createFederation(["a.test", "b.test"], {}, FAST);
    const [a, b] = fed.servers as [FedServer, FedServer];
    const rec = new Recorder(fed, "b.test");
    const { roomId, token } = await roomWithRemote(a, b, rec);
    for (const m of range(5, "m")) await send(a, roomId, token, m);
    await eventually(() => bodies(rec).length >= 5, "5 messages at b");
    expect(bodies(rec)).toEqual(range(5, "m"));
    expect(rec.pdus().every((p) => p.room_id === roomId && p.signatures?.["a.test"] && p.unsigned === undefined)).toBe(true);
    // The remote join itself was b's, so it is not sent back.
    expect(rec.pdus().some((p) => p.sender === "@bob:b.test")).toBe(false);
    expect(rec.transactions.every((t) => t.origin === "a.test")).toBe(true);
    await eventually(async () => (await queued(a, "b.test")) === 0, "a's queue to drain");
  });

  it("B stopped, A sends 20 messages, B restarts: all 20 arrive in order with no duplicate", async () => {
    fed = await createFederation(["a.test", "b.test"], {}, FAST);
    const [a, b] = fed.servers as [FedServer, FedServer];
    const rec = new Recorder(fed, "b.test");
    const { roomId, token } = await roomWithRemote(a, b, rec);
    fed.network.setOnline("b.test", false);
    for (const m of range(20, "m")) await send(a, roomId, token, m);
    await eventually(async () => (await queued(a, "b.test")) === 20, "20 queued for b");
    await fed.restart(b);
    rec.attach();
    fed.network.setOnline("b.test", true);
    await eventually(() => bodies(rec).length >= 20, "20 messages at b");
    expect(bodies(rec)).toEqual(range(20, "m"));
    await eventually(async () => (await queued(a, "b.test")) === 0, "a's queue to drain");
    expect(bodies(rec)).toHaveLength(20);
  });

  it("a destination that becomes reachable drains at once, without waiting for a long backoff", async () => {
    // Backoff of an hour: only the transport's reachability signal can explain a prompt delivery.
    fed = await createFederation(["a.test", "b.test"], {}, { federationSenderOptions: { minBackoffMs: 3_600_000, maxBackoffMs: 3_600_000 } });
    const [a, b] = fed.servers as [FedServer, FedServer];
    const rec = new Recorder(fed, "b.test");
    const { roomId, token } = await roomWithRemote(a, b, rec);
    fed.network.setOnline("b.test", false);
    for (const m of range(3, "m")) await send(a, roomId, token, m);
    // A first attempt failed and the queue is now waiting out its backoff.
    await eventually(async () => (await a.store.read((tx) => tx.get("federation_inflight", "b.test"))) !== undefined, "a transaction in flight");
    await new Promise((resolve) => setTimeout(resolve, 50));
    rec.attach();
    fed.network.setOnline("b.test", true);
    await eventually(() => bodies(rec).length >= 3, "3 messages at b");
    expect(bodies(rec)).toEqual(range(3, "m"));
  });

  it("A restarted while its queue holds undelivered transactions: all 20 arrive in order with no duplicate", async () => {
    fed = await createFederation(["a.test", "b.test"], {}, FAST);
    const [a0, b] = fed.servers as [FedServer, FedServer];
    let a = a0;
    const rec = new Recorder(fed, "b.test");
    const { roomId, token } = await roomWithRemote(a, b, rec);
    fed.network.setOnline("b.test", false);
    for (const m of range(20, "m")) await send(a, roomId, token, m);
    // A first transaction is fixed and was attempted at least once before the restart.
    await eventually(async () => (await a.store.read((tx) => tx.get("federation_inflight", "b.test"))) !== undefined, "a transaction in flight");
    const before = (await a.store.read((tx) => tx.get<{ txnId: string }>("federation_inflight", "b.test")))!.txnId;
    a = await fed.restart(a);
    fed.network.setOnline("b.test", true);
    await eventually(() => bodies(rec).length >= 20, "20 messages at b");
    expect(bodies(rec)).toEqual(range(20, "m"));
    // The restarted server resent the very transaction it had fixed before.
    expect(rec.transactions[0]!.txnId).toBe(before);
    await eventually(async () => (await queued(a, "b.test")) === 0, "a's queue to drain");
  });

  it("events committed but never queued (the sender stopped, as in a crash) are queued after the restart", async () => {
    fed = await createFederation(["a.test", "b.test"], {}, FAST);
    const [a0, b] = fed.servers as [FedServer, FedServer];
    const rec = new Recorder(fed, "b.test");
    const { roomId, token } = await roomWithRemote(a0, b, rec);
    await a0.hs.services.federationSender!.close();
    for (const m of range(3, "m")) await send(a0, roomId, token, m);
    expect(await queued(a0, "b.test")).toBe(0);
    const a = await fed.restart(a0);
    await eventually(() => bodies(rec).length >= 3, "3 messages at b");
    expect(bodies(rec)).toEqual(range(3, "m"));
    await eventually(async () => (await queued(a, "b.test")) === 0, "a's queue to drain");
  });

  it("a retry after a lost answer reuses the transaction ID, so the receiver's deduplication holds", async () => {
    fed = await createFederation(["a.test", "b.test"], {}, FAST);
    const [a, b] = fed.servers as [FedServer, FedServer];
    const rec = new Recorder(fed, "b.test");
    const { roomId, token } = await roomWithRemote(a, b, rec);
    let lost = 0;
    rec.behaviour = () => (lost++ < 2 ? "lose-answer" : "ok");
    await send(a, roomId, token, "once");
    // The third attempt is answered; until then the transaction stays queued.
    await eventually(async () => rec.attempts.length >= 3 && (await queued(a, "b.test")) === 0, "a's queue to drain");
    expect(rec.attempts.length).toBe(3);
    expect(new Set(rec.attempts.map((t) => t.txnId)).size).toBe(1);
    expect(rec.attempts.map((t) => JSON.stringify(t.pdus))).toEqual(Array(3).fill(JSON.stringify(rec.attempts[0]!.pdus)));
    expect(bodies(rec)).toEqual(["once"]);
  });

  it("a server error is retried with backoff; a permanent refusal gives the transaction up", async () => {
    fed = await createFederation(["a.test", "b.test"], {}, FAST);
    const [a, b] = fed.servers as [FedServer, FedServer];
    const rec = new Recorder(fed, "b.test");
    const { roomId, token } = await roomWithRemote(a, b, rec);
    let n = 0;
    rec.behaviour = (t) => (t.pdus.some((p) => p.content?.body === "refused") ? 400 : n++ < 2 ? 502 : "ok");
    await send(a, roomId, token, "after-502");
    await eventually(() => bodies(rec).includes("after-502"), "delivery after two 502s");
    expect(rec.attempts.length).toBe(3);
    await send(a, roomId, token, "refused");
    await eventually(async () => (await queued(a, "b.test")) === 0, "the refused transaction to be given up");
    await send(a, roomId, token, "next");
    await eventually(() => bodies(rec).includes("next"), "the queue moving on");
    expect(bodies(rec)).toEqual(["after-502", "next"]);
  });

  it("batches a backlog into transactions of at most 50 PDUs, one in flight at a time", async () => {
    fed = await createFederation(["a.test", "b.test"], {}, FAST);
    const [a, b] = fed.servers as [FedServer, FedServer];
    const rec = new Recorder(fed, "b.test");
    const { roomId, token } = await roomWithRemote(a, b, rec);
    fed.network.setOnline("b.test", false);
    for (const m of range(120, "m")) await send(a, roomId, token, m);
    await eventually(async () => (await queued(a, "b.test")) === 120, "120 queued");
    fed.network.setOnline("b.test", true);
    await eventually(() => bodies(rec).length >= 120, "120 messages at b", 10_000);
    expect(bodies(rec)).toEqual(range(120, "m"));
    // The first message's transaction was fixed at its first (failed) attempt and is resent as
    // it was; the backlog behind it goes in full batches.
    expect(rec.transactions.map((t) => t.pdus.length)).toEqual([1, 50, 50, 19]);
    expect(rec.maxInFlight).toBe(1);
  });

  it("backoff ends the moment the destination is heard from", async () => {
    fed = await createFederation(["a.test", "b.test"], {}, { federationSenderOptions: { minBackoffMs: 60 * 60_000 } });
    const [a, b] = fed.servers as [FedServer, FedServer];
    const rec = new Recorder(fed, "b.test");
    const { roomId, token } = await roomWithRemote(a, b, rec);
    // The first attempt fails (503), which starts an hour of backoff.
    rec.behaviour = () => (rec.attempts.length === 1 ? 503 : "ok");
    await send(a, roomId, token, "waiting");
    await eventually(() => rec.attempts.length === 1, "a failed attempt");
    // Nothing is retried on its own within the test.
    await new Promise((r) => setTimeout(r, 100));
    expect(rec.attempts).toHaveLength(1);
    expect(bodies(rec)).toEqual([]);
    // Any answer from b (here to an unrelated request) ends the backoff.
    const res = await a.hs.services.federation!.fetch("b.test", "GET", "/_matrix/federation/v1/version");
    expect(res.status).toBe(200);
    await eventually(() => bodies(rec).includes("waiting"), "delivery once b was heard from", 2000);
  });

  it("sends a membership change to the target's server, and nothing afterwards once it has no member left", async () => {
    fed = await createFederation(["a.test", "b.test", "c.test"], {}, FAST);
    const [a, b, c] = fed.servers as [FedServer, FedServer, FedServer];
    const recB = new Recorder(fed, "b.test");
    const recC = new Recorder(fed, "c.test");
    const { roomId, token } = await roomWithRemote(a, b, recB);
    await remoteMembership(a, c, roomId, "@carol:c.test", "join");
    await send(a, roomId, token, "to-both");
    await eventually(() => bodies(recC).includes("to-both") && bodies(recB).includes("to-both"), "the message at b and c");
    const ban = await a.call("POST", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/ban`, { user_id: "@carol:c.test" }, token);
    expect(ban.status).toBe(200);
    await send(a, roomId, token, "b-only");
    await eventually(() => bodies(recB).includes("b-only"), "the next message at b");
    await eventually(() => recC.pdus().some((p) => p.type === "m.room.member" && p.state_key === "@carol:c.test" && p.content.membership === "ban"), "the ban at c");
    await eventually(async () => (await queued(a, "c.test")) === 0, "c's queue to drain");
    expect(bodies(recC)).toEqual(["to-both"]);
  });
});
