/** Support discovery (client-server API "Server contact and support information", support.yaml). */
import type { RequestContext } from "../context.ts";
import { notFound } from "../errors.ts";

/** `GET /.well-known/matrix/support` */
export async function getWellKnownSupport(ctx: RequestContext): Promise<Record<string, unknown>> {
  const support = ctx.hs.config.support;
  // "404: No server support information available."
  if (!support || (support.contacts === undefined && support.support_page === undefined)) throw notFound("No support information configured");
  const out: Record<string, unknown> = {};
  if (support.contacts !== undefined) out.contacts = support.contacts;
  if (support.support_page !== undefined) out.support_page = support.support_page;
  return out;
}
