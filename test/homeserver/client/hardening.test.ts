/**
 * Regressions for the security and resource findings of issue 12 (an attacker's and a strict
 * client's view): cross-room relations and redactions, client limits, body sizes, transaction
 * scope, input hygiene. Each case failed before its fix.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { TestServer, room } from "../roomserver/harness.ts";
import type { TestUser } from "../roomserver/harness.ts";

let t: TestServer;
let alice: TestUser;
let bob: TestUser;
let mallory: TestUser;
/** Alice and Bob's room; Mallory is not in it. */
let privateRoom: string;
let privateEvent: string;
/** Mallory's own room, which Alice and Bob are in too. */
let malloryRoom: string;
beforeAll(async () => {
  t = await TestServer.start();
  alice = await t.user("alice");
  bob = await t.user("bob");
  mallory = await t.user("mallory");
  privateRoom = await t.createRoom(alice, { preset: "private_chat" });
  await t.invite(alice, privateRoom, bob.userId);
  await t.join(bob, privateRoom);
  privateEvent = await t.send(alice, privateRoom, "secret plans");
  malloryRoom = await t.createRoom(mallory, { preset: "public_chat" });
  await t.join(alice, malloryRoom);
  await t.join(bob, malloryRoom);
});
afterAll(async () => t.close());

const raw = async (method: string, path: string, token: string | undefined, body: BodyInit, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> => {
  const h: Record<string, string> = { "Content-Type": "application/json", ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  const res = await t.hs.handle(new Request(`http://localhost${path}`, { method, headers: h, body }));
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : {} };
};

describe("relations and redactions stay in their room", () => {
  it("refuses a thread reply, edit, reaction or reference to an event of another room (400)", async () => {
    for (const rel_type of ["m.thread", "m.replace", "m.annotation", "m.reference"]) {
      const content = { msgtype: "m.text", body: "injected", "m.relates_to": { rel_type, event_id: privateEvent, key: "👍" } };
      const type = rel_type === "m.annotation" ? "m.reaction" : "m.room.message";
      const r = await t.req("PUT", room(malloryRoom, `/send/${type}/x-${rel_type}`), mallory, content);
      expect(r.status, rel_type).toBe(400);
      expect(r.body.errcode).toBe("M_INVALID_PARAM");
    }
    // Nothing reached the private room's event.
    const rel = await t.ok("GET", `/_matrix/client/v1/rooms/${encodeURIComponent(privateRoom)}/relations/${encodeURIComponent(privateEvent)}`, alice);
    expect(rel.chunk).toEqual([]);
    const ev = await t.ok("GET", room(privateRoom, `/event/${encodeURIComponent(privateEvent)}`), alice);
    expect(ev.unsigned?.["m.relations"]).toBeUndefined();
  });

  it("refuses a relation through the state API too, and to an unknown event", async () => {
    const r = await t.req("PUT", room(malloryRoom, "/state/org.example.x/k"), mallory, { "m.relates_to": { rel_type: "m.reference", event_id: privateEvent } });
    expect(r.status).toBe(400);
    const unknown = await t.req("PUT", room(malloryRoom, "/send/m.room.message/u1"), mallory, { body: "x", "m.relates_to": { rel_type: "m.thread", event_id: "$nope:hs.test" } });
    expect(unknown.status).toBe(400);
  });

  it("refuses a rel_type or event_id with control characters (they forged an edit bundle)", async () => {
    const own = await t.send(mallory, malloryRoom, "original");
    for (const rel of [
      { rel_type: "m.reference\u001f", event_id: own },
      { rel_type: "m.replace\u0000", event_id: own },
      { rel_type: "", event_id: own },
      { rel_type: 5, event_id: own },
      { rel_type: "m.reference", event_id: `${own}\u001fm.replace` },
    ]) {
      const r = await t.req("PUT", room(malloryRoom, `/send/m.room.message/cc${JSON.stringify(rel).length}${String(rel.rel_type).length}`), mallory, { body: "x", "m.relates_to": rel });
      expect(r.status, JSON.stringify(rel)).toBe(400);
    }
    // A reply (no rel_type) and a valid relation in the same room still work.
    await t.send(mallory, malloryRoom, { body: "reply", "m.relates_to": { "m.in_reply_to": { event_id: privateEvent } } });
    await t.send(mallory, malloryRoom, { body: "ref", "m.relates_to": { rel_type: "m.reference", event_id: own } });
  });

  it("m.reference bundles list only references the viewer may see", async () => {
    // Shared history from some point makes the root visible to Bob; a reference sent under "joined" before he joined is not.
    const roomId2 = await t.createRoom(alice, { preset: "public_chat" });
    const root2 = await t.send(alice, roomId2, "root2");
    await t.state(alice, roomId2, "m.room.history_visibility", { history_visibility: "joined" });
    const hidden2 = await t.send(alice, roomId2, { body: "r1", "m.relates_to": { rel_type: "m.reference", event_id: root2 } });
    await t.state(alice, roomId2, "m.room.history_visibility", { history_visibility: "shared" });
    await t.join(bob, roomId2);
    const visible2 = await t.send(alice, roomId2, { body: "r2", "m.relates_to": { rel_type: "m.reference", event_id: root2 } });
    const asBob = await t.ok("GET", room(roomId2, `/event/${encodeURIComponent(root2)}`), bob);
    const ids = asBob.unsigned["m.relations"]["m.reference"].chunk.map((c: any) => c.event_id);
    expect(ids).toContain(visible2);
    expect(ids).not.toContain(hidden2);
    const asAlice = await t.ok("GET", room(roomId2, `/event/${encodeURIComponent(root2)}`), alice);
    expect(asAlice.unsigned["m.relations"]["m.reference"].chunk.map((c: any) => c.event_id)).toEqual([hidden2, visible2]);
  });

  it("refuses a redaction of an event of another room, on /redact and on /send", async () => {
    const r = await t.req("PUT", room(malloryRoom, `/redact/${encodeURIComponent(privateEvent)}/rd1`), mallory, { reason: "x" });
    expect(r.status).toBe(400);
    const viaSend = await t.req("PUT", room(malloryRoom, "/send/m.room.redaction/rd2"), mallory, { redacts: privateEvent });
    expect(viaSend.status).toBe(400);
    // Even a room admin of both rooms cannot redact across them.
    const cross = await t.req("PUT", room(malloryRoom, `/redact/${encodeURIComponent(privateEvent)}/rd3`), alice, {});
    expect(cross.status).toBe(400);
    const ev = await t.ok("GET", room(privateRoom, `/event/${encodeURIComponent(privateEvent)}`), alice);
    expect(ev.content.body).toBe("secret plans");
  });
});

describe("transaction IDs are scoped per device and request path", () => {
  it("a txnId reused in another room or for another type is a new event", async () => {
    const a = await t.ok("PUT", room(privateRoom, "/send/m.room.message/same"), alice, { msgtype: "m.text", body: "in private" });
    const b = await t.ok("PUT", room(malloryRoom, "/send/m.room.message/same"), alice, { msgtype: "m.text", body: "in mallory's" });
    expect(b.event_id).not.toBe(a.event_id);
    const ev = await t.ok("GET", room(malloryRoom, `/event/${encodeURIComponent(b.event_id)}`), alice);
    expect(ev.content.body).toBe("in mallory's");
    const c = await t.ok("PUT", room(privateRoom, "/send/org.example.other/same"), alice, { x: 1 });
    expect(c.event_id).not.toBe(a.event_id);
    // The same path again is a retry: the first event comes back.
    const again = await t.ok("PUT", room(privateRoom, "/send/m.room.message/same"), alice, { msgtype: "m.text", body: "retry" });
    expect(again.event_id).toBe(a.event_id);
  });
});

describe("client-supplied limits are capped", () => {
  it("search event_context limits are capped", async () => {
    const roomId = await t.createRoom(alice, {});
    for (let i = 0; i < 70; i++) await t.send(alice, roomId, i === 69 ? "needle" : `hay ${i}`);
    const r = await t.ok("POST", "/search", alice, {
      search_categories: { room_events: { search_term: "needle", filter: { rooms: [roomId] }, event_context: { before_limit: 100_000, after_limit: 100_000 } } },
    });
    const hit = r.search_categories.room_events.results[0];
    expect(hit.result.content.body).toBe("needle");
    expect(hit.context.events_before.length).toBe(50);
  });
});

describe("request bodies", () => {
  const path = (): string => `/_matrix/client/v3/user/${encodeURIComponent(alice.userId)}/account_data/org.example.big`;

  it("refuses a JSON body over 64 KiB with 413 M_TOO_LARGE, by declared length before authentication", async () => {
    const big = JSON.stringify({ x: "a".repeat(70 * 1024) });
    const r = await raw("PUT", path(), alice.token, big);
    expect(r.status).toBe(413);
    expect(r.body.errcode).toBe("M_TOO_LARGE");
    // Declared too large: refused before the token is even looked at.
    const unauth = await raw("PUT", path(), "not-a-token", big, { "Content-Length": String(big.length) });
    expect(unauth.status).toBe(413);
    // An undeclared (streamed) body is cut off as it is read.
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        c.enqueue(new TextEncoder().encode(" ".repeat(16 * 1024)));
      },
    });
    const res = await t.hs.handle(new Request(`http://localhost${path()}`, { method: "PUT", headers: { Authorization: `Bearer ${alice.token}` }, body: stream, duplex: "half" } as RequestInit));
    expect(res.status).toBe(413);
    // Just under the limit is fine.
    const ok = await raw("PUT", path(), alice.token, JSON.stringify({ x: "a".repeat(60 * 1024) }));
    expect(ok.status).toBe(200);
  });

  it("allows larger bodies where the spec needs them (/keys/upload, /sendToDevice)", async () => {
    const keys: Record<string, unknown> = {};
    for (let i = 0; i < 1500; i++) keys[`signed_curve25519:K${String(i).padStart(6, "0")}`] = { key: "k".repeat(43), signatures: { [alice.userId]: { [`ed25519:${alice.deviceId}`]: "s".repeat(86) } } };
    const body = JSON.stringify({ one_time_keys: keys });
    expect(body.length).toBeGreaterThan(64 * 1024);
    const r = await raw("POST", "/_matrix/client/v3/keys/upload", alice.token, body);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const huge = await raw("POST", "/_matrix/client/v3/keys/upload", alice.token, JSON.stringify({ one_time_keys: { x: "a".repeat(2 * 1024 * 1024) } }));
    expect(huge.status).toBe(413);
  });

  it("invalid UTF-8 in a JSON body is 400 M_NOT_JSON", async () => {
    const bytes = new Uint8Array([...new TextEncoder().encode('{"x":"'), 0xff, 0xfe, ...new TextEncoder().encode('"}')]);
    const r = await raw("PUT", path(), alice.token, bytes);
    expect(r.status).toBe(400);
    expect(r.body.errcode).toBe("M_NOT_JSON");
    const lone = new Uint8Array([...new TextEncoder().encode('{"x":"'), 0xed, 0xa0, 0x80, ...new TextEncoder().encode('"}')]);
    expect((await raw("PUT", path(), alice.token, lone)).body.errcode).toBe("M_NOT_JSON");
  });
});

describe("input hygiene and size limits", () => {
  const me = (): string => encodeURIComponent(alice.userId);

  it("refuses aliases with control characters or whitespace", async () => {
    for (const alias of ["#a\u0001b:hs.test", "#a\u0000:hs.test", "#bell\u0007:hs.test", "#tab\tx:hs.test", "#nl\nx:hs.test", "#c1\u0085:hs.test"]) {
      const r = await t.req("PUT", `/directory/room/${encodeURIComponent(alias)}`, alice, { room_id: privateRoom });
      expect([JSON.stringify(alias), r.status, r.body.errcode]).toEqual([JSON.stringify(alias), 400, "M_INVALID_PARAM"]);
    }
    const viaCreate = await t.req("POST", "/createRoom", alice, { room_alias_name: "ctl\u0001" });
    expect(viaCreate.status).toBe(400);
    expect((await t.req("PUT", `/directory/room/${encodeURIComponent("#fine-alias:hs.test")}`, alice, { room_id: privateRoom })).status).toBe(200);
  });

  it("refuses display names over 256 characters and avatar URLs over 1000", async () => {
    const long = await t.req("PUT", `/profile/${me()}/displayname`, alice, { displayname: "x".repeat(257) });
    expect([long.status, long.body.errcode]).toEqual([400, "M_INVALID_PARAM"]);
    // 256 characters (even outside the BMP, counted as characters) are fine.
    expect((await t.req("PUT", `/profile/${me()}/displayname`, alice, { displayname: "😀".repeat(256) })).status).toBe(200);
    const url = await t.req("PUT", `/profile/${me()}/avatar_url`, alice, { avatar_url: `mxc://hs.test/${"a".repeat(1000)}` });
    expect(url.status).toBe(400);
    await t.ok("PUT", `/profile/${me()}/displayname`, alice, { displayname: "Alice" });
  });

  it("refuses device display names over 100 characters (400 M_TOO_LARGE)", async () => {
    const r = await t.req("PUT", `/devices/${alice.deviceId}`, alice, { display_name: "d".repeat(101) });
    expect([r.status, r.body.errcode]).toEqual([400, "M_TOO_LARGE"]);
    expect((await t.req("PUT", `/devices/${alice.deviceId}`, alice, { display_name: "d".repeat(100) })).status).toBe(200);
  });

  it("refuses empty passwords at registration", async () => {
    const r = await t.req("POST", "/register", undefined, { username: "emptypw", password: "", auth: { type: "m.login.dummy" } });
    expect([r.status, r.body.errcode]).toEqual([400, "M_WEAK_PASSWORD"]);
    const taken = await t.req("GET", "/register/available?username=emptypw");
    expect(taken.body.available).toBe(true);
  });

  it("refuses invalid filters with 400 instead of storing them", async () => {
    for (const filter of [
      { room: { timeline: { senders: ["not a user"] } } },
      { room: { rooms: ["#alias:hs.test"] } },
      { room: { state: { not_rooms: [""] } } },
      { presence: { not_senders: ["alice"] } },
    ]) {
      const r = await t.req("POST", `/user/${me()}/filter`, alice, filter);
      expect([JSON.stringify(filter), r.status]).toEqual([JSON.stringify(filter), 400]);
    }
    expect((await t.req("POST", `/user/${me()}/filter`, alice, { room: { rooms: [privateRoom], timeline: { senders: [bob.userId] } } })).status).toBe(200);
  });

  it("bounds account data type names and the tags of a room", async () => {
    const longType = await t.req("PUT", `/user/${me()}/account_data/${"t".repeat(256)}`, alice, { x: 1 });
    expect(longType.status).toBe(400);
    const tagPath = (i: number): string => `/user/${me()}/rooms/${encodeURIComponent(privateRoom)}/tags/u.t${i}`;
    const big = { order: 0.5, note: "n".repeat(20 * 1024) };
    expect((await t.req("PUT", tagPath(1), alice, big)).status).toBe(200);
    expect((await t.req("PUT", tagPath(2), alice, big)).status).toBe(200);
    expect((await t.req("PUT", tagPath(3), alice, big)).status).toBe(200);
    const fourth = await t.req("PUT", tagPath(4), alice, big);
    expect([fourth.status, fourth.body.errcode]).toEqual([400, "M_TOO_LARGE"]);
  });
});
