/**
 * Client-Server "Rooms" and "Events": creating rooms, sending events and state, redactions, and
 * reading state and single events.
 */
import type { RequestContext } from "../context.ts";
import { refuseIfSuspended } from "../context.ts";
import { refuseSuspendedRedaction } from "../services/accounts.ts";
import { MatrixError, badJson, notFound } from "../errors.ts";
import { canonicalJson, isCanonicalValue } from "../crypto/canonicalJson.ts";
import { createRoom, sendEvent } from "../roomserver/index.ts";
import { EventServer } from "../roomserver/serve.ts";
import { readableState } from "../roomserver/access.ts";
import { requireVisibleEvent } from "../roomserver/visibility.ts";
import { currentStateEvent, getEvent, membershipOf, requireRoom } from "../roomserver/state.ts";
import { isRoomAlias, isUserId, serverOf } from "../rooms/ids.ts";
import { changeMembership } from "../roomserver/membership.ts";
import { remoteInviteSigner } from "../federation/remoteMembership.ts";
import { reasonOf } from "../validate.ts";
import { stateKeyOf } from "../events/types.ts";
import { checkGuestMembership } from "../services/guests.ts";
import { limitInvite, limitUser } from "../auth/rateLimit.ts";
import { aliasTarget, relationParent } from "../services/rooms.ts";

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
  limitUser(ctx, me, "rc_room_creation");
  // The operator's default_room_version applies when the client names none.
  if (body.room_version === undefined) body.room_version = ctx.hs.config.defaultRoomVersion;
  const hs = ctx.hs;
  // Users of other servers are invited through their server once the room exists (invite v2).
  const inviteRemote = hs.federation
    ? async (roomId: string, userId: string): Promise<void> => {
      await changeMembership(hs, me.userId, roomId, userId, "invite", { isDirect: body.is_direct === true, countersign: remoteInviteSigner(hs) });
    }
    : undefined;
  const { roomId } = await createRoom(hs, me.userId, body, inviteRemote ? { inviteRemote } : {});
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
  limitUser(ctx, me, "rc_message");
  await checkRelation(ctx, p.roomId!, content);
  if (redacts !== undefined) await refuseForeignRedaction(ctx, p.roomId!, redacts);
  const { eventId } = await sendEvent(ctx.hs, {
    roomId: p.roomId!, sender: me.userId, type: p.eventType!, content,
    ...(redacts ? { redacts } : {}),
    txn: { deviceId: me.deviceId, txnId: p.txnId!, scope: `send/${p.roomId!}/${p.eventType!}` },
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
  // A membership sent as state is limited as the join or invite it is; other state as a message.
  if (type === "m.room.member" && content.membership === "join" && stateKey === me.userId) limitUser(ctx, me, "rc_joins.local");
  else if (type === "m.room.member" && content.membership === "invite") limitInvite(ctx, me, roomId, stateKey);
  else if (type !== "m.room.member") limitUser(ctx, me, "rc_message");
  await checkRelation(ctx, roomId, content);
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
  // An invite of another server's user is signed by that server first (invite v2).
  const remoteInvite = type === "m.room.member" && content.membership === "invite" && ctx.hs.federation !== undefined && isUserId(stateKey) && serverOf(stateKey) !== ctx.hs.serverName;
  const { eventId } = await sendEvent(ctx.hs, { roomId, sender: me.userId, type, stateKey, content, ...(remoteInvite ? { countersign: remoteInviteSigner(ctx.hs) } : {}) });
  return { event_id: eventId };
}

/**
 * A relation type: a namespaced identifier ("Relationships": `m.*` or reverse-DNS), printable ASCII
 * without spaces. Anything else, control characters above all, is `400 M_INVALID_PARAM`.
 */
const REL_TYPE = /^[\x21-\x7e]{1,255}$/;
/** An event ID a relation may point at: a `$` sigil and printable ASCII (room versions 3+ and earlier). */
const EVENT_ID = /^\$[\x21-\x7e]{1,254}$/;

/**
 * Checks `m.relates_to` of content a client sends ("Relationships"): a relation must point at an
 * event of the same room, as Synapse also requires ("Relations must be in the same room"), or an
 * injected edit or thread reply would show in a room the sender may not even be in. An unknown
 * parent is refused unless other events already relate to it (the client knows of it from them).
 */
async function checkRelation(ctx: RequestContext, roomId: string, content: Record<string, unknown>): Promise<void> {
  const rel = content["m.relates_to"];
  if (rel === undefined) return;
  if (rel === null || typeof rel !== "object" || Array.isArray(rel)) throw badJson("m.relates_to must be an object");
  const { rel_type: relType, event_id: parentId } = rel as Record<string, unknown>;
  if (relType === undefined) return; // only a reply (m.in_reply_to), which makes no relation
  if (typeof relType !== "string" || !REL_TYPE.test(relType)) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid rel_type");
  if (typeof parentId !== "string" || !EVENT_ID.test(parentId)) throw new MatrixError(400, "M_INVALID_PARAM", "m.relates_to needs a valid event_id");
  const verdict = await relationParent(ctx.hs, parentId, roomId);
  if (verdict === "other-room") throw new MatrixError(400, "M_INVALID_PARAM", "Relations must be in the same room");
  if (verdict === "unknown") throw new MatrixError(400, "M_INVALID_PARAM", "Can't send a relation to an unknown event");
}

/** A redaction names an event of its own room: one of another room is refused ("Cannot redact event from a different room", as Synapse). */
async function refuseForeignRedaction(ctx: RequestContext, roomId: string, targetId: string): Promise<void> {
  const target = await ctx.hs.store.read((tx) => getEvent(tx, targetId));
  if (target && target.roomId !== roomId) throw new MatrixError(400, "M_INVALID_PARAM", "Cannot redact an event of another room");
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
    if ((await aliasTarget(ctx.hs, a)) !== roomId) throw badAlias(`${a} does not point to this room`);
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
  limitUser(ctx, me, "rc_message");
  await refuseForeignRedaction(ctx, p.roomId!, p.eventId!);
  const { eventId } = await sendEvent(ctx.hs, {
    roomId: p.roomId!, sender: me.userId, type: "m.room.redaction", content, redacts: p.eventId!,
    txn: { deviceId: me.deviceId, txnId: p.txnId!, scope: `redact/${p.roomId!}/${p.eventId!}` },
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
