/**
 * Presence ("Presence" module, `presence.yaml`). key presence = userId → PresenceRow. Every change
 * takes a stream position so `/sync` delivers `m.presence` to users sharing a room.
 */
import type { RequestContext, Services } from "../context.ts";
import { nextStreamPos } from "../context.ts";
import { MatrixError, forbidden, notFound } from "../errors.ts";
import type { ReadTx } from "../../storage/store.ts";
import { membershipOf } from "../roomserver/state.ts";
import { joinedRooms } from "../roomserver/membership.ts";
import { limitUser } from "../auth/rateLimit.ts";
import type { WriteTx } from "../../storage/store.ts";
import { queueEdu, serversSharingRoomsWith } from "../federation/sender.ts";

/** A row of the `presence` table. */
export interface PresenceRow {
  presence: string;
  status_msg?: string;
  lastActiveTs: number;
  streamPos: number;
}

const STATES = new Set(["online", "offline", "unavailable"]);
/** Activity within this window counts as `currently_active`. */
const ACTIVE_WINDOW_MS = 5 * 60_000;
/** `last_active` is refreshed (without a stream position) at most this often. */
const TOUCH_INTERVAL_MS = 60_000;

/** "Idle timeout": an `online` user not seen for this long is shown as `unavailable`. */
const IDLE_AFTER_MS = 5 * 60_000;

/** The `m.presence` content of a row, as of `now`. */
export function presenceContent(row: PresenceRow, now: number): Record<string, unknown> {
  const ago = Math.max(0, now - row.lastActiveTs);
  return {
    presence: row.presence === "online" && ago > IDLE_AFTER_MS ? "unavailable" : row.presence,
    last_active_ago: ago,
    currently_active: row.presence === "online" && ago < ACTIVE_WINDOW_MS,
    ...(row.status_msg !== undefined ? { status_msg: row.status_msg } : {}),
  };
}

/**
 * What a `/sync` with `set_presence` does: mark the user `online` or `unavailable`; `offline`
 * changes nothing ("the client is not marked as being online"). Syncing is activity, and "any
 * activity … will cause the server to automatically set their presence to online" ("Idle
 * timeout"). Only real changes take a stream position, so syncs do not wake each other.
 */
export async function touchPresence(hs: Services, userId: string, setPresence: string): Promise<void> {
  if (setPresence === "offline") return;
  const now = hs.clock();
  const wanted = setPresence === "unavailable" ? "unavailable" : "online";
  // Most syncs change nothing: check in a read before taking a write transaction.
  const current = await hs.store.read((tx) => tx.get<PresenceRow>("presence", userId), { tables: ["presence"] });
  if (current && current.presence === wanted && now - current.lastActiveTs <= TOUCH_INTERVAL_MS) return;
  let destinations: string[] = [];
  const pos = await hs.store.write(async (tx) => {
    const row = await tx.get<PresenceRow>("presence", userId);
    // Back from idle (shown as unavailable) also counts as a change clients should hear about.
    if (row && row.presence === wanted && now - row.lastActiveTs <= IDLE_AFTER_MS) {
      tx.put("presence", userId, { ...row, lastActiveTs: now });
      return 0;
    }
    const streamPos = await nextStreamPos(tx);
    const next = { ...row, presence: wanted, lastActiveTs: now, streamPos } satisfies PresenceRow;
    tx.put("presence", userId, next);
    destinations = await queuePresence(hs, tx, userId, next);
    return streamPos;
  }, { tables: PRESENCE_WRITE_TABLES });
  if (pos > 0) hs.notifier.notify(pos);
  for (const d of destinations) hs.federationSender?.wake(d);
}

/**
 * Queues a local user's new presence for the servers sharing a room with them ("Presence",
 * server-server API), in the transaction that stores it; returns them (wake the sender after the commit).
 */
/** A presence write: the row, its stream position, and its EDU queued for the servers sharing a room. */
const PRESENCE_WRITE_TABLES = ["presence", "settings", "memberships", "room_state", "events", "federation_queue"] as const;

async function queuePresence(hs: Services, tx: WriteTx, userId: string, row: PresenceRow): Promise<string[]> {
  const sender = hs.federationSender;
  if (!sender) return [];
  const destinations = sender.targets(await serversSharingRoomsWith(tx, userId, hs.serverName));
  await queueEdu(tx, destinations, { edu_type: "m.presence", content: { push: [{ user_id: userId, ...presenceContent(row, hs.clock()) }] } });
  return destinations;
}

/** Whether two users share a joined room. */
async function shareRoom(tx: ReadTx, a: string, b: string): Promise<boolean> {
  for (const roomId of await joinedRooms(tx, a)) {
    if ((await membershipOf(tx, roomId, b)) === "join") return true;
  }
  return false;
}

/** `GET /_matrix/client/v3/presence/{userId}/status` */
export async function getPresence(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const userId = p.userId!;
  const { account, row, allowed } = await ctx.hs.store.read(async (tx) => ({
    account: await tx.get("accounts", userId),
    row: await tx.get<PresenceRow>("presence", userId),
    allowed: userId === me.userId || (await shareRoom(tx, me.userId, userId)),
  }));
  if (!account) throw notFound("Unknown user");
  if (!allowed) throw forbidden("You are not allowed to see this user's presence");
  if (!row) return { presence: "offline" };
  return presenceContent(row, ctx.hs.clock());
}

/** `PUT /_matrix/client/v3/presence/{userId}/status` */
export async function putPresence(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  if (p.userId !== me.userId) throw forbidden("Cannot set presence of other users");
  const body = await ctx.json();
  if (typeof body.presence !== "string" || !STATES.has(body.presence)) throw new MatrixError(400, "M_INVALID_PARAM", "presence must be online, offline or unavailable");
  if (body.status_msg !== undefined && body.status_msg !== null && typeof body.status_msg !== "string") throw new MatrixError(400, "M_INVALID_PARAM", "status_msg must be a string");
  limitUser(ctx, me, "rc_presence.per_user");
  const now = ctx.hs.clock();
  let destinations: string[] = [];
  const pos = await ctx.hs.store.write(async (tx) => {
    const streamPos = await nextStreamPos(tx);
    const row: PresenceRow = { presence: body.presence as string, lastActiveTs: now, streamPos };
    if (typeof body.status_msg === "string") row.status_msg = body.status_msg;
    tx.put("presence", me.userId, row);
    destinations = await queuePresence(ctx.hs, tx, me.userId, row);
    return streamPos;
  }, { tables: PRESENCE_WRITE_TABLES });
  ctx.hs.notifier.notify(pos);
  for (const d of destinations) ctx.hs.federationSender?.wake(d);
  return {};
}
