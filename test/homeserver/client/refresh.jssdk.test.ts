/**
 * matrix-js-sdk 43 against refresh tokens, in-process (the Node listener in front of `handle()`).
 * js-sdk 43 refreshes automatically only for OAuth 2.0 sessions; with the legacy API a client logs
 * in with `refresh_token: true`, sees the soft logout when the access token expires, and calls
 * `client.refreshToken()` — which is what this test does.
 */
import { describe, it, expect, afterEach } from "vitest";
import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createClient, HttpApiEvent, MatrixError } from "matrix-js-sdk";
import type { Logger } from "matrix-js-sdk/lib/logger.js";
import { createRequestListener } from "../../../src/node/listener.ts";
import { silentLogger } from "../../../src/homeserver/context.ts";
import { testServer } from "./accountHarness.ts";

const LIFETIME = 60_000;
let server: Server | undefined;

afterEach(async () => {
  if (server) await new Promise<void>((r) => server!.close(() => r()));
  server = undefined;
});

/** Keeps the SDK's expected "unable to refresh token" complaint out of the test output. */
const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {}, trace() {}, getChild: () => quiet };

describe("matrix-js-sdk with refresh tokens", () => {
  it("survives an access token expiry: soft logout, refreshToken(), same device, old refresh token retired", async () => {
    const s = await testServer({ accessTokenLifetimeMs: LIFETIME });
    await s.register("alice");
    const listener = createRequestListener((r) => s.hs.handle(r), { scheme: "http", fallbackHost: "127.0.0.1", maxBodyBytes: 1 << 20, logger: silentLogger });
    server = createServer(listener);
    await new Promise<void>((r) => server!.listen(0, "127.0.0.1", () => r()));
    const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    const anon = createClient({ baseUrl, logger: quiet });
    const login = await anon.loginRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: "alice" }, password: "correct horse", refresh_token: true });
    expect(login.refresh_token).toEqual(expect.any(String));
    expect(login.expires_in_ms).toBe(LIFETIME);

    const client = createClient({ baseUrl, userId: login.user_id, deviceId: login.device_id, accessToken: login.access_token, refreshToken: login.refresh_token, logger: quiet });
    const loggedOut: MatrixError[] = [];
    client.on(HttpApiEvent.SessionLoggedOut, (e) => loggedOut.push(e));
    expect((await client.whoami()).device_id).toBe(login.device_id);

    s.advance(LIFETIME);
    const err = await client.whoami().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MatrixError);
    expect((err as MatrixError).errcode).toBe("M_UNKNOWN_TOKEN");
    expect((err as MatrixError).data.soft_logout).toBe(true);
    expect(loggedOut).toHaveLength(1);

    const fresh = await client.refreshToken(login.refresh_token!);
    expect(fresh.expires_in_ms).toBe(LIFETIME);
    client.setAccessToken(fresh.access_token);
    const me = await client.whoami();
    expect([me.user_id, me.device_id]).toEqual([login.user_id, login.device_id]);
    // The session is fully usable again.
    const { room_id } = await client.createRoom({});
    const sent = await client.sendTextMessage(room_id, "still here");
    expect(sent.event_id).toMatch(/^\$/);

    // The new access token has been used, so the old refresh token is gone.
    const reuse = await client.refreshToken(login.refresh_token!).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((reuse as MatrixError).errcode).toBe("M_UNKNOWN_TOKEN");
    const next = await client.refreshToken(fresh.refresh_token!);
    expect(next.access_token).not.toBe(fresh.access_token);
  });
});
