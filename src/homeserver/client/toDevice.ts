/**
 * Send-to-device messaging (client-server API "Send-to-Device messaging"): the request, parsed.
 * services/e2ee.ts queues the messages and hands them out in `/sync`.
 */
import type { RequestContext } from "../context.ts";
import { badJson } from "../errors.ts";
import { isObject } from "../validate.ts";
import { sendToDevice } from "../services/e2ee.ts";

/** `PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}` */
export async function putSendToDevice(ctx: RequestContext, params: Record<string, string>): Promise<Record<string, unknown>> {
  const { userId: sender, deviceId: senderDevice } = await ctx.requireAuth();
  const eventType = params.eventType!;
  const txnId = params.txnId!;
  const body = await ctx.json();
  if (!isObject(body.messages)) throw badJson("messages must be an object");
  const messages: [string, string, Record<string, unknown>][] = [];
  for (const [userId, devices] of Object.entries(body.messages)) {
    if (!isObject(devices)) throw badJson("messages values must be objects");
    for (const [deviceId, content] of Object.entries(devices)) {
      if (!isObject(content)) throw badJson("message content must be an object");
      messages.push([userId, deviceId, content]);
    }
  }
  await sendToDevice(ctx.hs, sender, senderDevice, eventType, txnId, messages);
  return {};
}
