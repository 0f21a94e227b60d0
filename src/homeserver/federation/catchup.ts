/**
 * Catch-up from any peer (issue 10 item 7). A server that was offline does not wait for the
 * servers that wrote what it missed to come back: whenever another server of one of its rooms is
 * reachable (at start-up: the transport's `onlineServers()`; later: each `onReachable`), it asks
 * that server for the room's newest event (`/timestamp_to_event?dir=b&ts=now`, one probe) and, when
 * it does not have it, fills the gap between its forward extremities and that event with
 * `/get_missing_events` pages (server-server API "Backfilling and retrieving missing events"). What
 * arrives goes through the same path as a `/send` transaction (`receivePdus`: checks on receipt,
 * auth chain fetching, `/state_ids` when a gap remains, the pipeline), so forged events are refused
 * the same way, and messages a sender wrote while it and this server were never online together
 * still arrive through a third member.
 *
 * Bounded: at most `maxRoomsPerPass` rooms per trigger and `maxServersPerRoom` servers per room at
 * start-up, `eventsPerRequest` events per `/get_missing_events`, `maxEventsPerPass` events per
 * room and server (beyond that the receiver's own gap handling takes the state from `/state_ids`),
 * `concurrency` room+server pairs at once, and one pass per room+server in flight. Network requests
 * never run inside a store transaction; errors are logged, never thrown.
 */
import type { Services } from "../context.ts";
import type { JsonObject } from "../crypto/signing.ts";
import { eventIdOf } from "../events/hashes.ts";
import type { RoomRecord } from "../events/types.ts";
import { refIds } from "../events/types.ts";
import { logLine } from "../log.ts";
import type { RoomVersionRules } from "../rooms/versions.ts";
import { getRoom, rulesOf, serversInRoom } from "../roomserver/state.ts";
import { prefix } from "../../storage/store.ts";
import { FederationError } from "./client.ts";
import type { FederationClient } from "./client.ts";
import { receivePdus } from "./receive.ts";
import type { FederationTransport } from "./transport.ts";

/** Limits of the catch-up work (tests and the bench may change them). */
export interface CatchUpOptions {
  /** Room+server pairs worked on at once. */
  concurrency?: number;
  /** Rooms looked at per trigger (start-up, or one server becoming reachable). */
  maxRoomsPerPass?: number;
  /** Online servers asked per room at start-up. */
  maxServersPerRoom?: number;
  /** The `limit` of one `/get_missing_events` (servers cap it at 100 anyway). */
  eventsPerRequest?: number;
  /** Events fetched per room and server before the rest is left to `/state_ids`. */
  maxEventsPerPass?: number;
  /** Events handed to the receiver at once (one pipeline batch). */
  eventsPerBatch?: number;
}

const enc = encodeURIComponent;
const isObject = (v: unknown): v is JsonObject => typeof v === "object" && v !== null && !Array.isArray(v);
const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** What one room+server pass did (for logs, tests and the bench). */
export interface CatchUpResult {
  roomId: string;
  server: string;
  /** Events received from the server (before the checks on receipt). */
  fetched: number;
  /** Requests made, the probe included. */
  requests: number;
}

/** Catch-up work of one homeserver; `start` subscribes to the transport, `close` stops it. */
export class CatchUp {
  private readonly pending = new Set<string>();
  private readonly queue: { roomId: string; server: string }[] = [];
  private readonly workers = new Set<Promise<void>>();
  private readonly idleWaiters: (() => void)[] = [];
  private unsubscribe: (() => void) | undefined;
  private closed = false;
  private readonly opts: Required<CatchUpOptions>;
  private readonly hs: Services;
  private readonly client: FederationClient;
  /** Every finished pass, newest last (bounded), for tests and the bench. */
  readonly results: CatchUpResult[] = [];

  constructor(hs: Services, client: FederationClient, options: CatchUpOptions = {}) {
    this.hs = hs;
    this.client = client;
    this.opts = {
      concurrency: options.concurrency ?? 2,
      maxRoomsPerPass: options.maxRoomsPerPass ?? 200,
      maxServersPerRoom: options.maxServersPerRoom ?? 3,
      eventsPerRequest: options.eventsPerRequest ?? 100,
      maxEventsPerPass: options.maxEventsPerPass ?? 5000,
      eventsPerBatch: options.eventsPerBatch ?? 100,
    };
  }

  /** Listens for servers becoming reachable and runs the start-up pass over the online ones. */
  start(transport: FederationTransport): void {
    this.unsubscribe = transport.onReachable?.((server) => this.track(this.serverReachable(server), `catch-up with ${server}`));
    if (transport.onlineServers) {
      const list = transport.onlineServers.bind(transport);
      this.track(list().then((online) => this.startupPass(online)), "catch-up at start-up");
    }
  }

  /** Stops taking work and waits for the passes in flight. */
  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe?.();
    this.queue.length = 0;
    while (this.workers.size) await Promise.allSettled([...this.workers]);
  }

  /** Resolves once no pass is queued or running (tests, bench). */
  idle(): Promise<void> {
    if (this.queue.length === 0 && this.workers.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Queues a pass for `roomId` with `server` (ignored while one is queued or running). */
  enqueue(roomId: string, server: string): void {
    if (this.closed || server === this.hs.serverName || !this.client.mayContact(server)) return;
    const id = `${roomId}\u001f${server}`;
    if (this.pending.has(id)) return;
    this.pending.add(id);
    this.queue.push({ roomId, server });
    this.pump();
  }

  private pump(): void {
    while (!this.closed && this.workers.size < this.opts.concurrency && this.queue.length) {
      const job = this.queue.shift()!;
      const worker: Promise<void> = this.runPass(job.roomId, job.server).finally(() => {
        this.pending.delete(`${job.roomId}\u001f${job.server}`);
        this.workers.delete(worker);
        this.pump();
        if (this.queue.length === 0 && this.workers.size === 0) for (const w of this.idleWaiters.splice(0)) w();
      });
      this.workers.add(worker);
    }
    if (this.queue.length === 0 && this.workers.size === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  private track(work: Promise<void>, what: string): void {
    work.catch((err: unknown) => this.hs.logger.warn(logLine("catchup_failed", { what, error: errText(err) })));
  }

  /** Start-up: every room this server is in, with up to `maxServersPerRoom` of its online servers. */
  private async startupPass(online: string[]): Promise<void> {
    if (this.closed || online.length === 0) return;
    const reachable = new Set(online);
    const rooms = await this.sharedRooms((servers) => servers.filter((s) => reachable.has(s)).slice(0, this.opts.maxServersPerRoom));
    for (const { roomId, servers } of rooms) for (const s of servers) this.enqueue(roomId, s);
  }

  /** `server` became reachable: every room it shares with this server. */
  private async serverReachable(server: string): Promise<void> {
    if (this.closed || server === this.hs.serverName) return;
    const rooms = await this.sharedRooms((servers) => (servers.includes(server) ? [server] : []));
    for (const { roomId } of rooms) this.enqueue(roomId, server);
  }

  /**
   * The rooms this server is joined to (at most `maxRoomsPerPass`) for which `pick` chooses some of
   * the room's other servers. One read transaction, no network.
   */
  private sharedRooms(pick: (servers: string[]) => string[]): Promise<{ roomId: string; servers: string[] }[]> {
    const self = this.hs.serverName;
    return this.hs.store.read(async (tx) => {
      const out: { roomId: string; servers: string[] }[] = [];
      let after: string | undefined;
      for (;;) {
        const rows = await tx.range<RoomRecord>("rooms", { ...(after !== undefined ? { gt: after } : {}), limit: 200 });
        for (const row of rows) {
          const servers = await serversInRoom(tx, row.key);
          if (!servers.includes(self)) continue;
          const chosen = pick(servers.filter((s) => s !== self));
          if (chosen.length) out.push({ roomId: row.key, servers: chosen });
          if (out.length >= this.opts.maxRoomsPerPass) return out;
        }
        if (rows.length < 200) return out;
        after = rows[rows.length - 1]!.key;
      }
    });
  }

  /** One room with one server; logs instead of throwing. */
  private async runPass(roomId: string, server: string): Promise<void> {
    const result: CatchUpResult = { roomId, server, fetched: 0, requests: 0 };
    try {
      await this.catchUp(result);
    } catch (err) {
      const unreachable = err instanceof FederationError && err.status === 0;
      const line = logLine("catchup_failed", { room: roomId, server, error: errText(err) });
      if (unreachable) this.hs.logger.debug(line);
      else this.hs.logger.warn(line);
    } finally {
      this.results.push(result);
      if (this.results.length > 1000) this.results.splice(0, this.results.length - 1000);
    }
  }

  private async catchUp(result: CatchUpResult): Promise<void> {
    const { roomId, server } = result;
    const path = (p: string): string => `/_matrix/federation/v1/${p}/${enc(roomId)}`;
    // The probe: the server's newest event in the room.
    let newest: string;
    try {
      result.requests++;
      const answer = await this.client.json<{ event_id?: unknown }>(server, "GET", path("timestamp_to_event"), { query: [["dir", "b"], ["ts", String(this.hs.clock())]] });
      if (typeof answer.event_id !== "string") return;
      newest = answer.event_id;
    } catch (err) {
      // 404: it has no event (it may see); 403: it is no longer in the room. Nothing to catch up on.
      if (err instanceof FederationError && (err.status === 404 || err.status === 403)) return;
      throw err;
    }
    const local = await this.hs.store.read(async (tx) => {
      const room = await getRoom(tx, roomId);
      if (!room) return undefined;
      const pre = prefix(roomId);
      const extremities = (await tx.range<true>("extremities", { prefix: pre })).map((r) => r.key.slice(pre.length));
      return { rules: rulesOf(room), known: (await tx.get("event_state", newest)) !== undefined, extremities };
    });
    if (!local || local.known) return;
    const { rules, extremities } = local;

    // The newest event itself, then the events between it and our extremities, page by page.
    const collected = new Map<string, JsonObject>();
    result.requests++;
    const one = await this.client.json<{ pdus?: unknown }>(server, "GET", `/_matrix/federation/v1/event/${enc(newest)}`);
    await this.collect(Array.isArray(one.pdus) ? one.pdus.slice(0, 1) : [], rules, collected);
    let latest = [...collected.keys()];
    while (latest.length && collected.size < this.opts.maxEventsPerPass && !this.closed) {
      result.requests++;
      const page = await this.client.json<{ events?: unknown }>(server, "POST", path("get_missing_events"), {
        body: { earliest_events: extremities, latest_events: latest.slice(0, 20), limit: this.opts.eventsPerRequest, min_depth: 0 },
      });
      const events = Array.isArray(page.events) ? page.events : [];
      const added = await this.collect(events, rules, collected);
      if (added === 0 || events.length < this.opts.eventsPerRequest) break;
      latest = await this.frontier(collected);
    }
    result.fetched = collected.size;
    if (collected.size === 0 || this.closed) return;
    // Oldest first, in batches: each batch's prevs are stored by the batches before it.
    const ordered = [...collected.values()].sort((a, b) => (Number(a.depth) || 0) - (Number(b.depth) || 0));
    for (let i = 0; i < ordered.length && !this.closed; i += this.opts.eventsPerBatch) {
      const results = await receivePdus(this.hs, server, ordered.slice(i, i + this.opts.eventsPerBatch));
      const refused = Object.entries(results).filter(([, r]) => r.error !== undefined);
      if (refused.length) this.hs.logger.debug(logLine("catchup_refused", { room: roomId, server, count: refused.length, first: refused[0]![1].error }));
    }
    this.hs.logger.info(logLine("catchup", { room: roomId, server, events: collected.size, requests: result.requests }));
  }

  /** Adds the PDUs of `raws` to `collected` by event ID; returns how many were new. */
  private async collect(raws: readonly unknown[], rules: RoomVersionRules, collected: Map<string, JsonObject>): Promise<number> {
    let added = 0;
    for (const raw of raws) {
      if (!isObject(raw)) continue;
      let id: string;
      try {
        id = rules.referencePairs ? String(raw.event_id) : await eventIdOf(raw, rules);
      } catch {
        continue; // not canonical JSON: the receiver would drop it too
      }
      if (collected.has(id)) continue;
      collected.set(id, raw);
      added++;
    }
    return added;
  }

  /** The collected events with a prev that is neither collected nor in our DAG: where the next page starts. */
  private frontier(collected: Map<string, JsonObject>): Promise<string[]> {
    return this.hs.store.read(async (tx) => {
      const out: { id: string; depth: number }[] = [];
      for (const [id, raw] of collected) {
        for (const p of refIds(Array.isArray(raw.prev_events) ? raw.prev_events : [])) {
          if (collected.has(p) || (await tx.get("event_state", p))) continue;
          out.push({ id, depth: Number(raw.depth) || 0 });
          break;
        }
      }
      // Oldest first: the next page walks back from the far end of what we have.
      return out.sort((a, b) => a.depth - b.depth).map((x) => x.id);
    });
  }
}
