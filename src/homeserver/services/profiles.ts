/**
 * Profiles ("Profiles" in the Client-Server API, `profile.yaml`), including custom fields (v1.16).
 * `displayname` and `avatar_url` live on the account record as before; other fields in its
 * `profileFields`. A change of name or avatar is also sent as a new `m.room.member` event into
 * every room the user has joined ("Events on Change of Profile Information"). The client API
 * (client/profile.ts) and the federation's `/query/profile` read through here.
 */
import type { Services } from "../context.ts";
import { MatrixError, notFound } from "../errors.ts";
import { currentStateContent } from "../roomserver/state.ts";
import { joinedRooms } from "../roomserver/membership.ts";
import { sendEvent } from "../roomserver/send.ts";
import { queryUserIfUnknown } from "../appservice/queries.ts";
import type { AccountRecord } from "./accounts.ts";

/** "the total profile MUST be under 64 KiB". */
const MAX_PROFILE_BYTES = 64 * 1024;

export const utf8Length = (s: string): number => new TextEncoder().encode(s).length;

/** The whole profile of an account as `GET /profile/{userId}` serves it. */
function profileOf(account: AccountRecord): Record<string, unknown> {
  const out: Record<string, unknown> = { ...(account.profileFields ?? {}) };
  if (account.displayname !== undefined) out.displayname = account.displayname;
  if (account.avatar_url !== undefined) out.avatar_url = account.avatar_url;
  return out;
}

/**
 * The whole profile of a local user, or undefined when there is no such (active) account. An
 * unknown user in an application service's namespace may be created on demand by the service.
 * The federation's `/query/profile` serves this too.
 */
export async function localProfile(hs: Services, userId: string): Promise<Record<string, unknown> | undefined> {
  const read = (): Promise<AccountRecord | undefined> => hs.store.read((tx) => tx.get<AccountRecord>("accounts", userId));
  const account = (await read()) ?? ((await queryUserIfUnknown(hs, userId)) ? await read() : undefined);
  return account ? profileOf(account) : undefined;
}

/** Applies a change to the account (`M_PROFILE_TOO_LARGE` past 64 KiB), then sends a name or avatar change into the joined rooms. */
export async function changeProfile(hs: Services, userId: string, keyName: string, value: unknown, remove: boolean): Promise<void> {
  const rooms = await hs.store.write(async (tx) => {
    const account = await tx.get<AccountRecord>("accounts", userId);
    if (!account) throw notFound("Profile not found");
    const updated: AccountRecord = { ...account, profileFields: { ...(account.profileFields ?? {}) } };
    if (keyName === "displayname" || keyName === "avatar_url") {
      if (remove) delete updated[keyName];
      else updated[keyName] = value as string;
    } else if (remove) {
      delete updated.profileFields![keyName];
    } else {
      updated.profileFields![keyName] = value;
    }
    if (Object.keys(updated.profileFields!).length === 0) delete updated.profileFields;
    if (utf8Length(JSON.stringify(profileOf(updated))) >= MAX_PROFILE_BYTES) {
      throw new MatrixError(400, "M_PROFILE_TOO_LARGE", "The profile would exceed 64 KiB");
    }
    tx.put("accounts", userId, updated);
    if (keyName !== "displayname" && keyName !== "avatar_url") return [];
    return joinedRooms(tx, userId);
  });
  if (keyName === "displayname" || keyName === "avatar_url") await propagate(hs, userId, keyName, remove ? undefined : (value as string), rooms);
}

/** Sends the updated member event into each joined room; a room that refuses is skipped. */
async function propagate(hs: Services, userId: string, field: "displayname" | "avatar_url", value: string | undefined, rooms: string[]): Promise<void> {
  for (const roomId of rooms) {
    try {
      const content = await hs.store.read((tx) => currentStateContent(tx, roomId, "m.room.member", userId));
      if (!content || content.membership !== "join") continue;
      if (content[field] === value) continue;
      const next: Record<string, unknown> = { ...content };
      if (value === undefined) delete next[field];
      else next[field] = value;
      await sendEvent(hs, { roomId, sender: userId, type: "m.room.member", stateKey: userId, content: next });
    } catch (err) {
      // e.g. the power levels forbid member changes: the profile itself has changed regardless.
      hs.logger.warn("profile update not sent to room", roomId, err);
    }
  }
}
