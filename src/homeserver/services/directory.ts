/**
 * The room directory ("Room directory": published rooms, `/publicRooms`) and room summaries
 * (`/hierarchy`, `/room_summary`): what the client API and the federation's `/publicRooms` and
 * `/hierarchy` both serve.
 * and the room aliases ("Room aliases"), local and as the directory answers them.
 * key aliases = alias → { roomId, creator }; key room_directory = roomId → { visibility }
 */
import type { Services } from "../context.ts";
import { MatrixError, badJson, forbidden, notFound } from "../errors.ts";
import type { ReadTx } from "../../storage/store.ts";
import type { StoredEvent } from "../events/types.ts";
import { stateKeyOf } from "../events/types.ts";
import { cachedRooms, relayedRooms } from "../federation/directory.ts";
import { serverInRoom } from "../roomserver/outOfRoom.ts";
import { currentState, currentStateContent, getRoom, membersWith, membershipRecord, pdusOf, requireRoom, rulesOf } from "../roomserver/state.ts";
import { isWorldReadable } from "../roomserver/access.ts";
import { joinedRooms } from "../roomserver/membership.ts";
import { sendEvent } from "../roomserver/send.ts";
import { eventPowerLevel, userPowerLevel } from "../rooms/powerLevels.ts";
import { aliasServers } from "../federation/remoteMembership.ts";
import type { AccountRecord } from "./accounts.ts";

/** A `/publicRooms` (and `/hierarchy`) chunk entry ("PublishedRoomsChunk"). */
export async function publishedRoomChunk(tx: ReadTx, roomId: string): Promise<Record<string, unknown>> {
  const c = (type: string) => currentStateContent(tx, roomId, type);
  const name = (await c("m.room.name"))?.name;
  const topic = (await c("m.room.topic"))?.topic;
  const alias = (await c("m.room.canonical_alias"))?.alias;
  const avatar = (await c("m.room.avatar"))?.url;
  const joinRule = (await c("m.room.join_rules"))?.join_rule;
  const roomType = (await c("m.room.create"))?.type;
  const out: Record<string, unknown> = {
    room_id: roomId,
    num_joined_members: (await membersWith(tx, roomId, "join")).length,
    world_readable: (await c("m.room.history_visibility"))?.history_visibility === "world_readable",
    guest_can_join: (await c("m.room.guest_access"))?.guest_access === "can_join",
    join_rule: typeof joinRule === "string" ? joinRule : "public",
  };
  if (typeof name === "string") out.name = name;
  if (typeof topic === "string") out.topic = topic;
  if (typeof alias === "string") out.canonical_alias = alias;
  if (typeof avatar === "string") out.avatar_url = avatar;
  if (typeof roomType === "string") out.room_type = roomType;
  return out;
}

/**
 * Where a `/publicRooms` page starts: after (`n`, forwards) or before (`b`, backwards) the room
 * with this member count and ID in the list order. Naming a room rather than an offset keeps
 * pages from repeating or skipping rooms when the list changes between two requests.
 */
interface DirectoryCursor {
  forward: boolean;
  members: number;
  roomId: string;
}

const CURSOR = /^([nb])(\d{1,9})_(.+)$/;

/** `since`: a cursor; an empty or absent one is the first page (Synapse reads "" so). */
function readDirectoryCursor(since: unknown): DirectoryCursor | undefined {
  if (since === undefined || since === "") return undefined;
  const m = typeof since === "string" ? CURSOR.exec(since) : null;
  if (!m) throw new MatrixError(400, "M_INVALID_PARAM", "Malformed since token");
  return { forward: m[1] === "n", members: Number(m[2]), roomId: m[3]! };
}

const cursorToken = (forward: boolean, room: Record<string, unknown>): string => `${forward ? "n" : "b"}${room.num_joined_members as number}_${room.room_id as string}`;

/** The list order: largest rooms first, then by room ID. */
function compareRooms(a: { members: number; roomId: string }, b: { members: number; roomId: string }): number {
  return b.members - a.members || (a.roomId < b.roomId ? -1 : a.roomId > b.roomId ? 1 : 0);
}

const orderKey = (room: Record<string, unknown>): { members: number; roomId: string } => ({ members: room.num_joined_members as number, roomId: room.room_id as string });

/**
 * Which list: `server` is this server's own directory (its published rooms and the remote rooms it
 * relays, federation/directory.ts), what other servers are answered; `global` adds the cached
 * directories of the other reachable servers, what this server's users see.
 */
export type DirectoryScope = "server" | "global";

/** The rooms of a list, one entry per room ID. */
async function directoryChunks(hs: Services, tx: ReadTx, scope: DirectoryScope): Promise<Record<string, unknown>[]> {
  const out = new Map<string, Record<string, unknown>>();
  for (const r of await tx.range<{ visibility: string }>("room_directory")) {
    if (r.value.visibility === "public" && (await tx.get("rooms", r.key))) out.set(r.key, await publishedRoomChunk(tx, r.key));
  }
  for (const roomId of await relayedRooms(tx, hs.serverName)) if (!out.has(roomId)) out.set(roomId, await publishedRoomChunk(tx, roomId));
  if (scope === "global") {
    for (const [roomId, chunk] of await cachedRooms(tx, hs.clock(), hs.config.directoryPeerTtlMs)) {
      if (out.has(roomId)) continue;
      // A room this server is in is described from its own current state, fresher than any cache.
      const resident = (await tx.get("rooms", roomId)) !== undefined && (await serverInRoom(tx, roomId, hs.serverName));
      out.set(roomId, resident ? await publishedRoomChunk(tx, roomId) : chunk);
    }
  }
  return [...out.values()];
}

/**
 * A published-room list (`scope`) with `limit`, `since` (a cursor) and the filter; the
 * federation's `/publicRooms` serves this server's own. A `third_party_instance_id` selects a
 * bridged network's rooms, and no room here belongs to one.
 */
export async function listPublicRooms(hs: Services, limitRaw: unknown, since: unknown, filter: unknown, thirdPartyInstanceId?: unknown, scope: DirectoryScope = "server"): Promise<Record<string, unknown>> {
  let limit: number | undefined;
  if (limitRaw !== undefined) {
    if (typeof limitRaw !== "number" || !Number.isInteger(limitRaw) || limitRaw < 0) throw new MatrixError(400, "M_INVALID_PARAM", "limit must be a non-negative integer");
    limit = limitRaw;
  }
  const cursor = readDirectoryCursor(since);
  let term: string | undefined;
  let roomTypes: (string | null)[] | undefined;
  if (filter !== undefined) {
    if (filter === null || typeof filter !== "object" || Array.isArray(filter)) throw badJson("filter must be an object");
    const f = filter as Record<string, unknown>;
    if (f.generic_search_term !== undefined) {
      if (typeof f.generic_search_term !== "string") throw badJson("generic_search_term must be a string");
      term = f.generic_search_term.toLowerCase();
    }
    if (f.room_types !== undefined) {
      if (!Array.isArray(f.room_types)) throw badJson("room_types must be a list");
      roomTypes = f.room_types as (string | null)[];
    }
  }
  if (thirdPartyInstanceId !== undefined && typeof thirdPartyInstanceId !== "string") throw badJson("third_party_instance_id must be a string");
  return hs.store.read(async (tx) => {
    const all = thirdPartyInstanceId !== undefined ? [] : await directoryChunks(hs, tx, scope);
    const total = all.length;
    const matching = all.filter((room) => {
      if (term !== undefined) {
        const hay = [room.name, room.topic, room.canonical_alias, room.room_id].filter((x) => typeof x === "string").join("\n").toLowerCase();
        if (!hay.includes(term)) return false;
      }
      // room_types: `null` selects rooms without a type.
      if (roomTypes !== undefined && !roomTypes.includes((room.room_type as string | undefined) ?? null)) return false;
      return true;
    });
    matching.sort((a, b) => compareRooms(orderKey(a), orderKey(b)));
    // The page: the first `limit` rooms after the cursor, or the last `limit` before it.
    let from = 0;
    let to = matching.length;
    if (cursor?.forward) from = matching.findIndex((r) => compareRooms(orderKey(r), cursor) > 0);
    if (cursor && !cursor.forward) to = matching.findIndex((r) => compareRooms(orderKey(r), cursor) >= 0);
    if (from < 0) from = matching.length;
    if (to < 0) to = matching.length;
    if (limit !== undefined) {
      if (cursor && !cursor.forward) from = Math.max(0, to - limit);
      else to = Math.min(matching.length, from + limit);
    }
    const chunk = matching.slice(from, to);
    const out: Record<string, unknown> = { chunk, total_room_count_estimate: total };
    // A limit of 0 pages nowhere: no token that would hand back the same empty page forever.
    if (chunk.length > 0 && to < matching.length) out.next_batch = cursorToken(true, chunk[chunk.length - 1]!);
    if (chunk.length > 0 && from > 0) out.prev_batch = cursorToken(false, chunk[0]!);
    return out;
  });
}

/**
 * Whether a room's summary may be shown (the rule `/hierarchy` and `/room_summary` share, as
 * Synapse's `_is_local_room_accessible` does): a join rule of `public`, `knock` or
 * `knock_restricted`, or `world_readable` history, for anyone; for a known user also being joined,
 * invited or knocking, or being joined to a room a `restricted` / `knock_restricted` join rule allows.
 * `state` is the room's current state (the caller reads it once for this and `roomSummaryOf`).
 */
export async function canViewSummary(tx: ReadTx, roomId: string, userId: string | undefined, state: Map<string, StoredEvent>): Promise<boolean> {
  if (!(await getRoom(tx, roomId))) return false;
  const hv = state.get(stateKeyOf("m.room.history_visibility", ""))?.pdu.content.history_visibility;
  const jr = state.get(stateKeyOf("m.room.join_rules", ""))?.pdu.content.join_rule;
  if (hv === "world_readable" || jr === "public" || jr === "knock" || jr === "knock_restricted") return true;
  if (userId === undefined) return false;
  const mine = (await membershipRecord(tx, roomId, userId))?.membership;
  if (mine === "join" || mine === "invite" || mine === "knock") return true;
  if (jr === "restricted") {
    const allow = state.get(stateKeyOf("m.room.join_rules", ""))?.pdu.content.allow;
    if (Array.isArray(allow)) {
      for (const a of allow as Record<string, unknown>[]) {
        if (typeof a?.room_id === "string" && (await membershipRecord(tx, a.room_id, userId))?.membership === "join") return true;
      }
    }
  }
  return false;
}

/**
 * A room's `RoomSummary` (definitions/room_summary.yaml): the published-rooms chunk plus
 * `room_version`, `encryption` and, for restricted rooms, `allowed_room_ids`.
 */
export async function roomSummaryOf(tx: ReadTx, roomId: string, state: Map<string, StoredEvent>): Promise<Record<string, unknown>> {
  const extra: Record<string, unknown> = { room_version: (await getRoom(tx, roomId))!.roomVersion };
  const enc = state.get(stateKeyOf("m.room.encryption", ""))?.pdu.content.algorithm;
  if (typeof enc === "string") extra.encryption = enc;
  const jr = state.get(stateKeyOf("m.room.join_rules", ""))?.pdu.content;
  if ((jr?.join_rule === "restricted" || jr?.join_rule === "knock_restricted") && Array.isArray(jr.allow)) {
    extra.allowed_room_ids = (jr.allow as Record<string, unknown>[]).filter((a) => a?.type === "m.room_membership" && typeof a.room_id === "string").map((a) => a.room_id);
  }
  return { ...(await publishedRoomChunk(tx, roomId)), ...extra };
}

// ---------------------------------------------------------------------------------------------
// Aliases, visibility, the user directory

/** An alias row. */
interface AliasRow {
  roomId: string;
  creator: string;
}

/**
 * A deleted alias no longer belongs in the room's `m.room.canonical_alias` (which must only name
 * aliases that point at the room); the deleting user updates it if they may.
 */
async function dropFromCanonicalAlias(hs: Services, roomId: string, alias: string, userId: string): Promise<void> {
  const content = await hs.store.read((tx) => currentStateContent(tx, roomId, "m.room.canonical_alias"));
  if (!content) return;
  const alt = Array.isArray(content.alt_aliases) ? (content.alt_aliases as unknown[]) : undefined;
  if (content.alias !== alias && !alt?.includes(alias)) return;
  const next: Record<string, unknown> = { ...content };
  if (next.alias === alias) delete next.alias;
  if (alt) next.alt_aliases = alt.filter((a) => a !== alias);
  try {
    await sendEvent(hs, { roomId, sender: userId, type: "m.room.canonical_alias", stateKey: "", content: next });
  } catch (err) {
    hs.logger.info("could not update the canonical alias after deleting", alias, err);
  }
}

async function isAdmin(tx: ReadTx, userId: string): Promise<boolean> {
  return (await tx.get<AccountRecord>("accounts", userId))?.admin === true;
}

/** Whether a joined user has the power to send the given state event type. */
async function mayEdit(tx: ReadTx, roomId: string, userId: string, type: string): Promise<boolean> {
  const room = await getRoom(tx, roomId);
  if (!room) return false;
  if ((await membershipRecord(tx, roomId, userId))?.membership !== "join") return false;
  const state = pdusOf(await currentState(tx, roomId));
  return userPowerLevel(userId, state, rulesOf(room)) >= eventPowerLevel(type, true, state);
}

/** The local aliases of a room. */
async function aliasesOf(tx: ReadTx, roomId: string): Promise<string[]> {
  const rows = await tx.range<AliasRow>("aliases");
  return rows.filter((r) => r.value.roomId === roomId).map((r) => r.key);
}

/** Creates a local alias for an existing room (409 if the alias is taken). */
export async function createAlias(hs: Services, alias: string, roomId: string, creator: string): Promise<void> {
  await hs.store.write(async (tx) => {
    await requireRoom(tx, roomId);
    if (await tx.get("aliases", alias)) throw new MatrixError(409, "M_UNKNOWN", `Room alias ${alias} already exists.`);
    tx.put("aliases", alias, { roomId, creator: creator } satisfies AliasRow);
  });
}

/** A local alias's room and the servers to join it through (404 if unknown). */
export async function localAlias(hs: Services, alias: string): Promise<Record<string, unknown>> {
  return hs.store.read(async (tx) => {
    const row = await tx.get<AliasRow>("aliases", alias);
    if (!row) throw notFound(`Room alias ${alias} not found.`);
    return { room_id: row.roomId, servers: await aliasServers(tx, row.roomId, hs.serverName) };
  });}

/**
 * Deletes a local alias. Access control (directory.yaml leaves it to the server): the alias's
 * creator, an admin, or a member who may change the room's canonical alias.
 */
export async function removeAlias(hs: Services, alias: string, userId: string): Promise<void> {
  const roomId = await hs.store.write(async (tx) => {
    const row = await tx.get<AliasRow>("aliases", alias);
    if (!row) throw notFound(`Room alias ${alias} not found.`);
    // Access control (directory.yaml leaves it to the server): the alias's creator, an admin, or
    // a member who may change the room's canonical alias.
    if (row.creator !== userId && !(await isAdmin(tx, userId)) && !(await mayEdit(tx, row.roomId, userId, "m.room.canonical_alias"))) {
      throw forbidden("You may not delete this alias");
    }
    tx.delete("aliases", alias);
    return row.roomId;
  });
  await dropFromCanonicalAlias(hs, roomId, alias, userId);
}

/** A room's local aliases, for a member (or anyone, in a world-readable room). */
export async function roomAliases(hs: Services, roomId: string, userId: string): Promise<Record<string, unknown>> {
  return hs.store.read(async (tx) => {
    await requireRoom(tx, roomId);
    const m = await membershipRecord(tx, roomId, userId);
    if (m?.membership !== "join" && !(await isWorldReadable(tx, roomId))) throw forbidden("You are not in this room");
    return { aliases: await aliasesOf(tx, roomId) };
  });}

/** A room's visibility in the published room directory. */
export async function directoryVisibility(hs: Services, roomId: string): Promise<Record<string, unknown>> {
  return hs.store.read(async (tx) => {
    await requireRoom(tx, roomId);
    const row = await tx.get<{ visibility: string }>("room_directory", roomId);
    return { visibility: row?.visibility ?? "private" };
  });}

/** Publishes or unpublishes a room: a room-wide decision, so it needs the power to change the canonical alias (or an admin). */
export async function setDirectoryVisibility(hs: Services, roomId: string, userId: string, visibility: "public" | "private"): Promise<void> {
  await hs.store.write(async (tx) => {
    await requireRoom(tx, roomId);
    // Publishing is a room-wide decision: require the power to change the canonical alias.
    if (!(await isAdmin(tx, userId)) && !(await mayEdit(tx, roomId, userId, "m.room.canonical_alias"))) {
      throw forbidden("You may not change this room's directory visibility");
    }
    tx.put("room_directory", roomId, { visibility });
  });
}

/** The user directory (users.yaml): users sharing a room with `userId` or in an open room, matching `term`. */
export async function searchUserDirectory(hs: Services, userId: string, term: string, limit: number): Promise<Record<string, unknown>> {
  return hs.store.read(async (tx) => {
    // Candidates (users.yaml): users who share a room with the requester, and users in public rooms.
    const profiles = new Map<string, { displayname?: string; avatar_url?: string }>();
    const addMembers = async (roomId: string): Promise<void> => {
      for (const e of (await currentState(tx, roomId)).values()) {
        if (e.pdu.type !== "m.room.member" || e.pdu.content.membership !== "join" || !e.pdu.state_key) continue;
        const c = e.pdu.content;
        profiles.set(e.pdu.state_key, {
          ...(typeof c.displayname === "string" ? { displayname: c.displayname } : {}),
          ...(typeof c.avatar_url === "string" ? { avatar_url: c.avatar_url } : {}),
        });
      }
    };
    // Rooms that make their members visible to everyone (users.yaml): a `public` join rule or
    // `world_readable` history, as the room is now; being published in the room directory does not
    // count (Synapse's rule too), so a member drops out once the room stops being either.
    const open: string[] = [];
    for (const r of await tx.range<unknown>("rooms", {})) {
      const jr = (await currentStateContent(tx, r.key, "m.room.join_rules"))?.join_rule;
      const hv = jr === "public" ? undefined : (await currentStateContent(tx, r.key, "m.room.history_visibility"))?.history_visibility;
      if (jr === "public" || hv === "world_readable") open.push(r.key);
    }
    // A joined room that is also public is read once, in the second pass (the later pass, whose
    // profiles win, as when it was read in both).
    const openSet = new Set(open);
    for (const roomId of await joinedRooms(tx, userId)) if (!openSet.has(roomId)) await addMembers(roomId);
    for (const roomId of open) await addMembers(roomId);
    const results: Record<string, unknown>[] = [];
    for (const [userId, prof] of [...profiles].sort((a, b) => a[0].localeCompare(b[0]))) {
      const localpart = userId.slice(1, userId.indexOf(":"));
      const hit = userId.toLowerCase().includes(term) || localpart.toLowerCase().includes(term) || (prof.displayname?.toLowerCase().includes(term) ?? false);
      if (!hit) continue;
      results.push({ user_id: userId, ...(prof.displayname ? { display_name: prof.displayname } : {}), ...(prof.avatar_url ? { avatar_url: prof.avatar_url } : {}) });
    }
    return { results: results.slice(0, limit), limited: results.length > limit };
  });}
