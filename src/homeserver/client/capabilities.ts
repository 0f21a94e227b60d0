/** Capabilities negotiation ("Capabilities negotiation", `capabilities.yaml`). */
import type { RequestContext } from "../context.ts";
import { ROOM_VERSIONS } from "../rooms/versions.ts";
import { isServerAdmin } from "../services/accounts.ts";

/** `GET /_matrix/client/v3/capabilities` */
export async function getCapabilities(ctx: RequestContext): Promise<Record<string, unknown>> {
  const me = await ctx.requireAuth();
  const admin = await isServerAdmin(ctx.hs, me.userId);
  const available: Record<string, string> = {};
  for (const [id, rules] of ROOM_VERSIONS) available[id] = rules.stable ? "stable" : "unstable";
  return {
    capabilities: {
      "m.change_password": { enabled: true },
      "m.room_versions": { default: ctx.hs.config.defaultRoomVersion, available },
      // A suspended account may not change its profile ("Account suspension").
      "m.set_displayname": { enabled: me.suspended !== true },
      "m.set_avatar_url": { enabled: me.suspended !== true },
      // No identity server and no third-party identifiers here.
      "m.3pid_changes": { enabled: false },
      "m.get_login_token": { enabled: true },
      // Custom profile fields (v1.16): every field may be set.
      "m.profile_fields": { enabled: true },
      // Server admins may lock and suspend accounts (admin/lock, admin/suspend); for everyone else
      // the capability "should be omitted altogether".
      ...(admin ? { "m.account_moderation": { suspend: true, lock: true } } : {}),
    },
  };
}
