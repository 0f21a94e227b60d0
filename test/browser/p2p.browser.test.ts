/**
 * A browser homeserver federating in P2P mode (issue 13 item 1): the real `npm start` (its app and
 * its rendezvous node; config.json lists the rendezvous), headless Chromium whose Service Worker
 * runs the libp2p node, and a Node peer on the same rendezvous (the real `npm run serve --
 * --rendezvous ADDR` child process in P2P mode). The Node user creates a
 * public room, the browser user joins it by room ID through `server_name`, and each side sees the
 * other's message in /sync. The worker's status reports the node, its rendezvous and its peers.
 * Then the worker is stopped (CDP): the next request restarts the homeserver and its libp2p node
 * from IndexedDB, and messages flow both ways again.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { CDPSession, Page } from "playwright-core";
import { launchChromium } from "../e2e/browser.ts";
import type { LaunchedBrowser } from "../e2e/browser.ts";
import { REPO_ROOT, startServe } from "../e2e/serve.ts";
import type { ServedHomeserver } from "../e2e/serve.ts";
import { npmStart } from "./npmStart.ts";
import type { StartedApp } from "./npmStart.ts";
import { serverNameFromPeerId } from "../../src/transport/identity.ts";

const ARTIFACTS = join(REPO_ROOT, "test-results", "browser");

interface Answer {
  status: number;
  json: Record<string, any>;
}

/** A JSON call made by the page, so its controlling worker answers it. */
function api(page: Page, method: string, path: string, body?: unknown, token?: string): Promise<Answer> {
  return page.evaluate(
    async ([method, path, body, token]) => {
      const headers: Record<string, string> = { "Content-Type": "application/json" };
      if (token) headers.Authorization = `Bearer ${token}`;
      const res = await fetch(path, { method, headers, body: body === null ? undefined : JSON.stringify(body) });
      const text = await res.text();
      try {
        return { status: res.status, json: JSON.parse(text) as Record<string, any> };
      } catch {
        return { status: res.status, json: { notJson: text.slice(0, 200) } };
      }
    },
    [method, path, body ?? null, token ?? ""] as const,
  );
}

/** The worker's status (src/sw/serviceWorker.ts `WorkerStatus`). */
function status(page: Page): Promise<{ serverName: string; p2p: { running: boolean; peers: number; rendezvousConnected: number; rendezvous: string; peerId?: string } }> {
  return page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const channel = new MessageChannel();
        const timer = setTimeout(() => reject(new Error("no status answer")), 20_000);
        channel.port1.onmessage = (e: MessageEvent<{ status: never; error?: string }>) => {
          clearTimeout(timer);
          if (e.data.error) reject(new Error(e.data.error));
          else resolve(e.data.status);
        };
        navigator.serviceWorker.controller!.postMessage({ hyphae: "status" }, [channel.port2]);
      }),
  );
}

/** The message bodies of `roomId` in one /sync (full state, timeline up to 50). */
function bodiesOf(sync: Record<string, any>, roomId: string): string[] {
  const events = (sync.rooms?.join?.[roomId]?.timeline?.events ?? []) as { type: string; content: { body?: string } }[];
  return events.filter((e) => e.type === "m.room.message").map((e) => e.content.body ?? "");
}

const SYNC = `/_matrix/client/v3/sync?filter=${encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 50 } } }))}`;

describe("a browser homeserver federates over libp2p (npm start, Chromium)", () => {
  let app: StartedApp | undefined;
  let browser: LaunchedBrowser | undefined;
  let serve: ServedHomeserver | undefined;
  let rendezvous = "";

  beforeAll(async () => {
    app = await npmStart();
    rendezvous = /Rendezvous node at (\S+)/.exec(app.output())?.[1] ?? "";
    expect(rendezvous, app.output()).toMatch(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/ws\/p2p\//);
    browser = await launchChromium();
  }, 240_000);

  afterAll(async () => {
    if (browser) {
      await mkdir(ARTIFACTS, { recursive: true });
      await writeFile(join(ARTIFACTS, "p2p-browser.log"), browser.logs().join("\n") + "\n");
    }
    await browser?.close();
    await serve?.stop();
    if (app) expect(await app.stop()).toEqual({ code: 0, signal: null });
  }, 60_000);

  it("the Node user's public room is joined by the browser user by room ID; messages both ways", async () => {
    // The Node peer: `npm run serve` in P2P mode, listening on loopback websockets and reserved on the rendezvous.
    serve = await startServe({ args: ["--host", "127.0.0.1", "--rendezvous", rendezvous], readyTimeoutMs: 120_000 });
    const out = serve.output();
    expect(out).toMatch(/Hyphae P2P listening on \S+\/p2p-circuit\//);
    const nodeName = /\(server name ([0-9a-f]{64})\)/.exec(out)?.[1] ?? "";
    expect(nodeName, out).toMatch(/^[0-9a-f]{64}$/);
    const base = serve.url;
    const local = async (method: string, path: string, body?: unknown, token?: string): Promise<Answer> => {
      const headers: Record<string, string> = { "Content-Type": "application/json" };
      if (token) headers.Authorization = `Bearer ${token}`;
      const res = await fetch(`${base}${path}`, { method, headers, signal: AbortSignal.timeout(60_000), ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
      return { status: res.status, json: (await res.json()) as Record<string, any> };
    };
    const bobReg = await local("POST", "/_matrix/client/v3/register", { username: "bob", password: "bob's password", auth: { type: "m.login.dummy" } });
    expect(bobReg.status, JSON.stringify(bobReg.json)).toBe(200);
    const bob = bobReg.json.access_token as string;
    const created = await local("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat", name: "Across the rendezvous" }, bob);
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    const roomId = created.json.room_id as string;

    // The browser peer: the app's worker reads config.json and starts its libp2p node with the homeserver.
    const page = browser!.page;
    await page.goto(`${app!.url}/`);
    await page.waitForSelector("body[data-app=ready]", { timeout: 60_000 });
    const first = await api(page, "POST", "/_matrix/client/v3/register", { username: "alice", password: "alice's password" });
    const aliceReg = await api(page, "POST", "/_matrix/client/v3/register", { username: "alice", password: "alice's password", auth: { type: "m.login.dummy", session: first.json.session } });
    expect(aliceReg.status, JSON.stringify(aliceReg.json)).toBe(200);
    const alice = aliceReg.json.access_token as string;
    // The node starts beside the homeserver, not before it: bounded wait until it is on the rendezvous.
    await expect.poll(async () => (await status(page)).p2p, { timeout: 30_000, interval: 200 }).toMatchObject({ running: true, rendezvousConnected: 1 });
    const browserStatus = await status(page);
    expect(serverNameFromPeerId(browserStatus.p2p.peerId!)).toBe(browserStatus.serverName);
    expect(aliceReg.json.user_id).toBe(`@alice:${browserStatus.serverName}`);

    // Join by room ID through the Node server (reached through the rendezvous relay or directly).
    const joined = await api(page, "POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}?server_name=${nodeName}`, {}, alice);
    expect(joined.status, JSON.stringify(joined.json)).toBe(200);
    expect(joined.json.room_id).toBe(roomId);
    expect((await status(page)).p2p.peers).toBeGreaterThanOrEqual(1);

    // Browser → Node.
    const sent = await api(page, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/a1`, { msgtype: "m.text", body: "hello from the browser" }, alice);
    expect(sent.status, JSON.stringify(sent.json)).toBe(200);
    await expect
      .poll(async () => bodiesOf((await local("GET", SYNC, undefined, bob)).json, roomId), { timeout: 60_000, interval: 500 })
      .toContain("hello from the browser");

    // Node → browser, after the join: delivered to the browser server over libp2p.
    expect((await local("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/b2`, { msgtype: "m.text", body: "Node again, after the join" }, bob)).status).toBe(200);
    await expect
      .poll(async () => bodiesOf((await api(page, "GET", SYNC, undefined, alice)).json, roomId), { timeout: 60_000, interval: 500 })
      .toEqual(["hello from the browser", "Node again, after the join"]);

    // The browser stops the idle worker: the next request restarts the homeserver and its node.
    const cdp: CDPSession = await browser!.context.newCDPSession(page);
    const running: string[] = [];
    cdp.on("ServiceWorker.workerVersionUpdated", (e: { versions: { runningStatus: string }[] }) => {
      for (const v of e.versions) running.push(v.runningStatus);
    });
    await cdp.send("ServiceWorker.enable");
    const before = running.length;
    await cdp.send("ServiceWorker.stopAllWorkers");
    await expect.poll(() => running.slice(before).includes("stopped"), { timeout: 20_000 }).toBe(true);
    await cdp.detach();
    const again = await api(page, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/a2`, { msgtype: "m.text", body: "browser after a worker restart" }, alice);
    expect(again.status, JSON.stringify(again.json)).toBe(200);
    await expect.poll(async () => (await status(page)).p2p, { timeout: 30_000, interval: 200 }).toMatchObject({ running: true, rendezvousConnected: 1 });
    await expect
      .poll(async () => bodiesOf((await local("GET", SYNC, undefined, bob)).json, roomId), { timeout: 60_000, interval: 500 })
      .toContain("browser after a worker restart");
    expect((await local("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/b3`, { msgtype: "m.text", body: "Node after the restart" }, bob)).status).toBe(200);
    await expect
      .poll(async () => bodiesOf((await api(page, "GET", SYNC, undefined, alice)).json, roomId), { timeout: 60_000, interval: 500 })
      .toContain("Node after the restart");
  }, 300_000);
});
