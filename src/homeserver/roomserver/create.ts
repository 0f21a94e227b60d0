/**
 * `createRoom`: the events of `POST /createRoom` in the order the spec fixes (create_room.yaml):
 * create, creator's join, power levels, canonical alias, preset state, initial_state, name, topic,
 * invites. Each event goes through the same auth check as any other send.
 */
import type { Services } from "../context.ts";
import { MatrixError, badJson, invalidParam, unsupportedRoomVersion } from "../errors.ts";
import { encodeBase64Url } from "../crypto/base64.ts";
import { buildEvent } from "../rooms/build.ts";
import { checkAuth } from "../rooms/auth.ts";
import { DEFAULT_ROOM_VERSION, roomVersion } from "../rooms/versions.ts";
import type { RoomVersionRules } from "../rooms/versions.ts";
import { withRoomLock } from "./lock.ts";
import { LocalBatch } from "./send.ts";
import { ExtremitiesChanged, persistRooms } from "./persist.ts";
import type { WriteTx } from "../../storage/store.ts";
import { stateKeyOf } from "../events/types.ts";
import { profileOf } from "./membership.ts";
import { isUserId, isRoomAliasLocalpart } from "../rooms/ids.ts";
import { forbidden } from "../errors.ts";
import { isObject } from "../validate.ts";
import type { RoomRecord } from "../events/types.ts";

const PRESETS: Record<string, { join_rule: string; history_visibility: string; guest_access: string }> = {
  private_chat: { join_rule: "invite", history_visibility: "shared", guest_access: "can_join" },
  trusted_private_chat: { join_rule: "invite", history_visibility: "shared", guest_access: "can_join" },
  public_chat: { join_rule: "public", history_visibility: "shared", guest_access: "forbidden" },
};

/** Error for an alias that already exists. */
export const roomInUse = (msg = "Room alias already taken"): MatrixError => new MatrixError(400, "M_ROOM_IN_USE", msg);

/** A state event a createRoom request contributes. */
interface StateSpec {
  type: string;
  stateKey: string;
  content: Record<string, unknown>;
}

/** What the caller adds to a room creation. */
export interface CreateOptions {
  /**
   * Invites a user of another server once the room exists (federation: the invitee's server must
   * sign the invite, server-server "Inviting to a room"). Without it every invite is in the batch.
   */
  inviteRemote?: (roomId: string, userId: string) => Promise<void>;
}

/** Creates a room as `creator` from a `POST /createRoom` body; returns its ID. */
export async function createRoom(hs: Services, creator: string, body: Record<string, unknown>, opts: CreateOptions = {}): Promise<{ roomId: string }> {
  // --- validate the request before anything is written ---
  const versionId = body.room_version === undefined ? DEFAULT_ROOM_VERSION : body.room_version;
  if (typeof versionId !== "string") throw badJson("room_version must be a string");
  const rules = roomVersion(versionId);
  if (!rules) throw unsupportedRoomVersion(versionId);
  const visibility = body.visibility ?? "private";
  if (visibility !== "public" && visibility !== "private") throw badJson("visibility must be public or private");
  const presetName = body.preset ?? (visibility === "public" ? "public_chat" : "private_chat");
  // Own keys only: `"preset": "constructor"` must not find Object.prototype.constructor.
  if (typeof presetName !== "string" || !Object.hasOwn(PRESETS, presetName)) throw badJson("Unknown preset");
  const preset = PRESETS[presetName]!;
  const invites = body.invite ?? [];
  if (!Array.isArray(invites) || !invites.every((u): u is string => typeof u === "string")) throw badJson("invite must be a list of user IDs");
  for (const u of invites) if (!isUserId(u)) throw invalidParam(`Invalid user ID ${u}`);
  if (body.invite_3pid !== undefined && (!Array.isArray(body.invite_3pid) || body.invite_3pid.length > 0)) {
    // Third-party invites need an identity server, which this homeserver does not talk to.
    throw new MatrixError(400, "M_UNRECOGNIZED", "invite_3pid is not supported by this server");
  }
  for (const f of ["name", "topic", "room_alias_name"] as const) {
    if (body[f] !== undefined && typeof body[f] !== "string") throw badJson(`${f} must be a string`);
  }
  for (const f of ["creation_content", "power_level_content_override"] as const) {
    if (body[f] !== undefined && !isObject(body[f])) throw badJson(`${f} must be an object`);
  }
  if (body.is_direct !== undefined && typeof body.is_direct !== "boolean") throw badJson("is_direct must be a boolean");
  const initialState: StateSpec[] = [];
  if (body.initial_state !== undefined) {
    if (!Array.isArray(body.initial_state)) throw badJson("initial_state must be a list");
    for (const s of body.initial_state as unknown[]) {
      if (!isObject(s) || typeof s.type !== "string" || !isObject(s.content) || (s.state_key !== undefined && typeof s.state_key !== "string")) {
        throw badJson("initial_state entries need a type and a content object");
      }
      initialState.push({ type: s.type, stateKey: (s.state_key as string | undefined) ?? "", content: s.content });
    }
  }
  let alias: string | undefined;
  if (typeof body.room_alias_name === "string") {
    if (!isRoomAliasLocalpart(body.room_alias_name)) throw invalidParam("Invalid room_alias_name");
    alias = `#${body.room_alias_name}:${hs.serverName}`;
    const taken = await hs.store.read((tx) => tx.get("aliases", alias!));
    if (taken) throw roomInUse();
  }

  // --- the create event ---
  const creationContent: Record<string, unknown> = { ...((body.creation_content as Record<string, unknown> | undefined) ?? {}) };
  creationContent.room_version = rules.id;
  if (rules.v11Semantics) delete creationContent.creator;
  else creationContent.creator = creator;
  const trusted = presetName === "trusted_private_chat";
  if (rules.roomIdFromCreate) {
    const extra = creationContent.additional_creators ?? [];
    if (!Array.isArray(extra) || !extra.every((u) => typeof u === "string" && isUserId(u))) {
      throw badJson("additional_creators must be a list of user IDs");
    }
    const all = new Set<string>(extra as string[]);
    if (trusted) for (const u of invites) all.add(u);
    all.delete(creator);
    if (all.size > 0) creationContent.additional_creators = [...all];
    else delete creationContent.additional_creators;
  }
  // The alias and directory rows are written in the room's own transaction.
  const alsoWrite = async (tx: WriteTx, roomId: string): Promise<void> => {
    // key = alias → { roomId, creator }; key = roomId → { visibility }
    if (alias) {
      if (await tx.get("aliases", alias)) throw roomInUse();
      tx.put("aliases", alias, { roomId, creator });
    }
    tx.put("room_directory", roomId, { visibility });
  };
  const roomId = await newRoom(hs, rules, creator, creationContent, alsoWrite, async (rawSend) => {
    // An event of the request the auth rules refuse means the requested initial state is
    // impossible (create_room.yaml: 400 M_INVALID_ROOM_STATE, e.g. power levels too low to name it).
    const send: SetupSend = async (type, stateKey, content) => {
      try {
        return await rawSend(type, stateKey, content);
      } catch (err) {
        if (err instanceof MatrixError && err.status === 403) throw new MatrixError(400, "M_INVALID_ROOM_STATE", `${type}: ${err.message}`);
        throw err;
      }
    };
    // 2. the creator joins
    await send("m.room.member", creator, { membership: "join", ...(await profileOf(hs, creator)) });

    // 3. power levels
    const creators = [creator, ...((creationContent.additional_creators as string[] | undefined) ?? [])];
    await send("m.room.power_levels", "", powerLevels(rules, creators, trusted ? invites : [], presetName, body.power_level_content_override as Record<string, unknown> | undefined));

    // 4. canonical alias (the alias row is written with it, below)
    if (alias) await send("m.room.canonical_alias", "", { alias });

    // 5. preset state, unless initial_state sets the same key ("takes precedence over preset")
    const overridden = new Set(initialState.map((s) => stateKeyOf(s.type, s.stateKey)));
    const presetState: StateSpec[] = [
      { type: "m.room.join_rules", stateKey: "", content: { join_rule: preset.join_rule } },
      { type: "m.room.history_visibility", stateKey: "", content: { history_visibility: preset.history_visibility } },
      { type: "m.room.guest_access", stateKey: "", content: { guest_access: preset.guest_access } },
    ];
    for (const s of presetState) if (!overridden.has(stateKeyOf(s.type, s.stateKey))) await send(s.type, s.stateKey, s.content);

    // 6. initial_state
    for (const s of initialState) await send(s.type, s.stateKey, s.content);

    // 7. name and topic
    if (typeof body.name === "string") await send("m.room.name", "", { name: body.name });
    if (typeof body.topic === "string") {
      // Topic as both plain text and the m.topic text representation (Client-Server "m.room.topic").
      await send("m.room.topic", "", { topic: body.topic, "m.topic": [{ body: body.topic, mimetype: "text/plain" }] });
    }

    // 8. invites (a remote invitee's server signs its invite first: after the room exists)
    for (const u of invites) {
      if (opts.inviteRemote && !u.endsWith(`:${hs.serverName}`)) continue;
      // Local invitees' profiles go into the invite, as POST /invite does, so clients can name them.
      const profile = u.endsWith(`:${hs.serverName}`) ? await profileOf(hs, u) : {};
      await send("m.room.member", u, { membership: "invite", ...profile, ...(body.is_direct === true ? { is_direct: true } : {}) });
    }
  });

  if (opts.inviteRemote) {
    for (const u of invites) {
      if (u.endsWith(`:${hs.serverName}`)) continue;
      try {
        await opts.inviteRemote(roomId, u);
      } catch (err) {
        // The room exists; an invitee whose server cannot be reached is left uninvited, as a
        // later POST /invite would leave them.
        hs.logger.warn(`createRoom ${roomId}: could not invite ${u}`, err);
      }
    }
  }
  return { roomId };
}

/** The initial power levels (create_room.yaml step 3), with the request's override applied on top. */
function powerLevels(rules: RoomVersionRules, creators: string[], trustedInvitees: string[], presetName: string, override?: Record<string, unknown>): Record<string, unknown> {
  const creator = creators[0]!;
  const users: Record<string, number> = {};
  // v12: creators have infinite power and must not be listed in `users`.
  if (!rules.roomIdFromCreate) {
    users[creator] = 100;
    for (const u of trustedInvitees) users[u] = 100;
  }
  const pl: Record<string, unknown> = {
    users,
    users_default: 0,
    events: {
      "m.room.name": 50,
      "m.room.power_levels": 100,
      "m.room.history_visibility": 100,
      "m.room.canonical_alias": 50,
      "m.room.avatar": 50,
      // v12: tombstone must be above state_default (and above 100 so only creators can upgrade).
      "m.room.tombstone": rules.roomIdFromCreate ? 150 : 100,
      "m.room.server_acl": 100,
      "m.room.encryption": 100,
    },
    events_default: 0,
    state_default: 50,
    ban: 50,
    kick: 50,
    redact: 50,
    // Private rooms let any member invite, as the usual implementations do.
    invite: presetName === "public_chat" ? 50 : 0,
    historical: 100,
  };
  if (override) {
    for (const [k, v] of Object.entries(override)) {
      if (k === "users" && isObject(v)) pl.users = { ...users, ...v };
      else if (k === "events" && isObject(v)) pl.events = { ...(pl.events as Record<string, unknown>), ...v };
      else pl[k] = v;
    }
  }
  if (rules.roomIdFromCreate && isObject(pl.users)) {
    // v12 auth rules refuse power levels that list a creator.
    const u = { ...pl.users };
    for (const c of creators) delete u[c];
    pl.users = u;
  }
  return pl;
}

/** Adds one event to a room being set up (it is stored with the rest, in one transaction). */
export type SetupSend = (type: string, stateKey: string | undefined, content: Record<string, unknown>) => Promise<{ eventId: string }>;

/**
 * Builds a new room's create event and, through `setup`, the events that follow it, then persists
 * them all at once: the room exists whole or not at all. Returns the room ID (derived from the
 * create event in v12, random `!…:server` before).
 */
export async function newRoom(
  hs: Services, rules: RoomVersionRules, creator: string, creationContent: Record<string, unknown>,
  alsoWrite: (tx: WriteTx, roomId: string) => Promise<void>, setup: (send: SetupSend) => Promise<void>,
): Promise<string> {
  for (;;) {
    const room = await buildNewRoom(hs, rules, creator, creationContent, setup);
    try {
      await withRoomLock(hs.store, room.roomId, () =>
        persistRooms(hs, [{ roomId: room.roomId, inputs: room.batch.inputs, newRoom: room.record }], (tx) => alsoWrite(tx, room.roomId)));
      return room.roomId;
    } catch (err) {
      // The compare-and-swap of a new room: someone made a room with this ID meanwhile.
      if (err instanceof ExtremitiesChanged) continue;
      throw err;
    }
  }
}

/** A new room's events, built and checked, not yet stored. */
export interface BuiltRoom {
  roomId: string;
  batch: LocalBatch;
  record: RoomRecord;
}

/** Builds (without storing) a new room's create event and the events `setup` adds after it. */
export async function buildNewRoom(
  hs: Services, rules: RoomVersionRules, creator: string, creationContent: Record<string, unknown>, setup: (send: SetupSend) => Promise<void>,
): Promise<BuiltRoom> {
  // A v12 room ID is the hash of its create event, so the same creator asking twice with the same
  // content in the same millisecond would get the same ID: move the timestamp on until it is new.
  for (let originServerTs = hs.clock(); ; originServerTs++) {
    const createBuilt = await buildEvent(
      {
        ...(rules.roomIdFromCreate ? {} : { roomId: `!${encodeBase64Url(hs.random(18))}:${hs.serverName}` }),
        sender: creator, type: "m.room.create", stateKey: "", content: creationContent,
        prevEvents: [], authEvents: [], depth: 1, originServerTs, origin: hs.serverName,
      },
      rules,
      hs.signingKey,
      hs.random,
    );
    const verdict = checkAuth(createBuilt.pdu, createBuilt.eventId, new Map(), rules);
    if (!verdict.allowed) throw forbidden(verdict.reason);
    const roomId = createBuilt.roomId;
    if (await hs.store.read((tx) => tx.get("rooms", roomId))) continue;
    const batch = new LocalBatch(hs, rules, roomId);
    batch.addCreate(createBuilt);
    await setup((type, stateKey, content) => batch.add({ sender: creator, type, ...(stateKey !== undefined ? { stateKey } : {}), content }));
    return { roomId, batch, record: { roomId, roomVersion: rules.id, maxDepth: 1 } };
  }
}
