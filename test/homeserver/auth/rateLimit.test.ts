/** The rc_* limiters: the token bucket itself, and each configured limit on its endpoint. */
import { describe, it, expect } from "vitest";
import { DEFAULT_RATE_LIMITS, TokenBucketLimiter } from "../../../src/homeserver/auth/rateLimit.ts";
import type { LimiterName, TokenBucket } from "../../../src/homeserver/auth/rateLimit.ts";
import { MatrixError } from "../../../src/homeserver/errors.ts";
import { testServer } from "../client/accountHarness.ts";
import type { TestServer } from "../client/accountHarness.ts";

describe("TokenBucketLimiter", () => {
  it("allows burst_count at once, then one per 1/per_second, per key", () => {
    let now = 0;
    const limiter = new TokenBucketLimiter({ perSecond: 0.5, burstCount: 3 }, () => now);
    for (let i = 0; i < 3; i++) limiter.take("a");
    let refused: unknown;
    try {
      limiter.take("a");
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(MatrixError);
    expect((refused as MatrixError).status).toBe(429);
    expect((refused as MatrixError).extra.retry_after_ms).toBe(2000);
    limiter.take("b");
    now += 1999;
    expect(() => limiter.take("a")).toThrow(MatrixError);
    now += 1;
    limiter.take("a");
    // Drained completely after 6 s: a full burst again.
    now += 6000;
    for (let i = 0; i < 3; i++) limiter.take("a");
    expect(() => limiter.take("a")).toThrow(MatrixError);
  });

  it("check() does not count; record() counts even over the limit", () => {
    const limiter = new TokenBucketLimiter({ perSecond: 1, burstCount: 1 }, () => 0);
    limiter.check("k");
    limiter.check("k");
    limiter.record("k");
    limiter.record("k");
    expect(() => limiter.check("k")).toThrow(MatrixError);
  });
});

/** A server whose limit `name` is `bucket` and every other limit is out of the way. */
async function serverWith(name: LimiterName, bucket: TokenBucket): Promise<TestServer> {
  const generous: Record<string, TokenBucket> = {};
  for (const k of Object.keys(DEFAULT_RATE_LIMITS)) generous[k] = { perSecond: 1000, burstCount: 1000 };
  return testServer({ rateLimits: { ...generous, [name]: bucket } as typeof DEFAULT_RATE_LIMITS });
}

const FROM = "192.0.2.1";
const createRoom = (t: TestServer, token: string, body: Record<string, unknown> = {}) =>
  t.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat", ...body }, { token, from: FROM });

describe("per-user limits (network requests only)", () => {
  it("rc_message: sends, state events and redactions share one bucket per user", async () => {
    const t = await serverWith("rc_message", { perSecond: 0.1, burstCount: 3 });
    const a = await t.register("alice");
    const b = await t.register("bob");
    const roomId = (await createRoom(t, a.token)).body.room_id as string;
    const send = (token: string, i: number) => t.call("PUT", `/_matrix/client/v3/rooms/${roomId}/send/m.room.message/t${i}`, { msgtype: "m.text", body: `${i}` }, { token, from: FROM });
    const first = await send(a.token, 1);
    expect(first.status).toBe(200);
    expect((await t.call("PUT", `/_matrix/client/v3/rooms/${roomId}/state/m.room.topic/`, { topic: "x" }, { token: a.token, from: FROM })).status).toBe(200);
    expect((await t.call("PUT", `/_matrix/client/v3/rooms/${roomId}/redact/${first.body.event_id}/r1`, {}, { token: a.token, from: FROM })).status).toBe(200);
    const limited = await send(a.token, 2);
    expect(limited.status).toBe(429);
    expect(limited.body).toMatchObject({ errcode: "M_LIMIT_EXCEEDED", retry_after_ms: 10_000 });
    // bob has his own bucket; alice's local (address-less) requests are not limited.
    expect((await t.call("POST", `/_matrix/client/v3/join/${roomId}`, {}, { token: b.token })).status).toBe(200);
    expect((await send(b.token, 3)).status).toBe(200);
    expect((await t.call("PUT", `/_matrix/client/v3/rooms/${roomId}/send/m.room.message/local`, { msgtype: "m.text", body: "local" }, { token: a.token })).status).toBe(200);
    t.advance(10_000);
    expect((await send(a.token, 4)).status).toBe(200);
  });

  it("rc_room_creation, and default_room_version for rooms that name none", async () => {
    const t = await testServer({
      defaultRoomVersion: "10",
      rateLimits: { ...DEFAULT_RATE_LIMITS, rc_room_creation: { perSecond: 0.01, burstCount: 2 } },
    });
    const a = await t.register("alice");
    const r1 = await createRoom(t, a.token);
    expect(r1.status).toBe(200);
    const state = await t.call("GET", `/_matrix/client/v3/rooms/${r1.body.room_id}/state/m.room.create/`, undefined, { token: a.token });
    expect(state.body.room_version).toBe("10");
    expect((await createRoom(t, a.token, { room_version: "11" })).status).toBe(200);
    const limited = await createRoom(t, a.token);
    expect(limited.status).toBe(429);
    expect(limited.body.retry_after_ms).toBe(100_000);
    const caps = await t.call("GET", "/_matrix/client/v3/capabilities", undefined, { token: a.token });
    expect(caps.body.capabilities["m.room_versions"].default).toBe("10");
  });

  it("rc_joins.local: joins (also through the state API) per user", async () => {
    const t = await serverWith("rc_joins.local", { perSecond: 0.1, burstCount: 2 });
    const a = await t.register("alice");
    const b = await t.register("bob");
    const rooms: string[] = [];
    for (let i = 0; i < 3; i++) rooms.push((await createRoom(t, a.token)).body.room_id as string);
    expect((await t.call("POST", `/_matrix/client/v3/join/${rooms[0]}`, {}, { token: b.token, from: FROM })).status).toBe(200);
    expect((await t.call("POST", `/_matrix/client/v3/rooms/${rooms[1]}/join`, {}, { token: b.token, from: FROM })).status).toBe(200);
    const limited = await t.call("PUT", `/_matrix/client/v3/rooms/${rooms[2]}/state/m.room.member/${encodeURIComponent(b.userId)}`, { membership: "join" }, { token: b.token, from: FROM });
    expect(limited.status).toBe(429);
    expect(limited.body.errcode).toBe("M_LIMIT_EXCEEDED");
  });

  it("rc_invites: per room, per invitee and per issuer; a refused invite costs nothing", async () => {
    const t = await serverWith("rc_invites.per_user", { perSecond: 0.01, burstCount: 1 });
    const a = await t.register("alice");
    const b = await t.register("bob");
    const c = await t.register("carol");
    const r1 = (await createRoom(t, a.token)).body.room_id as string;
    const r2 = (await createRoom(t, a.token)).body.room_id as string;
    const invite = (room: string, who: string) => t.call("POST", `/_matrix/client/v3/rooms/${room}/invite`, { user_id: who }, { token: a.token, from: FROM });
    expect((await invite(r1, b.userId)).status).toBe(200);
    // bob has had his one invite; carol has not.
    expect((await invite(r2, b.userId)).status).toBe(429);
    expect((await invite(r2, c.userId)).status).toBe(200);

    const t2 = await serverWith("rc_invites.per_issuer", { perSecond: 0.01, burstCount: 2 });
    const a2 = await t2.register("alice");
    const users = [await t2.register("u1"), await t2.register("u2"), await t2.register("u3")];
    const room = (await createRoom(t2, a2.token)).body.room_id as string;
    const statuses = [];
    for (const u of users) statuses.push((await t2.call("POST", `/_matrix/client/v3/rooms/${room}/invite`, { user_id: u.userId }, { token: a2.token, from: FROM })).status);
    expect(statuses).toEqual([200, 200, 429]);

    const t3 = await serverWith("rc_invites.per_room", { perSecond: 0.01, burstCount: 1 });
    const [x, y, z] = [await t3.register("x"), await t3.register("y"), await t3.register("z")];
    const room3 = (await createRoom(t3, x.token)).body.room_id as string;
    expect((await t3.call("POST", `/_matrix/client/v3/rooms/${room3}/invite`, { user_id: y.userId }, { token: x.token, from: FROM })).status).toBe(200);
    expect((await t3.call("PUT", `/_matrix/client/v3/rooms/${room3}/state/m.room.member/${encodeURIComponent(z.userId)}`, { membership: "invite" }, { token: x.token, from: FROM })).status).toBe(429);
  });

  it("rc_presence.per_user", async () => {
    const t = await serverWith("rc_presence.per_user", { perSecond: 0.1, burstCount: 1 });
    const a = await t.register("alice");
    const put = () => t.call("PUT", `/_matrix/client/v3/presence/${encodeURIComponent(a.userId)}/status`, { presence: "online" }, { token: a.token, from: FROM });
    expect((await put()).status).toBe(200);
    const limited = await put();
    expect(limited.status).toBe(429);
    expect(limited.body.retry_after_ms).toBe(10_000);
  });

  it("server admins are exempt", async () => {
    const t = await serverWith("rc_message", { perSecond: 0.01, burstCount: 1 });
    const a = await t.register("admin");
    await t.hs.services.store.write(async (tx) => tx.put("accounts", a.userId, { ...(await tx.get<object>("accounts", a.userId)), admin: true }));
    const roomId = (await createRoom(t, a.token)).body.room_id as string;
    for (let i = 0; i < 5; i++) {
      expect((await t.call("PUT", `/_matrix/client/v3/rooms/${roomId}/send/m.room.message/t${i}`, { msgtype: "m.text", body: "x" }, { token: a.token, from: FROM })).status).toBe(200);
    }
  });
});
