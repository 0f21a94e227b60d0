/**
 * matrix-js-sdk against the room endpoints, in-process (a loopback HTTP server in front of
 * `handle()`): threads, edits and back-pagination as a real client uses them.
 */
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { createServer } from "node:http";
import type { Server } from "node:http";
import { createClient, Direction } from "matrix-js-sdk";
import type { MatrixClient } from "matrix-js-sdk";
import { TestServer } from "../roomserver/harness.ts";
import type { TestUser } from "../roomserver/harness.ts";

let t: TestServer;
let server: Server;
let base: string;
let alice: TestUser;
let bob: TestUser;
const clients: MatrixClient[] = [];

beforeEach(async () => {
  t = await TestServer.start();
  server = createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const headers = new Headers();
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers.set(k, v);
      const hasBody = req.method !== "GET" && req.method !== "HEAD" && chunks.length > 0;
      const r = await t.hs.handle(new Request(`http://127.0.0.1${req.url}`, { method: req.method, headers, ...(hasBody ? { body: Buffer.concat(chunks) } : {}) }));
      res.writeHead(r.status, Object.fromEntries(r.headers));
      res.end(Buffer.from(await r.arrayBuffer()));
    })();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const addr = server.address();
  base = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
  alice = await t.user("alice", { displayname: "Alice" });
  bob = await t.user("bob", { displayname: "Bob" });
});

afterEach(async () => {
  for (const c of clients.splice(0)) c.stopClient();
  await new Promise<void>((r) => server.close(() => r()));
  await t.close();
});

async function until<T>(what: string, check: () => T | undefined | null | false, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function start(u: TestUser): Promise<MatrixClient> {
  const c = createClient({ baseUrl: base, userId: u.userId, accessToken: u.token, deviceId: u.deviceId });
  clients.push(c);
  // threadSupport is a startClient option (createClient's is overwritten by it).
  await c.startClient({ initialSyncLimit: 5, threadSupport: true });
  await until("initial sync", () => c.isInitialSyncComplete());
  return c;
}

describe("matrix-js-sdk", () => {
  it("builds a thread from a live reply, with the server's /event and /relations", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, roomId);
    const c = await start(alice);
    const root = await t.send(alice, roomId, "thread root");
    const reply = await t.send(bob, roomId, { msgtype: "m.text", body: "in the thread", "m.relates_to": { rel_type: "m.thread", event_id: root, is_falling_back: true, "m.in_reply_to": { event_id: root } } });
    const room = await until("room", () => c.getRoom(roomId));
    const thread = await until("thread", () => room.getThread(root));
    await until("reply in thread", () => thread.timeline.some((e) => e.getId() === reply));
    // The client fetches the root and its relations for the thread; let that finish before the
    // server goes away, or the fetches fail after the test as unhandled rejections.
    await until("thread initialised", () => thread.initialEventsFetched);
    expect(thread.length).toBe(1);
    expect(room.getLiveTimeline().getEvents().some((e) => e.getId() === reply)).toBe(false);
  });

  it("applies an edit and pages back through older history", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    for (let i = 1; i <= 12; i++) await t.send(alice, roomId, `old ${i}`);
    const original = await t.send(alice, roomId, "tpyo");
    await t.send(alice, roomId, { msgtype: "m.text", body: "* typo", "m.new_content": { msgtype: "m.text", body: "typo" }, "m.relates_to": { rel_type: "m.replace", event_id: original } });
    const c = await start(alice);
    const room = await until("room", () => c.getRoom(roomId));
    const ev = await until("original", () => room.findEventById(original));
    await until("edit applied", () => ev.getContent().body === "typo");
    const timeline = room.getLiveTimeline();
    while (await c.paginateEventTimeline(timeline, { backwards: true, limit: 10 }));
    const bodies = timeline.getEvents().filter((e) => e.getType() === "m.room.message" && !e.isRelation()).map((e) => e.getContent().body);
    expect(bodies.slice(0, 3)).toEqual(["old 1", "old 2", "old 3"]);
    expect(timeline.getEvents()[0]!.getType()).toBe("m.room.create");
    expect(timeline.getPaginationToken(Direction.Backward)).toBeNull();
  });
});
