/**
 * The hosted app in headless Chromium, served by the real `npm start` (build + static server; the
 * static server answers no Matrix path, so every Matrix answer comes from the app's Service Worker):
 * *Sign in* on the landing page creates the identity and the account in the browser and opens the
 * bundled Hydrogen already logged in (token login); messages go both ways between Hydrogen and the
 * worker's API. Then the worker as a peer: stopped explicitly over CDP (Playwright would keep it
 * alive otherwise) during a long-poll and during sends, it restarts from IndexedDB on the next fetch
 * and nothing is lost or duplicated; two tabs share one worker; (quota errors: test/sw/worker.test.ts —
 * Chromium 156 ignored CDP's Storage.overrideQuotaForOrigin here).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CDPSession, Page } from "playwright-core";
import { launchChromium } from "../e2e/browser.ts";
import type { LaunchedBrowser } from "../e2e/browser.ts";
import { REPO_ROOT, startServe } from "../e2e/serve.ts";
import { within } from "../e2e/http.ts";
import { npmStart } from "./npmStart.ts";
import type { StartedApp } from "./npmStart.ts";

const ARTIFACTS = join(REPO_ROOT, "test-results", "browser");

interface PageAnswer {
  status: number;
  json: Record<string, unknown>;
}

/** A JSON call made by the page (so it goes through the page's controlling worker). */
function api(page: Page, method: string, path: string, body?: unknown, token?: string): Promise<PageAnswer> {
  return page.evaluate(
    async ([method, path, body, token]) => {
      const headers: Record<string, string> = { "Content-Type": "application/json" };
      if (token) headers.Authorization = `Bearer ${token}`;
      const res = await fetch(path, { method, headers, body: body === undefined || body === null ? undefined : JSON.stringify(body) });
      const text = await res.text();
      try {
        return { status: res.status, json: JSON.parse(text) as Record<string, unknown> };
      } catch {
        return { status: res.status, json: { notJson: text.slice(0, 200) } };
      }
    },
    [method, path, body ?? null, token ?? ""] as const,
  );
}

/** The worker's status through the app's message protocol (src/app/worker.ts). */
function status(page: Page): Promise<{ instance: string; serverName: string; storage: { usage?: number; quota?: number } }> {
  return page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const channel = new MessageChannel();
        const timer = setTimeout(() => reject(new Error("no status answer")), 20_000);
        channel.port1.onmessage = (e: MessageEvent<{ status: never }>) => {
          clearTimeout(timer);
          resolve(e.data.status);
        };
        navigator.serviceWorker.controller!.postMessage({ hyphae: "status" }, [channel.port2]);
      }),
  );
}

/** Bodies of the `m.room.message` events of a room, oldest first (up to 200). */
async function bodies(page: Page, roomId: string, token: string): Promise<string[]> {
  const r = await api(page, "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=200`, undefined, token);
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  const chunk = r.json.chunk as { type: string; content: { body?: string } }[];
  return chunk.filter((e) => e.type === "m.room.message").map((e) => e.content.body ?? "").reverse();
}

describe("the hosted app (npm start, Chromium)", () => {
  let app: StartedApp | undefined;
  let browser: LaunchedBrowser | undefined;
  let cdp: CDPSession | undefined;
  const runningStatuses: string[] = [];

  beforeAll(async () => {
    app = await npmStart();
    browser = await launchChromium({ viewport: { width: 1100, height: 760 } });
  }, 240_000);

  afterAll(async () => {
    if (browser) {
      await mkdir(ARTIFACTS, { recursive: true });
      await writeFile(join(ARTIFACTS, "app-browser.log"), browser.logs().join("\n") + "\n");
    }
    await cdp?.detach().catch(() => undefined);
    await browser?.close();
    if (app) {
      await mkdir(ARTIFACTS, { recursive: true });
      await writeFile(join(ARTIFACTS, "app-npm-start.log"), app.output());
      expect(await app.stop()).toEqual({ code: 0, signal: null });
    }
  });

  /** Stops every Service Worker of the browser and waits until CDP reports it stopped. */
  async function stopWorker(): Promise<void> {
    if (!cdp) {
      cdp = await browser!.context.newCDPSession(browser!.page);
      cdp.on("ServiceWorker.workerVersionUpdated", (e: { versions: { runningStatus: string }[] }) => {
        for (const v of e.versions) runningStatuses.push(v.runningStatus);
      });
      await cdp.send("ServiceWorker.enable");
    }
    const before = runningStatuses.length;
    await cdp.send("ServiceWorker.stopAllWorkers");
    await expect.poll(() => runningStatuses.slice(before).includes("stopped") || runningStatuses.at(-1) === "stopped", { timeout: 20_000 }).toBe(true);
  }

  let token = "";
  let userId = "";
  let password = "";
  let roomId = "";

  it("Sign in: identity and account made in the browser, Hydrogen opens logged in, messages both ways", async () => {
    const page = browser!.page;
    const shot = (name: string) => page.screenshot({ path: join(ARTIFACTS, name), fullPage: true });
    await mkdir(ARTIFACTS, { recursive: true });
    try {
      await page.goto(`${app!.url}/`);
      await page.waitForSelector("body[data-app=ready]", { timeout: 60_000 });
      await shot("app-landing.png");
      await page.fill("#name", "Alice");
      await page.click("#signin-button");
      // Hydrogen, logged in by token: its session view with the (empty) room list.
      await page.waitForURL(/\/client\//, { timeout: 60_000 });
      await page.locator(".SessionView").waitFor({ timeout: 90_000 });
      expect(new URL(page.url()).searchParams.get("loginToken")).toBeNull();

      const account = await page.evaluate(() => JSON.parse(localStorage.getItem("hyphae_account")!) as { userId: string; password: string });
      userId = account.userId;
      password = account.password;
      expect(userId).toMatch(/^@alice:[0-9a-f]{64}$/);
      const login = await api(page, "POST", "/_matrix/client/v3/login", { type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password: account.password });
      expect(login.status, JSON.stringify(login.json)).toBe(200);
      token = login.json.access_token as string;
      const profile = await api(page, "GET", `/_matrix/client/v3/profile/${encodeURIComponent(userId)}/displayname`);
      expect(profile.json.displayname).toBe("Alice");
      // Hydrogen logged in as its own device, the sign-in device was logged out again.
      const devices = await api(page, "GET", "/_matrix/client/v3/devices", undefined, token);
      const names = (devices.json.devices as { display_name?: string }[]).map((d) => d.display_name);
      expect(names).not.toContain("Hyphae sign-in");
      expect(names.length).toBe(2); // Hydrogen's and this test's

      // A room made through the API appears in Hydrogen; a message typed into Hydrogen reaches the API.
      const created = await api(page, "POST", "/_matrix/client/v3/createRoom", { name: "Worker room", preset: "public_chat" }, token);
      expect(created.status, JSON.stringify(created.json)).toBe(200);
      roomId = created.json.room_id as string;
      const tile = page.locator(".RoomList li", { hasText: "Worker room" });
      await tile.waitFor({ timeout: 60_000 });
      await tile.locator("a").click();
      const composer = page.locator(".MessageComposer_input textarea");
      await composer.waitFor({ timeout: 30_000 });
      await composer.click();
      await composer.pressSequentially("typed in Hydrogen");
      await composer.press("Enter");
      await expect.poll(() => bodies(page, roomId, token), { timeout: 30_000 }).toContain("typed in Hydrogen");
      const sent = await api(page, "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/api-1`, { msgtype: "m.text", body: "sent through the API" }, token);
      expect(sent.status).toBe(200);
      await page.locator(".Timeline_message", { hasText: "sent through the API" }).first().waitFor({ timeout: 30_000 });
      await shot("app-hydrogen-room.png");

      // The static server answers no Matrix path: it was the worker.
      expect((await fetch(`${app!.url}/_matrix/client/versions`)).status).toBe(404);
    } catch (err) {
      await shot("app-signin-failure.png").catch(() => undefined);
      throw new Error(`${(err as Error).message}\n--- browser ---\n${browser!.logs().slice(-60).join("\n")}`, { cause: err });
    }
  }, 300_000);

  it("stopped during a long-poll and during sends: restarts from IndexedDB, nothing lost or duplicated", async () => {
    expect(token, "the sign-in test ran").not.toBe("");
    const page = browser!.page;
    const path = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}`;

    // A long-poll cut by the stop: Bob (alone, so nothing else wakes his /sync) waits; the worker
    // is stopped; Alice invites him; his retry with the same since token gets the invite.
    const bobReg1 = await api(page, "POST", "/_matrix/client/v3/register", { username: "bob", password: "bob's password" });
    const bobReg = await api(page, "POST", "/_matrix/client/v3/register", { username: "bob", password: "bob's password", auth: { type: "m.login.dummy", session: bobReg1.json.session } });
    expect(bobReg.status, JSON.stringify(bobReg.json)).toBe(200);
    const bob = bobReg.json as { user_id: string; access_token: string };
    const first = await api(page, "GET", "/_matrix/client/v3/sync?timeout=0", undefined, bob.access_token);
    const since = first.json.next_batch as string;
    const instanceBefore = (await status(page)).instance;
    const poll = page.evaluate(
      async ([since, token]) => {
        try {
          const res = await fetch(`/_matrix/client/v3/sync?timeout=25000&since=${encodeURIComponent(since)}`, { headers: { Authorization: `Bearer ${token}` } });
          return { status: res.status, json: (await res.json()) as Record<string, unknown> };
        } catch (err) {
          return { status: 0, json: { cut: String(err) } };
        }
      },
      [since, bob.access_token] as const,
    );
    await new Promise((r) => setTimeout(r, 1_000));
    await stopWorker();
    const invited = await api(page, "POST", `${path}/invite`, { user_id: bob.user_id }, token);
    expect(invited.status, JSON.stringify(invited.json)).toBe(200);
    const instanceAfter = (await status(page)).instance;
    expect(instanceAfter).not.toBe(instanceBefore);
    // Chromium re-dispatches a fetch whose worker stopped before answering to the new instance
    // (which then wakes on the invite); a browser that cuts it instead leaves the retry to the
    // client. Either way the invite reaches Bob.
    let outcome = await within(poll, 30_000, "the long-poll interrupted by the stop to settle");
    if (outcome.status !== 200) outcome = await api(page, "GET", `/_matrix/client/v3/sync?timeout=0&since=${encodeURIComponent(since)}`, undefined, bob.access_token);
    expect(outcome.status, JSON.stringify(outcome.json)).toBe(200);
    expect(Object.keys((outcome.json.rooms as { invite?: Record<string, unknown> }).invite ?? {})).toEqual([roomId]);
    const after = await api(page, "PUT", `${path}/send/m.room.message/after-stop`, { msgtype: "m.text", body: "after the stop" }, token);
    expect(after.status, JSON.stringify(after.json)).toBe(200);

    // Stops during sends: each send is retried with its transaction ID, as clients do, until answered.
    for (let i = 0; i < 5; i++) {
      const body = `send ${i} under stops`;
      const inFlight = api(page, "PUT", `${path}/send/m.room.message/stop-${i}`, { msgtype: "m.text", body }, token).catch((err: unknown) => ({ status: 0, json: { err: String(err) } }));
      await new Promise((r) => setTimeout(r, i * 15));
      await stopWorker();
      const r1 = await inFlight;
      if (r1.status !== 200) {
        const r2 = await api(page, "PUT", `${path}/send/m.room.message/stop-${i}`, { msgtype: "m.text", body }, token);
        expect(r2.status, JSON.stringify(r2.json)).toBe(200);
      }
    }
    const all = await bodies(page, roomId, token);
    for (let i = 0; i < 5; i++) expect(all.filter((b) => b === `send ${i} under stops`), `send ${i}`).toHaveLength(1);
    expect(all.filter((b) => b === "after the stop")).toHaveLength(1);
    expect(all.filter((b) => b === "typed in Hydrogen")).toHaveLength(1);

    // Hydrogen's own long-poll was cut too: its retry shows a message sent after the stops.
    await stopWorker();
    const late = await api(page, "PUT", `${path}/send/m.room.message/late`, { msgtype: "m.text", body: "seen by Hydrogen after a stop" }, token);
    expect(late.status).toBe(200);
    await page.locator(".Timeline_message", { hasText: "seen by Hydrogen after a stop" }).first().waitFor({ timeout: 60_000 });
    await page.screenshot({ path: join(ARTIFACTS, "app-after-stops.png"), fullPage: true });
  }, 240_000);

  it("two tabs share one worker; the status view shows the account and storage", async () => {
    const page = browser!.page;
    const second = await browser!.context.newPage();
    try {
      await second.goto(`${app!.url}/`);
      await second.waitForSelector("body[data-status=ready]", { timeout: 60_000 });
      const [a, b] = await Promise.all([status(page), status(second)]);
      expect(b.instance).toBe(a.instance);
      expect(await second.evaluate(() => navigator.serviceWorker.controller?.scriptURL)).toBe(`${app!.url}/sw.js`);
      expect(await second.locator("#status-user").textContent()).toBe(userId);
      expect(await second.locator("#status-server").textContent()).toBe(userId.split(":")[1]);
      expect(await second.locator("#status-storage").textContent()).toMatch(/used of .* granted/);
      expect(await second.locator("#status-queues").textContent()).toBe("empty");
      await second.screenshot({ path: join(ARTIFACTS, "app-status.png"), fullPage: true });
    } finally {
      await second.close();
    }
  }, 120_000);

  it("Export from A, Import into a fresh browser C: C is A's Matrix ID with A's rooms and history, in Hydrogen", async () => {
    expect(roomId, "the earlier tests ran").not.toBe("");
    const landing = await browser!.context.newPage();
    let c: LaunchedBrowser | undefined;
    const dir = await mkdtemp(join(tmpdir(), "hyphae-export-"));
    try {
      await landing.goto(`${app!.url}/`);
      await landing.waitForSelector("body[data-app=ready]", { timeout: 60_000 });
      await landing.fill("#export-passphrase", "correct horse battery");
      await landing.click("#export-button");
      await landing.waitForSelector("#export-link:not([hidden])", { timeout: 120_000 });
      const b64 = await landing.evaluate(async () => {
        const blob = await (await fetch((document.getElementById("export-link") as HTMLAnchorElement).href)).blob();
        const bytes = new Uint8Array(await blob.arrayBuffer());
        let s = "";
        for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
        return btoa(s);
      });
      const file = join(dir, "a.hyphae");
      await writeFile(file, Buffer.from(b64, "base64"));

      c = await launchChromium({ viewport: { width: 1100, height: 760 } });
      const page = c.page;
      await page.goto(`${app!.url}/`);
      await page.waitForSelector("body[data-app=ready]", { timeout: 60_000 });
      // A wrong passphrase is refused and leaves the fresh homeserver usable for the right one.
      await page.setInputFiles("#import-file", file);
      await page.fill("#import-passphrase", "wrong passphrase");
      await page.click("#import-button");
      await expect.poll(() => page.locator("#import-message").textContent(), { timeout: 120_000 }).toMatch(/Import failed/);
      await page.fill("#import-passphrase", "correct horse battery");
      await page.click("#import-button");
      await page.waitForURL(/\/client\//, { timeout: 120_000 });
      await page.locator(".SessionView").waitFor({ timeout: 90_000 });
      expect(await page.evaluate(() => (JSON.parse(localStorage.getItem("hyphae_account")!) as { userId: string }).userId)).toBe(userId);
      const tile = page.locator(".RoomList li", { hasText: "Worker room" });
      await tile.waitFor({ timeout: 60_000 });
      await tile.locator("a").click();
      await page.locator(".Timeline_message", { hasText: "seen by Hydrogen after a stop" }).first().waitFor({ timeout: 60_000 });
      await page.screenshot({ path: join(ARTIFACTS, "app-imported.png"), fullPage: true });

      // The same file imported by the Node runner (`npm run serve -- --import FILE`).
      const node = await startServe({ args: ["--import", file], env: { HYPHAE_IMPORT_PASSPHRASE: "correct horse battery" }, readyTimeoutMs: 120_000 });
      try {
        const res = await fetch(`${node.url}/_matrix/client/v3/login`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password }),
        });
        const login = (await res.json()) as { access_token: string; user_id: string };
        expect(login.user_id).toBe(userId);
        const messages = await fetch(`${node.url}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=100`, { headers: { Authorization: `Bearer ${login.access_token}` } });
        expect(JSON.stringify(await messages.json())).toContain("seen by Hydrogen after a stop");
      } finally {
        await node.stop();
      }
    } catch (err) {
      await c?.page.screenshot({ path: join(ARTIFACTS, "app-import-failure.png"), fullPage: true }).catch(() => undefined);
      throw new Error(`${(err as Error).message}\n--- C ---\n${c?.logs().slice(-40).join("\n") ?? ""}`, { cause: err });
    } finally {
      await landing.close();
      await c?.close();
      await rm(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
