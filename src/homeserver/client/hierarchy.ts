/**
 * Client-Server "Spaces": `GET /_matrix/client/v1/rooms/{roomId}/hierarchy`, a depth-first walk
 * of `m.space.child` state. Rooms this server is in are read from its own state; the others are asked
 * of the servers their `m.space.child` event's `via` names (federation `/hierarchy`, through
 * federation/remoteHierarchy.ts) and filtered for the user. Pagination tokens are `h<offset>`, tied
 * to the `suggested_only`/`max_depth` they were issued for.
 */
import type { RequestContext } from "../context.ts";
import { MatrixError, forbidden } from "../errors.ts";
import { currentState, getRoom, membershipRecord } from "../roomserver/state.ts";
import { limitParam } from "../validate.ts";
import { serverInRoom } from "../federation/access.ts";
import { orderedChildren, remoteHierarchy, spaceChildren } from "../federation/remoteHierarchy.ts";
import type { ChildState, RemoteRoom } from "../federation/remoteHierarchy.ts";
import { canViewSummary, roomSummaryOf } from "../services/directory.ts";

/** One room of the walk: its summary and its ordered children, or why it is left out. */
type Visited = { summary: Record<string, unknown>; children: ChildState[] } | "hidden" | "unknown";

/** `GET /_matrix/client/v1/rooms/{roomId}/hierarchy` */
export async function getHierarchy(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const limit = Math.max(1, limitParam(ctx, 50, 100));
  const suggestedRaw = ctx.query("suggested_only") ?? "false";
  if (suggestedRaw !== "true" && suggestedRaw !== "false") throw new MatrixError(400, "M_INVALID_PARAM", "suggested_only must be true or false");
  const suggestedOnly = suggestedRaw === "true";
  const depthRaw = ctx.query("max_depth");
  if (depthRaw !== undefined && !/^\d+$/.test(depthRaw)) throw new MatrixError(400, "M_INVALID_PARAM", "max_depth must be a non-negative integer");
  const maxDepth = depthRaw === undefined ? Infinity : Number(depthRaw);
  const from = ctx.query("from");
  let offset = 0;
  if (from !== undefined) {
    const m = /^h(\d+)_(true|false)_(\d+|inf)$/.exec(from);
    if (!m) throw new MatrixError(400, "M_INVALID_PARAM", "Malformed from token");
    if (m[2] !== suggestedRaw || m[3] !== (depthRaw ?? "inf")) {
      throw new MatrixError(400, "M_INVALID_PARAM", "suggested_only and max_depth cannot change on paginated requests");
    }
    offset = Number(m[1]);
  }
  const { hs } = ctx;
  const rootId = p.roomId!;
  // Summaries of rooms learned from a remote answer's `children`, and rooms a remote said no one here can reach.
  const learned = new Map<string, RemoteRoom>();
  const unreachable = new Set<string>();

  /** A room this server is in (or any room, without federation), from local state. */
  const local = (roomId: string): Promise<Visited | undefined> =>
    hs.store.read(async (tx) => {
      if (!(await getRoom(tx, roomId))) return hs.federation ? undefined : "unknown";
      if (hs.federation && !(await serverInRoom(tx, roomId, hs.serverName))) return undefined;
      const state = await currentState(tx, roomId);
      if (!(await canViewSummary(tx, roomId, me.userId, state))) return "hidden";
      return { summary: await roomSummaryOf(tx, roomId, state), children: spaceChildren(state, suggestedOnly) };
    });

  /** Whether the user may see a room known only from another server's summary. */
  const remoteVisible = (summary: RemoteRoom): Promise<boolean> =>
    hs.store.read(async (tx) => {
      const jr = summary.join_rule;
      if (summary.world_readable === true || jr === "public" || jr === "knock" || jr === "knock_restricted") return true;
      const mine = (await membershipRecord(tx, summary.room_id, me.userId))?.membership;
      if (mine === "join" || mine === "invite" || mine === "knock") return true;
      if (jr === "restricted" && Array.isArray(summary.allowed_room_ids)) {
        for (const allowed of summary.allowed_room_ids) {
          if (typeof allowed === "string" && (await membershipRecord(tx, allowed, me.userId))?.membership === "join") return true;
        }
      }
      return false;
    });

  /** A room this server is not in, from the servers `via` names (never inside a store transaction). */
  const remote = async (roomId: string, via: string[]): Promise<Visited> => {
    if (unreachable.has(roomId)) return "hidden";
    const answer = await remoteHierarchy(hs, roomId, via, suggestedOnly);
    for (const child of answer?.children ?? []) if (!learned.has(child.room_id)) learned.set(child.room_id, child);
    for (const id of answer?.inaccessible ?? []) unreachable.add(id);
    const room = answer?.room ?? learned.get(roomId);
    if (!room) return "unknown";
    if (!(await remoteVisible(room))) return "hidden";
    const { children_state: childrenState, ...summary } = room;
    return { summary, children: orderedChildren(childrenState ?? [], suggestedOnly) };
  };

  const root = (await local(rootId)) ?? "unknown";
  if (typeof root === "string") throw forbidden("You are not allowed to view this room.");
  const out: Record<string, unknown>[] = [];
  const seen = new Set<string>();
  let index = 0;
  let more = false;
  // Depth-first, children in the spec's order ("Ordering of children within a space").
  const visit = async (roomId: string, depth: number, via: string[], known?: Visited): Promise<void> => {
    if (seen.has(roomId) || more) return;
    seen.add(roomId);
    const room = known ?? (await local(roomId)) ?? (await remote(roomId, via));
    if (typeof room === "string") return;
    if (index >= offset) {
      if (out.length >= limit) {
        more = true;
        return;
      }
      out.push({ ...room.summary, children_state: room.children });
    }
    index++;
    if (depth >= maxDepth) return;
    for (const c of room.children) {
      const childVia = (c.content.via as unknown[]).filter((v): v is string => typeof v === "string");
      await visit(c.state_key, depth + 1, childVia);
    }
  };
  await visit(rootId, 0, [], root);
  const res: Record<string, unknown> = { rooms: out };
  if (more) res.next_batch = `h${offset + out.length}_${suggestedRaw}_${depthRaw ?? "inf"}`;
  return res;
}
