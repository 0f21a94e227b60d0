/**
 * Helpers of the PDU tests: a room shared by two servers, set up without the join protocol (B
 * verifies A's events with the real checks on receipt and stores them as send_join would; B's
 * user's join is built and signed by B and sent to A over `/send`), and delivery of a server's
 * new events to another through a real signed `PUT /send`.
 */
import { expect } from "vitest";
import { key, prefix, pos } from "../../src/storage/store.ts";
import type { Services } from "../../src/homeserver/context.ts";
import type { EventWithId, Pdu, RoomRecord, StoredEvent } from "../../src/homeserver/events/types.ts";
import { stateKeyOf } from "../../src/homeserver/events/types.ts";
import { buildEvent, eventRef } from "../../src/homeserver/rooms/build.ts";
import { receivePdu } from "../../src/homeserver/rooms/receive.ts";
import { persist } from "../../src/homeserver/roomserver/persist.ts";
import { getEvent, rulesOf } from "../../src/homeserver/roomserver/state.ts";
import type { Federation, FedServer } from "./harness.ts";

export const svc = (s: FedServer): Services => s.hs.services;

/** The room's record on a server. */
export async function roomOf(s: FedServer, roomId: string): Promise<RoomRecord | undefined> {
  return s.store.read((tx) => tx.get<RoomRecord>("rooms", roomId));
}

/** One stored event on a server. */
export function storedOn(s: FedServer, eventId: string): Promise<StoredEvent | undefined> {
  return s.store.read((tx) => getEvent(tx, eventId));
}

/** The room's timeline events on `s` after stream position `after`, in order. */
export async function timelineAfter(s: FedServer, roomId: string, after = -1): Promise<StoredEvent[]> {
  return s.store.read(async (tx) => {
    const rows = await tx.range<string>("timeline", { prefix: prefix(roomId), ...(after >= 0 ? { gt: key(roomId, pos(after)) } : {}) });
    const out: StoredEvent[] = [];
    for (const r of rows) {
      const e = await getEvent(tx, r.value);
      if (e) out.push(e);
    }
    return out;
  });
}

/** The room's current state on `s`: SK → event ID. */
export async function currentStateIds(s: FedServer, roomId: string): Promise<Map<string, string>> {
  const pre = prefix(roomId);
  const rows = await s.store.read((tx) => tx.range<string>("room_state", { prefix: pre }));
  return new Map(rows.map((r) => [r.key.slice(pre.length), r.value]));
}

/** The PDU as it goes over the wire (no local `unsigned`). */
export function wire(e: StoredEvent | EventWithId): Pdu {
  const { unsigned: _u, ...pdu } = e.pdu;
  return pdu as Pdu;
}

let txnCounter = 0;

/** Transaction IDs of the transactions the tests send themselves (`sendTxn`). */
const TEST_TXN = "test-";

/**
 * Makes `to` refuse (503) every `/send` but the tests' own, so the outbound queues of the other
 * servers cannot deliver what a test wants `to` to get only in pieces (or forged). Returns the
 * function that puts `to` back on the network as it was.
 */
export function holdQueues(fed: Federation, to: FedServer): () => void {
  fed.network.attach(to.name, async (request) => {
    const m = /\/_matrix\/federation\/v1\/send\/([^/?]+)/.exec(new URL(request.url).pathname);
    if (m && !decodeURIComponent(m[1]!).startsWith(TEST_TXN)) return new Response(JSON.stringify({ errcode: "M_UNKNOWN", error: "held by the test" }), { status: 503 });
    return to.hs.handle(request);
  });
  return () => fed.network.attach(to.name, (r) => to.hs.handle(r));
}

/** `from` sends `pdus` (and `edus`) to `to` in one signed transaction; returns status and body. */
export async function sendTxn(from: FedServer, to: FedServer, pdus: unknown[], edus: unknown[] = [], txnId = `${TEST_TXN}${++txnCounter}`): Promise<{ status: number; body: any }> {
  const res = await svc(from).federation!.fetch(to.name, "PUT", `/_matrix/federation/v1/send/${txnId}`, {
    body: { origin: from.name, origin_server_ts: svc(from).clock(), pdus, ...(edus.length ? { edus } : {}) },
  });
  return { status: res.status, body: await res.json() };
}

/** A signed federation GET/POST from `from` to `to`. */
export async function fedCall(from: FedServer, to: FedServer, method: string, path: string, query?: [string, string][], body?: unknown): Promise<{ status: number; body: any }> {
  const res = await svc(from).federation!.fetch(to.name, method, path, { ...(query ? { query } : {}), ...(body !== undefined ? { body } : {}) });
  return { status: res.status, body: await res.json() };
}

/**
 * Builds an event on `server` (signed with its key) in room `roomId` as the server's own state
 * says, the way a remote server would: prevs = its forward extremities, auth events chosen from
 * its current state. `overrides` adjusts the proto (e.g. other prevs or auth events).
 */
export async function buildRemote(
  server: FedServer,
  roomId: string,
  fields: { sender: string; type: string; stateKey?: string; content: Record<string, unknown> },
  overrides: { prevEvents?: string[]; authKeys?: string[]; authEvents?: string[] } = {},
): Promise<EventWithId> {
  const hs = svc(server);
  return hs.store.read(async (tx) => {
    const room = (await tx.get<RoomRecord>("rooms", roomId))!;
    const rules = rulesOf(room);
    const pre = prefix(roomId);
    const prevIds = overrides.prevEvents ?? (await tx.range<true>("extremities", { prefix: pre })).map((r) => r.key.slice(pre.length));
    const prevs = (await Promise.all(prevIds.map((id) => getEvent(tx, id)))).filter((e): e is StoredEvent => !!e);
    const authKeys = overrides.authKeys ?? [
      ...(rules.roomIdFromCreate ? [] : [stateKeyOf("m.room.create", "")]),
      stateKeyOf("m.room.power_levels", ""),
      stateKeyOf("m.room.member", fields.sender),
      ...(fields.type === "m.room.member" ? [stateKeyOf("m.room.join_rules", "")] : []),
    ];
    const authIds = overrides.authEvents ?? (await Promise.all(authKeys.map((k) => tx.get<string>("room_state", key(roomId, k))))).filter((x): x is string => !!x);
    const auths = (await Promise.all(authIds.map((id) => getEvent(tx, id)))).filter((e): e is StoredEvent => !!e);
    return buildEvent(
      {
        roomId,
        sender: fields.sender,
        type: fields.type,
        ...(fields.stateKey !== undefined ? { stateKey: fields.stateKey } : {}),
        content: fields.content,
        prevEvents: await Promise.all(prevs.map((e) => eventRef(e, rules))),
        authEvents: await Promise.all(auths.map((e) => eventRef(e, rules))),
        depth: Math.max(0, ...prevs.map((e) => e.pdu.depth)) + 1,
        originServerTs: hs.clock(),
        origin: hs.serverName,
      },
      rules,
      hs.signingKey,
    );
  });
}

/**
 * A room created by `alice` on A that `bob` of B has joined, both servers holding the same DAG.
 * B gets A's events as a joining server does (every one verified by the checks on receipt, then
 * stored as the room's history); A gets B's join over `/send`.
 */
export async function sharedRoom(a: FedServer, b: FedServer, createBody: Record<string, unknown> = { preset: "public_chat" }) {
  const alice = await a.register(`alice${++txnCounter}`);
  const bob = await b.register(`bob${txnCounter}`);
  const created = await a.call("POST", "/_matrix/client/v3/createRoom", createBody, alice.token);
  expect(created.status).toBe(200);
  const roomId = created.body.room_id as string;
  await seedFrom(a, b, roomId);
  const join = await buildRemote(b, roomId, { sender: bob.userId, type: "m.room.member", stateKey: bob.userId, content: { membership: "join" } });
  const sent = await sendTxn(b, a, [wire(join)]);
  expect(sent.body.pdus[join.eventId]).toEqual({});
  const [own] = await persist(svc(b), roomId, [{ kind: "local", event: join }]);
  expect(own!.outcome).toBe("accepted");
  return { roomId, alice, bob, join };
}

/** Gives `to` the whole timeline of `roomId` as `from` has it, each event verified by the checks on receipt. */
export async function seedFrom(from: FedServer, to: FedServer, roomId: string): Promise<void> {
  const room = (await roomOf(from, roomId))!;
  const rules = rulesOf(room);
  const events = await timelineAfter(from, roomId);
  const verified: EventWithId[] = [];
  const known = new Map<string, EventWithId>();
  for (const e of events) {
    const v = await receivePdu(wire(e), rules, {
      keys: (s, k, at) => svc(to).keyring.key(s, k, at),
      verifier: svc(to).verifier,
      fetchEvent: (id) => known.get(id),
    });
    expect(v.outcome, v.reason).toBe("accept");
    known.set(v.event!.eventId, v.event!);
    verified.push(v.event!);
  }
  const outcomes = await persist(svc(to), roomId, verified.map((event) => ({ kind: "new" as const, event })), { roomId, roomVersion: room.roomVersion });
  for (const o of outcomes) expect(o.outcome, o.reason).toBe("accepted");
}

/** Sends `from`'s timeline events of `roomId` after `after` to `to` in one transaction; returns the results. */
export async function deliver(from: FedServer, to: FedServer, roomId: string, after: number): Promise<{ status: number; body: any; events: StoredEvent[] }> {
  const events = (await timelineAfter(from, roomId, after)).filter((e) => e.pdu.sender.endsWith(`:${from.name}`));
  const r = await sendTxn(from, to, events.map(wire));
  return { ...r, events };
}

/** The highest stream position of `roomId`'s timeline on `s` (-1 when empty). */
export async function lastPos(s: FedServer, roomId: string): Promise<number> {
  const t = await timelineAfter(s, roomId);
  return t.length ? t[t.length - 1]!.streamPos! : -1;
}
