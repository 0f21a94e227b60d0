/**
 * Client-Server "Relationships": `/relations` (with `recurse`) and the thread list `/threads`.
 * Tokens are the `s<N>` stream tokens of messages.ts, applied to the relating events' positions.
 */
import type { RequestContext } from "../context.ts";
import { MatrixError } from "../errors.ts";
import type { ReadTx } from "../../storage/store.ts";
import { prefix } from "../../storage/store.ts";
import type { StoredEvent } from "../events/types.ts";
import { canSeeEvent, requireVisibleEvent } from "../roomserver/visibility.ts";
import { EventServer, parseRelationKey } from "../roomserver/serve.ts";
import type { RelationRow } from "../roomserver/serve.ts";
import { getEvent, requireRoom } from "../roomserver/state.ts";
import { readableUpTo } from "../roomserver/access.ts";
import { makeToken, parseToken } from "../roomserver/tokens.ts";
import { limitParam } from "../validate.ts";

/** How deep `recurse=true` follows relations of relations (relations.yaml suggests at least 3). */
const MAX_RECURSION = 3;

interface Related {
  eventId: string;
  relType: string;
  row: RelationRow;
}

async function childrenOf(tx: ReadTx, eventId: string, relType?: string): Promise<Related[]> {
  const rows = await tx.range<RelationRow>("relations", { prefix: relType ? prefix(eventId, relType) : prefix(eventId) });
  return rows.map((r) => {
    const k = parseRelationKey(r.key);
    return { eventId: k.eventId, relType: k.relType, row: r.value };
  });
}

/**
 * `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}`, also with `/{relType}` and
 * `/{relType}/{eventType}`.
 */
export async function getRelations(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const dir = ctx.query("dir") ?? "b";
  if (dir !== "b" && dir !== "f") throw new MatrixError(400, "M_INVALID_PARAM", "dir must be b or f");
  const limit = limitParam(ctx, 50);
  const fromRaw = ctx.query("from");
  const toRaw = ctx.query("to");
  const from = fromRaw !== undefined ? parseToken(fromRaw, "from") : undefined;
  const to = toRaw !== undefined ? parseToken(toRaw, "to") : undefined;
  const recurseRaw = ctx.query("recurse");
  if (recurseRaw !== undefined && recurseRaw !== "true" && recurseRaw !== "false") throw new MatrixError(400, "M_INVALID_PARAM", "recurse must be true or false");
  const recurse = recurseRaw === "true";
  const relType = p.relType || undefined;
  const eventType = p.eventType || undefined;
  return ctx.hs.store.read(async (tx) => {
    await requireRoom(tx, p.roomId!);
    await requireVisibleEvent(tx, me.userId, p.eventId!, p.roomId!);
    // Collect (recursively, if asked) and order by stream position.
    const found: Related[] = [];
    let frontier = [p.eventId!];
    let depth = 0;
    for (; depth < (recurse ? MAX_RECURSION : 1) && frontier.length > 0; depth++) {
      const next: string[] = [];
      for (const id of frontier) {
        for (const c of await childrenOf(tx, id, recurse ? undefined : relType)) {
          next.push(c.eventId);
          if (!relType || c.relType === relType) found.push(c);
        }
      }
      frontier = next;
    }
    found.sort((a, b) => (dir === "b" ? b.row.streamPos - a.row.streamPos : a.row.streamPos - b.row.streamPos));
    const inWindow = found.filter(({ row }) => {
      const pos = row.streamPos;
      if (dir === "b") return (from === undefined || pos <= from) && (to === undefined || pos > to);
      return (from === undefined || pos > from) && (to === undefined || pos <= to);
    });
    const chunk: StoredEvent[] = [];
    let last: number | undefined;
    let more = false;
    for (const r of inWindow) {
      if (chunk.length >= limit) {
        more = true;
        break;
      }
      last = r.row.streamPos;
      const e = await getEvent(tx, r.eventId);
      if (!e || e.redactedBy || e.roomId !== p.roomId || (eventType && e.pdu.type !== eventType)) continue;
      if (!(await canSeeEvent(tx, me.userId, e))) continue;
      chunk.push(e);
    }
    const out: Record<string, unknown> = { chunk: await new EventServer(tx, me, ctx.hs.clock()).serveAll(chunk) };
    if (more && last !== undefined) out.next_batch = makeToken(dir === "b" ? last - 1 : last);
    if (fromRaw !== undefined) out.prev_batch = fromRaw;
    if (recurse) out.recursion_depth = MAX_RECURSION;
    return out;
  });
}

/** `GET /_matrix/client/v1/rooms/{roomId}/threads` */
export async function getThreads(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const include = ctx.query("include") ?? "all";
  if (include !== "all" && include !== "participated") throw new MatrixError(400, "M_INVALID_PARAM", "include must be all or participated");
  const limit = limitParam(ctx, 50);
  const fromRaw = ctx.query("from");
  const from = fromRaw !== undefined ? parseToken(fromRaw, "from") : Infinity;
  const roomId = p.roomId!;
  return ctx.hs.store.read(async (tx) => {
    const { upTo } = await readableUpTo(tx, roomId, me.userId);
    // Thread roots by their latest activity, newest first (threads_list.yaml).
    const latest = new Map<string, number>();
    const participants = new Map<string, Set<string>>();
    const rows = await tx.range<string>("timeline", { prefix: prefix(roomId) });
    for (const row of rows) {
      const e = await getEvent(tx, row.value);
      if (!e || e.redactedBy || e.streamPos === undefined || e.streamPos > upTo) continue;
      const rel = e.pdu.content["m.relates_to"] as Record<string, unknown> | undefined;
      if (rel?.rel_type !== "m.thread" || typeof rel.event_id !== "string") continue;
      latest.set(rel.event_id, Math.max(latest.get(rel.event_id) ?? 0, e.streamPos));
      let s = participants.get(rel.event_id);
      if (!s) participants.set(rel.event_id, (s = new Set()));
      s.add(e.pdu.sender);
    }
    const roots = [...latest].filter(([, pos]) => pos <= from).sort((a, b) => b[1] - a[1]);
    const chunk: StoredEvent[] = [];
    let next: number | undefined;
    for (const [rootId, pos] of roots) {
      const root = await getEvent(tx, rootId);
      if (!root || root.roomId !== roomId || !(await canSeeEvent(tx, me.userId, root))) continue;
      if (include === "participated" && root.pdu.sender !== me.userId && !participants.get(rootId)?.has(me.userId)) continue;
      if (chunk.length >= limit) {
        next = pos;
        break;
      }
      chunk.push(root);
    }
    const out: Record<string, unknown> = { chunk: await new EventServer(tx, me, ctx.hs.clock()).serveAll(chunk) };
    if (next !== undefined) out.next_batch = makeToken(next);
    return out;
  });
}
