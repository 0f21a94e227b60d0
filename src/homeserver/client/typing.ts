/** Typing notifications ("Typing Notifications" module, `typing.yaml`). */
import type { RequestContext } from "../context.ts";
import { MatrixError, forbidden } from "../errors.ts";
import { membershipOf, serversInRoom } from "../roomserver/state.ts";
import { typingState } from "../ephemeral/typing.ts";

/** Longest typing timeout honoured; clients refresh well before it. */
const MAX_TYPING_MS = 120_000;

/** `PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}` */
export async function putTyping(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  if (p.userId !== me.userId) throw forbidden("Cannot set typing state of other users");
  const body = await ctx.json();
  if (typeof body.typing !== "boolean") throw new MatrixError(400, "M_BAD_JSON", "typing must be a boolean");
  if (body.timeout !== undefined && (typeof body.timeout !== "number" || !Number.isInteger(body.timeout) || body.timeout < 0)) {
    throw new MatrixError(400, "M_BAD_JSON", "timeout must be a non-negative integer");
  }
  const membership = await ctx.hs.store.read((tx) => membershipOf(tx, p.roomId!, me.userId), { tables: ["memberships"] });
  if (membership !== "join") throw forbidden("You are not joined to this room");
  const timeout = Math.min(typeof body.timeout === "number" ? body.timeout : 30_000, MAX_TYPING_MS);
  typingState(ctx.hs).set(p.roomId!, me.userId, body.typing, timeout);
  // Every notification (renewals too: remote servers time typing out on their own) goes to the
  // other servers in the room ("Typing Notifications", server-server API).
  await ctx.hs.federationSender?.sendEdu((tx) => serversInRoom(tx, p.roomId!), { edu_type: "m.typing", content: { room_id: p.roomId!, user_id: me.userId, typing: body.typing } });
  return {};
}
