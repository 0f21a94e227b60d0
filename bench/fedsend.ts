/**
 * Outbound federation queue drain: server A holds a backlog of 1,000 messages for server B (B was
 * offline while they were sent); B comes back and A's queue drains — store reads, transaction
 * fixing, X-Matrix signing, the in-memory network, B authenticating each `PUT /send`, the queue
 * rows deleted. Compared with the raw primitive underneath: the same 1,000 PDUs sent by hand in
 * 50-PDU signed `PUT /send` requests through the same network to the same receiver, no queue.
 */
import type { Bench, Figure } from "./harness.ts";
import { call, seedDevice, versus } from "./harness.ts";
import { createHomeserver } from "../src/homeserver/homeserver.ts";
import type { Homeserver } from "../src/homeserver/homeserver.ts";
import { RequestContext } from "../src/homeserver/context.ts";
import { MemoryNetwork } from "../src/homeserver/federation/transport.ts";
import { buildEvent, eventRef } from "../src/homeserver/rooms/build.ts";
import { authStateKeysFor } from "../src/homeserver/rooms/auth.ts";
import { getEvent, getRoom, rulesOf } from "../src/homeserver/roomserver/state.ts";
import { persist } from "../src/homeserver/roomserver/persist.ts";
import { federationPdu } from "../src/homeserver/federation/sender.ts";
import type { StoredEvent } from "../src/homeserver/events/types.ts";
import { createMemoryStore } from "../src/storage/memory.ts";
import { prefix } from "../src/storage/store.ts";
import { LIMITER_NAMES } from "../src/homeserver/auth/rateLimit.ts";
import type { HomeserverConfig } from "../src/homeserver/context.ts";

const BACKLOG = 1000;

const unlimited = (): HomeserverConfig["rateLimits"] =>
  Object.fromEntries(LIMITER_NAMES.map((n) => [n, { perSecond: 1e9, burstCount: 1e9 }])) as HomeserverConfig["rateLimits"];

export const fedsendBench: Bench = async () => {
  const network = new MemoryNetwork();
  const make = (name: string, fill: number): Promise<Homeserver> =>
    createHomeserver({
      store: createMemoryStore(),
      seed: new Uint8Array(32).fill(fill),
      serverName: name,
      federationTransport: network.transportFor(name),
      federationSenderOptions: { minBackoffMs: 60 * 60_000 },
      config: { rateLimits: unlimited() },
    });
  const a = await make("a.bench", 1);
  const b = await make("b.bench", 2);
  // B's side of `PUT /send`: authenticate the request as B does, read the body, count the PDUs.
  let received = 0;
  let onReceived: (() => void) | undefined;
  network.attach("a.bench", (r) => a.handle(r));
  network.attach("b.bench", async (request) => {
    const url = new URL(request.url);
    if (!url.pathname.startsWith("/_matrix/federation/v1/send/")) return b.handle(request);
    const ctx = new RequestContext(b.services, request, url);
    await ctx.requireServer();
    const body = await ctx.json();
    received += (body.pdus as unknown[]).length;
    if (received >= BACKLOG) onReceived?.();
    return Response.json({ pdus: {} });
  });

  const token = await seedDevice(a, "@alice:a.bench", "D");
  const { room_id: roomId } = await call(a, "POST", "/createRoom", token, { preset: "public_chat" });
  await remoteJoin(a, b, roomId as string, "@bob:b.bench");
  // B newly shares a room with Alice: her device list is announced to it first, out of the backlog.
  for (let i = 0; !(await a.services.federationSender!.idle()); i++) {
    if (i > 10_000) throw new Error("the device-list announcement was not sent");
    await new Promise((r) => setTimeout(r, 1));
  }

  // The backlog: B is offline while A's user sends.
  network.setOnline("b.bench", false);
  for (let i = 0; i < BACKLOG; i++) await call(a, "PUT", `/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t${i}`, token, { msgtype: "m.text", body: `m${i}` });
  const sender = a.services.federationSender!;
  for (let i = 0; (await sender.queueDepths()).get("b.bench") !== BACKLOG; i++) {
    if (i > 10_000) throw new Error("backlog not queued");
    await new Promise((r) => setTimeout(r, 1));
  }
  const events = await a.services.store.read(async (tx) => {
    const out: StoredEvent[] = [];
    for (const r of await tx.range<string>("timeline", { prefix: prefix(roomId as string) })) {
      const e = (await getEvent(tx, r.value))!;
      if (e.pdu.type === "m.room.message") out.push(e);
    }
    return out;
  });

  // Drain: B is back and A hears from it (the backoff ends), until every PDU arrived and the queue is empty.
  network.setOnline("b.bench", true);
  const start = performance.now();
  const all = new Promise<void>((r) => (onReceived = r));
  await a.services.federation!.fetch("b.bench", "GET", "/_matrix/federation/v1/version");
  await all;
  while ((await sender.queueDepths()).size > 0) await new Promise((r) => setTimeout(r, 0));
  const drainMs = performance.now() - start;
  if (received !== BACKLOG) throw new Error(`received ${received} PDUs, expected ${BACKLOG}`);

  // Raw: the same PDUs, 50 per signed PUT /send, straight through the client.
  received = 0;
  const pdus = events.map(federationPdu);
  const rawStart = performance.now();
  for (let i = 0; i < pdus.length; i += 50) {
    const res = await a.services.federation!.fetch("b.bench", "PUT", `/_matrix/federation/v1/send/raw${i}`, {
      body: { origin: "a.bench", origin_server_ts: Date.now(), pdus: pdus.slice(i, i + 50), edus: [] },
    });
    await res.arrayBuffer();
  }
  const rawMs = performance.now() - rawStart;
  await a.close();
  await b.close();

  const figures: Figure[] = [
    versus(
      `outbound queue drain after a ${BACKLOG}-message backlog (50-PDU transactions)`,
      (BACKLOG * 1000) / drainMs,
      "PDUs/s",
      "the same PDUs in signed 50-PDU PUT /send by hand (no queue), same network and receiver",
      (BACKLOG * 1000) / rawMs,
      "PDUs/s",
    ),
  ];
  return figures;
};

/** Puts `userId` of `remote` into the room on `host` as a received join signed by `remote`. */
async function remoteJoin(host: Homeserver, remote: Homeserver, roomId: string, userId: string): Promise<void> {
  const hs = host.services;
  const content = { membership: "join" };
  const { rules, prevs, auths } = await hs.store.read(async (tx) => {
    const rules = rulesOf((await getRoom(tx, roomId))!);
    const p = prefix(roomId);
    const prevs: StoredEvent[] = [];
    for (const row of await tx.range("extremities", { prefix: p })) prevs.push((await getEvent(tx, row.key.slice(p.length)))!);
    const auths: StoredEvent[] = [];
    for (const sk of authStateKeysFor("m.room.member", userId, userId, content, rules)) {
      const id = await tx.get<string>("room_state", p + sk);
      if (id) auths.push((await getEvent(tx, id))!);
    }
    return { rules, prevs, auths };
  });
  const refs = (es: StoredEvent[]) => Promise.all(es.map((e) => eventRef(e, rules)));
  const event = await buildEvent(
    { roomId, sender: userId, type: "m.room.member", stateKey: userId, content, prevEvents: await refs(prevs), authEvents: await refs(auths), depth: Math.max(...prevs.map((e) => e.pdu.depth)) + 1, originServerTs: Date.now(), origin: remote.services.serverName },
    rules,
    remote.services.signingKey,
  );
  const [o] = await persist(hs, roomId, [{ kind: "new", event }]);
  if (o?.outcome !== "accepted") throw new Error(`remote join: ${JSON.stringify(o)}`);
}
