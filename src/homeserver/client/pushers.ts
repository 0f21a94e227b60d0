/**
 * Pushers ("Push Notifications", `pusher.yaml`): set and listed here, stored by services/pushers.ts;
 * push/sender.ts calls the push gateways of `http` pushers (where the homeserver was given a
 * `fetch`, i.e. in Node).
 */
import type { RequestContext } from "../context.ts";
import { MatrixError, badJson, missingParam } from "../errors.ts";
import type { PusherRow } from "../services/pushers.ts";
import { deletePusher, listPushers, pusherObject, setPusher } from "../services/pushers.ts";

/** `GET /_matrix/client/v3/pushers` */
export async function getPushers(ctx: RequestContext): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  return { pushers: (await listPushers(ctx.hs, me.userId)).map(pusherObject) };
}

/** `POST /_matrix/client/v3/pushers/set` */
export async function postPushersSet(ctx: RequestContext): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const body = await ctx.json();
  const missing = ["kind", "app_id", "pushkey"].filter((k) => !(k in body));
  if (typeof body.app_id !== "string" || typeof body.pushkey !== "string") {
    if (missing.length) throw missingParam(`Missing parameters: ${missing.join(", ")}`);
    throw badJson("app_id and pushkey must be strings");
  }
  if (body.app_id.length > 64) throw new MatrixError(400, "M_INVALID_PARAM", "app_id is too long");
  if (body.pushkey.length > 512) throw new MatrixError(400, "M_INVALID_PARAM", "pushkey is too long");
  if (body.kind === null) {
    await deletePusher(ctx.hs, me.userId, body.app_id, body.pushkey);
    return {};
  }
  if (body.kind === undefined) throw missingParam("Missing parameters: kind");
  if (typeof body.kind !== "string") throw badJson("kind must be a string or null");
  const need = ["app_display_name", "device_display_name", "lang", "data"].filter((f) => body[f] === undefined);
  if (need.length) throw missingParam(`Missing parameters: ${need.join(", ")}`);
  for (const f of ["app_display_name", "device_display_name", "lang"]) if (typeof body[f] !== "string") throw badJson(`${f} must be a string`);
  const data = body.data;
  if (data === null || typeof data !== "object" || Array.isArray(data)) throw badJson("data must be an object");
  const d = data as Record<string, unknown>;
  if (body.kind === "http") {
    // pusher.yaml: an http pusher's data MUST contain `url`, an https URL path /_matrix/push/v1/notify.
    if (typeof d.url !== "string") throw missingParam("data.url is required for http pushers");
    let url: URL;
    try {
      url = new URL(d.url);
    } catch {
      throw new MatrixError(400, "M_INVALID_PARAM", "data.url is not a URL");
    }
    if (url.pathname !== "/_matrix/push/v1/notify") throw new MatrixError(400, "M_INVALID_PARAM", "data.url must point at /_matrix/push/v1/notify");
    if (url.protocol !== "https:" && url.protocol !== "http:") throw new MatrixError(400, "M_INVALID_PARAM", "data.url must be an http(s) URL");
  }
  if (body.profile_tag !== undefined && typeof body.profile_tag !== "string") throw badJson("profile_tag must be a string");
  const row: PusherRow = {
    app_id: body.app_id,
    pushkey: body.pushkey,
    kind: body.kind,
    app_display_name: body.app_display_name as string,
    device_display_name: body.device_display_name as string,
    lang: body.lang as string,
    data: d,
    ...(typeof body.profile_tag === "string" ? { profile_tag: body.profile_tag } : {}),
    deviceId: me.deviceId,
  };
  await setPusher(ctx.hs, me.userId, row, body.append === true);
  return {};
}
