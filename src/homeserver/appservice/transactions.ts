/**
 * Pushing events to application services (Application Service API "Pushing events"):
 * `PUT {url}/_matrix/app/v1/transactions/{txnId}`.
 *
 * Each service has a cursor into the event stream. After events are committed, the sender scans
 * the stream from the cursor, picks the events the service is interested in, and writes them as a
 * numbered transaction, moving the cursor in the same write. Transactions are then pushed in order
 * and deleted once the service answered 2xx; a failure backs off exponentially and retries the
 * very same transaction ("Homeservers MUST NOT alter … events they were going to send within that
 * transaction ID on retries"). Everything between commit and delivery is in the store, so a
 * restart (or a crash between an event's commit and the wake-up) loses nothing.
 *
 * key appservice_state = asId → { streamPos, nextTxnId }
 * key appservice_txns = asId|pos(txnId) → { events }
 */
import type { ReadTx, WriteTx } from "../../storage/store.ts";
import { key, pos, prefix, unpos } from "../../storage/store.ts";
import type { Services } from "../context.ts";
import { streamPosIn } from "../context.ts";
import type { ClientEvent, StoredEvent } from "../events/types.ts";
import { splitStateKey, stateKeyOf } from "../events/types.ts";
import { toClientEvent } from "../events/format.ts";
import { getEvent, getRoom, membershipIn, rulesOf, stateAfter } from "../roomserver/state.ts";
import type { AppService, AppServiceRegistry } from "./registration.ts";
import type { AsHttpOptions } from "./http.ts";
import { callAppService, describeFailure } from "./http.ts";

/** The per-service cursor. */
interface CursorRow {
  /** The last stream position already looked at. */
  streamPos: number;
  /** The ID the next transaction gets (IDs are never reused, also across restarts). */
  nextTxnId: number;
}

/** A transaction waiting for delivery. */
interface TxnRow {
  events: ClientEvent[];
}

/** Tuning; the defaults suit production, tests shorten them. */
export interface SenderOptions extends AsHttpOptions {
  /** First retry delay after a failed push (doubles each time). */
  minBackoffMs?: number;
  /** Longest retry delay. */
  maxBackoffMs?: number;
  /** Stream rows looked at per scan, and so the most events one transaction holds. */
  batchSize?: number;
  /** How long one push may take before it counts as failed. */
  timeoutMs?: number;
}

interface ServiceState {
  running?: Promise<void>;
  /** Set when a wake-up came in while a run was going: run once more. */
  again: boolean;
  timer?: ReturnType<typeof setTimeout>;
  backoffMs: number;
}

/** Delivers transactions to every configured service that has a `url`. */
export class TransactionSender {
  private readonly states = new Map<string, ServiceState>();
  private stopped = false;
  /** Aborts pushes in flight on close. */
  private readonly abort = new AbortController();
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly batchSize: number;
  private readonly timeoutMs: number;

  private readonly hs: Services;
  private readonly registry: AppServiceRegistry;
  private readonly opts: SenderOptions;

  constructor(hs: Services, registry: AppServiceRegistry, opts: SenderOptions) {
    this.hs = hs;
    this.registry = registry;
    this.opts = opts;
    this.minBackoffMs = opts.minBackoffMs ?? 1000;
    this.maxBackoffMs = opts.maxBackoffMs ?? 5 * 60_000;
    this.batchSize = opts.batchSize ?? 100;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    for (const as of registry.all) if (as.registration.url !== null) this.states.set(as.id, { again: false, backoffMs: this.minBackoffMs });
  }

  /** New events were committed (or the server started): scan and push, unless a service is backing off. */
  wake(): void {
    if (this.stopped) return;
    for (const as of this.registry.all) {
      const st = this.states.get(as.id);
      if (!st || st.timer) continue;
      this.kick(as, st);
    }
  }

  /** Stops timers and waits for pushes in flight; pending transactions stay stored. */
  async close(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    const running: Promise<void>[] = [];
    for (const st of this.states.values()) {
      if (st.timer) clearTimeout(st.timer);
      st.timer = undefined;
      if (st.running) running.push(st.running);
    }
    await Promise.all(running);
  }

  private kick(as: AppService, st: ServiceState): void {
    if (st.running) {
      st.again = true;
      return;
    }
    st.running = this.run(as, st).finally(() => {
      st.running = undefined;
      // A wake-up that came in after the run's last check still gets its run.
      if (st.again && !st.timer && !this.stopped) this.kick(as, st);
    });
  }

  private async run(as: AppService, st: ServiceState): Promise<void> {
    do {
      st.again = false;
      try {
        if (!(await this.drain(as))) {
          this.retryLater(as, st);
          return;
        }
        st.backoffMs = this.minBackoffMs;
      } catch (err) {
        if (this.stopped) return;
        this.hs.logger.error(`appservice ${as.id}: sending transactions failed`, err);
        this.retryLater(as, st);
        return;
      }
    } while (st.again && !this.stopped);
  }

  private retryLater(as: AppService, st: ServiceState): void {
    if (this.stopped) return;
    const delay = st.backoffMs;
    st.backoffMs = Math.min(this.maxBackoffMs, st.backoffMs * 2);
    this.hs.logger.warn(`appservice ${as.id}: delivery failed, retrying in ${delay} ms`);
    st.timer = setTimeout(() => {
      st.timer = undefined;
      this.kick(as, st);
    }, delay);
  }

  /** Queues what the stream holds for the service and pushes every pending transaction; false when a push failed. */
  private async drain(as: AppService): Promise<boolean> {
    while (!this.stopped) {
      while (await this.hs.store.write((tx) => this.enqueue(tx, as))) {
        // More stream rows than one batch: keep scanning before pushing.
      }
      const next = await this.hs.store.read((tx) => tx.range<TxnRow>("appservice_txns", { prefix: prefix(as.id), limit: 1 }));
      const row = next[0];
      if (!row) return true;
      const txnId = String(unpos(row.key.slice(prefix(as.id).length)));
      const res = await callAppService(this.opts, as, "PUT", `/_matrix/app/v1/transactions/${encodeURIComponent(txnId)}`, {}, { events: row.value.events }, this.timeoutMs, this.abort.signal);
      if (!res.ok) {
        this.hs.logger.warn(`appservice ${as.id}: transaction ${txnId} failed: ${describeFailure(res)}`);
        return false;
      }
      await this.hs.store.write(async (tx) => tx.delete("appservice_txns", row.key));
    }
    return true;
  }

  /**
   * One scan step in one write transaction: the events after the cursor the service is interested
   * in become the next transaction, and the cursor moves past them. Returns whether more rows wait.
   */
  private async enqueue(tx: WriteTx, as: AppService): Promise<boolean> {
    const cursor = await tx.get<CursorRow>("appservice_state", as.id);
    if (!cursor) {
      // A newly configured service starts at the present; history is not replayed to it.
      tx.put("appservice_state", as.id, { streamPos: await streamPosIn(tx), nextTxnId: 1 } satisfies CursorRow);
      return false;
    }
    // key = pos(streamPos) → { roomId, eventId }
    const rows = await tx.range<{ roomId: string; eventId: string }>("stream", { gt: pos(cursor.streamPos), limit: this.batchSize });
    if (rows.length === 0) return false;
    const events: ClientEvent[] = [];
    const aliasCache = new Map<string, string[]>();
    const now = this.hs.clock();
    for (const row of rows) {
      const e = await getEvent(tx, row.value.eventId);
      if (!e || e.rejected || e.outlier) continue;
      if (!(await isInterested(tx, as, e, aliasCache))) continue;
      const room = await getRoom(tx, e.roomId);
      events.push(toClientEvent(e, { ...(room ? { version: rulesOf(room) } : {}), now }));
    }
    let nextTxnId = cursor.nextTxnId;
    // key = asId|pos(txnId) → { events }
    if (events.length > 0) tx.put("appservice_txns", key(as.id, pos(nextTxnId++)), { events } satisfies TxnRow);
    tx.put("appservice_state", as.id, { streamPos: unpos(rows[rows.length - 1]!.key), nextTxnId } satisfies CursorRow);
    return rows.length === this.batchSize;
  }
}

/**
 * Whether the service is interested in an event ("Registration"): its sender or target is one of
 * the service's users, the room ID is in its rooms namespaces, one of the room's aliases is in its
 * aliases namespaces, or one of its users is joined to the room (at the event).
 */
export async function isInterested(tx: ReadTx, as: AppService, e: StoredEvent, aliasCache: Map<string, string[]>): Promise<boolean> {
  const pdu = e.pdu;
  if (as.isInterestedInUser(pdu.sender)) return true;
  if (pdu.type === "m.room.member" && pdu.state_key !== undefined && as.isInterestedInUser(pdu.state_key)) return true;
  if (as.matchesRoom(e.roomId)) return true;
  const state = await stateAfter(tx, e.eventId);
  if (as.hasAliasNamespaces) {
    if ((await roomAliases(tx, e.roomId, state, aliasCache)).some((a) => as.matchesAlias(a))) return true;
  }
  for (const [sk, id] of state) {
    const [type, userId] = splitStateKey(sk);
    if (type !== "m.room.member" || !as.isInterestedInUser(userId)) continue;
    if (membershipIn(await getEvent(tx, id)) === "join") return true;
  }
  return false;
}

/** The aliases of a room: its canonical alias event at this point, and the local alias table. */
async function roomAliases(tx: ReadTx, roomId: string, state: Map<string, string>, cache: Map<string, string[]>): Promise<string[]> {
  const out: string[] = [];
  const canonicalId = state.get(stateKeyOf("m.room.canonical_alias", ""));
  const content = canonicalId ? (await getEvent(tx, canonicalId))?.pdu.content : undefined;
  if (typeof content?.alias === "string") out.push(content.alias);
  if (Array.isArray(content?.alt_aliases)) for (const a of content.alt_aliases) if (typeof a === "string") out.push(a);
  let local = cache.get(roomId);
  if (!local) {
    // key aliases = alias → { roomId, creator }; no index by room, so one scan per room per batch.
    local = (await tx.range<{ roomId: string }>("aliases")).filter((r) => r.value.roomId === roomId).map((r) => r.key);
    cache.set(roomId, local);
  }
  return [...out, ...local];
}
