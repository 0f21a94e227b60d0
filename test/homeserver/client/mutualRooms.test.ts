/** `GET /_matrix/client/v1/mutual_rooms` (modules/mutual_rooms.md). */
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { TestServer, room, SERVER } from "../roomserver/harness.ts";
import type { TestUser } from "../roomserver/harness.ts";
import { key } from "../../../src/storage/store.ts";
import { MUTUAL_ROOMS_BATCH, MUTUAL_ROOMS_REQUESTS, isCompliantUserId } from "../../../src/homeserver/client/mutualRooms.ts";
import { CLIENT_ADDRESS_HEADER } from "../../../src/homeserver/auth/rateLimit.ts";

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

const mutual = (userId: string, from?: string): string =>
  `/_matrix/client/v1/mutual_rooms?user_id=${encodeURIComponent(userId)}${from !== undefined ? `&from=${encodeURIComponent(from)}` : ""}`;

describe("mutual rooms", () => {
  it("lists the rooms both users are joined to, and only those", async () => {
    const both1 = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, both1);
    const both2 = await t.createRoom(bob, { preset: "public_chat" });
    await t.join(alice, both2);
    await t.createRoom(alice, { preset: "public_chat" }); // alice only
    const invited = await t.createRoom(alice, { preset: "private_chat" });
    await t.invite(alice, invited, bob.userId); // bob invited, not joined
    const left = await t.createRoom(alice, { preset: "public_chat" });
    await t.join(bob, left);
    await t.ok("POST", room(left, "/leave"), bob, {});
    const withCarol = await t.createRoom(bob, { preset: "public_chat" });
    await t.join(carol, withCarol);

    const r = await t.ok("GET", mutual(bob.userId), alice);
    expect([...r.joined].sort()).toEqual([both1, both2].sort());
    expect(r.count).toBe(2);
    expect(r.next_batch).toBeUndefined();
    // symmetric
    expect([...(await t.ok("GET", mutual(alice.userId), bob)).joined].sort()).toEqual([both1, both2].sort());
    expect(await t.ok("GET", mutual(carol.userId), alice)).toEqual({ joined: [], count: 0 });
  });

  it("answers an empty list for a user that does not exist (the spec's MUST)", async () => {
    expect(await t.ok("GET", mutual(`@nobody:${SERVER}`), alice)).toEqual({ joined: [], count: 0 });
    expect(await t.ok("GET", mutual("@someone:elsewhere.example:8448"), alice)).toEqual({ joined: [], count: 0 });
  });

  it("pages through many rooms with next_batch; count is the total", async () => {
    // Membership rows written straight into the store (the table sync and joined_rooms read), so
    // the test can cover several batches without building hundreds of rooms.
    const total = MUTUAL_ROOMS_BATCH * 2 + 7;
    const shared: string[] = [];
    await t.hs.services.store.write(async (tx) => {
      for (let i = 0; i < total; i++) {
        const roomId = `!r${String(i).padStart(4, "0")}:${SERVER}`;
        shared.push(roomId);
        for (const u of [alice, bob]) tx.put("memberships", key(u.userId, roomId), { membership: "join", eventId: `$m${i}`, streamPos: 1 });
      }
      // noise: rooms only alice is in, and one bob left
      tx.put("memberships", key(alice.userId, "!zonly:x"), { membership: "join", eventId: "$a", streamPos: 1 });
      tx.put("memberships", key(alice.userId, "!r0000x:x"), { membership: "join", eventId: "$b", streamPos: 1 });
      tx.put("memberships", key(bob.userId, "!r0000x:x"), { membership: "leave", eventId: "$c", streamPos: 1 });
    });
    const seen: string[] = [];
    let from: string | undefined;
    let pages = 0;
    do {
      const r = await t.ok("GET", mutual(bob.userId, from), alice);
      expect(r.count).toBe(total);
      expect(r.joined.length).toBeLessThanOrEqual(MUTUAL_ROOMS_BATCH);
      seen.push(...r.joined);
      from = r.next_batch;
      pages++;
    } while (from !== undefined && pages < 10);
    expect(pages).toBe(3);
    expect(seen).toEqual(shared.sort());
  });

  it("a batch token stays put when rooms are joined or left between requests", async () => {
    const ids: string[] = [];
    await t.hs.services.store.write(async (tx) => {
      for (let i = 0; i < MUTUAL_ROOMS_BATCH + 2; i++) {
        const roomId = `!s${String(i).padStart(4, "0")}:${SERVER}`;
        ids.push(roomId);
        for (const u of [alice, bob]) tx.put("memberships", key(u.userId, roomId), { membership: "join", eventId: `$m${i}`, streamPos: 1 });
      }
    });
    const first = await t.ok("GET", mutual(bob.userId), alice);
    expect(first.next_batch).toBeDefined();
    // a room sorting before the token's position appears after the first batch was served
    await t.hs.services.store.write(async (tx) => {
      for (const u of [alice, bob]) tx.put("memberships", key(u.userId, "!a-new:x"), { membership: "join", eventId: "$n", streamPos: 2 });
    });
    const second = await t.ok("GET", mutual(bob.userId, first.next_batch), alice);
    expect(second.joined).toEqual(ids.slice(MUTUAL_ROOMS_BATCH));
    expect(second.next_batch).toBeUndefined();
  });

  describe("errors", () => {
    it("401 without a token or with an unknown token", async () => {
      expect((await t.req("GET", mutual(bob.userId))).body.errcode).toBe("M_MISSING_TOKEN");
      const bad = await t.req("GET", mutual(bob.userId), "not-a-token");
      expect(bad.status).toBe(401);
      expect(bad.body.errcode).toBe("M_UNKNOWN_TOKEN");
    });

    it("400 for a missing, repeated, non-compliant or own user_id", async () => {
      const cases: [string, string][] = [
        ["/_matrix/client/v1/mutual_rooms", "M_MISSING_PARAM"],
        [`/_matrix/client/v1/mutual_rooms?user_id=${encodeURIComponent(bob.userId)}&user_id=${encodeURIComponent(carol.userId)}`, "M_INVALID_PARAM"],
        [mutual("bob"), "M_INVALID_PARAM"],
        [mutual("@Bob:hs.test"), "M_INVALID_PARAM"], // historical (upper case) localpart
        [mutual("@bob"), "M_INVALID_PARAM"],
        [mutual("@bob:"), "M_INVALID_PARAM"],
        [mutual(`@${"a".repeat(250)}:${SERVER}`), "M_INVALID_PARAM"],
        [mutual(alice.userId), "M_INVALID_PARAM"],
      ];
      for (const [path, errcode] of cases) {
        const r = await t.req("GET", path, alice);
        expect({ path, status: r.status, errcode: r.body.errcode }).toEqual({ path, status: 400, errcode });
      }
    });

    it("400 M_INVALID_PARAM for a malformed from token or one issued for another user", async () => {
      for (const from of ["garbage", "mr1_!!!", "mr1_e30", ""]) {
        const r = await t.req("GET", mutual(bob.userId, from), alice);
        expect({ from, status: r.status, errcode: r.body.errcode }).toEqual({ from, status: 400, errcode: "M_INVALID_PARAM" });
      }
      await t.hs.services.store.write(async (tx) => {
        for (let i = 0; i < MUTUAL_ROOMS_BATCH + 1; i++) {
          for (const u of [alice, bob, carol]) tx.put("memberships", key(u.userId, `!q${i}:x`), { membership: "join", eventId: "$q", streamPos: 1 });
        }
      });
      const page = await t.ok("GET", mutual(bob.userId), alice);
      expect(page.next_batch).toBeDefined();
      const other = await t.req("GET", mutual(carol.userId, page.next_batch), alice);
      expect(other.status).toBe(400);
      expect(other.body.errcode).toBe("M_INVALID_PARAM");
    });

    it("403 M_GUEST_ACCESS_FORBIDDEN for guests", async () => {
      const guest = await t.user("guest1", { guest: true });
      const r = await t.req("GET", mutual(bob.userId), guest);
      expect(r.status).toBe(403);
      expect(r.body.errcode).toBe("M_GUEST_ACCESS_FORBIDDEN");
    });

    it("429 M_LIMIT_EXCEEDED once a network client has used up its requests", async () => {
      const call = async (addr: string) => {
        const res = await t.hs.handle(new Request(`http://localhost${mutual(bob.userId)}`, { headers: { Authorization: `Bearer ${alice.token}`, [CLIENT_ADDRESS_HEADER]: addr } }));
        return { status: res.status, body: (await res.json()) as Record<string, unknown> };
      };
      for (let i = 0; i < MUTUAL_ROOMS_REQUESTS.burstCount; i++) expect((await call("10.0.0.1")).status).toBe(200);
      const limited = await call("10.0.0.1");
      expect(limited.status).toBe(429);
      expect(limited.body.errcode).toBe("M_LIMIT_EXCEEDED");
      expect(limited.body.retry_after_ms).toBeGreaterThan(0);
      // another client, and local (address-less) requests, are unaffected
      expect((await call("10.0.0.2")).status).toBe(200);
      expect((await t.req("GET", mutual(bob.userId), alice)).status).toBe(200);
    });
  });
});

describe("isCompliantUserId", () => {
  it.each([
    ["@alice:example.org", true],
    ["@a.b_c=d-e/f+g:example.org:8448", true],
    ["@x:[::1]:8448", true],
    ["@x:127.0.0.1", true],
    ["@Alice:example.org", false],
    ["@al ice:example.org", false],
    ["alice:example.org", false],
    ["@:example.org", false],
    ["@alice:exa mple.org", false],
    ["@alice:example.org:port", false],
  ])("%s → %s", (id, ok) => {
    expect(isCompliantUserId(id)).toBe(ok);
  });
});
