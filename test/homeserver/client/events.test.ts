/** The deprecated `GET /_matrix/client/v3/events/{eventId}` (old_sync.yaml `getOneEvent`). */
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { TestServer, room, scenario } from "../roomserver/harness.ts";
import type { TestUser } from "../roomserver/harness.ts";

let t: TestServer;
let alice: TestUser;
let bob: TestUser;
let carol: TestUser;
beforeEach(async () => {
  t = await TestServer.start();
  alice = await t.user("alice");
  bob = await t.user("bob");
  carol = await t.user("carol");
});
afterEach(async () => t.close());

const one = (eventId: string): string => `/events/${encodeURIComponent(eventId)}`;

describe("GET /events/{eventId}", () => {
  it("serves an event by ID alone, as the room-scoped endpoint does", async () => {
    const { roomId, ids } = await scenario(t, alice, { preset: "public_chat" }).join(bob).send(bob, "hello", "m1");
    const e = await t.ok("GET", one(ids.m1!), alice);
    expect(e).toMatchObject({ event_id: ids.m1, room_id: roomId, sender: bob.userId, type: "m.room.message", content: { body: "hello" } });
    const scoped = await t.ok("GET", room(roomId, `/event/${encodeURIComponent(ids.m1!)}`), alice);
    // the same event as the room-scoped endpoint serves (`age` moves with the test clock)
    const noAge = (x: Record<string, any>) => ({ ...x, unsigned: { ...x.unsigned, age: undefined } });
    expect(noAge(e)).toEqual(noAge(scoped));
    expect(e.unsigned.age).toBeGreaterThan(0);
    // the r0 prefix too
    expect((await t.ok("GET", `/_matrix/client/r0${one(ids.m1!)}`, bob)).event_id).toBe(ids.m1);
  });

  it("applies history visibility: not to outsiders, not before a joined-visibility join; world_readable to anyone", async () => {
    const { roomId, ids } = await scenario(t, alice, { preset: "private_chat" })
      .state(alice, "m.room.history_visibility", { history_visibility: "joined" })
      .send(alice, "before", "before")
      .invite(alice, bob).join(bob)
      .send(alice, "after", "after");
    expect((await t.ok("GET", one(ids.after!), bob)).content.body).toBe("after");
    for (const [who, id] of [[bob, ids.before!], [carol, ids.after!]] as const) {
      const r = await t.req("GET", one(id), who);
      expect(r.status).toBe(404);
      expect(r.body.errcode).toBe("M_NOT_FOUND");
    }
    await t.state(alice, roomId, "m.room.history_visibility", { history_visibility: "world_readable" });
    const later = await t.send(alice, roomId, "public now");
    expect((await t.ok("GET", one(later), carol)).content.body).toBe("public now");
  });

  it("serves a redacted event redacted", async () => {
    const { ids } = await scenario(t, alice).send(alice, "secret", "m").redact(alice, "m", "r");
    const e = await t.ok("GET", one(ids.m!), alice);
    expect(e.content).toEqual({});
    expect(e.unsigned.redacted_because.event_id).toBe(ids.r);
  });

  describe("errors", () => {
    it("401 without a token, 401 M_UNKNOWN_TOKEN with a bad one", async () => {
      const { ids } = await scenario(t, alice).send(alice, "x", "m");
      expect((await t.req("GET", one(ids.m!))).body).toMatchObject({ errcode: "M_MISSING_TOKEN" });
      const r = await t.req("GET", one(ids.m!), "bogus");
      expect(r.status).toBe(401);
      expect(r.body.errcode).toBe("M_UNKNOWN_TOKEN");
    });

    it("404 M_NOT_FOUND for an unknown event ID", async () => {
      const r = await t.req("GET", one("$doesnotexist"), alice);
      expect(r.status).toBe(404);
      expect(r.body.errcode).toBe("M_NOT_FOUND");
    });

    it("403 M_GUEST_ACCESS_FORBIDDEN for guests (not in the guest access list)", async () => {
      const { ids } = await scenario(t, alice, { preset: "public_chat" }).send(alice, "x", "m");
      const guest = await t.user("guest1", { guest: true });
      const r = await t.req("GET", one(ids.m!), guest);
      expect(r.status).toBe(403);
      expect(r.body.errcode).toBe("M_GUEST_ACCESS_FORBIDDEN");
    });

    it("GET /events without an ID is still the event stream, not this endpoint", async () => {
      const r = await t.req("GET", "/events?timeout=0", alice);
      expect(r.status).toBe(200);
      expect(r.body.chunk).toBeDefined();
    });
  });
});
