/**
 * Acceptance for guest access (issue 11, item 3), with `npm run serve` as a child process and
 * matrix-js-sdk as the client: with `allow_guest_access: true` a guest registers, syncs, peeks into a
 * world-readable room, is refused where the spec refuses guests, joins a `can_join` room and talks,
 * and upgrades to a full account that keeps its user ID and rooms.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, MatrixError } from "matrix-js-sdk";
import type { MatrixClient, Room } from "matrix-js-sdk";
import { startServe } from "./serve.ts";
import type { ServedHomeserver } from "./serve.ts";
import { call, login, register } from "./http.ts";
import type { Session } from "./http.ts";
import { startClientSynced } from "./jssdk.ts";

/** Polls `check` until it returns a value other than undefined/false; fails after `ms`. */
async function until<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The Matrix error a rejected js-sdk call carried, as `[status, errcode]`. */
async function refusal(p: Promise<unknown>): Promise<[number | undefined, string | undefined]> {
  try {
    await p;
  } catch (err) {
    if (err instanceof MatrixError) return [err.httpStatus, err.errcode];
    throw err;
  }
  throw new Error("the call succeeded");
}

const bodiesOf = (room: Room): unknown[] => room.getLiveTimeline().getEvents().map((e) => e.getContent()["body"]);

let hs: ServedHomeserver;
let configDir: string;
let alice: Session;
let lobby: string;
let membersOnly: string;
const clients: MatrixClient[] = [];

beforeAll(async () => {
  configDir = await mkdtemp(join(tmpdir(), "hyphae-guests-"));
  const configFile = join(configDir, "hyphae.json");
  await writeFile(configFile, JSON.stringify({ allow_guest_access: true }));
  hs = await startServe({ args: ["--config", configFile] });
  alice = await register(hs.url, "alice");
  const create = async (body: Record<string, unknown>): Promise<string> => {
    const r = await call(hs.url, "POST", "/_matrix/client/v3/createRoom", body, alice.access_token);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body["room_id"] as string;
  };
  lobby = await create({
    preset: "public_chat",
    name: "Lobby",
    initial_state: [
      { type: "m.room.history_visibility", content: { history_visibility: "world_readable" } },
      { type: "m.room.guest_access", content: { guest_access: "can_join" } },
    ],
  });
  // public_chat: guest_access forbidden, history shared.
  membersOnly = await create({ preset: "public_chat", name: "Members only" });
  for (const [roomId, body] of [[lobby, "welcome, readers"], [membersOnly, "members only"]]) {
    const r = await call(hs.url, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId!)}/send/m.room.message/${roomId === lobby ? 1 : 2}`, { msgtype: "m.text", body }, alice.access_token);
    expect(r.status).toBe(200);
  }
}, 120_000);

afterAll(async () => {
  for (const c of clients) c.stopClient();
  await hs?.stop();
  if (configDir) await rm(configDir, { recursive: true, force: true });
});

describe("guest access through npm run serve and matrix-js-sdk", () => {
  let guest: MatrixClient;
  let guestToken: string;
  let guestUserId: string;

  it("registers a guest, which syncs as a guest", async () => {
    const anonymous = createClient({ baseUrl: hs.url });
    const creds = await anonymous.registerGuest({ body: { initial_device_display_name: "guest browser" } });
    expect(creds.user_id).toMatch(/^@[a-z0-9]+:/);
    expect(creds.access_token).toEqual(expect.any(String));
    guestToken = creds.access_token!;
    guestUserId = creds.user_id;
    guest = createClient({ baseUrl: hs.url, userId: creds.user_id, accessToken: guestToken, deviceId: creds.device_id });
    guest.setGuest(true);
    clients.push(guest);
    expect(await guest.whoami()).toMatchObject({ user_id: creds.user_id, is_guest: true });
    await startClientSynced(guest, "the guest's first sync");
  }, 90_000);

  it("peeks into the world-readable room without joining and follows new messages", async () => {
    const room = await guest.peekInRoom(lobby);
    expect(bodiesOf(room)).toContain("welcome, readers");
    expect(room.getMyMembership()).not.toBe("join");
    // js-sdk's first peek poll carries no `from` (it starts at "now" when the server gets it), so a
    // message sent before that request arrives is not in it: send until one shows up.
    let sent = 0;
    await until("a message alice sends while the guest peeks", async () => {
      const r = await call(hs.url, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(lobby)}/send/m.room.message/news${++sent}`, { msgtype: "m.text", body: "news for readers" }, alice.access_token);
      expect(r.status).toBe(200);
      const end = Date.now() + 3_000;
      while (Date.now() < end && !bodiesOf(room).includes("news for readers")) await new Promise((res) => setTimeout(res, 50));
      return bodiesOf(room).includes("news for readers");
    }, 30_000);
    guest.stopPeeking();
    // A room that is not world-readable cannot be peeked.
    expect(await refusal(guest.peekInRoom(membersOnly))).toEqual([403, "M_FORBIDDEN"]);
  }, 60_000);

  it("is refused where the spec refuses guests", async () => {
    const forbidden = [403, "M_GUEST_ACCESS_FORBIDDEN"];
    expect(await refusal(guest.createRoom({ name: "mine" }))).toEqual(forbidden);
    expect(await refusal(guest.getPushRules())).toEqual(forbidden);
    expect(await refusal(guest.setAccountData("org.example.x" as never, {} as never))).toEqual(forbidden);
    expect(await refusal(guest.setAvatarUrl("mxc://example.org/a"))).toEqual(forbidden);
    expect(await refusal(guest.invite(lobby, alice.user_id))).toEqual(forbidden);
    // Guests join only rooms whose m.room.guest_access is can_join.
    expect(await refusal(guest.joinRoom(membersOnly))).toEqual(forbidden);
  });

  it("joins the can_join room and talks there", async () => {
    await guest.setDisplayName("Visiting Guest");
    await guest.joinRoom(lobby);
    await guest.sendTextMessage(lobby, "hello from a guest");
    const seen = await until("alice sees the guest's message", async () => {
      const r = await call(hs.url, "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(lobby)}/messages?dir=b&limit=10`, undefined, alice.access_token);
      const chunk = r.body["chunk"] as { sender: string; content: { body?: string } }[];
      return chunk.find((e) => e.content.body === "hello from a guest");
    });
    expect(seen.sender).toBe(guestUserId);
    const member = await call(hs.url, "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(lobby)}/state/m.room.member/${encodeURIComponent(guestUserId)}`, undefined, alice.access_token);
    expect(member.body).toMatchObject({ membership: "join", kind: "guest", displayname: "Visiting Guest" });
  });

  it("upgrades to a full account that keeps its user ID and rooms", async () => {
    const localpart = guestUserId.slice(1, guestUserId.indexOf(":"));
    const upgraded = await guest.register(localpart, "a proper password", null, { type: "m.login.dummy" }, undefined, guestToken);
    expect(upgraded.user_id).toBe(guestUserId);
    guest.stopClient();

    const full = createClient({ baseUrl: hs.url, userId: upgraded.user_id, accessToken: upgraded.access_token!, deviceId: upgraded.device_id });
    clients.push(full);
    expect(await full.whoami()).toMatchObject({ user_id: guestUserId, is_guest: false });
    expect((await full.getJoinedRooms()).joined_rooms).toContain(lobby);
    const { room_id } = await full.createRoom({ name: "no longer a guest" });
    expect(room_id).toMatch(/^!/);
    await full.joinRoom(membersOnly);
    // The password works, for the same account.
    const session = await login(hs.url, localpart, "a proper password");
    expect(session.user_id).toBe(guestUserId);
  });
});
