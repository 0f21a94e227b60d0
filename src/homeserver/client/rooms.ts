/**
 * Client-Server "Rooms" and "Events": creating rooms, sending events and state, redactions, and
 * reading state and single events.
 */
import type { RequestContext } from "../context.ts";
import { refuseIfSuspended } from "../context.ts";
import { refuseSuspendedRedaction } from "./admin.ts";
import { MatrixError, badJson, notFound } from "../errors.ts";
import { canonicalJson, isCanonicalValue } from "../crypto/canonicalJson.ts";
import { createRoom, sendEvent } from "../roomserver/index.ts";
import { EventServer } from "../roomserver/serve.ts";
import { readableState } from "../roomserver/access.ts";
import { requireVisibleEvent } from "../roomserver/visibility.ts";
import { currentStateEvent, membershipOf, requireRoom } from "../roomserver/state.ts";
import { isRoomAlias } from "../roomserver/ids.ts";
import { reasonOf } from "./membership.ts";
import { stateKeyOf } from "../events/types.ts";
import { checkGuestMembership } from "./guests.ts";

/** 400 M_BAD_ALIAS: an alias in `m.room.canonical_alias` that does not point at the room. */
export const badAlias = (msg: string): MatrixError => new MatrixError(400, "M_BAD_ALIAS", msg);

/** `POST /_matrix/client/v3/createRoom` */
export async function postCreateRoom(ctx: RequestContext): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  refuseIfSuspended(me);
  const body = await ctx.json({ allowEmpty: true });
  if (ctx.hs.appservices && typeof body.room_alias_name === "string") {
    // The new alias must not be in another party's exclusive namespace (application services).
    ctx.hs.appservices.registry.checkAlias(`#${body.room_alias_name}:${ctx.hs.serverName}`, ctx.hs.appservices.registry.byId(me.appserviceId ?? ""));
  }
  const { roomId } = await createRoom(ctx.hs, me.userId, body);
  return { room_id: roomId };
}

/** `PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}` */
export async function putSend(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const content = await ctx.json();
  const redacts = p.eventType === "m.room.redaction" && typeof content.redacts === "string" ? content.redacts : undefined;
  // Suspended: no messages ("Account suspension"), but redacting one's own events stays allowed.
  if (redacts !== undefined) await refuseSuspendedRedaction(ctx.hs, me, redacts);
  else refuseIfSuspended(me);
  const { eventId } = await sendEvent(ctx.hs, {
    roomId: p.roomId!, sender: me.userId, type: p.eventType!, content,
    ...(redacts ? { redacts } : {}),
    txn: { deviceId: me.deviceId, txnId: p.txnId! },
  });
  return { event_id: eventId };
}

/** `PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}` */
export async function putState(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const content = await ctx.json({ allowEmpty: false });
  const roomId = p.roomId!;
  const type = p.eventType!;
  const stateKey = p.stateKey ?? "";
  // Suspended users may still leave a room (and reject invites) through the state API.
  if (!(type === "m.room.member" && stateKey === me.userId && content.membership === "leave")) refuseIfSuspended(me);
  if (type === "m.room.canonical_alias") await checkCanonicalAlias(ctx, roomId, content);
  if (me.isGuest && type === "m.room.member") await checkGuestMembership(ctx.hs, roomId, me.userId, stateKey, content);
  // An identical state event from the same sender changes nothing: answer with the existing one
  // instead of adding a no-op event to the DAG.
  const existing = await ctx.hs.store.read(async (tx) => {
    await requireRoom(tx, roomId);
    // Only a current member's no-op is short-cut; anyone else goes through the auth rules.
    if ((await membershipOf(tx, roomId, me.userId)) !== "join") return undefined;
    return currentStateEvent(tx, roomId, type, stateKey);
  });
  // Content without a canonical form (floats) is never identical; buildEvent refuses it with M_BAD_JSON.
  if (existing && existing.pdu.sender === me.userId && isCanonicalValue(content) && canonicalJson(existing.pdu.content) === canonicalJson(content)) {
    return { event_id: existing.eventId };
  }
  const { eventId } = await sendEvent(ctx.hs, { roomId, sender: me.userId, type, stateKey, content });
  return { event_id: eventId };
}

/** `m.room.canonical_alias`: every alias must exist and point at this room (400 M_BAD_ALIAS). */
async function checkCanonicalAlias(ctx: RequestContext, roomId: string, content: Record<string, unknown>): Promise<void> {
  const aliases: unknown[] = [];
  if (content.alias !== undefined) aliases.push(content.alias);
  if (content.alt_aliases !== undefined) {
    if (!Array.isArray(content.alt_aliases)) throw badJson("alt_aliases must be a list");
    aliases.push(...(content.alt_aliases as unknown[]));
  }
  for (const a of aliases) {
    if (typeof a !== "string" || !isRoomAlias(a)) throw new MatrixError(400, "M_INVALID_PARAM", `Invalid alias ${String(a)}`);
    const row = await ctx.hs.store.read((tx) => tx.get<{ roomId: string }>("aliases", a));
    if (row?.roomId !== roomId) throw badAlias(`${a} does not point to this room`);
  }
}

/** `GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}` */
export async function getStateEvent(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const format = ctx.query("format") ?? "content";
  if (format !== "content" && format !== "event") throw new MatrixError(400, "M_INVALID_PARAM", "format must be content or event");
  return ctx.hs.store.read(async (tx) => {
    const state = await readableState(tx, p.roomId!, me.userId);
    const e = state.get(stateKeyOf(p.eventType!, p.stateKey ?? ""));
    if (!e) throw notFound("Event not found");
    const served = await new EventServer(tx, me, ctx.hs.clock()).serve(e, { bundle: false });
    return format === "event" ? { ...served } : served.content;
  });
}

/** `GET /_matrix/client/v3/rooms/{roomId}/state` */
export async function getState(ctx: RequestContext, p: Record<string, string>): Promise<unknown[]> {
  const me = await ctx.requireAuth();
  return ctx.hs.store.read(async (tx) => {
    const state = await readableState(tx, p.roomId!, me.userId);
    return new EventServer(tx, me, ctx.hs.clock()).serveAll([...state.values()], { bundle: false });
  });
}

/** `PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}` */
export async function putRedact(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  await refuseSuspendedRedaction(ctx.hs, me, p.eventId!);
  const body = await ctx.json({ allowEmpty: true });
  const reason = reasonOf(body);
  const content: Record<string, unknown> = reason !== undefined ? { reason } : {};
  const { eventId } = await sendEvent(ctx.hs, {
    roomId: p.roomId!, sender: me.userId, type: "m.room.redaction", content, redacts: p.eventId!,
    txn: { deviceId: me.deviceId, txnId: p.txnId! },
  });
  return { event_id: eventId };
}

/** `GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}` */
export async function getRoomEvent(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  return ctx.hs.store.read(async (tx) => {
    await requireRoom(tx, p.roomId!);
    const e = await requireVisibleEvent(tx, me.userId, p.eventId!, p.roomId!);
    return { ...(await new EventServer(tx, me, ctx.hs.clock()).serve(e)) };
  });
}
