/**
 * `PUT /_matrix/federation/v1/send/{txnId}` (server-server API "Transactions"): at most 50 PDUs
 * and 100 EDUs; the PDUs through federation/receive.ts, then the EDUs (room EDUs of rooms whose
 * server ACL denies the origin are dropped first); the answer is stored so a retry of the same
 * transaction ID from the same origin gets the first answer without anything being done twice.
 */
import type { RequestContext, Services } from "../context.ts";
import { MatrixError, badJson } from "../errors.ts";
import { key } from "../../storage/store.ts";
import { serverAllowedInRoom } from "./acl.ts";
import { receiveEdus } from "./edus.ts";
import type { PduResult } from "./receive.ts";
import { receivePdus } from "./receive.ts";

/** "Transactions are limited in size; they can have at most 50 PDUs and 100 EDUs." */
export const MAX_TXN_PDUS = 50;
export const MAX_TXN_EDUS = 100;

/** What `federation_txns` holds. key = origin|txnId. */
interface StoredTxn {
  response: { pdus: Record<string, PduResult> };
  receivedAt: number;
}

/**
 * How long an answer is kept for retries. A sender retries a transaction until it is answered and
 * only then sends the next, so a day covers any retry after a lost answer.
 */
const KEEP_ANSWERS_MS = 24 * 60 * 60 * 1000;
/** Old answers are swept at most this often. */
const SWEEP_EVERY_MS = 60 * 60 * 1000;
const lastSweep = new WeakMap<object, number>();

/** Transactions being processed, so a retry racing its first attempt waits for the same answer. */
const inFlight = new WeakMap<object, Map<string, Promise<{ pdus: Record<string, PduResult> }>>>();

/** `PUT /_matrix/federation/v1/send/{txnId}` */
export async function putTransaction(ctx: RequestContext, params: Record<string, string>, origin: string): Promise<Record<string, unknown>> {
  const hs = ctx.hs;
  const body = await ctx.json();
  const { pdus, edus } = body;
  if (!Array.isArray(pdus)) throw badJson("pdus must be an array");
  if (edus !== undefined && !Array.isArray(edus)) throw badJson("edus must be an array");
  if (pdus.length > MAX_TXN_PDUS || (edus?.length ?? 0) > MAX_TXN_EDUS) {
    throw new MatrixError(400, "M_BAD_JSON", `A transaction carries at most ${MAX_TXN_PDUS} PDUs and ${MAX_TXN_EDUS} EDUs`);
  }
  const txnKey = key(origin, params.txnId!);
  let running = inFlight.get(hs.store);
  if (!running) inFlight.set(hs.store, (running = new Map()));
  const current = running.get(txnKey);
  if (current) return current;
  const work = (async () => {
    const seen = await hs.store.read((tx) => tx.get<StoredTxn>("federation_txns", txnKey));
    if (seen) return seen.response;
    const response = { pdus: await receivePdus(hs, origin, pdus) };
    await receiveEdus(hs, origin, await roomEdusAllowed(hs, origin, edus ?? []));
    const now = hs.clock();
    const sweep = now - (lastSweep.get(hs.store) ?? 0) >= SWEEP_EVERY_MS;
    if (sweep) lastSweep.set(hs.store, now);
    await hs.store.write(async (tx) => {
      tx.put("federation_txns", txnKey, { response, receivedAt: now } satisfies StoredTxn);
      if (sweep) {
        for (const row of await tx.range<StoredTxn>("federation_txns")) if (row.value.receivedAt < now - KEEP_ANSWERS_MS) tx.delete("federation_txns", row.key);
      }
    });
    return response;
  })();
  running.set(txnKey, work);
  try {
    return await work;
  } finally {
    running.delete(txnKey);
  }
}

/**
 * The EDUs left once the room ACLs had their say ("Server Access Control Lists"): an `m.typing`
 * for a room that denies the origin is ignored, and so are all the receipts for such a room.
 */
export async function roomEdusAllowed(hs: Services, origin: string, edus: readonly unknown[]): Promise<unknown[]> {
  const cache = new Map<string, boolean>();
  const allowed = async (roomId: string): Promise<boolean> => {
    let ok = cache.get(roomId);
    if (ok === undefined) cache.set(roomId, (ok = await hs.store.read((tx) => serverAllowedInRoom(tx, roomId, origin))));
    return ok;
  };
  const out: unknown[] = [];
  for (const edu of edus) {
    const e = edu as { edu_type?: unknown; content?: unknown } | null;
    const content = e && typeof e.content === "object" && e.content !== null ? (e.content as Record<string, unknown>) : undefined;
    if (e?.edu_type === "m.typing" && typeof content?.room_id === "string") {
      if (await allowed(content.room_id)) out.push(edu);
    } else if (e?.edu_type === "m.receipt" && content) {
      const kept: Record<string, unknown> = {};
      for (const [roomId, receipts] of Object.entries(content)) if (await allowed(roomId)) kept[roomId] = receipts;
      out.push({ ...e, content: kept });
    } else {
      out.push(edu);
    }
  }
  return out;
}
