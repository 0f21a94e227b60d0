import { describe, it, expect } from "vitest";
import { fixture, SERVER } from "./e2eeFixture.ts";
import type { Fixture } from "./e2eeFixture.ts";
import { e2eeSyncSection, ackToDevice } from "../../../src/homeserver/services/e2ee.ts";
import { currentStreamPos } from "../../../src/homeserver/context.ts";

const ALICE = `@alice:${SERVER}`;
const BOB = `@bob:${SERVER}`;

/** `from` sends Bob's device B1 `n` messages `{ i }` (i = 0 … n-1), one transaction each. */
async function sendBacklog(f: Fixture, from: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await f.call("PUT", `/_matrix/client/v3/sendToDevice/m.test/t${i}`, from, { messages: { [BOB]: { B1: { i } } } });
  }
}

/** One `GET /sync` (timeout 0) of `token`: the `i` of each to-device message it carries, and its next_batch. */
async function syncToDevice(f: Fixture, token: string, since?: string): Promise<{ ids: number[]; next: string }> {
  const r = await f.call("GET", `/_matrix/client/v3/sync?timeout=0${since ? `&since=${since}` : ""}`, token);
  expect(r.status).toBe(200);
  const events = (r.json.to_device as { events: { content: { i: number } }[] }).events;
  return { ids: events.map((e) => e.content.i), next: r.json.next_batch as string };
}

describe("to-device delivery through the sync section", () => {
  it("delivers once, removes after the ack, fans out to *, and ignores a repeated transaction", async () => {
    const f = await fixture();
    const alice = await f.device("alice", "ADEV");
    await f.device("bob", "B1");
    await f.device("bob", "B2");
    const send = (txn: string, messages: unknown) => f.call("PUT", `/_matrix/client/v3/sendToDevice/m.test/${txn}`, alice, { messages });
    expect((await send("t1", { [BOB]: { B1: { n: 1 } } })).status).toBe(200);
    expect((await send("t2", { [BOB]: { "*": { n: 2 } } })).json).toEqual({});
    // The same transaction again is a no-op that still answers {}.
    const dup = await send("t2", { [BOB]: { "*": { n: 2 } } });
    expect(dup.status).toBe(200);
    expect(dup.json).toEqual({});

    const upTo = await currentStreamPos(f.hs.services.store);
    const b1 = await f.hs.services.store.read((tx) => e2eeSyncSection(tx, BOB, "B1", 0, upTo));
    expect(b1.to_device.events).toEqual([
      { sender: ALICE, type: "m.test", content: { n: 1 } },
      { sender: ALICE, type: "m.test", content: { n: 2 } },
    ]);
    const b2 = await f.hs.services.store.read((tx) => e2eeSyncSection(tx, BOB, "B2", 0, upTo));
    expect(b2.to_device.events).toEqual([{ sender: ALICE, type: "m.test", content: { n: 2 } }]);

    // The next sync presents upTo: the messages are gone.
    await ackToDevice(f.hs.services, BOB, "B1", upTo);
    const after = await f.hs.services.store.read((tx) => e2eeSyncSection(tx, BOB, "B1", upTo, upTo));
    expect(after.to_device.events).toEqual([]);
  });

  it("does not lose messages beyond the per-response limit", async () => {
    const f = await fixture();
    const alice = await f.device("alice", "ADEV");
    await f.device("bob", "B1");
    await sendBacklog(f, alice, 150);
    const p1 = await currentStreamPos(f.hs.services.store);
    const first = await f.hs.services.store.read((tx) => e2eeSyncSection(tx, BOB, "B1", 0, p1));
    expect(first.to_device.events).toHaveLength(100);
    expect((first.to_device.events[99] as { content: { i: number } }).content.i).toBe(99);
    // Sync reading before acking must not hand out the delivered batch again.
    const beforeAck = await f.hs.services.store.read((tx) => e2eeSyncSection(tx, BOB, "B1", p1, p1));
    expect((beforeAck.to_device.events[0] as { content: { i: number } }).content.i).toBe(100);
    await ackToDevice(f.hs.services, BOB, "B1", p1);
    await ackToDevice(f.hs.services, BOB, "B1", p1); // a retried request acks nothing more
    const second = await f.hs.services.store.read((tx) => e2eeSyncSection(tx, BOB, "B1", p1, p1));
    expect(second.to_device.events.map((e) => (e as { content: { i: number } }).content.i)).toEqual(Array.from({ length: 50 }, (_, k) => 100 + k));
  });

  it("rejects a malformed body", async () => {
    const f = await fixture();
    const alice = await f.device("alice", "ADEV");
    const r = await f.call("PUT", `/_matrix/client/v3/sendToDevice/m.test/x`, alice, { messages: { [BOB]: { B1: "nope" } } });
    expect(r.status).toBe(400);
    expect(r.json.errcode).toBe("M_BAD_JSON");
  });
});

describe("to-device through GET /sync", () => {
  it("delivers a backlog larger than one response over consecutive syncs, each message once", async () => {
    const f = await fixture();
    const alice = await f.device("alice", "ADEV");
    const bob = await f.device("bob", "B1");
    await sendBacklog(f, alice, 130);
    const seen: number[] = [];
    let since: string | undefined;
    for (let round = 0; round < 4; round++) {
      const r = await syncToDevice(f, bob, since);
      seen.push(...r.ids);
      since = r.next;
    }
    expect(seen).toEqual(Array.from({ length: 130 }, (_, i) => i));
  });
});

describe("to-device through GET /sync, with a lost response", () => {
  it("hands a batch out again when the client retries with the same token, and loses nothing", async () => {
    const f = await fixture();
    const alice = await f.device("alice", "ADEV");
    const bob = await f.device("bob", "B1");
    await sendBacklog(f, alice, 250);
    const sync = (since?: string): Promise<{ ids: number[]; next: string }> => syncToDevice(f, bob, since);
    const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, k) => a + k);
    const r0 = await sync();
    expect(r0.ids).toEqual(range(0, 100));
    const r1 = await sync(r0.next);
    expect(r1.ids).toEqual(range(100, 200));
    // The response r1 is lost: the client asks again with the same token and gets the same batch.
    const r1again = await sync(r0.next);
    expect(r1again.ids).toEqual(range(100, 200));
    const r2 = await sync(r1again.next);
    expect(r2.ids).toEqual(range(200, 250));
    const r3 = await sync(r2.next);
    expect(r3.ids).toEqual([]);
  });
});
