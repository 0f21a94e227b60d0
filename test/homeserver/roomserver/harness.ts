/**
 * A test harness for the room layer: a homeserver on the memory store, users written straight into
 * the store (account + device + token), and a small request helper.
 */
import { tokenHash } from "../../../src/homeserver/auth/tokens.ts";
import { createHomeserver } from "../../../src/homeserver/homeserver.ts";
import type { Homeserver } from "../../../src/homeserver/homeserver.ts";
import { createMemoryStore } from "../../../src/storage/memory.ts";
import { key } from "../../../src/storage/store.ts";
import type { Store } from "../../../src/storage/store.ts";

export const SERVER = "hs.test";
export const SEED = new Uint8Array(32).fill(3);

/** A user with an access token. */
export interface TestUser {
  userId: string;
  deviceId: string;
  token: string;
}

/** A response as tests look at it. */
export interface Res {
  status: number;
  body: Record<string, unknown> & { errcode?: string; error?: string };
}

/** A homeserver with helpers. */
export class TestServer {
  private now = 1_700_000_000_000;
  private counter = 0;
  hs!: Homeserver;

  /** Starts a homeserver on the given (default: memory) store. */
  static async start(store: Store = createMemoryStore(), opts: { frozenClock?: boolean; fetch?: typeof fetch } = {}): Promise<TestServer> {
    const t = new TestServer();
    // A clock that moves 1 ms per reading keeps timestamps distinct and deterministic.
    const clock = opts.frozenClock ? (): number => t.now : (): number => t.now++;
    // Guest access on, so users made with `guest: true` act as guests rather than being refused.
    t.hs = await createHomeserver({ store, seed: SEED, serverName: SERVER, clock, config: { allowGuestAccess: true }, ...(opts.fetch ? { fetch: opts.fetch } : {}) });
    return t;
  }

  /** Creates an account with one device and token directly in the store. */
  async user(localpart: string, opts: { displayname?: string; guest?: boolean } = {}): Promise<TestUser> {
    const userId = `@${localpart}:${SERVER}`;
    const deviceId = `DEV${localpart.toUpperCase()}`;
    const token = `tok_${localpart}_${++this.counter}`;
    await this.hs.services.store.write(async (tx) => {
      tx.put("accounts", userId, { userId, createdAt: 1, ...(opts.displayname ? { displayname: opts.displayname } : {}), ...(opts.guest ? { isGuest: true } : {}) });
      tx.put("devices", key(userId, deviceId), { userId, deviceId, createdAt: 1 });
      tx.put("access_tokens", tokenHash(token), { userId, deviceId });
    });
    return { userId, deviceId, token };
  }

  /** Sends a request: `as` is a user (token) or a raw token string or undefined (no token). */
  async req(method: string, path: string, as?: TestUser | string, body?: unknown): Promise<Res> {
    const headers: Record<string, string> = {};
    const token = typeof as === "string" ? as : as?.token;
    if (token) headers.Authorization = `Bearer ${token}`;
    let payload: string | undefined;
    if (body !== undefined) {
      payload = typeof body === "string" ? body : JSON.stringify(body);
      headers["Content-Type"] = "application/json";
    }
    const url = path.startsWith("/_matrix") ? path : `/_matrix/client/v3${path}`;
    const res = await this.hs.handle(new Request(`http://localhost${url}`, { method, headers, ...(payload !== undefined ? { body: payload } : {}) }));
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Res["body"]) : {} };
  }

  /** Like `req` but fails unless the status is 200. */
  async ok(method: string, path: string, as?: TestUser | string, body?: unknown): Promise<Record<string, any>> {
    const r = await this.req(method, path, as, body);
    if (r.status !== 200) throw new Error(`${method} ${path} → ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  /** Creates a room; returns its ID. */
  async createRoom(as: TestUser, body: Record<string, unknown> = {}): Promise<string> {
    return (await this.ok("POST", "/createRoom", as, body)).room_id as string;
  }

  private txn = 0;
  /** Sends a message; returns the event ID. */
  async send(as: TestUser, roomId: string, content: Record<string, unknown> | string, type = "m.room.message"): Promise<string> {
    const c = typeof content === "string" ? { msgtype: "m.text", body: content } : content;
    const r = await this.ok("PUT", `/rooms/${encodeURIComponent(roomId)}/send/${type}/t${++this.txn}`, as, c);
    return r.event_id as string;
  }

  /** Sets a state event; returns the event ID. */
  async state(as: TestUser, roomId: string, type: string, content: Record<string, unknown>, stateKey = ""): Promise<string> {
    const r = await this.ok("PUT", `/rooms/${encodeURIComponent(roomId)}/state/${type}/${encodeURIComponent(stateKey)}`, as, content);
    return r.event_id as string;
  }

  /** Joins a room. */
  async join(as: TestUser, roomIdOrAlias: string): Promise<void> {
    await this.ok("POST", `/join/${encodeURIComponent(roomIdOrAlias)}`, as, {});
  }

  /** Invites a user. */
  async invite(as: TestUser, roomId: string, userId: string): Promise<void> {
    await this.ok("POST", `/rooms/${encodeURIComponent(roomId)}/invite`, as, { user_id: userId });
  }

  async close(): Promise<void> {
    await this.hs.close();
  }
}

/** `/rooms/{roomId}` with the ID escaped. */
export const room = (roomId: string, rest = ""): string => `/rooms/${encodeURIComponent(roomId)}${rest}`;

/** The bodies of the `m.room.message` events of a served chunk, in order. */
export const bodies = (chunk: any[]): string[] => chunk.filter((e) => e.type === "m.room.message").map((e) => e.content.body);

/** What a finished scenario hands back: the room and the event IDs named along the way. */
export interface ScenarioResult {
  roomId: string;
  ids: Record<string, string>;
}

/**
 * A room scenario built fluently: `await room(t, alice).invite(alice, bob).join(bob).send(bob, "hi", "m1")`.
 * Steps run in order when the scenario is awaited; named steps record their event IDs in `ids`.
 */
export class RoomScenario implements PromiseLike<ScenarioResult> {
  private readonly steps: ((r: ScenarioResult) => Promise<void>)[] = [];

  private readonly t: TestServer;

  constructor(t: TestServer, creator: TestUser, body: Record<string, unknown> = {}) {
    this.t = t;
    this.steps.push(async (r) => {
      r.roomId = await t.createRoom(creator, body);
    });
  }

  private step(fn: (r: ScenarioResult) => Promise<void>): this {
    this.steps.push(fn);
    return this;
  }

  join(u: TestUser): this {
    return this.step(async (r) => this.t.join(u, r.roomId));
  }

  invite(by: TestUser, u: TestUser): this {
    return this.step(async (r) => this.t.invite(by, r.roomId, u.userId));
  }

  leave(u: TestUser): this {
    return this.step(async (r) => void (await this.t.ok("POST", room(r.roomId, "/leave"), u, {})));
  }

  send(u: TestUser, content: Record<string, unknown> | string, name?: string, type?: string): this {
    return this.step(async (r) => {
      const id = await this.t.send(u, r.roomId, content, type);
      if (name) r.ids[name] = id;
    });
  }

  /** A message relating to an earlier named event. */
  relate(u: TestUser, relType: string, to: string, body: string, name?: string): this {
    return this.step(async (r) => {
      const content: Record<string, unknown> = { msgtype: "m.text", body, "m.relates_to": { rel_type: relType, event_id: r.ids[to] } };
      if (relType === "m.replace") content["m.new_content"] = { msgtype: "m.text", body };
      const id = await this.t.send(u, r.roomId, content);
      if (name) r.ids[name] = id;
    });
  }

  state(u: TestUser, type: string, content: Record<string, unknown>, stateKey = "", name?: string): this {
    return this.step(async (r) => {
      const id = await this.t.state(u, r.roomId, type, content, stateKey);
      if (name) r.ids[name] = id;
    });
  }

  redact(u: TestUser, target: string, name?: string): this {
    return this.step(async (r) => {
      const res = await this.t.ok("PUT", room(r.roomId, `/redact/${encodeURIComponent(r.ids[target]!)}/x${Object.keys(r.ids).length}-${target}`), u, {});
      if (name) r.ids[name] = res.event_id as string;
    });
  }

  then<A = ScenarioResult, B = never>(onOk?: ((v: ScenarioResult) => A | PromiseLike<A>) | null, onErr?: ((e: unknown) => B | PromiseLike<B>) | null): PromiseLike<A | B> {
    const run = async (): Promise<ScenarioResult> => {
      const r: ScenarioResult = { roomId: "", ids: {} };
      for (const s of this.steps) await s(r);
      return r;
    };
    return run().then(onOk, onErr);
  }
}

/** Starts a room scenario on `t`, created by `creator`. */
export const scenario = (t: TestServer, creator: TestUser, body?: Record<string, unknown>): RoomScenario => new RoomScenario(t, creator, body);

/** A fresh server with alice ("Alice") and bob ("Bob"), the setup many client tests share. */
export async function startWithAliceAndBob(): Promise<{ t: TestServer; alice: TestUser; bob: TestUser }> {
  const t = await TestServer.start();
  const alice = await t.user("alice", { displayname: "Alice" });
  const bob = await t.user("bob", { displayname: "Bob" });
  return { t, alice, bob };
}
