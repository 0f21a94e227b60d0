/**
 * Client-Server "Server Side Search": `POST /search`. Parsing the query and running it are
 * services/search.ts's; this hands the job to the read worker where the runner has one.
 */
import type { RequestContext } from "../context.ts";
import { CORS_HEADERS } from "../http.ts";
import type { HandlerResult } from "../router.ts";
import type { SearchJob } from "../services/search.ts";
import { parseSearch, runSearch } from "../services/search.ts";

/** `POST /_matrix/client/v3/search` */
export async function postSearch(ctx: RequestContext): Promise<HandlerResult> {
  const me = await ctx.requireAuth();
  const query = parseSearch(await ctx.json(), ctx.query("next_batch"));
  if (!query) return { search_categories: {} };
  const job: SearchJob = { viewer: { userId: me.userId, deviceId: me.deviceId }, now: ctx.hs.clock(), query };
  // Where a worker thread with its own read connection exists (the Node runner), the search runs
  // there: a long search on this thread would hold up every other request (issue 12).
  if (ctx.hs.readWorker) {
    return new Response(await ctx.hs.readWorker.search(job), { status: 200, headers: { "Content-Type": "application/json", ...CORS_HEADERS } });
  }
  return runSearch(ctx.hs, job);
}
