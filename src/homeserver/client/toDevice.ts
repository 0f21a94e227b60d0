/**
 * Send-to-device messaging (client-server API "Send-to-Device messaging"). Messages are queued in
 * to_device (key userId|deviceId|pos(streamPos) → { sender, type, content }) and handed out by
 * `e2eeSyncSection` in client/keys.ts.
 */
import type { RequestContext } from "../context.ts";
import { nextStreamPos } from "../context.ts";
import { badJson } from "../errors.ts";
import { isObject } from "../validate.ts";
import { key, pos, prefix } from "../../storage/store.ts";
import { serverOf } from "../rooms/ids.ts";
import { queueEdu } from "../federation/sender.ts";
import { encodeBase64Url } from "../crypto/base64.ts";

/**
 * key txn_ids|userId|deviceId|"sendToDevice"|eventType|txnId → {} — transaction IDs are scoped to
 * the device and the endpoint ("Transaction identifiers").
 */
const txnKey = (userId: string, deviceId: string, eventType: string, txnId: string): string =>
  key(userId, deviceId, "sendToDevice", eventType, txnId);

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
  const local = ctx.hs.serverName;
  // Messages for remote users: one m.direct_to_device EDU per server ("Send-to-device messaging",
  // server-server API), queued in the transaction that records the client's transaction ID.
  const outbox = ctx.hs.federationSender;
  const remote = new Map<string, Record<string, Record<string, Record<string, unknown>>>>();
  for (const [userId, deviceId, content] of messages) {
    const server = serverOf(userId);
    if (server === local) continue;
    let byUser = remote.get(server);
    if (!byUser) remote.set(server, (byUser = {}));
    (byUser[userId] ??= {})[deviceId] = content;
  }
  const destinations = outbox ? outbox.targets(remote.keys()) : [];
  if (remote.size > destinations.length) ctx.hs.logger.warn("sendToDevice: no federation with", [...remote.keys()].filter((s) => !destinations.includes(s)));

  const last = await ctx.hs.store.write(async (tx) => {
    const tk = txnKey(sender, senderDevice, eventType, txnId);
    // A repeated transaction is a no-op ("the server should … return the same response").
    if ((await tx.get("txn_ids", tk)) !== undefined) return 0;
    tx.put("txn_ids", tk, {});
    for (const server of destinations) {
      // "Unique ID for the message, used for idempotence … of maximum length 32 codepoints."
      const messageId = encodeBase64Url(ctx.hs.random(16));
      await queueEdu(tx, [server], { edu_type: "m.direct_to_device", content: { sender, type: eventType, message_id: messageId, messages: remote.get(server)! } });
    }
    let last = 0;
    for (const [userId, deviceId, content] of messages) {
      if (serverOf(userId) !== local) continue;
      let targets: string[];
      if (deviceId === "*") {
        // "*" means every device of the user.
        const p = prefix(userId);
        targets = (await tx.range("devices", { prefix: p })).map((r) => r.key.slice(p.length));
      } else {
        // Unknown devices are ignored: the message could never be collected.
        targets = (await tx.get("devices", key(userId, deviceId))) !== undefined ? [deviceId] : [];
      }
      for (const target of targets) {
        last = await nextStreamPos(tx);
        tx.put("to_device", key(userId, target, pos(last)), { sender, type: eventType, content });
      }
    }
    return last;
  }, { tables: ["txn_ids", "settings", "federation_queue", "devices", "to_device"] });
  if (last > 0) ctx.hs.notifier.notify(last);
  for (const d of destinations) outbox?.wake(d);
  return {};
}
