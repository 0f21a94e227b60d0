/**
 * Pagination as the spec's `/messages` and "Listing rooms" say (issue 12, "Conformance"), through
 * the handler: `end` whenever more events may follow, `/publicRooms` paging with `since` over GET
 * and POST, and an empty `from`/`since` read as absent (as Synapse reads it).
 */
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { bodies, room, startWithAliceAndBob } from "../roomserver/harness.ts";
import type { TestServer, TestUser } from "../roomserver/harness.ts";

let t: TestServer;
let alice: TestUser;
let bob: TestUser;
beforeEach(async () => {
  ({ t, alice, bob } = await startWithAliceAndBob());
});
afterEach(async () => t.close());

type Json = Record<string, any>;
const messages = (roomId: string, q: string, as: TestUser = alice): Promise<Json> => t.ok("GET", room(roomId, `/messages?${q}`), as);

describe("GET /rooms/{roomId}/messages", () => {
  it("gives `end` when a `to` bound stopped the page with older events left, and none at the start of the room", async () => {
    const roomId = await t.createRoom(alice);
    await t.send(alice, roomId, "old");
    const mid = (await t.ok("GET", "/sync", alice)).next_batch as string;
    for (let i = 0; i < 3; i++) await t.send(alice, roomId, `new${i}`);
    const page = await messages(roomId, `dir=b&limit=50&to=${mid}`);
    expect(bodies(page.chunk)).toEqual(["new2", "new1", "new0"]);
    expect(page.end).toBeDefined();
    // Going on from `end` reaches the older events, then the start of the room: no `end` there.
    const rest = await messages(roomId, `dir=b&limit=50&from=${page.end}`);
    expect(bodies(rest.chunk)).toEqual(["old"]);
    expect(rest.end).toBeUndefined();
  });

  it("reads an empty `from` (and `to`) as absent", async () => {
    const roomId = await t.createRoom(alice);
    for (let i = 0; i < 3; i++) await t.send(alice, roomId, `m${i}`);
    const back = await messages(roomId, "dir=b&limit=2&from=");
    expect(bodies(back.chunk)).toEqual(["m2", "m1"]);
    expect(back.end).toBeDefined();
    const fwd = await messages(roomId, "dir=f&limit=50&from=&to=");
    expect(bodies(fwd.chunk)).toEqual(["m0", "m1", "m2"]);
    // Still a Matrix error for a malformed one.
    expect((await t.req("GET", room(roomId, "/messages?dir=b&from=nope"), alice)).body.errcode).toBe("M_INVALID_PARAM");
  });
});

describe("/publicRooms pagination", () => {
  /** Four published rooms of 4, 3, 2 and 1 members. */
  async function published(): Promise<string[]> {
    const users = [bob, await t.user("carol"), await t.user("dave")];
    const ids: string[] = [];
    for (let n = 4; n >= 1; n--) {
      const roomId = await t.createRoom(alice, { preset: "public_chat", visibility: "public", name: `r${n}` });
      for (const u of users.slice(0, n - 1)) await t.join(u, roomId);
      ids.push(roomId);
    }
    return ids;
  }
  const names = (r: Json): string[] => r.chunk.map((c: Json) => c.name);

  for (const how of ["GET", "POST"] as const) {
    const list = (body: { limit?: number; since?: string }): Promise<Json> =>
      how === "GET"
        ? t.ok("GET", `/publicRooms?${new URLSearchParams(Object.entries(body).map(([k, v]) => [k, String(v)]))}`)
        : t.ok("POST", "/publicRooms", alice, body);

    it(`${how}: pages forward with next_batch and back with prev_batch; an empty since is the first page`, async () => {
      await published();
      const p1 = await list({ limit: 2, since: "" });
      expect(names(p1)).toEqual(["r4", "r3"]);
      expect(p1.prev_batch).toBeUndefined();
      const p2 = await list({ limit: 2, since: p1.next_batch });
      expect(names(p2)).toEqual(["r2", "r1"]);
      expect(p2.next_batch).toBeUndefined();
      const back = await list({ limit: 2, since: p2.prev_batch });
      expect(names(back)).toEqual(["r4", "r3"]);
      expect(back.prev_batch).toBeUndefined();
    });

    it(`${how}: a room that grows between two pages is neither shown twice nor moves another one out of reach`, async () => {
      const [, , r2] = await published();
      const p1 = await list({ limit: 2 });
      expect(names(p1)).toEqual(["r4", "r3"]);
      // r2 grows past r3 while the client reads page one.
      for (const u of [await t.user("erin"), await t.user("frank")]) await t.join(u, r2!);
      const p2 = await list({ limit: 2, since: p1.next_batch });
      expect(names(p2)).toEqual(["r1"]);
    });
  }

  it("refuses a malformed since token with a Matrix error", async () => {
    const r = await t.req("GET", "/publicRooms?since=nonsense");
    expect(r.status).toBe(400);
    expect(r.body.errcode).toBe("M_INVALID_PARAM");
    expect((await t.req("POST", "/publicRooms", alice, { since: 5 })).status).toBe(400);
  });
});
