/**
 * Pushers ("Push Notifications", `pusher.yaml`). They are stored and listed; this server does not
 * call push gateways (nothing reaches a gateway from a browser-hosted homeserver).
 * key pushers = userId|appId|pushkey → PusherRow
 */
import type { RequestContext } from "../context.ts";
import { MatrixError, badJson, missingParam } from "../errors.ts";
import { key, prefix } from "../../storage/store.ts";

/** A stored pusher (the spec's `Pusher` object). */
export interface PusherRow {
  app_id: string;
  pushkey: string;
  kind: string;
  app_display_name: string;
  device_display_name: string;
  lang: string;
  data: Record<string, unknown>;
  profile_tag?: string;
}

/** `GET /_matrix/client/v3/pushers` */
export async function getPushers(ctx: RequestContext): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const rows = await ctx.hs.store.read((tx) => tx.range<PusherRow>("pushers", { prefix: prefix(me.userId) }));
  return { pushers: rows.map((r) => r.value) };
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
  const k = key(me.userId, body.app_id, body.pushkey);
  if (body.kind === null) {
    await ctx.hs.store.write(async (tx) => tx.delete("pushers", k));
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
  };
  const append = body.append === true;
  await ctx.hs.store.write(async (tx) => {
    if (!append) {
      // "Otherwise, the homeserver must remove any other pushers with the same App ID and pushkey
      // for different users."
      const all = await tx.range<PusherRow>("pushers");
      for (const r of all) {
        if (r.value.app_id === row.app_id && r.value.pushkey === row.pushkey && !r.key.startsWith(prefix(me.userId))) tx.delete("pushers", r.key);
      }
    }
    tx.put("pushers", k, row);
  });
  return {};
}
