/**
 * Account data ("Client Config") and room tags ("Room Tagging"): the `account_data` table, which
 * also holds the push rules (services/pushRules.ts) and read markers.
 * key account_data = userId|roomId or ""|type → { content, streamPos }
 */
import type { Services } from "../context.ts";
import { nextStreamPos } from "../context.ts";
import { MatrixError } from "../errors.ts";
import { key } from "../../storage/store.ts";
import type { ReadTx, WriteTx } from "../../storage/store.ts";

/** A row of the `account_data` table. */
export interface AccountDataRow {
  content: Record<string, unknown>;
  streamPos: number;
}

/** The tables `putAccountDataTx` touches. */
export const ACCOUNT_DATA_TABLES = ["settings", "account_data"] as const;

/** Writes one account data entry inside a transaction; returns its stream position. */
export async function putAccountDataTx(tx: WriteTx, userId: string, roomId: string, type: string, content: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<number> {
  const streamPos = await nextStreamPos(tx);
  tx.put("account_data", key(userId, roomId, type), { ...extra, content, streamPos });
  return streamPos;
}

/** Writes one account data entry in its own transaction and wakes `/sync`. */
export async function putAccountData(hs: Services, userId: string, roomId: string, type: string, content: Record<string, unknown>): Promise<number> {
  const pos = await hs.store.write((tx) => putAccountDataTx(tx, userId, roomId, type, content), { tables: ACCOUNT_DATA_TABLES });
  hs.notifier.notify(pos);
  return pos;
}

/** One account data entry's content, if set. */
export async function getAccountDataTx(tx: ReadTx, userId: string, roomId: string, type: string): Promise<Record<string, unknown> | undefined> {
  return (await tx.get<AccountDataRow>("account_data", key(userId, roomId, type)))?.content;
}

/** The most the tags of one room may take together: one PUT is small, but a room may collect many tags. */
const MAX_TAGS_BYTES = 64 * 1024;

/** One account data entry's content in its own read, if set. */
export async function getAccountData(hs: Services, userId: string, roomId: string, type: string): Promise<Record<string, unknown> | undefined> {
  return hs.store.read((tx) => getAccountDataTx(tx, userId, roomId, type));
}

/** Changes a room's `m.tag` account data in one write (`M_TOO_LARGE` past MAX_TAGS_BYTES) and wakes `/sync`. */
export async function updateTags(hs: Services, userId: string, roomId: string, change: (tags: Record<string, unknown>) => void): Promise<void> {
  const pos = await hs.store.write(async (tx) => {
    const c = await getAccountDataTx(tx, userId, roomId, "m.tag");
    const tags = { ...((c?.tags as Record<string, unknown> | undefined) ?? {}) };
    change(tags);
    if (new TextEncoder().encode(JSON.stringify(tags)).length > MAX_TAGS_BYTES) throw new MatrixError(400, "M_TOO_LARGE", "The tags of this room would exceed 64 KiB");
    return putAccountDataTx(tx, userId, roomId, "m.tag", { tags });
  }, { tables: ACCOUNT_DATA_TABLES });
  hs.notifier.notify(pos);
}
