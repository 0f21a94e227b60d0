/**
 * The room directory page's logic (src/app/directory.ts) against a real homeserver core (the
 * request path of `fetch` is routed to `Homeserver.handle`, as the Service Worker does): its own
 * login by login token and its renewal, which rooms it offers to publish (checked against the
 * server's own verdict on `PUT /directory/list/room`), where it joins a listed room through, and
 * the Hydrogen URL that opens the joined room. The page itself is driven in Chromium by
 * test/browser/twoBrowsers.browser.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { TestServer, room } from "../homeserver/roomserver/harness.ts";
import type { TestUser } from "../homeserver/roomserver/harness.ts";
import { DIRECTORY_SESSION_KEY, DirectoryClient, ApiError, hydrogenRoomUrl, joinPath, joinServers, ownRoom } from "../../src/app/directory.ts";
import type { ClientStateEvent, PublicRoom } from "../../src/app/directory.ts";

/** A Storage stand-in (the page passes localStorage). */
function memoryStorage(): Pick<Storage, "getItem" | "setItem"> & { data: Map<string, string> } {
  const data = new Map<string, string>();
  return { data, getItem: (k) => data.get(k) ?? null, setItem: (k, v) => void data.set(k, v) };
}

let t: TestServer;
beforeEach(async () => {
  t = await TestServer.start();
  // The page's relative requests go to the homeserver, as the worker answers them on its origin.
  vi.stubGlobal("fetch", (input: string, init?: RequestInit) => t.hs.handle(new Request(new URL(input, "http://localhost"), init)));
});
afterEach(async () => {
  vi.unstubAllGlobals();
  await t.close();
});

/** A login token as the worker mints one for a page (src/sw/serviceWorker.ts mintLoginToken). */
async function mint(userId: string): Promise<string> {
  const token = `hyl_test_${Math.random().toString(36).slice(2)}`;
  await t.hs.services.store.write(async (tx) => tx.put("login_tokens", token, { userId, expiresAt: t.hs.services.clock() + 120_000 }));
  return token;
}

describe("DirectoryClient", () => {
  it("logs in with a minted token, keeps the login, and logs in again on the same device when the token is gone", async () => {
    await t.user("alice");
    const storage = memoryStorage();
    let minted = 0;
    const client = new DirectoryClient("@alice:hs.test", () => (minted++, mint("@alice:hs.test")), storage);
    expect(await client.request("GET", "/_matrix/client/v3/account/whoami")).toMatchObject({ user_id: "@alice:hs.test" });
    const first = JSON.parse(storage.data.get(DIRECTORY_SESSION_KEY)!) as { deviceId: string; accessToken: string };
    expect(minted).toBe(1);

    // A page opened later reuses the stored login.
    const again = new DirectoryClient("@alice:hs.test", () => (minted++, mint("@alice:hs.test")), storage);
    await again.request("GET", "/_matrix/client/v3/account/whoami");
    expect(minted).toBe(1);

    // The token ends (logout): the next request logs in again, on the same device, and succeeds.
    await t.ok("POST", "/logout", first.accessToken, {});
    expect(await again.request("GET", "/_matrix/client/v3/account/whoami")).toMatchObject({ user_id: "@alice:hs.test", device_id: first.deviceId });
    expect(minted).toBe(2);
    const second = JSON.parse(storage.data.get(DIRECTORY_SESSION_KEY)!) as { deviceId: string; accessToken: string };
    expect(second.deviceId).toBe(first.deviceId);
    expect(second.accessToken).not.toBe(first.accessToken);

    // Another account's stored login is not used.
    await t.user("bob");
    const bobs = new DirectoryClient("@bob:hs.test", () => mint("@bob:hs.test"), storage);
    expect(await bobs.request("GET", "/_matrix/client/v3/account/whoami")).toMatchObject({ user_id: "@bob:hs.test" });
  });

  it("reports a refusal as an ApiError with status and errcode (a failing mint too)", async () => {
    await t.user("alice");
    const client = new DirectoryClient("@alice:hs.test", () => mint("@alice:hs.test"), memoryStorage());
    const err = await client.request("PUT", `/_matrix/client/v3/directory/list/room/${encodeURIComponent("!nope:hs.test")}`, { visibility: "public" }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ status: 404, errcode: "M_NOT_FOUND" });
    const broken = new DirectoryClient("@alice:hs.test", () => Promise.reject(new Error("the Service Worker did not answer")), memoryStorage());
    await expect(broken.request("GET", "/_matrix/client/v3/account/whoami")).rejects.toThrow("did not answer");
  });
});

describe("ownRoom: which rooms the page offers to publish", () => {
  const stateOf = async (as: TestUser, roomId: string): Promise<ClientStateEvent[]> => (await t.ok("GET", room(roomId, "/state"), as)) as unknown as ClientStateEvent[];
  /** Whether the server lets `as` publish the room (and puts it back). */
  const serverAllows = async (as: TestUser, roomId: string): Promise<boolean> => {
    const r = await t.req("PUT", `/directory/list/room/${encodeURIComponent(roomId)}`, as, { visibility: "public" });
    if (r.status === 200) await t.ok("PUT", `/directory/list/room/${encodeURIComponent(roomId)}`, as, { visibility: "private" });
    else expect(r.body.errcode).toBe("M_FORBIDDEN");
    return r.status === 200;
  };

  for (const version of ["12", "10"]) {
    it(`agrees with the server's verdict (room version ${version}): creator yes, member no, member raised to 50 yes`, async () => {
      const alice = await t.user("alice");
      const bob = await t.user("bob");
      const roomId = await t.createRoom(alice, { preset: "public_chat", room_version: version, name: "Lobby", room_alias_name: "lobby" });
      await t.join(bob, roomId);
      const a = ownRoom(roomId, await stateOf(alice, roomId), alice.userId);
      expect(a).toEqual({ roomId, name: "Lobby", alias: "#lobby:hs.test", joinRule: "public", mayPublish: true });
      expect(await serverAllows(alice, roomId)).toBe(true);
      const b = ownRoom(roomId, await stateOf(bob, roomId), bob.userId);
      expect(b.mayPublish).toBe(false);
      expect(await serverAllows(bob, roomId)).toBe(false);
      const pl = await t.ok("GET", room(roomId, "/state/m.room.power_levels/"), alice);
      await t.state(alice, roomId, "m.room.power_levels", { ...pl, users: { ...(pl.users as object), [bob.userId]: 50 } });
      expect(ownRoom(roomId, await stateOf(bob, roomId), bob.userId).mayPublish).toBe(true);
      expect(await serverAllows(bob, roomId)).toBe(true);
    });
  }

  it("an invite-only room shows its join rule (the page lists only public ones)", async () => {
    const alice = await t.user("alice");
    const roomId = await t.createRoom(alice, { preset: "private_chat" });
    expect(ownRoom(roomId, await stateOf(alice, roomId), alice.userId)).toMatchObject({ joinRule: "invite", mayPublish: true });
  });
});

describe("joining a listed room", () => {
  it("joins through the server of the alias, then of the room ID; a v12 ID without either leaves it to the homeserver", () => {
    expect(joinServers({ room_id: "!abc:a.example", canonical_alias: "#lobby:b.example" })).toEqual(["b.example", "a.example"]);
    expect(joinServers({ room_id: "!abc:a.example", canonical_alias: "#lobby:a.example" })).toEqual(["a.example"]);
    expect(joinServers({ room_id: "!Hash-of_the_create_event" })).toEqual([]);
    expect(joinPath({ room_id: "!Hash_x", canonical_alias: "#lobby:5303cefbbe07:8448" })).toBe("/_matrix/client/v3/join/!Hash_x?server_name=5303cefbbe07%3A8448");
    expect(joinPath({ room_id: "!Hash_x" })).toBe("/_matrix/client/v3/join/!Hash_x");
  });

  it("a room published on the homeserver is in its /publicRooms and joined with the path the page builds", async () => {
    const alice = await t.user("alice");
    const bob = await t.user("bob");
    const roomId = await t.createRoom(alice, { preset: "public_chat", name: "Lobby", room_alias_name: "lobby" });
    const client = new DirectoryClient(bob.userId, () => mint(bob.userId), memoryStorage());
    expect((await client.request<{ chunk: PublicRoom[] }>("GET", "/_matrix/client/v3/publicRooms")).chunk).toEqual([]);
    const owner = new DirectoryClient(alice.userId, () => mint(alice.userId), memoryStorage());
    await owner.request("PUT", `/_matrix/client/v3/directory/list/room/${encodeURIComponent(roomId)}`, { visibility: "public" });
    const search = await client.request<{ chunk: PublicRoom[] }>("POST", "/_matrix/client/v3/publicRooms", { filter: { generic_search_term: "lob" } });
    expect(search.chunk).toMatchObject([{ room_id: roomId, name: "Lobby", canonical_alias: "#lobby:hs.test", num_joined_members: 1 }]);
    expect(await client.request("POST", joinPath(search.chunk[0]!), {})).toEqual({ room_id: roomId });
    expect((await client.request<{ joined_rooms: string[] }>("GET", "/_matrix/client/v3/joined_rooms")).joined_rooms).toEqual([roomId]);
  });
});

describe("hydrogenRoomUrl", () => {
  const origin = "http://127.0.0.1:8080";
  const sessions = JSON.stringify([
    { id: "old", userId: "@a:x", homeserver: `${origin}/`, lastUsed: 5 },
    { id: "new", userId: "@a:x", homeserver: origin, lastUsed: 9 },
    { id: "other-user", userId: "@b:x", homeserver: origin, lastUsed: 20 },
    { id: "other-origin", userId: "@a:x", homeserver: "https://matrix.org", lastUsed: 30 },
  ]);

  it("opens the room in the user's most recently used Hydrogen session on this origin", () => {
    expect(hydrogenRoomUrl(sessions, "@a:x", origin, "!r:x")).toBe("/client/#/session/new/room/!r%3Ax");
  });

  it("none when Hydrogen holds no such session (or its storage is unreadable)", () => {
    expect(hydrogenRoomUrl(null, "@a:x", origin, "!r")).toBeUndefined();
    expect(hydrogenRoomUrl("{not json", "@a:x", origin, "!r")).toBeUndefined();
    expect(hydrogenRoomUrl(sessions, "@c:x", origin, "!r")).toBeUndefined();
    expect(hydrogenRoomUrl(JSON.stringify({ id: "x" }), "@a:x", origin, "!r")).toBeUndefined();
  });
});
