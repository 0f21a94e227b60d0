/**
 * Client config ("Client Config" / account_data module) and room tags ("Room Tagging"): the
 * endpoints; the table is services/accountData.ts's.
 */
import type { RequestContext } from "../context.ts";
import { MatrixError, badJson, forbidden, notFound } from "../errors.ts";
import { getAccountData, putAccountData, updateTags } from "../services/accountData.ts";
import { pushRulesOf } from "../services/pushRules.ts";

/** Types the server manages itself; clients may not PUT them (`405 M_BAD_JSON`). */
const SERVER_MANAGED = new Set(["m.fully_read", "m.push_rules"]);

async function authorise(ctx: RequestContext, userId: string): Promise<void> {
  const me = await ctx.requireAuth();
  if (me.userId !== userId) throw forbidden("Cannot access account data of other users");
}

/** Account data types are short identifiers (like event types, at most 255 bytes). */
function checkType(type: string): void {
  if (type === "" || new TextEncoder().encode(type).length > 255) throw new MatrixError(400, "M_INVALID_PARAM", "Account data type must be 1 to 255 bytes");
}

function checkRoomId(roomId: string): void {
  if (!roomId.startsWith("!")) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid room ID");
}

/** `GET /_matrix/client/v3/user/{userId}/account_data/{type}` */
export async function getGlobalAccountData(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  await authorise(ctx, p.userId!);
  // The push rules are always there (the predefined ones at least), as /sync serves them.
  if (p.type === "m.push_rules") return { global: await pushRulesOf(ctx.hs, p.userId!) };
  const c = await getAccountData(ctx.hs, p.userId!, "", p.type!);
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
  const c = await getAccountData(ctx.hs, p.userId!, p.roomId!, p.type!);
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
  const c = await getAccountData(ctx.hs, p.userId!, p.roomId!, "m.tag");
  return { tags: (c?.tags as Record<string, unknown> | undefined) ?? {} };
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
  await updateTags(ctx.hs, p.userId!, p.roomId!, (tags) => {
    // defineProperty: a tag named `__proto__` is an own key like any other, not the object's prototype.
    Object.defineProperty(tags, p.tag!, { value: body, enumerable: true, writable: true, configurable: true });
  });
  return {};
}

/** `DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}` */
export async function deleteTag(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  await authorise(ctx, p.userId!);
  checkRoomId(p.roomId!);
  await updateTags(ctx.hs, p.userId!, p.roomId!, (tags) => {
    delete tags[p.tag!];
  });
  return {};
}
