/**
 * Acceptance test: the real Hydrogen web client (assembled from hydrogen-view-sdk, see
 * hydrogen-app/) in headless Chromium, against the Node homeserver (`npm run serve`). A user logs
 * in through Hydrogen's own login form, finds a room in the room list, opens it and sends a message
 * by typing into the composer; another user, on matrix-js-sdk, must receive that message.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ClientEvent, createClient, RoomEvent } from "matrix-js-sdk";
import type { MatrixClient, MatrixEvent, Room } from "matrix-js-sdk";
import { logger as jsSdkLogger } from "matrix-js-sdk/lib/logger.js";
import type { Logger } from "matrix-js-sdk/lib/logger.js";
import { launchChromium } from "./browser.ts";
import type { LaunchedBrowser } from "./browser.ts";
import { buildHydrogenApp, serveStatic } from "./hydrogen-app/build.ts";
import { REPO_ROOT, startServe } from "./serve.ts";
import type { ServedHomeserver } from "./serve.ts";

const ARTIFACTS = join(REPO_ROOT, "test-results");
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

interface Session {
  user_id: string;
  access_token: string;
  device_id: string;
}

/** `POST` or `GET` JSON with an optional access token; returns status and parsed body. */
async function call(base: string, method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers["Authorization"] = `Bearer ${token}`;
  const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

/** Registers through User-Interactive Auth with the `m.login.dummy` stage (spec: "Account registration"). */
async function register(base: string, username: string, password: string): Promise<Session> {
  const first = await call(base, "POST", "/_matrix/client/v3/register", { username, password });
  if (first.status === 200) return first.body as unknown as Session;
  expect(first.status, JSON.stringify(first.body)).toBe(401);
  const session = first.body["session"] as string | undefined;
  const second = await call(base, "POST", "/_matrix/client/v3/register", {
    username,
    password,
    auth: { type: "m.login.dummy", ...(session ? { session } : {}) },
  });
  expect(second.status, JSON.stringify(second.body)).toBe(200);
  return second.body as unknown as Session;
}

/** js-sdk logs every request at info level; keep the test output readable. */
const quietLogger: Logger = {
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: (...msg: unknown[]) => console.error("[js-sdk]", ...msg),
  getChild: () => quietLogger,
};

// Parts of js-sdk log through its module-level (loglevel) logger instead of the client's.
(jsSdkLogger as unknown as { setLevel(level: string): void }).setLevel("error");

/** Resolves with the first m.room.message in `roomId` whose body is `body`, as B's js-sdk client sees it. */
function waitForMessage(client: MatrixClient, roomId: string, body: string): Promise<MatrixEvent> {
  return new Promise((resolve) => {
    const check = (event: MatrixEvent, room: Room | undefined): void => {
      if (room?.roomId !== roomId || event.getType() !== "m.room.message") return;
      if (event.getContent()["body"] !== body) return;
      client.off(RoomEvent.Timeline, check);
      resolve(event);
    };
    client.on(RoomEvent.Timeline, check);
  });
}

/** Rejects with a clear message if `promise` has not settled after `ms` (a hang guard, not a speed check). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe("Hydrogen in Chromium against the Node homeserver", () => {
  let hs: ServedHomeserver | undefined;
  let app: { url: string; close(): Promise<void> } | undefined;
  let browser: LaunchedBrowser | undefined;
  let bobClient: MatrixClient | undefined;
  let outDir: string | undefined;

  beforeAll(async () => {
    outDir = await mkdtemp(join(tmpdir(), "hyphae-hydrogen-app-"));
    const built = buildHydrogenApp(outDir);
    hs = await startServe();
    await built;
    app = await serveStatic(outDir);
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    bobClient?.stopClient();
    // Artifacts for whoever debugs a failure (or a Hydrogen complaint) later.
    if (browser && hs) {
      await mkdir(ARTIFACTS, { recursive: true });
      await writeFile(join(ARTIFACTS, "hydrogen-browser.log"), browser.logs().join("\n") + "\n");
      await writeFile(join(ARTIFACTS, "hydrogen-homeserver.log"), hs.output());
    }
    await browser?.close();
    await app?.close();
    await hs?.stop();
    if (outDir) await rm(outDir, { recursive: true, force: true });
  });

  it("logs in through the login form, opens the room and sends a message that matrix-js-sdk receives, and sees the reply", async () => {
    const base = hs!.url;
    const page = browser!.page;
    const password = "correct horse battery staple";
    const alice = await register(base, "alice", password);
    const bob = await register(base, "bob", password);

    // Bob creates a named room, invites Alice; Alice joins (plain HTTP: only the UI part is under test).
    const roomName = "Hydrogen acceptance";
    const created = await call(base, "POST", "/_matrix/client/v3/createRoom", { name: roomName, preset: "private_chat" }, bob.access_token);
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const roomId = created.body["room_id"] as string;
    const invited = await call(base, "POST", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/invite`, { user_id: alice.user_id }, bob.access_token);
    expect(invited.status, JSON.stringify(invited.body)).toBe(200);
    const joined = await call(base, "POST", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/join`, {}, alice.access_token);
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);

    // Bob listens with matrix-js-sdk.
    bobClient = createClient({ baseUrl: base, userId: bob.user_id, accessToken: bob.access_token, deviceId: bob.device_id, logger: quietLogger });
    const bobReady = new Promise<void>((resolve) => {
      bobClient!.on(ClientEvent.Sync, (state) => {
        if (state === "PREPARED") resolve();
      });
    });
    await bobClient.startClient({ initialSyncLimit: 20 });
    await within(bobReady, 60_000, "Bob's matrix-js-sdk client to finish its first sync");

    const failureContext = (): string => `\n--- browser ---\n${browser!.logs().join("\n")}\n--- homeserver ---\n${hs!.output().slice(-4000)}`;
    try {
      // Hydrogen's login screen: homeserver first (it queries /.well-known and GET /login once the
      // field changes), then the password form appears.
      await page.goto(app!.url + "/");
      const homeserverField = page.locator("#homeserver");
      await homeserverField.waitFor({ timeout: 30_000 });
      await homeserverField.fill(base);
      await homeserverField.press("Tab");
      await page.locator("#username").waitFor({ timeout: 30_000 });
      await page.locator("#username").fill("alice");
      await page.locator("#password").fill(password);
      await page.locator(".PasswordLoginView button[type=submit]").click();

      // The session loads (first /sync) and the room list shows Bob's room.
      const roomTile = page.locator(".RoomList li", { hasText: roomName });
      await roomTile.waitFor({ timeout: 60_000 });
      await roomTile.locator("a").click();

      // Type into the composer and press Enter, like a user.
      const composer = page.locator(".MessageComposer_input textarea");
      await composer.waitFor({ timeout: 30_000 });
      const body = `Hello from Hydrogen ${Math.random().toString(36).slice(2)}`;
      const received = waitForMessage(bobClient, roomId, body);
      await composer.click();
      await composer.pressSequentially(body);
      await composer.press("Enter");

      const event = await within(received, 60_000, "Bob's matrix-js-sdk client to receive the message");
      expect(event.getSender()).toBe(alice.user_id);
      expect(event.getContent()["msgtype"]).toBe("m.text");

      // Hydrogen shows it as sent (its local echo is replaced by the remote echo from /sync).
      await page.locator(".Timeline_message", { hasText: body }).first().waitFor({ timeout: 30_000 });

      // And the other direction: Bob answers from js-sdk; Hydrogen's long-polling /sync shows it.
      const reply = `Reply from matrix-js-sdk ${Math.random().toString(36).slice(2)}`;
      await bobClient.sendTextMessage(roomId, reply);
      await page.locator(".Timeline_message", { hasText: reply }).first().waitFor({ timeout: 30_000 });
      await mkdir(ARTIFACTS, { recursive: true });
      const shot = join(ARTIFACTS, "hydrogen-room.png");
      await page.screenshot({ path: shot, fullPage: true });
      const png = await readFile(shot);
      expect(png.length).toBeGreaterThan(1000);
      expect(png.subarray(0, 8).equals(PNG_SIGNATURE)).toBe(true);
    } catch (err) {
      await mkdir(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, "hydrogen-failure.png"), fullPage: true }).catch(() => undefined);
      throw new Error(`${(err as Error).message}${failureContext()}`, { cause: err });
    }
  }, 180_000);
});
