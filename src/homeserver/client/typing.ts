/** Typing notifications ("Typing Notifications" module, `typing.yaml`). */
import type { RequestContext } from "../context.ts";
import { MatrixError, forbidden } from "../errors.ts";
import { setTyping } from "../services/edus.ts";

/** `PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}` */
export async function putTyping(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  if (p.userId !== me.userId) throw forbidden("Cannot set typing state of other users");
  const body = await ctx.json();
  if (typeof body.typing !== "boolean") throw new MatrixError(400, "M_BAD_JSON", "typing must be a boolean");
  if (body.timeout !== undefined && (typeof body.timeout !== "number" || !Number.isInteger(body.timeout) || body.timeout < 0)) {
    throw new MatrixError(400, "M_BAD_JSON", "timeout must be a non-negative integer");
  }
  await setTyping(ctx.hs, p.roomId!, me.userId, body.typing, typeof body.timeout === "number" ? body.timeout : undefined);
  return {};
}
