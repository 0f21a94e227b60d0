/**
 * Pushers ("Push Notifications", `pusher.yaml`): the `pushers` table and its queue. Set and listed
 * by client/pushers.ts, used by push/sender.ts, removed with devices and on password changes.
 * key pushers = userId|appId|pushkey → PusherRow
 */
import type { Services } from "../context.ts";
import { SEP, key, prefix } from "../../storage/store.ts";
import type { WriteTx } from "../../storage/store.ts";

/** A stored pusher: the spec's `Pusher` object plus what the server keeps about it. */
export interface PusherRow extends PusherObject {
  /** The device whose access token set the pusher (a password change keeps only its pushers). */
  deviceId?: string;
  /** When the pushkey was last set, in ms (the gateway's `pushkey_ts` is in seconds). */
  pushkeyTs?: number;
}

/** The spec's `Pusher` object, as `GET /pushers` serves it. */
export interface PusherObject {
  app_id: string;
  pushkey: string;
  kind: string;
  app_display_name: string;
  device_display_name: string;
  lang: string;
  data: Record<string, unknown>;
  profile_tag?: string;
}

/** What `GET /pushers` shows of a stored pusher. */
export function pusherObject(row: PusherRow): PusherObject {
  const { deviceId: _d, pushkeyTs: _t, ...pusher } = row;
  return pusher;
}

/** Deletes a pusher and whatever is still queued for it. */
export function deletePusherTx(tx: WriteTx, userId: string, appId: string, pushkey: string): void {
  tx.delete("pushers", key(userId, appId, pushkey));
  // key push_queue = userId|appId|pushkey|pos(streamPos) (push/sender.ts)
  tx.deleteRange("push_queue", { prefix: prefix(userId, appId, pushkey) });
}

/**
 * Deletes a user's pushers except those set by `keepDeviceId` (a password change keeps only the
 * pushers of the access token that changed it; deactivation keeps none).
 */
export async function deletePushersExcept(tx: WriteTx, userId: string, keepDeviceId?: string): Promise<void> {
  for (const r of await tx.range<PusherRow>("pushers", { prefix: prefix(userId) })) {
    if (keepDeviceId === undefined || r.value.deviceId !== keepDeviceId) deletePusherTx(tx, userId, r.value.app_id, r.value.pushkey);
  }
}

/** Deletes the pushers a device set (the device was deleted or logged out). */
export async function deleteDevicePushers(tx: WriteTx, userId: string, deviceId: string): Promise<void> {
  for (const r of await tx.range<PusherRow>("pushers", { prefix: prefix(userId) })) {
    if (r.value.deviceId === deviceId) deletePusherTx(tx, userId, r.value.app_id, r.value.pushkey);
  }
}

/** A user's pushers. */
export async function listPushers(hs: Services, userId: string): Promise<PusherRow[]> {
  return (await hs.store.read((tx) => tx.range<PusherRow>("pushers", { prefix: prefix(userId) }))).map((r) => r.value);
}

/** Deletes one pusher (`kind: null`). */
export async function deletePusher(hs: Services, userId: string, appId: string, pushkey: string): Promise<void> {
  await hs.store.write(async (tx) => deletePusherTx(tx, userId, appId, pushkey));
}

/**
 * Sets a pusher. Without `append`, "the homeserver must remove any other pushers with the same App
 * ID and pushkey for different users"; an update keeps the pushkey's `pushkeyTs`.
 */
export async function setPusher(hs: Services, userId: string, row: PusherRow, append: boolean): Promise<void> {
  const k = key(userId, row.app_id, row.pushkey);
  const now = hs.clock();
  await hs.store.write(async (tx) => {
    if (!append) {
      // "Otherwise, the homeserver must remove any other pushers with the same App ID and pushkey
      // for different users."
      const all = await tx.range<PusherRow>("pushers");
      for (const r of all) {
        if (r.value.app_id === row.app_id && r.value.pushkey === row.pushkey && !r.key.startsWith(prefix(userId))) {
          deletePusherTx(tx, r.key.slice(0, r.key.indexOf(SEP)), r.value.app_id, r.value.pushkey);
        }
      }
    }
    const before = await tx.get<PusherRow>("pushers", k);
    // pushkey_ts: when the pushkey was last updated; an update of other fields keeps it.
    tx.put("pushers", k, { ...row, pushkeyTs: before?.pushkeyTs ?? now });
  });
}
