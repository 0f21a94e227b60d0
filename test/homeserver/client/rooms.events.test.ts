import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { TestServer, bodies, room } from "../roomserver/harness.ts";
import type { TestUser } from "../roomserver/harness.ts";

let t: TestServer;
let alice: TestUser;
let bob: TestUser;
let carol: TestUser;
beforeEach(async () => {
  t = await TestServer.start();
  alice = await t.user("alice", { displayname: "Alice" });
  bob = await t.user("bob");
  carol = await t.user("carol");
});
afterEach(async () => t.close());

describe("sending", () => {
  it("is idempotent per transaction ID and echoes transaction_id to the sending device only", async () => {
    const roomId = await t.createRoom(alice);
    const a = await t.ok("PUT", room(roomId, "/send/m.room.message/txn1"), alice, { msgtype: "m.text", body: "x" });
    const b = await t.ok("PUT", room(roomId, "/send/m.room.message/txn1"), alice, { msgtype: "m.text", body: "x" });
    expect(b.event_id).toBe(a.event_id);
    const [c, d] = await Promise.all([
      t.ok("PUT", room(roomId, "/send/m.room.message/txn2"), alice, { body: "y" }),
      t.ok("PUT", room(roomId, "/send/m.room.message/txn2"), alice, { body: "y" }),
    ]);
    expect(c.event_id).toBe(d.event_id);
    const ev = await t.ok("GET", room(roomId, `/event/${encodeURIComponent(a.event_id)}`), alice);
    expect(ev.unsigned.transaction_id).toBe("txn1");
    await t.invite(alice, roomId, bob.userId);
    await t.join(bob, roomId);
    const seenByBob = await t.ok("GET", room(roomId, `/event/${encodeURIComponent(a.event_id)}`), bob);
    expect(seenByBob.unsigned?.transaction_id).toBeUndefined();
    const msgs = await t.ok("GET", room(roomId, "/messages?dir=b"), alice);
    expect(bodies(msgs.chunk)).toEqual(["y", "x"]);
  });

  it("chains events: prev_events are the previous head, depth grows by one", async () => {
    const roomId = await t.createRoom(alice);
    const e1 = await t.send(alice, roomId, "1");
    const e2 = await t.send(alice, roomId, "2");
    const store = t.hs.services.store;
    const [s1, s2] = await store.read(async (tx) => [await tx.get<any>("events", e1), await tx.get<any>("events", e2)]);
    expect(s2.pdu.prev_events).toEqual([e1]);
    expect(s2.pdu.depth).toBe(s1.pdu.depth + 1);
    expect(s2.streamPos).toBeGreaterThan(s1.streamPos);
    const ext = await store.read((tx) => tx.range("extremities", {}));
    expect(ext.map((r) => r.key.split("\u001f")[1])).toEqual([e2]);
  });

  it("refuses non-members, insufficient power, unknown rooms and bad JSON", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    const r1 = await t.req("PUT", room(roomId, "/send/m.room.message/1"), bob, { body: "x" });
    expect([r1.status, r1.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
    await t.join(bob, roomId);
    const r2 = await t.req("PUT", room(roomId, "/state/m.room.name/"), bob, { name: "mine" });
    expect([r2.status, r2.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
    const r3 = await t.req("PUT", room("!nope:hs.test", "/send/m.room.message/1"), bob, { body: "x" });
    expect([r3.status, r3.body.errcode]).toEqual([404, "M_NOT_FOUND"]);
    const r4 = await t.req("PUT", room(roomId, "/send/m.room.message/2"), bob, "[]");
    expect([r4.status, r4.body.errcode]).toEqual([400, "M_BAD_JSON"]);
    const r5 = await t.req("PUT", room(roomId, "/send/m.room.message/3"), bob, "{not json");
    expect([r5.status, r5.body.errcode]).toEqual([400, "M_NOT_JSON"]);
    const r6 = await t.req("PUT", room(roomId, "/send/m.room.message/4"), bob, { body: "x".repeat(70000) });
    expect([r6.status, r6.body.errcode]).toEqual([413, "M_TOO_LARGE"]);
  });

  it("requires a valid token", async () => {
    const roomId = await t.createRoom(alice);
    const paths: [string, string, unknown?][] = [
      ["PUT", room(roomId, "/send/m.room.message/1"), { body: "x" }],
      ["GET", room(roomId, "/messages?dir=b")],
      ["GET", room(roomId, "/state")],
      ["POST", "/createRoom", {}],
      ["POST", room(roomId, "/invite"), { user_id: bob.userId }],
      ["GET", "/joined_rooms"],
      ["POST", "/user_directory/search", { search_term: "a" }],
    ];
    for (const [m, p, b] of paths) {
      const none = await t.req(m, p, undefined, b);
      expect([p, none.status, none.body.errcode]).toEqual([p, 401, "M_MISSING_TOKEN"]);
      const bad = await t.req(m, p, "wrong", b);
      expect([p, bad.status, bad.body.errcode]).toEqual([p, 401, "M_UNKNOWN_TOKEN"]);
    }
  });
});

describe("state", () => {
  it("PUT/GET state with empty and non-empty state keys, format=event, 404 for missing", async () => {
    const roomId = await t.createRoom(alice);
    const id = await t.state(alice, roomId, "org.example.thing", { a: 1 }, "k");
    expect(await t.ok("GET", room(roomId, "/state/org.example.thing/k"), alice)).toEqual({ a: 1 });
    const ev = await t.ok("GET", room(roomId, "/state/org.example.thing/k?format=event"), alice);
    expect(ev).toMatchObject({ event_id: id, type: "org.example.thing", state_key: "k", content: { a: 1 } });
    await t.state(alice, roomId, "org.example.thing", { b: 2 });
    expect(await t.ok("GET", room(roomId, "/state/org.example.thing"), alice)).toEqual({ b: 2 });
    const missing = await t.req("GET", room(roomId, "/state/org.example.none/"), alice);
    expect([missing.status, missing.body.errcode]).toEqual([404, "M_NOT_FOUND"]);
    // the same state again changes nothing
    expect(await t.state(alice, roomId, "org.example.thing", { a: 1 }, "k")).toBe(id);
    // replaced state carries prev_content
    await t.state(alice, roomId, "org.example.thing", { a: 2 }, "k");
    const now = await t.ok("GET", room(roomId, "/state/org.example.thing/k?format=event"), alice);
    expect(now.unsigned.prev_content).toEqual({ a: 1 });
    expect(now.unsigned.replaces_state).toBe(id);
  });

  it("canonical alias must point at the room (M_BAD_ALIAS)", async () => {
    const roomId = await t.createRoom(alice, { room_alias_name: "a" });
    const other = await t.createRoom(alice, { room_alias_name: "b" });
    const r = await t.req("PUT", room(roomId, "/state/m.room.canonical_alias/"), alice, { alias: "#b:hs.test" });
    expect([r.status, r.body.errcode]).toEqual([400, "M_BAD_ALIAS"]);
    await t.state(alice, other, "m.room.canonical_alias", { alias: "#b:hs.test", alt_aliases: [] });
  });

  it("non-members may not read state of a shared room; world_readable rooms are open", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    expect((await t.req("GET", room(roomId, "/state"), bob)).status).toBe(403);
    expect((await t.req("GET", room(roomId, "/state/m.room.create"), bob)).status).toBe(403);
    await t.state(alice, roomId, "m.room.history_visibility", { history_visibility: "world_readable" });
    expect((await t.req("GET", room(roomId, "/state"), bob)).status).toBe(200);
    expect((await t.req("GET", room("!unknown:hs.test", "/state"), bob)).status).toBe(404);
  });
});

describe("redactions", () => {
  it("redacts own events and, with power, others'; others without power get 403", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, roomId);
    const mine = await t.send(bob, roomId, "secret");
    const hers = await t.send(alice, roomId, "hers");
    const denied = await t.req("PUT", room(roomId, `/redact/${encodeURIComponent(hers)}/r1`), bob, {});
    expect([denied.status, denied.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
    const r = await t.ok("PUT", room(roomId, `/redact/${encodeURIComponent(mine)}/r1`), bob, { reason: "oops" });
    const again = await t.ok("PUT", room(roomId, `/redact/${encodeURIComponent(mine)}/r1`), bob, { reason: "oops" });
    expect(again.event_id).toBe(r.event_id);
    const ev = await t.ok("GET", room(roomId, `/event/${encodeURIComponent(mine)}`), alice);
    expect(ev.content).toEqual({});
    expect(ev.unsigned.redacted_because.event_id).toBe(r.event_id);
    expect(ev.unsigned.redacted_because.content).toMatchObject({ reason: "oops", redacts: mine });
    await t.ok("PUT", room(roomId, `/redact/${encodeURIComponent(mine)}/r2`), alice, {});
    // the same txnId on /send is a different transaction
    const sent = await t.ok("PUT", room(roomId, "/send/m.room.message/r1"), bob, { body: "new" });
    expect(sent.event_id).not.toBe(r.event_id);
  });
});

describe("GET /messages", () => {
  it("paginates backwards and forwards with tokens, honours to and limit", async () => {
    const roomId = await t.createRoom(alice);
    for (let i = 1; i <= 7; i++) await t.send(alice, roomId, `m${i}`);
    const onlyMsgs = encodeURIComponent(JSON.stringify({ types: ["m.room.message"] }));
    const p1 = await t.ok("GET", room(roomId, `/messages?dir=b&limit=3&filter=${onlyMsgs}`), alice);
    expect(bodies(p1.chunk)).toEqual(["m7", "m6", "m5"]);
    const p2 = await t.ok("GET", room(roomId, `/messages?dir=b&limit=3&from=${p1.end}&filter=${onlyMsgs}`), alice);
    expect(bodies(p2.chunk)).toEqual(["m4", "m3", "m2"]);
    const p3 = await t.ok("GET", room(roomId, `/messages?dir=b&limit=30&from=${p2.end}&filter=${onlyMsgs}`), alice);
    expect(bodies(p3.chunk)).toEqual(["m1"]);
    expect(p3.end).toBeUndefined();
    // forwards from p2.end gives m2..m7 back in order
    const f = await t.ok("GET", room(roomId, `/messages?dir=f&limit=10&from=${p2.end}&filter=${onlyMsgs}`), alice);
    expect(bodies(f.chunk)).toEqual(["m2", "m3", "m4", "m5", "m6", "m7"]);
    const bounded = await t.ok("GET", room(roomId, `/messages?dir=b&limit=10&to=${p2.end}&filter=${onlyMsgs}`), alice);
    expect(bodies(bounded.chunk)).toEqual(["m7", "m6", "m5", "m4", "m3", "m2"]);
    // no from, forwards: from the start of the room
    const start = await t.ok("GET", room(roomId, "/messages?dir=f&limit=1"), alice);
    expect(start.chunk[0].type).toBe("m.room.create");
    // bare numbers are accepted as tokens, as is the s<N>_… sync form
    const n = Number(String(p1.end).slice(1));
    const bare = await t.ok("GET", room(roomId, `/messages?dir=b&limit=1&from=${n}&filter=${onlyMsgs}`), alice);
    expect(bodies(bare.chunk)).toEqual(["m4"]);
    const multi = await t.ok("GET", room(roomId, `/messages?dir=b&limit=1&from=s${n}_5_6&filter=${onlyMsgs}`), alice);
    expect(bodies(multi.chunk)).toEqual(["m4"]);
  });

  it("filters by senders, not_types, contains_url and lazy-loads members", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, roomId);
    await t.send(alice, roomId, "a");
    await t.send(bob, roomId, { msgtype: "m.image", body: "pic", url: "mxc://x/y" });
    await t.send(bob, roomId, "b2");
    const q = (f: unknown) => room(roomId, `/messages?dir=b&limit=50&filter=${encodeURIComponent(JSON.stringify(f))}`);
    expect(bodies((await t.ok("GET", q({ senders: [bob.userId] }), alice)).chunk)).toEqual(["b2", "pic"]);
    expect(bodies((await t.ok("GET", q({ not_senders: [bob.userId] }), alice)).chunk)).toEqual(["a"]);
    expect(bodies((await t.ok("GET", q({ contains_url: true }), alice)).chunk)).toEqual(["pic"]);
    expect((await t.ok("GET", q({ not_types: ["m.room.*"] }), alice)).chunk).toEqual([]);
    const lazy = await t.ok("GET", q({ types: ["m.room.message"], senders: [bob.userId], lazy_load_members: true }), alice);
    expect(lazy.state.map((e: any) => e.state_key)).toEqual([bob.userId]);
  });

  it("rejects bad parameters", async () => {
    const roomId = await t.createRoom(alice);
    expect((await t.req("GET", room(roomId, "/messages"), alice)).body.errcode).toBe("M_INVALID_PARAM");
    expect((await t.req("GET", room(roomId, "/messages?dir=x"), alice)).body.errcode).toBe("M_INVALID_PARAM");
    expect((await t.req("GET", room(roomId, "/messages?dir=b&from=garbage"), alice)).body.errcode).toBe("M_INVALID_PARAM");
    expect((await t.req("GET", room(roomId, "/messages?dir=b&limit=abc"), alice)).body.errcode).toBe("M_INVALID_PARAM");
    expect((await t.req("GET", room(roomId, "/messages?dir=b&filter=%7B"), alice)).body.errcode).toBe("M_INVALID_PARAM");
    expect((await t.req("GET", room(roomId, "/messages?dir=b"), bob)).status).toBe(403);
    expect((await t.req("GET", room("!x:hs.test", "/messages?dir=b"), bob)).status).toBe(404);
  });
});

describe("history visibility", () => {
  const setup = async (visibility: string) => {
    const roomId = await t.createRoom(alice, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: visibility } }] });
    await t.send(alice, roomId, "before-invite");
    await t.invite(alice, roomId, bob.userId);
    await t.send(alice, roomId, "while-invited");
    await t.join(bob, roomId);
    await t.send(alice, roomId, "while-joined");
    await t.ok("POST", room(roomId, "/leave"), bob, {});
    await t.send(alice, roomId, "after-leave");
    return roomId;
  };

  it.each([
    ["joined", ["while-joined"]],
    ["invited", ["while-invited", "while-joined"]],
    ["shared", ["before-invite", "while-invited", "while-joined"]],
    // world_readable: everything, even after leaving (rule 1 needs no membership)
    ["world_readable", ["before-invite", "while-invited", "while-joined", "after-leave"]],
  ])("%s: a member who left sees what the rule allows", async (visibility, expected) => {
    const roomId = await setup(visibility);
    const msgs = await t.ok("GET", room(roomId, "/messages?dir=b&limit=100"), bob);
    expect(bodies(msgs.chunk).reverse()).toEqual(expected);
  });

  it("world_readable rooms can be read by anyone; others answer 403 / 404", async () => {
    const roomId = await setup("world_readable");
    expect(bodies((await t.ok("GET", room(roomId, "/messages?dir=b&limit=100"), carol)).chunk)).toContain("after-leave");
    const hidden = await setup("joined");
    expect((await t.req("GET", room(hidden, "/messages?dir=b"), carol)).status).toBe(403);
    const msgs = await t.ok("GET", room(hidden, "/messages?dir=b&limit=100"), alice);
    const first = msgs.chunk.find((e: any) => e.content.body === "before-invite");
    const r = await t.req("GET", room(hidden, `/event/${encodeURIComponent(first.event_id)}`), bob);
    expect([r.status, r.body.errcode]).toEqual([404, "M_NOT_FOUND"]);
    expect((await t.req("GET", room(hidden, `/context/${encodeURIComponent(first.event_id)}`), bob)).status).toBe(404);
  });

  it("a user sees their own membership events even under joined visibility", async () => {
    const roomId = await setup("joined");
    const msgs = await t.ok("GET", room(roomId, "/messages?dir=b&limit=100"), bob);
    const mine = msgs.chunk.filter((e: any) => e.type === "m.room.member" && e.state_key === bob.userId).map((e: any) => e.content.membership);
    expect(mine.reverse()).toEqual(["join", "leave"]);
  });
});

describe("GET /context", () => {
  it("returns events around an event, with state and tokens", async () => {
    const roomId = await t.createRoom(alice);
    const ids: string[] = [];
    for (let i = 1; i <= 6; i++) ids.push(await t.send(alice, roomId, `c${i}`));
    const c = await t.ok("GET", room(roomId, `/context/${encodeURIComponent(ids[3]!)}?limit=4`), alice);
    expect(c.event.content.body).toBe("c4");
    expect(bodies(c.events_before)).toEqual(["c3", "c2"]);
    expect(bodies(c.events_after)).toEqual(["c5", "c6"]);
    expect(c.state.some((e: any) => e.type === "m.room.create")).toBe(true);
    const back = await t.ok("GET", room(roomId, `/messages?dir=b&limit=1&from=${c.start}`), alice);
    expect(bodies(back.chunk)).toEqual(["c1"]);
    const fwd = await t.ok("GET", room(roomId, `/messages?dir=f&limit=1&from=${c.end}`), alice);
    expect(fwd.chunk).toEqual([]);
    expect((await t.req("GET", room(roomId, "/context/$nope"), alice)).status).toBe(404);
    // The limit covers events_before and events_after together (event_context.md); 0 means none.
    const one = await t.ok("GET", room(roomId, `/context/${encodeURIComponent(ids[3]!)}?limit=1`), alice);
    expect([bodies(one.events_before), bodies(one.events_after)]).toEqual([[], ["c5"]]);
    const fromOne = await t.ok("GET", room(roomId, `/messages?dir=b&limit=1&from=${one.start}`), alice);
    expect(bodies(fromOne.chunk)).toEqual(["c3"]);
    const none = await t.ok("GET", room(roomId, "/messages?dir=b&limit=0"), alice);
    expect(none.chunk).toEqual([]);
  });
});

describe("GET /timestamp_to_event", () => {
  it("finds the closest event in either direction", async () => {
    const roomId = await t.createRoom(alice);
    const a = await t.send(alice, roomId, "a");
    const b = await t.send(alice, roomId, "b");
    const ev = await t.ok("GET", room(roomId, `/event/${encodeURIComponent(a)}`), alice);
    const ts = ev.origin_server_ts as number;
    const v1 = (p: string) => `/_matrix/client/v1/rooms/${encodeURIComponent(roomId)}/timestamp_to_event?${p}`;
    expect((await t.ok("GET", v1(`ts=${ts}&dir=f`), alice)).event_id).toBe(a);
    expect((await t.ok("GET", v1(`ts=${ts + 1}&dir=f`), alice)).event_id).toBe(b);
    expect((await t.ok("GET", v1(`ts=${ts}&dir=b`), alice)).event_id).toBe(a);
    expect((await t.req("GET", v1(`ts=${ts + 100000}&dir=f`), alice)).status).toBe(404);
    expect((await t.req("GET", v1(`ts=x&dir=f`), alice)).body.errcode).toBe("M_INVALID_PARAM");
  });
});

describe("unsigned.membership", () => {
  it("is the viewer's membership at each event, including the event's own change", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat" });
    await t.send(alice, roomId, "before");
    await t.join(bob, roomId);
    await t.send(alice, roomId, "during");
    await t.ok("POST", room(roomId, "/leave"), bob, {});
    const chunk = (await t.ok("GET", room(roomId, "/messages?dir=f&limit=100"), bob)).chunk as any[];
    const at = (pred: (e: any) => boolean): string => chunk.find(pred).unsigned.membership;
    expect(at((e) => e.content.body === "before")).toBe("leave");
    expect(at((e) => e.content.body === "during")).toBe("join");
    expect(at((e) => e.type === "m.room.member" && e.state_key === bob.userId && e.content.membership === "join")).toBe("join");
    expect(at((e) => e.type === "m.room.member" && e.state_key === bob.userId && e.content.membership === "leave")).toBe("leave");
    const forAlice = (await t.ok("GET", room(roomId, "/messages?dir=f&limit=1"), alice)).chunk[0];
    expect(forAlice.type).toBe("m.room.create");
    expect(forAlice.unsigned.membership).toBe("leave"); // not yet joined at the create event
  });
});

describe("state no-ops", () => {
  it("a former member re-sending identical state is refused, not short-cut", async () => {
    const roomId = await t.createRoom(alice, { preset: "public_chat", power_level_content_override: { state_default: 0 } });
    await t.join(bob, roomId);
    await t.state(bob, roomId, "org.example.x", { v: 1 });
    await t.ok("POST", room(roomId, "/leave"), bob, {});
    const r = await t.req("PUT", room(roomId, "/state/org.example.x/"), bob, { v: 1 });
    expect([r.status, r.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
  });
});
