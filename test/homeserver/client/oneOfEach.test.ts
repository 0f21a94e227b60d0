/**
 * "One of each" (issue 8 item 7): one event-filter engine ("Filtering": the same RoomEventFilter
 * selects the same events in `/sync`, `/messages`, `/context` and `/search`), one token grammar.
 */
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { TestServer, room } from "../roomserver/harness.ts";
import type { TestUser } from "../roomserver/harness.ts";
import { typeMatches } from "../../../src/homeserver/roomserver/filter.ts";
import { readToken } from "../../../src/homeserver/roomserver/tokens.ts";
import { isRoomAlias, isRoomId, isUserId, serverOf } from "../../../src/homeserver/rooms/ids.ts";
import type { StoredEvent } from "../../../src/homeserver/events/types.ts";

let t: TestServer;
let alice: TestUser;
let bob: TestUser;
beforeEach(async () => {
  t = await TestServer.start();
  alice = await t.user("alice");
  bob = await t.user("bob");
});
afterEach(async () => t.close());

const q = (f: unknown): string => encodeURIComponent(JSON.stringify(f));

describe("one filter engine for /sync, /messages, /context and search", () => {
  it("types: [\"m.*.message\"] selects the same events everywhere (`*` matches any sequence)", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, roomId);
    const m1 = await t.send(alice, roomId, "needle one");
    await t.send(bob, roomId, { "m.relates_to": { rel_type: "m.annotation", event_id: m1, key: "👍" } }, "m.reaction");
    const m2 = await t.send(bob, roomId, "needle two");
    await t.send(alice, roomId, { body: "needle custom" }, "m.custom.message.extra");
    const m3 = await t.send(alice, roomId, { body: "needle three" }, "m.x.message");

    const cases: [unknown, string[]][] = [
      [{ types: ["m.*.message"] }, [m1, m2, m3]],
      [{ types: ["m.*.message"], not_types: ["m.x.*"] }, [m1, m2]],
      [{ types: ["*.message"], senders: [bob.userId] }, [m2]],
      [{ types: ["m.*m*.*ge"] }, [m1, m2]],
      [{ types: ["m.*"], not_types: ["m.room.*", "*.*.*.*", "m.reaction"] }, [m3]],
    ];
    for (const [f, expected] of cases) {
      const sync = await t.ok("GET", `/sync?filter=${q({ room: { timeline: { ...(f as object), limit: 50 } } })}`, alice);
      const inSync = sync.rooms.join[roomId].timeline.events.map((e: any) => e.event_id);
      const msgs = await t.ok("GET", room(roomId, `/messages?dir=f&limit=50&filter=${q(f)}`), alice);
      const inMessages = msgs.chunk.map((e: any) => e.event_id);
      const ctx = await t.ok("GET", room(roomId, `/context/${encodeURIComponent(m2)}?limit=50&filter=${q(f)}`), alice);
      const inContext = [...[...ctx.events_before].reverse(), ctx.event, ...ctx.events_after].map((e: any) => e.event_id);
      const search = await t.ok("POST", "/search", alice, { search_categories: { room_events: { search_term: "needle", keys: ["content.body"], order_by: "recent", filter: f } } });
      const inSearch = search.search_categories.room_events.results.map((r: any) => r.result.event_id).reverse();
      expect(inSync, JSON.stringify(f)).toEqual(expected);
      expect(inMessages, JSON.stringify(f)).toEqual(expected);
      expect(inSearch, JSON.stringify(f)).toEqual(expected);
      // /context always returns the event itself; the filter applies to the events around it.
      expect(inContext, JSON.stringify(f)).toEqual([m1, m2, m3].filter((id) => id === m2 || expected.includes(id)));
    }
  });

  it("malformed filters are refused alike by /sync, /messages and search", async () => {
    const roomId = await t.createRoom(alice);
    const bad = { types: "m.room.message" };
    const sync = await t.req("GET", `/sync?filter=${q({ room: { timeline: bad } })}`, alice);
    const msgs = await t.req("GET", room(roomId, `/messages?dir=b&filter=${q(bad)}`), alice);
    const search = await t.req("POST", "/search", alice, { search_categories: { room_events: { search_term: "x", filter: bad } } });
    for (const r of [sync, msgs, search]) expect([r.status, r.body.errcode]).toEqual([400, expect.stringMatching(/^M_(BAD_JSON|INVALID_PARAM)$/)]);
  });
});

describe("typeMatches", () => {
  it("agrees with the anchored RegExp reading of `*` on random patterns", () => {
    const alphabet = ["m", ".", "a", "*"];
    let seed = 7;
    const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed % n);
    const word = (len: number, chars: string[]): string => Array.from({ length: len }, () => chars[rnd(chars.length)]).join("");
    for (let i = 0; i < 5000; i++) {
      const pattern = word(rnd(7), alphabet);
      const type = word(rnd(9), alphabet.slice(0, 3));
      const re = new RegExp("^" + pattern.split("*").map((p) => p.replace(/[.]/g, "\\.")).join(".*") + "$");
      expect(typeMatches(pattern, type), `${pattern} ~ ${type}`).toBe(re.test(type));
    }
  });

  it("treats only `*` as special", () => {
    expect(typeMatches("m.room.?", "m.room.x")).toBe(false);
    expect(typeMatches("m.[a]", "m.a")).toBe(false);
    expect(typeMatches("a*a", "a")).toBe(false);
    expect(typeMatches("**", "")).toBe(true);
  });
});

describe("one token grammar", () => {
  it("parses the sync, pagination and foreign forms and nothing else", () => {
    expect(readToken("s12_4")).toEqual({ pos: 12, typing: 4 });
    expect(readToken("s12")).toEqual({ pos: 12, typing: 0 });
    expect(readToken("12")).toEqual({ pos: 12, typing: 0 });
    expect(readToken("t12")).toEqual({ pos: 12, typing: 0 });
    expect(readToken("s12_4_7_9")).toEqual({ pos: 12, typing: 4 });
    expect(readToken("s12~x")).toEqual({ pos: 12, typing: 0 });
    for (const bad of ["", "s", "garbage", "x12", "s-1", "s12x", "s1234567890123456"]) expect(readToken(bad), bad).toBeUndefined();
  });

  it("a token from any endpoint is accepted by every other; garbage is M_INVALID_PARAM everywhere", async () => {
    const roomId = await t.createRoom(alice);
    await t.send(alice, roomId, "one");
    const sync = await t.ok("GET", "/sync", alice);
    const msgs = await t.ok("GET", room(roomId, `/messages?dir=b&limit=1&from=${sync.next_batch}`), alice);
    expect(msgs.chunk.map((e: any) => e.content.body)).toEqual(["one"]);
    const uses = (token: string): string[] => [
      `/sync?since=${token}`,
      room(roomId, `/messages?dir=b&from=${token}`),
      `/keys/changes?from=${token}&to=${token}`,
      `/events?from=${token}&timeout=0`,
    ];
    const pos = readToken(sync.next_batch)!.pos;
    for (const token of [sync.next_batch, msgs.end, msgs.start, String(pos), `t${pos}`, `s${pos}_0_3`]) {
      for (const path of uses(token)) expect((await t.req("GET", path, alice)).status, path).toBe(200);
    }
    for (const path of uses("garbage")) {
      const r = await t.req("GET", path, alice);
      expect([r.status, r.body.errcode], path).toEqual([400, "M_INVALID_PARAM"]);
    }
  });
});

describe("one identifier grammar (rooms/ids.ts)", () => {
  it("user IDs and aliases share the server-name grammar; room IDs stay opaque", () => {
    expect(isUserId("@alice:example.org:8448")).toBe(true);
    expect(isUserId("@Alice/historical:[::1]")).toBe(true);
    expect(isUserId("@:example.org")).toBe(false);
    expect(isUserId("@alice:exa mple.org")).toBe(false);
    expect(isUserId("@alice:example.org:port")).toBe(false);
    expect(isRoomAlias("#room:example.org")).toBe(true);
    expect(isRoomAlias("#room:exa mple.org")).toBe(false);
    expect(isRoomAlias("#:example.org")).toBe(false);
    expect(isRoomAlias("#" + "a".repeat(250) + ":example.org")).toBe(false);
    expect(isRoomId("!anything")).toBe(true);
    expect(isRoomId("!")).toBe(false);
    expect(serverOf("@a:b.c:8448")).toBe("b.c:8448");
  });
});

describe("one isTimelineEvent", () => {
  it("a soft-failed event is served by none of /sync, /messages, /context, /event", async () => {
    const roomId = await t.createRoom(alice);
    const before = await t.send(alice, roomId, "before");
    const bad = await t.send(alice, roomId, "soft-failed");
    const after = await t.send(alice, roomId, "after");
    await t.hs.services.store.write(async (tx) => {
      const e = await tx.get<StoredEvent>("events", bad);
      tx.put("events", bad, { ...e!, softFailed: true });
    });
    const sync = await t.ok("GET", "/sync", alice);
    const ids = (evs: any[]): string[] => evs.map((e) => e.event_id);
    expect(ids(sync.rooms.join[roomId].timeline.events)).toEqual(expect.arrayContaining([before, after]));
    expect(ids(sync.rooms.join[roomId].timeline.events)).not.toContain(bad);
    expect(ids((await t.ok("GET", room(roomId, "/messages?dir=b&limit=50"), alice)).chunk)).not.toContain(bad);
    const ctx = await t.ok("GET", room(roomId, `/context/${encodeURIComponent(before)}?limit=10`), alice);
    expect(ids(ctx.events_after)).toEqual([after]);
    expect((await t.req("GET", room(roomId, `/event/${encodeURIComponent(bad)}`), alice)).status).toBe(404);
  });
});
