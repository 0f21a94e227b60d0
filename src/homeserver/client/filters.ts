/** The filter endpoints ("Filtering", `filter.yaml`); filters themselves are services/filters.ts's. */
import type { RequestContext } from "../context.ts";
import { forbidden, notFound } from "../errors.ts";
import { storeFilter, storedFilter, validateFilter } from "../services/filters.ts";

/** `POST /_matrix/client/v3/user/{userId}/filter` */
export async function postFilter(ctx: RequestContext, params: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  if (params.userId !== me.userId) throw forbidden("Cannot create filters for other users");
  const filter = validateFilter(await ctx.json());
  const filterId = await storeFilter(ctx.hs, me.userId, filter);
  return { filter_id: filterId };
}

/** `GET /_matrix/client/v3/user/{userId}/filter/{filterId}` */
export async function getFilter(ctx: RequestContext, params: Record<string, string>): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  if (params.userId !== me.userId) throw forbidden("Cannot read filters of other users");
  const filter = await storedFilter(ctx.hs, me.userId, params.filterId!);
  if (!filter) throw notFound("No such filter");
  return filter as Record<string, unknown>;
}
