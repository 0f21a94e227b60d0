/**
 * Several homeservers in one process, federating over a `MemoryNetwork` (the multi-server test
 * harness of the federation issue): every flow between servers can be tested fast, with servers
 * taken offline and brought back, and a shared movable clock.
 */
import { createHomeserver } from "../../src/homeserver/homeserver.ts";
import type { Homeserver, HomeserverOptions } from "../../src/homeserver/homeserver.ts";
import type { HomeserverConfig } from "../../src/homeserver/context.ts";
import { LIMITER_NAMES } from "../../src/homeserver/auth/rateLimit.ts";
import { MemoryNetwork } from "../../src/homeserver/federation/transport.ts";
import { createMemoryStore } from "../../src/storage/memory.ts";
import type { Store } from "../../src/storage/store.ts";

/** One response, parsed. */
export interface Reply {
  status: number;
  body: Record<string, any>;
}

/** One server of the federation. */
export interface FedServer {
  name: string;
  hs: Homeserver;
  store: Store;
  seed: Uint8Array;
  /** A Client-Server API call with an optional access token. */
  call(method: string, path: string, body?: unknown, token?: string): Promise<Reply>;
  /** Registers `localpart` (dummy auth) and returns its user ID and token. */
  register(localpart: string): Promise<{ userId: string; token: string }>;
}

/** What a test controls. */
export interface Federation {
  network: MemoryNetwork;
  servers: FedServer[];
  /** The shared clock: all servers see the same time. */
  advance(ms: number): void;
  now(): number;
  /** Stops a server (its store survives) and starts it again on the same store, as after a restart. */
  restart(server: FedServer): Promise<FedServer>;
  close(): Promise<void>;
}

/** Starts `names.length` servers on one in-memory network. */
export async function createFederation(
  names: string[],
  config: Partial<HomeserverConfig> = {},
  /** Further homeserver options (e.g. `federationSenderOptions`), the same for every server. */
  extra: Pick<HomeserverOptions, "federationSenderOptions" | "catchUpOptions"> = {},
): Promise<Federation> {
  let now = 1_800_000_000_000;
  const clock = (): number => now;
  const network = new MemoryNetwork();
  const start = async (name: string, seed: Uint8Array, store: Store): Promise<FedServer> => {
    const hs = await createHomeserver({
      store,
      seed,
      serverName: name,
      clock,
      federationTransport: network.transportFor(name),
      ...extra,
      // A fresh memory store survives close() only if we keep it open: close the homeserver, not the store.
      config: { passwordIterations: 10, rateLimits: unlimited(), ...config },
    });
    network.attach(name, (r) => hs.handle(r));
    const call = async (method: string, path: string, body?: unknown, token?: string): Promise<Reply> => {
      const headers: Record<string, string> = {};
      if (token) headers.Authorization = `Bearer ${token}`;
      const res = await hs.handle(new Request(`http://localhost${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) }));
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : {} };
    };
    const register = async (localpart: string) => {
      const r = await call("POST", "/_matrix/client/v3/register", { username: localpart, password: "correct horse", auth: { type: "m.login.dummy" } });
      if (r.status !== 200) throw new Error(`register on ${name} failed: ${JSON.stringify(r.body)}`);
      return { userId: r.body.user_id as string, token: r.body.access_token as string };
    };
    return { name, hs, store, seed, call, register };
  };
  const servers: FedServer[] = [];
  for (const [i, name] of names.entries()) servers.push(await start(name, new Uint8Array(32).fill(i + 1), reopenableStore()));
  return {
    network,
    servers,
    advance: (ms) => (now += ms),
    now: clock,
    restart: async (server) => {
      network.detach(server.name);
      await server.hs.close();
      const again = await start(server.name, server.seed, server.store);
      servers[servers.indexOf(server)] = again;
      return again;
    },
    close: async () => {
      for (const s of servers) await s.hs.close();
    },
  };
}

/** Rate limits out of the way: federation tests send bursts. */
function unlimited(): HomeserverConfig["rateLimits"] {
  return Object.fromEntries(LIMITER_NAMES.map((n) => [n, { perSecond: 1_000_000, burstCount: 1_000_000 }])) as HomeserverConfig["rateLimits"];
}

/** A memory store whose close() keeps the data, so a "restarted" server finds it again. */
function reopenableStore(): Store {
  const store = createMemoryStore();
  return new Proxy(store, { get: (target, prop, receiver) => (prop === "close" ? async () => {} : Reflect.get(target, prop, receiver)) });
}
