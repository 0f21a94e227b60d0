/**
 * A bridge built with a real appservice library (matrix-bot-sdk in appservice mode) against
 * `npm run serve`: it registers its users, receives transactions (also ones left pending across a
 * homeserver restart), masquerades as a namespaced user, and is asked about an unknown alias.
 *
 * matrix-bot-sdk 0.5: later releases load a native crypto binary at import, which their install
 * script downloads from outside the npm registry. 0.5 predates header authentication of
 * homeserver requests, so the server runs with `use_appservice_legacy_authorization` (as Synapse
 * would need for it).
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Appservice, LogLevel, LogService, MemoryStorageProvider } from "matrix-bot-sdk";
import type { IAppserviceRegistration } from "matrix-bot-sdk";
import { spawnServe } from "./spawnServe.ts";
import type { Spawned } from "./spawnServe.ts";

const SERVER_NAME = "bridge-hs.test";
const q = encodeURIComponent;

/** A free TCP port on 127.0.0.1 for the bridge's listener. */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** Resolves when `check` returns a value, polling every 100 ms; rejects after `ms`. */
async function eventually<T>(what: string, check: () => T | undefined | Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let dir: string;
let configFile: string;
let hs: Spawned | undefined;
let bridge: Appservice | undefined;
let registration: IAppserviceRegistration;
let asPort: number;
/** Every event the bridge was handed, in arrival order. */
const seen: any[] = [];

function startBridge(): Promise<void> {
  bridge = new Appservice({
    homeserverName: SERVER_NAME,
    homeserverUrl: hs!.url,
    port: asPort,
    bindAddress: "127.0.0.1",
    registration,
    storage: new MemoryStorageProvider(),
  });
  bridge.on("room.event", (_roomId: string, event: unknown) => seen.push(event));
  // The alias query: create a portal room for any alias asked about in the namespace.
  bridge.on("query.room", (alias: string, createRoom: (opts: unknown) => Promise<void>) => {
    void createRoom({ name: `Portal for ${alias}`, preset: "public_chat", visibility: "public" });
  });
  return bridge.begin();
}

async function api(method: string, path: string, token?: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${hs!.url}${path}`, {
    method,
    headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { "Content-Type": "application/json" } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: await res.json() };
}

beforeAll(async () => {
  LogService.setLevel(LogLevel.ERROR);
  dir = await mkdtemp(join(tmpdir(), "hyphae-appservice-"));
  asPort = await freePort();
  registration = {
    id: "testbridge",
    url: `http://127.0.0.1:${asPort}`,
    as_token: "as-token-for-the-test-bridge",
    hs_token: "hs-token-for-the-test-bridge",
    sender_localpart: "_bridge_bot",
    namespaces: {
      users: [{ exclusive: true, regex: `@_bridge_.*:${SERVER_NAME}` }],
      aliases: [{ exclusive: true, regex: `#_bridge_.*:${SERVER_NAME}` }],
      rooms: [],
    },
    rate_limited: false,
    protocols: ["irc"],
  } as IAppserviceRegistration;
  const yaml = [
    `id: ${registration.id}`,
    `url: "${registration.url}"`,
    `as_token: ${registration.as_token}`,
    `hs_token: ${registration.hs_token}`,
    `sender_localpart: ${registration.sender_localpart}`,
    "namespaces:",
    "  users:",
    `    - exclusive: true`,
    `      regex: "@_bridge_.*:${SERVER_NAME.replace(/\./g, "\\\\.")}"`,
    "  aliases:",
    `    - exclusive: true`,
    `      regex: "#_bridge_.*:${SERVER_NAME.replace(/\./g, "\\\\.")}"`,
    "  rooms: []",
    "rate_limited: false",
    "protocols: [irc]",
  ].join("\n");
  await writeFile(join(dir, "bridge.yaml"), yaml);
  configFile = join(dir, "hyphae.json");
  await writeFile(configFile, JSON.stringify({
    server_name: SERVER_NAME,
    http_port: 0,
    data_dir: "data",
    app_service_config_files: ["bridge.yaml"],
    use_appservice_legacy_authorization: true,
  }));
  hs = await spawnServe(["--config", configFile], "npm");
});

/**
 * Stops the server the way a terminal's Ctrl-C does (SIGINT to the process group: npm does not pass
 * signals on), and waits until every process of the group has exited, so the database is closed.
 */
async function stopServer(): Promise<void> {
  const pgid = hs!.child.pid!;
  await hs!.stop("SIGINT", true);
  await eventually("the server's process group to exit", () => {
    try {
      process.kill(-pgid, 0);
      return undefined;
    } catch {
      return true;
    }
  }, 20_000);
}

afterAll(async () => {
  bridge?.stop();
  if (hs) await stopServer();
  await rm(dir, { recursive: true, force: true });
});

describe("a matrix-bot-sdk bridge against npm run serve", () => {
  let human: { token: string; userId: string };
  let roomId: string;
  const ghost = `@_bridge_ghost:${SERVER_NAME}`;

  it("registers its bot and a namespaced user, and masquerades as that user", async () => {
    await startBridge();
    const reg = await api("POST", "/_matrix/client/v3/register", undefined, { username: "human", password: "correct horse battery", auth: { type: "m.login.dummy" } });
    expect(reg.status).toBe(200);
    human = { token: reg.body.access_token, userId: reg.body.user_id };
    // The namespace is exclusive: a human may not take a name in it.
    const taken = await api("POST", "/_matrix/client/v3/register", undefined, { username: "_bridge_fake", password: "pw", auth: { type: "m.login.dummy" } });
    expect([taken.status, taken.body.errcode]).toEqual([400, "M_EXCLUSIVE"]);

    roomId = (await api("POST", "/_matrix/client/v3/createRoom", human.token, { preset: "public_chat" })).body.room_id;
    const intent = bridge!.getIntentForUserId(ghost);
    await intent.ensureRegistered();
    await intent.joinRoom(roomId);
    const eventId = await intent.sendText(roomId, "hello from the other network");
    const ev = await api("GET", `/_matrix/client/v3/rooms/${q(roomId)}/event/${q(eventId)}`, human.token);
    expect(ev.body).toMatchObject({ sender: ghost, content: { body: "hello from the other network" } });
    // Masquerading outside the namespace is refused.
    const outside = await api("GET", `/_matrix/client/v3/account/whoami?user_id=${q(human.userId)}`, registration.as_token);
    expect([outside.status, outside.body.errcode]).toEqual([403, "M_FORBIDDEN"]);
  });

  it("receives the room's events in transactions", async () => {
    const sent = await api("PUT", `/_matrix/client/v3/rooms/${q(roomId)}/send/m.room.message/live1`, human.token, { msgtype: "m.text", body: "to the bridge" });
    expect(sent.status).toBe(200);
    const got = await eventually("the message at the bridge", () => seen.find((e) => e.event_id === sent.body.event_id));
    expect(got).toMatchObject({ sender: human.userId, room_id: roomId, content: { body: "to the bridge" } });
  });

  it("gets what was sent while it was down, after the homeserver restarted with the transaction pending", async () => {
    bridge!.stop();
    // Wait until the listener is really gone, so the send below cannot be delivered.
    await eventually("the bridge listener to close", async () => {
      try {
        await fetch(`${registration.url}/_matrix/app/v1/users/x`);
        return undefined;
      } catch {
        return true;
      }
    }, 10_000);
    const sent = await api("PUT", `/_matrix/client/v3/rooms/${q(roomId)}/send/m.room.message/down1`, human.token, { msgtype: "m.text", body: "sent while the bridge was down" });
    expect(sent.status).toBe(200);
    // Let the homeserver try (and fail) at least once before it stops.
    await new Promise((r) => setTimeout(r, 500));
    await stopServer();
    expect(seen.some((e) => e.event_id === sent.body.event_id)).toBe(false);

    hs = await spawnServe(["--config", configFile], "npm");
    await startBridge();
    const got = await eventually("the pending message at the bridge", () => seen.find((e) => e.event_id === sent.body.event_id), 30_000);
    expect(got.content.body).toBe("sent while the bridge was down");
  });

  it("is asked about an unknown alias in its namespace, and the join succeeds", async () => {
    const alias = `#_bridge_irc_matrix:${SERVER_NAME}`;
    const joined = await api("POST", `/_matrix/client/v3/join/${q(alias)}`, human.token, {});
    expect(joined.status).toBe(200);
    const resolved = await api("GET", `/_matrix/client/v3/directory/room/${q(alias)}`, human.token);
    expect(resolved.body.room_id).toBe(joined.body.room_id);
    const name = await api("GET", `/_matrix/client/v3/rooms/${q(joined.body.room_id)}/state/m.room.name/`, human.token);
    expect(name.body.name).toBe(`Portal for ${alias}`);
    // An alias outside the namespace is not asked about: plain 404.
    const other = await api("POST", `/_matrix/client/v3/join/${q(`#nobody:${SERVER_NAME}`)}`, human.token, {});
    expect([other.status, other.body.errcode]).toEqual([404, "M_NOT_FOUND"]);
  });

  it("answers the ping with the bridge reachable", async () => {
    const res = await api("POST", `/_matrix/client/v1/appservice/${registration.id}/ping`, registration.as_token, { transaction_id: "t1" });
    // matrix-bot-sdk 0.5 has no /_matrix/app/v1/ping route: its 404 comes back as 502 M_BAD_STATUS.
    expect([res.status, res.body.errcode, res.body.status]).toEqual([502, "M_BAD_STATUS", 404]);
  });
});
