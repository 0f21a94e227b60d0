/**
 * Push notifications through `npm run serve` (a child process) to a real HTTP push gateway: a
 * message and an invite arrive with the Push Gateway API's fields, and a notification that is
 * still pending when the server is killed is delivered after the restart.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnServe } from "./spawnServe.ts";
import type { Spawned } from "./spawnServe.ts";
import { startGateway } from "../homeserver/push/gateway.ts";
import type { TestGateway } from "../homeserver/push/gateway.ts";

let dir: string;
let gw: TestGateway;
const running: Spawned[] = [];
const start = async (data: string): Promise<Spawned> => {
  const s = await spawnServe(["--port", "0", "--data", data], "npm");
  running.push(s);
  return s;
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "hyphae-push-test-"));
  gw = await startGateway();
});
afterAll(async () => {
  for (const s of running) await s.stop("SIGKILL", true);
  await gw.close();
  await rm(dir, { recursive: true, force: true });
});

/** A Client-Server API call; throws unless 200. */
async function api(base: string, method: string, path: string, token?: string, body?: unknown): Promise<Record<string, any>> {
  const res = await fetch(`${base}/_matrix/client/v3${path}`, {
    method,
    headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), "Content-Type": "application/json" },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const json = (await res.json()) as Record<string, any>;
  if (res.status !== 200) throw new Error(`${method} ${path} → ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** Registers through the dummy stage (no password: nothing to hash). */
async function register(base: string, username: string): Promise<{ user_id: string; access_token: string }> {
  const probe = await fetch(`${base}/_matrix/client/v3/register`, { method: "POST", body: JSON.stringify({ username }) });
  const { session } = (await probe.json()) as { session: string };
  return (await api(base, "POST", "/register", undefined, { username, auth: { type: "m.login.dummy", session } })) as { user_id: string; access_token: string };
}

describe("push notifications through npm run serve", () => {
  it("sends a message and an invite to the gateway, and delivers a pending push after a restart", async () => {
    const data = join(dir, "node");
    const first = await start(data);
    const alice = await register(first.url, "alice");
    const bob = await register(first.url, "bob");
    await api(first.url, "PUT", `/profile/${encodeURIComponent(alice.user_id)}/displayname`, alice.access_token, { displayname: "Alice" });
    await api(first.url, "POST", "/pushers/set", bob.access_token, {
      kind: "http", app_id: "org.example.app", pushkey: "bobs-phone", app_display_name: "App", device_display_name: "Phone", lang: "en",
      data: { url: gw.url },
    });

    // A message in a room bob is in.
    const { room_id: roomId } = await api(first.url, "POST", "/createRoom", alice.access_token, { preset: "public_chat", name: "Garden" });
    await api(first.url, "POST", `/join/${encodeURIComponent(roomId)}`, bob.access_token, {});
    const { event_id: messageId } = await api(first.url, "PUT", `/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t1`, alice.access_token, { msgtype: "m.text", body: "the roses are out" });
    const [msg] = await gw.waitFor(1);
    expect(msg!.body.notification).toMatchObject({
      event_id: messageId, room_id: roomId, type: "m.room.message", sender: alice.user_id, sender_display_name: "Alice", room_name: "Garden",
      content: { body: "the roses are out" }, counts: { unread: 1 }, prio: "high",
      devices: [{ app_id: "org.example.app", pushkey: "bobs-phone", data: {}, tweaks: { sound: "default" } }],
    });

    // An invite to a room bob is not in.
    const { room_id: secret } = await api(first.url, "POST", "/createRoom", alice.access_token, { name: "Secret" });
    await api(first.url, "POST", `/rooms/${encodeURIComponent(secret)}/invite`, alice.access_token, { user_id: bob.user_id });
    const [, invite] = await gw.waitFor(2);
    expect(invite!.body.notification).toMatchObject({
      room_id: secret, type: "m.room.member", sender: alice.user_id, user_is_target: true, content: { membership: "invite" }, room_name: "Secret",
      devices: [{ pushkey: "bobs-phone", tweaks: { sound: "default" } }],
    });

    // The gateway fails; the server dies (SIGKILL, no shutdown at all) with the notification queued.
    gw.respond = () => ({ status: 503 });
    const { event_id: pendingId } = await api(first.url, "PUT", `/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t2`, alice.access_token, { msgtype: "m.text", body: "are you there?" });
    const [, , failed] = await gw.waitFor(3);
    expect(failed!.body.notification.event_id).toBe(pendingId);
    await first.stop("SIGKILL", true);

    gw.respond = () => ({ status: 200 });
    const second = await start(data);
    const delivered = await gw.waitFor(4, 20_000);
    expect(delivered[3]!.body.notification).toMatchObject({ event_id: pendingId, counts: { unread: 2 } });
    await second.stop("SIGTERM", true);
  }, 90_000);
});
