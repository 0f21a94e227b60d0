/**
 * Devices and the access tokens bound to them (client-server API "Device management",
 * "Relationship between access tokens and devices").
 */
import type { RequestContext } from "../context.ts";
import { badJson, notFound, MatrixError } from "../errors.ts";
import { identityFlows, requireUserInteractiveAuth, uiaRequestBody } from "../services/uia.ts";
import type { DeviceRecord } from "../services/devices.ts";
import { MAX_DEVICE_DISPLAY_NAME_LENGTH, deleteDevicesAndNotify, getDeviceRecord, listDevices, renameDevice } from "../services/devices.ts";

function formatDevice(d: DeviceRecord): Record<string, unknown> {
  const out: Record<string, unknown> = { device_id: d.deviceId };
  if (d.displayName !== undefined) out.display_name = d.displayName;
  if (d.lastSeenIp !== undefined) out.last_seen_ip = d.lastSeenIp;
  if (d.lastSeenTs !== undefined) out.last_seen_ts = d.lastSeenTs;
  return out;
}

/** `GET /_matrix/client/v3/devices` */
export async function getDevices(ctx: RequestContext): Promise<Record<string, unknown>> {
  const { userId } = await ctx.requireAuth();
  return { devices: (await listDevices(ctx.hs, userId)).map(formatDevice) };
}

/** `GET /_matrix/client/v3/devices/{deviceId}` */
export async function getDevice(ctx: RequestContext, params: Record<string, string>): Promise<Record<string, unknown>> {
  const { userId } = await ctx.requireAuth();
  const device = await getDeviceRecord(ctx.hs, userId, params.deviceId!);
  if (!device) throw notFound("Device not found");
  return formatDevice(device);
}

/** `PUT /_matrix/client/v3/devices/{deviceId}` */
export async function putDevice(ctx: RequestContext, params: Record<string, string>): Promise<Record<string, unknown>> {
  const { userId } = await ctx.requireAuth();
  const body = await ctx.json();
  if (body.display_name !== undefined && typeof body.display_name !== "string") throw badJson("display_name must be a string");
  // Synapse's MAX_DEVICE_DISPLAY_NAME_LEN, with its answer (400 M_TOO_LARGE).
  if (typeof body.display_name === "string" && [...body.display_name].length > MAX_DEVICE_DISPLAY_NAME_LENGTH) {
    throw new MatrixError(400, "M_TOO_LARGE", `Device display name is too long (max ${MAX_DEVICE_DISPLAY_NAME_LENGTH})`);
  }
  const displayName = body.display_name as string | undefined;
  await renameDevice(ctx.hs, userId, params.deviceId!, displayName);
  return {};
}

/** `DELETE /_matrix/client/v3/devices/{deviceId}` */
export async function deleteDevice(ctx: RequestContext, params: Record<string, string>): Promise<Record<string, unknown>> {
  const { userId } = await ctx.requireAuth();
  const body = await ctx.json({ allowEmpty: true });
  // Deleting a device that does not exist succeeds (the spec lists no 404 here; Synapse agrees).
  await requireUserInteractiveAuth(ctx, body, { flows: await identityFlows(ctx.hs, userId), userId });
  await deleteDevicesAndNotify(ctx.hs, userId, [params.deviceId!]);
  return {};
}

/** `POST /_matrix/client/v3/delete_devices` */
export async function postDeleteDevices(ctx: RequestContext): Promise<Record<string, unknown>> {
  const { userId } = await ctx.requireAuth();
  const body = uiaRequestBody(ctx, await ctx.json());
  const ids = body.devices;
  if (!Array.isArray(ids)) throw new MatrixError(400, "M_MISSING_PARAM", "Missing devices");
  if (!ids.every((d): d is string => typeof d === "string")) throw badJson("devices must be a list of strings");
  await requireUserInteractiveAuth(ctx, body, { flows: await identityFlows(ctx.hs, userId), userId });
  await deleteDevicesAndNotify(ctx.hs, userId, ids);
  return {};
}
