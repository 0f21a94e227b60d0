/** Client-Server "Room Upgrades": `POST /rooms/{roomId}/upgrade` (server behaviour steps 1–6). */
import type { RequestContext } from "../context.ts";
import { refuseIfSuspended } from "../context.ts";
import { badJson, forbidden, unsupportedRoomVersion } from "../errors.ts";
import { prefix } from "../../storage/store.ts";
import type { StoredEvent } from "../events/types.ts";
import { stateKeyOf } from "../events/types.ts";
import { roomVersion } from "../rooms/versions.ts";
import { eventPowerLevel, roomCreators, userPowerLevel } from "../rooms/powerLevels.ts";
import { buildNewRoom } from "../roomserver/create.ts";
import type { SetupSend } from "../roomserver/create.ts";
import { LocalBatch } from "../roomserver/send.ts";
import { ExtremitiesChanged, persistRooms } from "../roomserver/persist.ts";
import { currentState, membershipOf, pdusOf, requireRoom, rulesOf } from "../roomserver/state.ts";
import { isUserId } from "../rooms/ids.ts";
import { withRoomLock } from "../roomserver/lock.ts";

/** State copied to the replacement room (room_upgrades.md step 3; power levels are handled apart). */
const TRANSFERRED = [
  "m.room.server_acl", "m.room.encryption", "m.room.name", "m.room.avatar", "m.room.topic",
  "m.room.guest_access", "m.room.history_visibility", "m.room.join_rules",
];

/** `POST /_matrix/client/v3/rooms/{roomId}/upgrade` */
export async function postUpgrade(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  // "Account suspension": an upgrade creates a room and sends into two.
  refuseIfSuspended(me);
  const body = await ctx.json();
  if (typeof body.new_version !== "string") throw badJson("new_version is required");
  const rules = roomVersion(body.new_version);
  if (!rules) throw unsupportedRoomVersion(body.new_version);
  const extraCreators = body.additional_creators ?? [];
  if (!Array.isArray(extraCreators) || !extraCreators.every((u) => typeof u === "string" && isUserId(u))) {
    throw badJson("additional_creators must be a list of user IDs");
  }
  const oldRoomId = p.roomId!;
  const old = await ctx.hs.store.read(async (tx) => {
    const room = await requireRoom(tx, oldRoomId);
    return {
      room, state: await currentState(tx, oldRoomId), aliases: (await tx.range<{ roomId: string }>("aliases")).filter((r) => r.value.roomId === oldRoomId),
      membership: await membershipOf(tx, oldRoomId, me.userId),
    };
  });
  const oldRules = rulesOf(old.room);
  const oldPdus = pdusOf(old.state);
  // 1. permission to send the tombstone
  if (old.membership !== "join") throw forbidden("You are not in this room");
  if (userPowerLevel(me.userId, oldPdus, oldRules) < eventPowerLevel("m.room.tombstone", true, oldPdus)) {
    throw forbidden("You may not upgrade this room");
  }
  const get = (type: string): StoredEvent | undefined => old.state.get(stateKeyOf(type, ""));

  // 2. the replacement room's create event
  const oldCreate = get("m.room.create")!.pdu.content;
  const creationContent: Record<string, unknown> = {
    room_version: rules.id,
    // v12 may omit predecessor.event_id; earlier versions name the last known event.
    predecessor: rules.roomIdFromCreate ? { room_id: oldRoomId } : { room_id: oldRoomId, event_id: await lastEventId(ctx, oldRoomId) },
  };
  if (typeof oldCreate.type === "string") creationContent.type = oldCreate.type;
  if (oldCreate["m.federate"] === false) creationContent["m.federate"] = false;
  if (!rules.v11Semantics) creationContent.creator = me.userId;
  const creators = new Set<string>([me.userId]);
  if (rules.roomIdFromCreate) {
    const extra = (extraCreators as string[]).filter((u) => u !== me.userId);
    if (extra.length) creationContent.additional_creators = extra;
    for (const u of extra) creators.add(u);
  }

  // Power levels: the old room's, with creators left out (v12) or the upgrader able to send state.
  const oldPl = (get("m.room.power_levels")?.pdu.content ?? {}) as Record<string, unknown>;
  const finalPl: Record<string, unknown> = structuredClone(oldPl);
  const users = { ...((finalPl.users as Record<string, unknown> | undefined) ?? {}) };
  if (rules.roomIdFromCreate) for (const c of creators) delete users[c];
  // A v12 source room lists its creators nowhere; give them the top level in an older target.
  if (!rules.roomIdFromCreate && oldRules.roomIdFromCreate) for (const c of roomCreators(oldPdus, oldRules)) users[c] ??= 100;
  finalPl.users = users;
  let setupPl = finalPl;
  if (!rules.roomIdFromCreate) {
    const levels = [finalPl.state_default, finalPl.ban, finalPl.kick, finalPl.redact, finalPl.invite, ...Object.values((finalPl.events as Record<string, unknown>) ?? {})]
      .map((v) => Number(v)).filter((v) => Number.isFinite(v));
    const needed = Math.max(100, ...levels);
    if (Number(users[me.userId] ?? finalPl.users_default ?? 0) < needed) {
      setupPl = { ...finalPl, users: { ...users, [me.userId]: needed } };
    }
  }

  // Steps 2–6 are stored in one transaction: the new room whole, the old room's tombstone and
  // restricted power levels, the moved aliases and directory entry — or, after a crash, none of it.
  const setup = async (send: SetupSend): Promise<void> => {
    const profile = old.state.get(stateKeyOf("m.room.member", me.userId))?.pdu.content ?? {};
    await send("m.room.member", me.userId, {
      membership: "join",
      ...(typeof profile.displayname === "string" ? { displayname: profile.displayname } : {}),
      ...(typeof profile.avatar_url === "string" ? { avatar_url: profile.avatar_url } : {}),
    });
    await send("m.room.power_levels", "", setupPl);
    // 3. transferable state
    for (const type of TRANSFERRED) {
      const e = get(type);
      if (e && !e.redactedBy) await send(type, "", e.pdu.content);
    }
    // Bans carry over, so that an upgrade is not a way back in.
    for (const e of old.state.values()) {
      if (e.pdu.type === "m.room.member" && e.pdu.content.membership === "ban" && e.pdu.state_key) {
        await send("m.room.member", e.pdu.state_key, { membership: "ban", ...(typeof e.pdu.content.reason === "string" ? { reason: e.pdu.content.reason } : {}) });
      }
    }
    // 4. the canonical alias moves with the local aliases
    const canonical = get("m.room.canonical_alias");
    if (canonical && !canonical.redactedBy) await send("m.room.canonical_alias", "", canonical.pdu.content);
    if (setupPl !== finalPl) await send("m.room.power_levels", "", finalPl);
  };
  for (;;) {
    const built = await buildNewRoom(ctx.hs, rules, me.userId, creationContent, setup);
    const newRoomId = built.roomId;
    const oldBatch = await LocalBatch.forRoom(ctx.hs, oldRoomId);
    // 5. the tombstone
    await oldBatch.add({
      sender: me.userId, type: "m.room.tombstone", stateKey: "",
      content: { body: "This room has been replaced", replacement_room: newRoomId },
    });
    // 6. restrict the old room: no more messages or invites from ordinary members.
    const restricted = Math.max(50, Number(oldPl.users_default ?? 0) + 1);
    const cur = oldBatch.stateContent("m.room.power_levels") ?? oldPl;
    try {
      await oldBatch.add({
        sender: me.userId, type: "m.room.power_levels", stateKey: "",
        content: { ...cur, events_default: Math.max(Number(cur.events_default ?? 0), restricted), invite: Math.max(Number(cur.invite ?? 0), restricted) },
      });
    } catch (err) {
      // "If possible": a user who may tombstone but not edit power levels still upgrades.
      ctx.hs.logger.info("could not restrict the old room's power levels", err);
    }
    try {
      await withRoomLock(ctx.hs.store, oldRoomId, () =>
        persistRooms(
          ctx.hs,
          [
            { roomId: newRoomId, inputs: built.batch.inputs, newRoom: built.record },
            { roomId: oldRoomId, inputs: oldBatch.inputs, patch: { tombstonedBy: newRoomId } },
          ],
          async (tx) => {
            // 4. the local aliases move to the new room, and so does the directory entry.
            for (const a of old.aliases) tx.put("aliases", a.key, { ...a.value, roomId: newRoomId });
            const dir = await tx.get<{ visibility: string }>("room_directory", oldRoomId);
            if (dir) {
              tx.put("room_directory", newRoomId, dir);
              tx.put("room_directory", oldRoomId, { visibility: "private" });
            }
          },
        ));
      return { replacement_room: newRoomId };
    } catch (err) {
      // Someone sent into the old room meanwhile (or took the new room's ID): build again.
      if (err instanceof ExtremitiesChanged) continue;
      throw err;
    }
  }
}

async function lastEventId(ctx: RequestContext, roomId: string): Promise<string> {
  return ctx.hs.store.read(async (tx) => {
    const rows = await tx.range<true>("extremities", { prefix: prefix(roomId) });
    return rows[0]!.key.slice(prefix(roomId).length);
  });
}
