/**
 * The global room directory (P2P issue, "The global room directory"). A user's own `/publicRooms`
 * lists this server's published rooms and those of every server it can reach, answered from a
 * cache in the store kept fresh in the background — never a fan-out on the request path:
 *
 * - Refresh: every `directoryRefreshIntervalMs` each server the transport lists as online
 *   (`onlineServers()`) is asked for its directory (`GET /_matrix/federation/v1/publicRooms`, every
 *   page up to a cap), and a server is asked again as soon as it becomes reachable (`onReachable`).
 *   Its answer replaces its cached rooms.
 * - Expiry: a server's cached rooms are left out of every answer once the server has been
 *   unreachable (neither listed online nor answering) for `directoryPeerTtlMs`, and deleted at the
 *   next refresh.
 * - Relaying: a remote room that another server lists and that a local user joined is listed by
 *   this server too (in its own federation `/publicRooms` answer), so it stays discoverable after
 *   the servers that published it go offline. See `relayedRooms` for the exact rule.
 *
 * key directory_peers = server → PeerRow; directory_rooms = server|roomId → CachedRoom;
 * directory_index = roomId|server → fetchedAt; directory_relays = roomId → { since }
 */
import type { Services } from "../context.ts";
import type { ReadTx, WriteTx } from "../../storage/store.ts";
import { SEP, key, prefix } from "../../storage/store.ts";
import { isValidServerName } from "../rooms/ids.ts";
import { currentStateContent } from "../roomserver/state.ts";
import { serverInRoom } from "../roomserver/outOfRoom.ts";
import { logLine } from "../log.ts";
import { isObject } from "../validate.ts";
import type { FederationClient } from "./client.ts";
import { FederationError } from "./client.ts";
import type { FederationTransport } from "./transport.ts";

/** A `/publicRooms` chunk entry ("PublishedRoomsChunk"), as kept after checking it. */
export type RoomChunk = Record<string, unknown> & { room_id: string; num_joined_members: number };

interface PeerRow {
  /** When the server was last known reachable (listed online, or it answered us). */
  lastSeen: number;
  /** When its directory was last fetched. */
  fetchedAt?: number;
}

interface CachedRoom {
  chunk: RoomChunk;
  fetchedAt: number;
}

const PUBLIC_ROOMS = "/_matrix/federation/v1/publicRooms";
/** Rooms asked for per page. */
const PAGE_SIZE = 250;
/** At most this many rooms are kept per server (a server cannot fill our store). */
export const MAX_ROOMS_PER_SERVER = 1000;
const MAX_PAGES = 10;
const FETCH_TIMEOUT_MS = 15_000;
/** Servers asked at the same time during a refresh. */
const CONCURRENCY = 4;
/**
 * A server fetched this recently is not fetched again when it is reported reachable (dialling it
 * for the fetch itself opens the connection that reports it), ms.
 */
const REACHABLE_QUIET_MS = 10_000;
/** A user's look at the directory starts a refresh in the background when the last one is older, ms. */
const STALE_AFTER_MS = 30_000;
/** Longer string fields are dropped from a cached entry. */
const MAX_FIELD_CHARS = 4096;
/** The largest member count the `since` cursor can name (client/directory.ts CURSOR). */
const MAX_MEMBERS = 999_999_999;

// eslint-disable-next-line no-control-regex -- control characters cannot be part of an ID, and SEP would break a store key
const CONTROL = /[\u0000-\u001f\u007f]/;

function goodString(v: unknown): v is string {
  return typeof v === "string" && v.length <= MAX_FIELD_CHARS;
}

/**
 * Another server's chunk entry as we keep it, or undefined when it is not a well-formed
 * `PublishedRoomsChunk`: only the spec's fields, each of the right type (a wrong optional field is
 * dropped, a wrong required one drops the entry).
 */
export function readChunk(raw: unknown): RoomChunk | undefined {
  if (!isObject(raw)) return undefined;
  const id = raw.room_id;
  if (typeof id !== "string" || !id.startsWith("!") || id.length > 255 || CONTROL.test(id)) return undefined;
  const members = raw.num_joined_members;
  if (typeof members !== "number" || !Number.isInteger(members) || members < 0) return undefined;
  if (typeof raw.world_readable !== "boolean" || typeof raw.guest_can_join !== "boolean") return undefined;
  const out: RoomChunk = { room_id: id, num_joined_members: Math.min(members, MAX_MEMBERS), world_readable: raw.world_readable, guest_can_join: raw.guest_can_join };
  for (const field of ["name", "topic", "join_rule", "room_type"]) if (goodString(raw[field])) out[field] = raw[field];
  if (goodString(raw.canonical_alias) && raw.canonical_alias.startsWith("#") && raw.canonical_alias.includes(":")) out.canonical_alias = raw.canonical_alias;
  if (goodString(raw.avatar_url) && raw.avatar_url.startsWith("mxc://")) out.avatar_url = raw.avatar_url;
  // "join_rule": "The room's join rule. When not present, the room is assumed to be public."
  out.join_rule ??= "public";
  return out;
}

/**
 * Whether a room's current state still lets someone who finds it in a directory in: any join rule
 * but `invite` and `private` (knock and restricted rooms may be listed, the spec's "Published room
 * directory" says), or world-readable history (the filter the spec suggests keeps those too). A
 * room without join rules is invite-only.
 */
async function listable(tx: ReadTx, roomId: string): Promise<boolean> {
  const rule = (await currentStateContent(tx, roomId, "m.room.join_rules"))?.join_rule;
  if (typeof rule === "string" && rule !== "invite" && rule !== "private") return true;
  return (await currentStateContent(tx, roomId, "m.room.history_visibility"))?.history_visibility === "world_readable";
}

/** Whether some server's directory lists the room (in the cache now), or it was marked as seen listed. */
async function seenListed(tx: ReadTx, roomId: string): Promise<boolean> {
  if (await tx.get("directory_relays", roomId)) return true;
  return (await tx.count("directory_index", { prefix: prefix(roomId) })) > 0;
}

/**
 * The remote rooms this server lists in its own directory: rooms some other server's directory
 * lists (its publisher chose to publish it; a room nobody published — say, one shared by link —
 * stays unlisted), that a local user is joined to, that this server's own directory setting does
 * not hide (`PUT /directory/list/room` with `private`), and whose state still lets a finder in
 * (`listable`). A room stops being listed as soon as one of these stops holding.
 */
export async function relayedRooms(tx: ReadTx, self: string): Promise<string[]> {
  const out: string[] = [];
  for (const room of await tx.range("rooms")) {
    const roomId = room.key;
    if (!(await seenListed(tx, roomId))) continue;
    const own = await tx.get<{ visibility: string }>("room_directory", roomId);
    // A room with an own directory row is listed (or not) by that row, not as a relay.
    if (own) continue;
    if (!(await serverInRoom(tx, roomId, self)) || !(await listable(tx, roomId))) continue;
    out.push(roomId);
  }
  return out;
}

/** Peers whose cached rooms count now: those reachable within the last `ttlMs`. */
async function livePeers(tx: ReadTx, now: number, ttlMs: number): Promise<Map<string, PeerRow>> {
  const out = new Map<string, PeerRow>();
  for (const row of await tx.range<PeerRow>("directory_peers")) if (now - row.value.lastSeen <= ttlMs) out.set(row.key, row.value);
  return out;
}

/** The cached rooms of servers that have not been unreachable too long: one entry per room, the most recently fetched. */
export async function cachedRooms(tx: ReadTx, now: number, ttlMs: number): Promise<Map<string, RoomChunk>> {
  const peers = await livePeers(tx, now, ttlMs);
  const best = new Map<string, CachedRoom>();
  for (const row of await tx.range<CachedRoom>("directory_rooms")) {
    if (!peers.has(row.key.slice(0, row.key.indexOf(SEP)))) continue;
    const seen = best.get(row.value.chunk.room_id);
    if (!seen || row.value.fetchedAt > seen.fetchedAt) best.set(row.value.chunk.room_id, row.value);
  }
  return new Map([...best].map(([id, r]) => [id, r.chunk]));
}

/**
 * The servers whose directory lists `roomId` and that have not been unreachable too long, the most
 * recently reachable first: where a user who found the room in the directory can join it.
 */
export async function directoryServers(hs: Services, roomId: string): Promise<string[]> {
  return hs.store.read(async (tx) => {
    const peers = await livePeers(tx, hs.clock(), hs.config.directoryPeerTtlMs);
    const pre = prefix(roomId);
    const servers = (await tx.range<number>("directory_index", { prefix: pre })).map((r) => r.key.slice(pre.length)).filter((s) => peers.has(s));
    return servers.sort((a, b) => peers.get(b)!.lastSeen - peers.get(a)!.lastSeen);
  });
}

/** Deletes a server's cached rooms and their index rows. */
async function forgetRooms(tx: WriteTx, server: string, keep: ReadonlySet<string> = new Set()): Promise<void> {
  const pre = prefix(server);
  for (const row of await tx.range<CachedRoom>("directory_rooms", { prefix: pre })) {
    const roomId = row.key.slice(pre.length);
    if (keep.has(roomId)) continue;
    tx.delete("directory_rooms", row.key);
    tx.delete("directory_index", key(roomId, server));
  }
}

/** Keeps the cache fresh: see the module comment. One per homeserver with a federation transport. */
export class DirectoryService {
  private readonly hs: Services;
  private readonly client: FederationClient;
  private readonly transport: FederationTransport;
  private readonly abort = new AbortController();
  private readonly running = new Map<string, { promise: Promise<void>; again: boolean }>();
  private all: Promise<void> | undefined;
  /** When the last full refresh started (the clock's time). */
  private lastAll = -Infinity;
  /** When each server's directory was last fetched successfully, by this process. */
  private readonly fetched = new Map<string, number>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private unsubscribe: (() => void) | undefined;
  private closed = false;

  constructor(hs: Services, client: FederationClient, transport: FederationTransport) {
    this.hs = hs;
    this.client = client;
    this.transport = transport;
  }

  /** Refreshes now, then every `directoryRefreshIntervalMs`, and each server as it becomes reachable. */
  start(): void {
    this.unsubscribe = this.transport.onReachable?.((server) => {
      if (!this.wanted(server) || this.running.has(server)) return;
      if (this.hs.clock() - (this.fetched.get(server) ?? -Infinity) < REACHABLE_QUIET_MS) return;
      this.track(this.refresh(server), server);
    });
    // Timers take at most 2^31 - 1 ms (a longer delay would fire at once).
    this.timer = setInterval(() => this.track(this.refreshAll(), "all"), Math.min(this.hs.config.directoryRefreshIntervalMs, 2 ** 31 - 1));
    (this.timer as { unref?: () => void }).unref?.();
    this.track(this.refreshAll(), "all");
  }

  /**
   * Asks every online server for its directory (a few at a time), then tidies the cache: rooms a
   * local user joined are marked as relayed, expired servers' rows are deleted. One run at a time;
   * a call during a run waits for that run.
   */
  refreshAll(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (!this.all) this.lastAll = this.hs.clock();
    this.all ??= this.runAll().finally(() => (this.all = undefined));
    return this.all;
  }

  /**
   * A user is looking at the directory (answered from the cache, without waiting): when the last
   * refresh is older than `STALE_AFTER_MS`, one starts in the background, so rooms published since
   * show up at the next look instead of after the refresh interval.
   */
  looked(): void {
    if (!this.closed && !this.all && this.hs.clock() - this.lastAll >= Math.min(STALE_AFTER_MS, this.hs.config.directoryRefreshIntervalMs)) {
      this.track(this.refreshAll(), "all");
    }
  }

  /** Asks one server for its directory; a call while it is being asked asks once more after. */
  refresh(server: string): Promise<void> {
    const current = this.running.get(server);
    if (current) {
      current.again = true;
      return current.promise;
    }
    const entry = { again: false, promise: Promise.resolve() };
    entry.promise = (async () => {
      do {
        entry.again = false;
        await this.fetchAndStore(server);
      } while (entry.again && !this.closed);
    })().finally(() => this.running.delete(server));
    this.running.set(server, entry);
    return entry.promise;
  }

  /** Resolves once no refresh is running (tests, and `close`). */
  async settled(): Promise<void> {
    while (this.all || this.running.size > 0) await Promise.allSettled([this.all, ...[...this.running.values()].map((r) => r.promise)]);
  }

  /** Stops the timer and the requests in flight; the cache stays for the next start. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    this.unsubscribe?.();
    this.abort.abort();
    await this.settled();
  }

  private wanted(server: string): boolean {
    return !this.closed && server !== this.hs.serverName && isValidServerName(server) && this.client.mayContact(server);
  }

  private track(p: Promise<void>, what: string): void {
    p.catch((err: unknown) => this.hs.logger.error(logLine("directory_refresh_failed", { server: what, error: String(err) })));
  }

  private async runAll(): Promise<void> {
    const online = this.transport.onlineServers ? await this.transport.onlineServers() : [];
    const servers = [...new Set(online)].filter((s) => this.wanted(s));
    if (servers.length > 0) await this.markSeen(servers);
    const queue = [...servers];
    const worker = async (): Promise<void> => {
      for (let s = queue.shift(); s !== undefined && !this.closed; s = queue.shift()) await this.refresh(s);
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, queue.length) }, worker));
    if (!this.closed) await this.sweep();
  }

  /** The transport lists these servers as online: they are reachable now. */
  private async markSeen(servers: string[]): Promise<void> {
    if (this.closed) return;
    const now = this.hs.clock();
    await this.hs.store.write(async (tx) => {
      for (const s of servers) {
        const row = await tx.get<PeerRow>("directory_peers", s);
        if (row) tx.put("directory_peers", s, { ...row, lastSeen: now });
      }
    });
  }

  private async fetchAndStore(server: string): Promise<void> {
    let rooms: RoomChunk[];
    try {
      rooms = await this.fetchDirectory(server);
    } catch (err) {
      if (this.closed) return;
      if (!(err instanceof FederationError)) throw err;
      if (err.unreachable) {
        this.hs.logger.debug(logLine("directory_unreachable", { server, error: err.message }));
        return;
      }
      this.hs.logger.info(logLine("directory_fetch_failed", { server, status: err.status, errcode: err.errcode }));
      // It answered: reachable. A refusal (403, or 404 for no directory) means it lists nothing for
      // us; a passing failure (5xx, 429) keeps what it listed before.
      if (err.status >= 500 || err.status === 429) return this.markSeen([server]);
      rooms = [];
    }
    if (this.closed) return;
    const now = this.hs.clock();
    const self = this.hs.serverName;
    await this.hs.store.write(async (tx) => {
      await forgetRooms(tx, server, new Set(rooms.map((r) => r.room_id)));
      for (const chunk of rooms) {
        tx.put("directory_rooms", key(server, chunk.room_id), { chunk, fetchedAt: now } satisfies CachedRoom);
        tx.put("directory_index", key(chunk.room_id, server), now);
      }
      tx.put("directory_peers", server, { lastSeen: now, fetchedAt: now } satisfies PeerRow);
      for (const chunk of rooms) await markRelayed(tx, chunk.room_id, self, now);
    });
    this.fetched.set(server, now);
  }

  /** Every page of a server's directory, up to `MAX_ROOMS_PER_SERVER` rooms. */
  private async fetchDirectory(server: string): Promise<RoomChunk[]> {
    const rooms = new Map<string, RoomChunk>();
    const tokens = new Set<string>();
    let since: string | undefined;
    for (let page = 0; page < MAX_PAGES && rooms.size < MAX_ROOMS_PER_SERVER; page++) {
      const query: [string, string][] = [["limit", String(PAGE_SIZE)]];
      if (since !== undefined) query.push(["since", since]);
      const answer = await this.client.json(server, "GET", PUBLIC_ROOMS, { query, timeoutMs: FETCH_TIMEOUT_MS, signal: this.abort.signal });
      const chunk = Array.isArray(answer.chunk) ? (answer.chunk as unknown[]) : [];
      for (const raw of chunk) {
        const room = readChunk(raw);
        if (room && !rooms.has(room.room_id) && rooms.size < MAX_ROOMS_PER_SERVER) rooms.set(room.room_id, room);
      }
      const next = answer.next_batch;
      // A token seen before would page in a circle.
      if (typeof next !== "string" || next === "" || tokens.has(next) || chunk.length === 0) break;
      tokens.add(next);
      since = next;
    }
    return [...rooms.values()];
  }

  /**
   * Rooms that are listed somewhere and that a local user is in are marked, so they stay listed here
   * after every server that listed them has expired; marks of rooms no local user is in any more
   * go; expired servers' rows are deleted.
   */
  private async sweep(): Promise<void> {
    const now = this.hs.clock();
    const ttl = this.hs.config.directoryPeerTtlMs;
    const self = this.hs.serverName;
    await this.hs.store.write(async (tx) => {
      for (const room of await tx.range("rooms")) {
        if ((await tx.count("directory_index", { prefix: prefix(room.key) })) > 0) await markRelayed(tx, room.key, self, now);
      }
      for (const relay of await tx.range("directory_relays")) {
        if (!(await serverInRoom(tx, relay.key, self))) tx.delete("directory_relays", relay.key);
      }
      for (const peer of await tx.range<PeerRow>("directory_peers")) {
        if (now - peer.value.lastSeen <= ttl) continue;
        await forgetRooms(tx, peer.key);
        tx.delete("directory_peers", peer.key);
      }
    });
  }
}

/** Marks a listed room as relayed when a local user is in it (and it is not marked yet). */
async function markRelayed(tx: WriteTx, roomId: string, self: string, now: number): Promise<void> {
  if (await tx.get("directory_relays", roomId)) return;
  if (!(await tx.get("rooms", roomId)) || !(await serverInRoom(tx, roomId, self))) return;
  tx.put("directory_relays", roomId, { since: now });
}
