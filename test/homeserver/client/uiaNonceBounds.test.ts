/**
 * Issue 12, findings 5 and 11: UIA sessions and shared-secret registration nonces are created by
 * unauthenticated requests, so their number is bounded, their expiry does not scan them all, and
 * starting UIA sessions is rate-limited per client.
 */
import { describe, it, expect } from "vitest";
import { createHomeserver } from "../../../src/homeserver/homeserver.ts";
import type { Homeserver } from "../../../src/homeserver/homeserver.ts";
import { createMemoryStore } from "../../../src/storage/memory.ts";
import { CLIENT_ADDRESS_HEADER, DEFAULT_RATE_LIMITS } from "../../../src/homeserver/auth/rateLimit.ts";
import { MAX_UIA_SESSIONS, MAX_UIA_SESSIONS_PER_CLIENT, uiaSessionCount } from "../../../src/homeserver/services/uia.ts";

/** Starting UIA sessions is limited by the registration bucket; this test configures it. */
const UIA_SESSION_STARTS = { perSecond: 1, burstCount: 60 };
import { MAX_NONCES } from "../../../src/homeserver/admin/register.ts";

async function server(): Promise<{ hs: Homeserver; advance: (ms: number) => void }> {
  let now = 1_800_000_000_000;
  const hs = await createHomeserver({ store: createMemoryStore(), seed: new Uint8Array(32).fill(9), serverName: "hs.test", clock: () => now, config: { registrationSharedSecret: "s3cret", rateLimits: { ...DEFAULT_RATE_LIMITS, rc_registration: UIA_SESSION_STARTS } } });
  return { hs, advance: (ms) => void (now += ms) };
}

const post = async (hs: Homeserver, path: string, body: unknown, address?: string): Promise<{ status: number; body: any }> => {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (address) headers[CLIENT_ADDRESS_HEADER] = address;
  const res = await hs.handle(new Request(`http://localhost${path}`, { method: "POST", headers, body: JSON.stringify(body) }));
  return { status: res.status, body: await res.json() };
};

describe("UIA sessions", () => {
  it("keeps at most MAX_UIA_SESSIONS, dropping the oldest", async () => {
    const { hs } = await server();
    const first = (await post(hs, "/_matrix/client/v3/register", {})).body.session as string;
    for (let i = 0; i < MAX_UIA_SESSIONS + 50; i++) await post(hs, "/_matrix/client/v3/register", {});
    expect(uiaSessionCount(hs.services)).toBe(MAX_UIA_SESSIONS);
    const stale = await post(hs, "/_matrix/client/v3/register", { username: "a", password: "correct horse", auth: { type: "m.login.dummy", session: first } });
    expect([stale.status, stale.body.errcode]).toEqual([400, "M_UNKNOWN"]);
    await hs.close();
  });

  it("keeps a few per client address and rate-limits starting them", async () => {
    const { hs, advance } = await server();
    const ids: string[] = [];
    for (let i = 0; i < MAX_UIA_SESSIONS_PER_CLIENT + 5; i++) ids.push((await post(hs, "/_matrix/client/v3/register", {}, "10.0.0.1")).body.session);
    expect(uiaSessionCount(hs.services)).toBe(MAX_UIA_SESSIONS_PER_CLIENT);
    // Another client's sessions are not touched by the first one's flood.
    const other = (await post(hs, "/_matrix/client/v3/register", {}, "10.0.0.2")).body.session as string;
    for (let i = ids.length; i < UIA_SESSION_STARTS.burstCount; i++) await post(hs, "/_matrix/client/v3/register", {}, "10.0.0.1");
    const limited = await post(hs, "/_matrix/client/v3/register", {}, "10.0.0.1");
    expect([limited.status, limited.body.errcode]).toEqual([429, "M_LIMIT_EXCEEDED"]);
    // The newest session of the flooding client and the other client's session still complete.
    const done = await post(hs, "/_matrix/client/v3/register", { username: "b", password: "correct horse", auth: { type: "m.login.dummy", session: other } }, "10.0.0.2");
    expect(done.status).toBe(200);
    advance((UIA_SESSION_STARTS.burstCount / UIA_SESSION_STARTS.perSecond) * 1000 + 1);
    expect((await post(hs, "/_matrix/client/v3/register", {}, "10.0.0.1")).status).toBe(401);
    // Sessions expire after 30 minutes.
    advance(31 * 60_000);
    expect(uiaSessionCount(hs.services)).toBe(0);
    await hs.close();
  });
});

describe("shared-secret registration nonces", () => {
  it("bounds the outstanding nonces (429 when full) and frees them as they expire", async () => {
    const { hs, advance } = await server();
    const get = async (): Promise<Response> => hs.handle(new Request("http://localhost/_synapse/admin/v1/register"));
    for (let i = 0; i < MAX_NONCES; i++) expect((await get()).status).toBe(200);
    const full = await get();
    expect(full.status).toBe(429);
    expect(((await full.json()) as { errcode: string }).errcode).toBe("M_LIMIT_EXCEEDED");
    advance(61_000);
    expect((await get()).status).toBe(200);
    await hs.close();
  });
});
