/**
 * Device activity: `last_seen_ts` / `last_seen_ip` (device_management.yaml) and whois connections
 * follow what a device does, not only its login. At most one write per device per interval, so a
 * busy client (a `/sync` loop) costs no more than an occasional small transaction.
 */
import type { Services } from "../context.ts";
import { key } from "../../storage/store.ts";

/** How stale a device's last-seen record may get before a request refreshes it. */
export const ACTIVITY_INTERVAL_MS = 5 * 60_000;

// key = userId|deviceId → when this process last wrote it
const lastWritten = new WeakMap<Services, Map<string, number>>();

/** Records that a device made an authenticated request now (from `ip` with `userAgent`, when known). */
export async function recordDeviceActivity(hs: Services, userId: string, deviceId: string, ip?: string, userAgent?: string): Promise<void> {
  let written = lastWritten.get(hs);
  if (!written) lastWritten.set(hs, (written = new Map()));
  const k = key(userId, deviceId);
  const now = hs.clock();
  const last = written.get(k);
  if (last !== undefined && now - last < ACTIVITY_INTERVAL_MS) return;
  written.set(k, now);
  await hs.store.write(async (tx) => {
    const device = await tx.get<Record<string, unknown>>("devices", k);
    if (!device) return;
    tx.put("devices", k, { ...device, lastSeenTs: now, ...(ip ? { lastSeenIp: ip } : {}), ...(userAgent ? { lastSeenUserAgent: userAgent } : {}) });
  }, { tables: ["devices"] });
}
