/**
 * Room questions about users that are not part of the room layer itself: the rooms two users share
 * (`/mutual_rooms`), whether a local alias or account exists (third-party lookups), where a local
 * alias points, and what a new relation's parent is to a room.
 */
import type { Services } from "../context.ts";
import type { ReadTx } from "../../storage/store.ts";
import { prefix } from "../../storage/store.ts";
import { joinedRooms } from "../roomserver/membership.ts";
import { getEvent, membershipRecord } from "../roomserver/state.ts";

/** One batch of mutual rooms. */
export interface MutualRoomsBatch {
  joined: string[];
  count: number;
  /** The last room ID of this batch when more follow. */
  last?: string;
}

/**
 * The rooms `me` and `other` are both joined to, in room ID order, starting after room ID `after`.
 * `count` is the total, whatever the batch.
 */
export async function mutualRooms(tx: ReadTx, me: string, other: string, after: string | undefined, batch: number): Promise<MutualRoomsBatch> {
  const mine = (await joinedRooms(tx, me)).sort();
  const shared: string[] = [];
  for (const roomId of mine) {
    if ((await membershipRecord(tx, roomId, other))?.membership === "join") shared.push(roomId);
  }
  // Keyed on the room ID rather than an offset, so rooms joined or left between requests do not
  // shift later batches ("servers MAY omit rooms that the user joined after the first token").
  const rest = after === undefined ? shared : shared.filter((r) => r > after);
  const joined = rest.slice(0, batch);
  return { joined, count: shared.length, ...(rest.length > batch ? { last: joined[joined.length - 1]! } : {}) };
}

/** `mutualRooms` in its own read. */
export async function sharedRooms(hs: Services, me: string, other: string, after: string | undefined, batch: number): Promise<MutualRoomsBatch> {
  return hs.store.read((tx) => mutualRooms(tx, me, other, after, batch));
}

/** Whether this server has a room alias (local aliases only). */
export async function localAliasExists(hs: Services, alias: string): Promise<boolean> {
  return (await hs.store.read((tx) => tx.get("aliases", alias))) !== undefined;
}

/** Whether a local account exists (deactivated ones included: user IDs are never reused). */
export async function localAccountExists(hs: Services, userId: string): Promise<boolean> {
  return (await hs.store.read((tx) => tx.get("accounts", userId))) !== undefined;
}

/** The room a local alias points at, if it exists. */
export async function aliasTarget(hs: Services, alias: string): Promise<string | undefined> {
  return (await hs.store.read((tx) => tx.get<{ roomId: string }>("aliases", alias)))?.roomId;
}

/** Whether this server knows the room (has its record). */
export async function roomKnown(hs: Services, roomId: string): Promise<boolean> {
  return (await hs.store.read((tx) => tx.get("rooms", roomId))) !== undefined;
}

/**
 * What a new relation's parent is to a room: in it (`ok`), in another room, or unknown — though a
 * parent this server has not seen is `ok` when other events already relate to it.
 */
export async function relationParent(hs: Services, parentId: string, roomId: string): Promise<"ok" | "other-room" | "unknown"> {
  return hs.store.read(async (tx) => {
    const parent = await getEvent(tx, parentId);
    if (parent) return parent.roomId === roomId ? "ok" : "other-room";
    return (await tx.range("relations", { prefix: prefix(parentId), limit: 1 })).length > 0 ? "ok" : "unknown";
  });
}
