/** A homeserver on a memory store with a movable clock, and a small JSON caller, for account tests. */
import { createHomeserver } from "../../../src/homeserver/homeserver.ts";
import type { Homeserver, HomeserverOptions } from "../../../src/homeserver/homeserver.ts";
import type { HomeserverConfig } from "../../../src/homeserver/context.ts";
import { createMemoryStore } from "../../../src/storage/memory.ts";
import { CLIENT_ADDRESS_HEADER } from "../../../src/homeserver/auth/rateLimit.ts";

export const SERVER = "hs.test";

/** One response, parsed. */
export interface Reply {
  status: number;
  body: Record<string, any>;
  headers: Headers;
}

/** How to make one call. */
export interface CallOptions {
  token?: string;
  /** Sets the client address header, which turns on per-client rate limits. */
  from?: string;
  rawBody?: string;
}

export interface TestServer {
  hs: Homeserver;
  call(method: string, path: string, body?: unknown, options?: CallOptions): Promise<Reply>;
  advance(ms: number): void;
  /** Registers `localpart` with the dummy flow and returns its session. */
  register(localpart: string, password?: string, extra?: Record<string, unknown>): Promise<{ userId: string; token: string; deviceId: string }>;
}

/** A test server; `options` replaces parts of the homeserver (another store, a read worker). */
export async function testServer(config: Partial<HomeserverConfig> = {}, options: Partial<HomeserverOptions> = {}): Promise<TestServer> {
  let now = 1_800_000_000_000;
  const hs = await createHomeserver({
    store: createMemoryStore(),
    seed: new Uint8Array(32).fill(7),
    serverName: SERVER,
    clock: () => now,
    config: { passwordIterations: 10, ...config },
    ...options,
  });
  const call = async (method: string, path: string, body?: unknown, options: CallOptions = {}): Promise<Reply> => {
    const headers: Record<string, string> = {};
    if (options.token) headers.Authorization = `Bearer ${options.token}`;
    if (options.from) headers[CLIENT_ADDRESS_HEADER] = options.from;
    const init: RequestInit = { method, headers };
    if (options.rawBody !== undefined) init.body = options.rawBody;
    else if (body !== undefined) init.body = JSON.stringify(body);
    const res = await hs.handle(new Request(`http://localhost${path}`, init));
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : {}, headers: res.headers };
  };
  const register = async (localpart: string, password = "correct horse", extra: Record<string, unknown> = {}) => {
    const r = await call("POST", "/_matrix/client/v3/register", { username: localpart, password, auth: { type: "m.login.dummy" }, ...extra });
    if (r.status !== 200) throw new Error(`register failed: ${JSON.stringify(r.body)}`);
    return { userId: r.body.user_id as string, token: r.body.access_token as string, deviceId: r.body.device_id as string };
  };
  return { hs, call, advance: (ms) => (now += ms), register };
}
