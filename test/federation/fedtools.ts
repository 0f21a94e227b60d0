/**
 * Helpers of the federation delivery tests: a remote member put into a room directly (signed by
 * its own server, stored through the persistence pipeline as a received PDU), a recording
 * receiver that authenticates `PUT /send` like the real one and deduplicates by transaction ID,
 * and a bounded wait.
 */
import { expect } from "vitest";
import { RequestContext } from "../../src/homeserver/context.ts";
import { buildEvent, eventRef } from "../../src/homeserver/rooms/build.ts";
import { authStateKeysFor } from "../../src/homeserver/rooms/auth.ts";
import { getEvent, getRoom, rulesOf } from "../../src/homeserver/roomserver/state.ts";
import { persist } from "../../src/homeserver/roomserver/persist.ts";
import { serverOf } from "../../src/homeserver/rooms/ids.ts";
import type { StoredEvent } from "../../src/homeserver/events/types.ts";
import { prefix } from "../../src/storage/store.ts";
import { receiveEdus } from "../../src/homeserver/federation/edus.ts";
import type { Federation, FedServer } from "./harness.ts";

/** Polls `check` until it returns a value other than undefined/false, or fails after `ms`. */
export async function eventually<T>(check: () => Promise<T | undefined | false> | T | undefined | false, what: string, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** `userId`'s membership in `roomId` as `s`'s client API shows it to `token`'s user (undefined: none visible). */
export async function membershipOn(s: FedServer, roomId: string, userId: string, token: string): Promise<string | undefined> {
  const r = await s.call("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.member/${encodeURIComponent(userId)}`, undefined, token);
  return r.status === 200 ? r.body.membership : undefined;
}

/**
 * Stores a membership event of the remote user `userId` in `host`'s copy of the room, built on the
 * room's extremities and signed by `signer` (the user's own server), as if it had arrived over
 * federation. Returns its event ID.
 */
export async function remoteMembership(host: FedServer, signer: FedServer, roomId: string, userId: string, membership: string, alsoOn: FedServer[] = []): Promise<string> {
  const hs = host.hs.services;
  const content = { membership };
  const { rules, prevs, auths } = await hs.store.read(async (tx) => {
    const room = await getRoom(tx, roomId);
    if (!room) throw new Error(`no room ${roomId}`);
    const rules = rulesOf(room);
    const p = prefix(roomId);
    const prevs: StoredEvent[] = [];
    for (const row of await tx.range("extremities", { prefix: p })) prevs.push((await getEvent(tx, row.key.slice(p.length)))!);
    const auths: StoredEvent[] = [];
    for (const sk of new Set(["m.room.create\u001f", ...authStateKeysFor("m.room.member", userId, userId, content, rules)])) {
      const id = await tx.get<string>("room_state", p + sk);
      if (id) auths.push((await getEvent(tx, id))!);
    }
    return { rules, prevs, auths };
  });
  const refs = async (es: StoredEvent[]) => Promise.all(es.map((e) => eventRef(e, rules)));
  const authEvents = rules.createInAuthEvents ? auths : auths.filter((e) => e.pdu.type !== "m.room.create");
  const event = await buildEvent(
    {
      roomId,
      sender: userId,
      type: "m.room.member",
      stateKey: userId,
      content,
      prevEvents: await refs(prevs),
      authEvents: await refs(authEvents),
      depth: Math.max(...prevs.map((e) => e.pdu.depth)) + 1,
      originServerTs: hs.clock(),
      origin: serverOf(userId),
    },
    rules,
    signer.hs.services.signingKey,
  );
  for (const server of [host, ...alsoOn]) {
    const [outcome] = await persist(server.hs.services, roomId, [{ kind: "new", event }]);
    expect(outcome?.outcome, JSON.stringify(outcome)).toBe("accepted");
  }
  return event.eventId;
}

/**
 * Gives `to` a copy of `from`'s room as it is now (every timeline event, in order, stored as
 * received PDUs), so both servers hold the same room: what a join over federation would do.
 */
export async function mirrorRoom(from: FedServer, to: FedServer, roomId: string): Promise<void> {
  const { events, version } = await from.store.read(async (tx) => {
    const rows = await tx.range<string>("timeline", { prefix: prefix(roomId) });
    const events: StoredEvent[] = [];
    for (const r of rows) events.push((await getEvent(tx, r.value))!);
    return { events, version: (await getRoom(tx, roomId))!.roomVersion };
  });
  for (const [i, e] of events.entries()) {
    const [outcome] = await persist(to.hs.services, roomId, [{ kind: "new", event: { eventId: e.eventId, roomId, pdu: e.pdu } }], i === 0 ? { roomId, roomVersion: version } : undefined);
    expect(outcome?.outcome, JSON.stringify(outcome)).toBe("accepted");
  }
}

/** One `PUT /send` as the recorder saw it. */
export interface SeenTransaction {
  origin: string;
  txnId: string;
  pdus: Record<string, any>[];
  edus: { edu_type: string; content: Record<string, any> }[];
}

/**
 * Stands in for a server's `PUT /send` (everything else goes to the real server): it verifies the
 * `X-Matrix` header with the server's own authentication, records each transaction, and answers a
 * repeated transaction ID from the first, as a receiver must. `behaviour` can make an attempt
 * fail after it was recorded (the answer lost on the way back) or before.
 */
export class Recorder {
  /** Every attempt, in arrival order. */
  readonly attempts: SeenTransaction[] = [];
  /** Distinct transactions (by origin and ID), in arrival order. */
  readonly transactions: SeenTransaction[] = [];
  inFlight = 0;
  maxInFlight = 0;
  /** Hand the EDUs of each new transaction to the server's `receiveEdus` (standing in for its `/send`). */
  deliverEdus = false;
  /** Called per attempt: "ok", "lose-answer" (processed, then unreachable) or a status to answer. */
  behaviour: (t: SeenTransaction) => "ok" | "lose-answer" | number = () => "ok";

  private readonly fed: Federation;
  private readonly serverName: string;

  constructor(fed: Federation, serverName: string) {
    this.fed = fed;
    this.serverName = serverName;
    this.attach();
  }

  /** (Re)attaches the recorder in front of the named server (after a restart replaced it). */
  attach(): void {
    const server = (): FedServer => this.fed.servers.find((s) => s.name === this.serverName)!;
    this.fed.network.attach(this.serverName, async (request) => {
      const url = new URL(request.url);
      const m = /^\/_matrix\/federation\/v1\/send\/([^/]+)$/.exec(url.pathname);
      if (!m || request.method !== "PUT") return server().hs.handle(request);
      const ctx = new RequestContext(server().hs.services, request, url);
      const origin = await ctx.requireServer();
      const body = (await ctx.json()) as { pdus?: unknown[]; edus?: unknown[] };
      const t: SeenTransaction = { origin, txnId: decodeURIComponent(m[1]!), pdus: (body.pdus ?? []) as any[], edus: (body.edus ?? []) as any[] };
      this.inFlight++;
      this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
      try {
        // Let a second sender (if there were one) overlap with this one.
        await new Promise((r) => setTimeout(r, 2));
        this.attempts.push(t);
        const what = this.behaviour(t);
        if (typeof what === "number") return Response.json({ errcode: "M_UNKNOWN", error: "test" }, { status: what });
        if (!this.transactions.some((x) => x.origin === t.origin && x.txnId === t.txnId)) {
          this.transactions.push(t);
          if (this.deliverEdus) await receiveEdus(server().hs.services, origin, t.edus);
        }
        if (what === "lose-answer") throw new Error("answer lost");
        return Response.json({ pdus: {} });
      } finally {
        this.inFlight--;
      }
    });
  }

  /** Forgets what was seen so far (a test's setup traffic). */
  clear(): void {
    this.attempts.length = 0;
    this.transactions.length = 0;
    this.maxInFlight = 0;
  }

  /** The PDUs of the distinct transactions, in order. */
  pdus(): Record<string, any>[] {
    return this.transactions.flatMap((t) => t.pdus);
  }

  edus(type?: string): { edu_type: string; content: Record<string, any> }[] {
    return this.transactions.flatMap((t) => t.edus).filter((e) => type === undefined || e.edu_type === type);
  }
}

/** Items queued on `server` for `destination` (the metrics gauge's number). */
export async function queued(server: FedServer, destination: string): Promise<number> {
  return (await server.hs.services.federationSender!.queueDepths()).get(destination) ?? 0;
}

/**
 * Waits until every given server has sent all it queued (a setup's traffic, e.g. the device lists
 * announced to a server newly sharing a room, is out of the way of what a test counts).
 */
export async function drained(...servers: FedServer[]): Promise<void> {
  await eventually(async () => {
    for (const s of servers) if (!(await s.hs.services.federationSender!.idle())) return false;
    return true;
  }, "the outbound queues to drain");
}
