/**
 * Client config ("Client Config" / account_data module) and room tags ("Room Tagging").
 * key account_data = userId|roomId or ""|type → { content, streamPos }
 */
import type { RequestContext, Services } from "../context.ts";
import { nextStreamPos } from "../context.ts";
import { MatrixError, badJson, forbidden, notFound } from "../errors.ts";
import { key } from "../../storage/store.ts";
import type { ReadTx, WriteTx } from "../../storage/store.ts";
import { loadPushRules } from "./pushRules.ts";

/** A row of the `account_data` table. */
export interface AccountDataRow {
  content: Record<string, unknown>;
  streamPos: number;
}

/** Types the server manages itself; clients may not PUT them (`405 M_BAD_JSON`). */
const SERVER_MANAGED = new Set(["m.fully_read", "m.push_rules"]);

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

async function authorise(ctx: RequestContext, userId: string): Promise<void> {
  const me = await ctx.requireAuth();
  if (me.userId !== userId) throw forbidden("Cannot access account data of other users");
}

/** Account data types are short identifiers (like event types, at most 255 bytes). */
function checkType(type: string): void {
  if (type === "" || new TextEncoder().encode(type).length > 255) throw new MatrixError(400, "M_INVALID_PARAM", "Account data type must be 1 to 255 bytes");
}

/** The most the tags of one room may take together: one PUT is small, but a room may collect many tags. */
const MAX_TAGS_BYTES = 64 * 1024;

function checkRoomId(roomId: string): void {
  if (!roomId.startsWith("!")) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid room ID");
}

/** `GET /_matrix/client/v3/user/{userId}/account_data/{type}` */
export async function getGlobalAccountData(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  await authorise(ctx, p.userId!);
  // The push rules are always there (the predefined ones at least), as /sync serves them.
  if (p.type === "m.push_rules") return { global: await ctx.hs.store.read((tx) => loadPushRules(tx, p.userId!)) };
  const c = await ctx.hs.store.read((tx) => getAccountDataTx(tx, p.userId!, "", p.type!));
  if (!c) throw notFound("Account data not found");
  return c;
}

/** `PUT /_matrix/client/v3/user/{userId}/account_data/{type}` */
export async function putGlobalAccountData(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  await authorise(ctx, p.userId!);
  checkType(p.type!);
  const content = await ctx.json({ allowEmpty: false });
  if (SERVER_MANAGED.has(p.type!)) throw new MatrixError(405, "M_BAD_JSON", `Cannot set ${p.type} through this API.`);
  await putAccountData(ctx.hs, p.userId!, "", p.type!, content);
  return {};
}

/** `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}` */
export async function getRoomAccountData(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  await authorise(ctx, p.userId!);
  checkRoomId(p.roomId!);
  const c = await ctx.hs.store.read((tx) => getAccountDataTx(tx, p.userId!, p.roomId!, p.type!));
  if (!c) throw notFound("Account data not found");
  return c;
}

/** `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}` */
export async function putRoomAccountData(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  await authorise(ctx, p.userId!);
  checkRoomId(p.roomId!);
  checkType(p.type!);
  const content = await ctx.json();
  if (SERVER_MANAGED.has(p.type!)) throw new MatrixError(405, "M_BAD_JSON", `Cannot set ${p.type} through this API.`);
  await putAccountData(ctx.hs, p.userId!, p.roomId!, p.type!, content);
  return {};
}

/** `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags` */
export async function getTags(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  await authorise(ctx, p.userId!);
  checkRoomId(p.roomId!);
  const c = await ctx.hs.store.read((tx) => getAccountDataTx(tx, p.userId!, p.roomId!, "m.tag"));
  return { tags: (c?.tags as Record<string, unknown> | undefined) ?? {} };
}

async function updateTags(ctx: RequestContext, p: Record<string, string>, change: (tags: Record<string, unknown>) => void): Promise<void> {
  const pos = await ctx.hs.store.write(async (tx) => {
    const c = await getAccountDataTx(tx, p.userId!, p.roomId!, "m.tag");
    const tags = { ...((c?.tags as Record<string, unknown> | undefined) ?? {}) };
    change(tags);
    if (new TextEncoder().encode(JSON.stringify(tags)).length > MAX_TAGS_BYTES) throw new MatrixError(400, "M_TOO_LARGE", "The tags of this room would exceed 64 KiB");
    return putAccountDataTx(tx, p.userId!, p.roomId!, "m.tag", { tags });
  }, { tables: ACCOUNT_DATA_TABLES });
  ctx.hs.notifier.notify(pos);
}

/** `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}` */
export async function putTag(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  await authorise(ctx, p.userId!);
  checkRoomId(p.roomId!);
  const body = await ctx.json();
  // "Room Tagging": `order` is a number between 0 and 1.
  if (body.order !== undefined && (typeof body.order !== "number" || body.order < 0 || body.order > 1)) {
    throw badJson("order must be a number between 0 and 1");
  }
  if (p.tag!.length > 255) throw badJson("Tag too long");
  await updateTags(ctx, p, (tags) => {
    // defineProperty: a tag named `__proto__` is an own key like any other, not the object's prototype.
    Object.defineProperty(tags, p.tag!, { value: body, enumerable: true, writable: true, configurable: true });
  });
  return {};
}

/** `DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}` */
export async function deleteTag(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  await authorise(ctx, p.userId!);
  checkRoomId(p.roomId!);
  await updateTags(ctx, p, (tags) => {
    delete tags[p.tag!];
  });
  return {};
}
