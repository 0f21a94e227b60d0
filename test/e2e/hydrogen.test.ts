/**
 * Acceptance test: the real Hydrogen web client (assembled from hydrogen-view-sdk, see
 * hydrogen-app/) in headless Chromium, against the Node homeserver (`npm run serve`). A user logs
 * in through Hydrogen's own login form, finds a room in the room list, opens it and sends a message
 * by typing into the composer; another user, on matrix-js-sdk, must receive that message, and
 * Hydrogen must show the reply. Then the same in an encrypted room: Hydrogen's olm against
 * js-sdk's Rust crypto, both ways, with only ciphertext on the server.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createClient } from "matrix-js-sdk";
import type { MatrixClient } from "matrix-js-sdk";
import { logger as jsSdkLogger } from "matrix-js-sdk/lib/logger.js";
import type { Logger } from "matrix-js-sdk/lib/logger.js";
import { launchChromium } from "./browser.ts";
import type { LaunchedBrowser } from "./browser.ts";
import { buildHydrogenApp, serveStatic } from "./hydrogen-app/build.ts";
import { REPO_ROOT, startServe } from "./serve.ts";
import type { ServedHomeserver } from "./serve.ts";
import { call, register, within } from "./http.ts";
import { startClientSynced, waitForMessage } from "./jssdk.ts";
import type { Session } from "./http.ts";

const ARTIFACTS = join(REPO_ROOT, "test-results");
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

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



describe("Hydrogen in Chromium against the Node homeserver", () => {
  let hs: ServedHomeserver | undefined;
  let app: { url: string; close(): Promise<void> } | undefined;
  let browser: LaunchedBrowser | undefined;
  let bobClient: MatrixClient | undefined;
  let bobCrypto: MatrixClient | undefined;
  let outDir: string | undefined;
  // Set by the first test once Hydrogen is logged in as Alice; the second test continues that session.
  let loggedIn: { alice: Session; bob: Session; password: string } | undefined;

  beforeAll(async () => {
    // The Rust crypto of js-sdk traces every step through console.debug/info/log.
    for (const level of ["debug", "info", "log"] as const) vi.spyOn(console, level).mockImplementation(() => undefined);
    outDir = await mkdtemp(join(tmpdir(), "hyphae-hydrogen-app-"));
    const built = buildHydrogenApp(outDir);
    hs = await startServe();
    await built;
    app = await serveStatic(outDir);
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    bobClient?.stopClient();
    bobCrypto?.stopClient();
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
    vi.restoreAllMocks();
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
    await startClientSynced(bobClient, "Bob's matrix-js-sdk client to finish its first sync");

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
      loggedIn = { alice, bob, password };
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

  it("in an encrypted room, Hydrogen (olm) and matrix-js-sdk (Rust crypto) read each other's messages", async () => {
    expect(loggedIn, "the first test logs Hydrogen in; this one continues its session").toBeDefined();
    const { alice, password } = loggedIn!;
    const base = hs!.url;
    const page = browser!.page;

    // Bob on a second device with Rust crypto (device keys, one-time keys, to-device, key queries).
    const bobLogin = await call(base, "POST", "/_matrix/client/v3/login", { type: "m.login.password", identifier: { type: "m.id.user", user: "bob" }, password });
    expect(bobLogin.status, JSON.stringify(bobLogin.body)).toBe(200);
    const bob2 = bobLogin.body as unknown as Session;
    bobCrypto = createClient({ baseUrl: base, userId: bob2.user_id, accessToken: bob2.access_token, deviceId: bob2.device_id, logger: quietLogger });
    await bobCrypto.initRustCrypto({ useIndexedDB: false });
    await startClientSynced(bobCrypto, "Bob's crypto client to finish its first sync");

    const roomName = "Hydrogen encrypted";
    const { room_id: roomId } = await bobCrypto.createRoom({
      name: roomName,
      invite: [alice.user_id],
      initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    const joined = await call(base, "POST", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/join`, {}, alice.access_token);
    expect(joined.status, JSON.stringify(joined.body)).toBe(200);

    const failureContext = (): string => `\n--- browser ---\n${browser!.logs().join("\n")}\n--- homeserver ---\n${hs!.output().slice(-4000)}`;
    try {
      // The running Hydrogen session picks the room up from its incremental /sync.
      const roomTile = page.locator(".RoomList li", { hasText: roomName });
      await roomTile.waitFor({ timeout: 60_000 });
      await roomTile.locator("a").click();
      const composer = page.locator(".MessageComposer_input textarea");
      await composer.waitFor({ timeout: 30_000 });

      // Hydrogen → Bob: Hydrogen queries Bob's device keys, claims a one-time key, sends the megolm
      // key over to-device (olm), then the m.room.encrypted event; Bob's Rust crypto decrypts it.
      const secret = `Encrypted hello from Hydrogen ${Math.random().toString(36).slice(2)}`;
      const received = waitForMessage(bobCrypto, roomId, secret);
      await composer.click();
      await composer.pressSequentially(secret);
      await composer.press("Enter");
      const event = await within(received, 60_000, "Bob's crypto client to decrypt Hydrogen's message");
      expect(event.isEncrypted()).toBe(true);
      expect(event.getWireType()).toBe("m.room.encrypted");
      expect(event.getSender()).toBe(alice.user_id);

      // Bob → Hydrogen: Rust crypto shares its megolm key with Hydrogen's device; Hydrogen decrypts.
      const reply = `Encrypted reply from matrix-js-sdk ${Math.random().toString(36).slice(2)}`;
      await bobCrypto.sendTextMessage(roomId, reply);
      await page.locator(".Timeline_message", { hasText: reply }).first().waitFor({ timeout: 30_000 });

      // The server only ever stored ciphertext.
      const messages = await call(base, "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=20`, undefined, alice.access_token);
      expect(messages.status).toBe(200);
      const raw = JSON.stringify(messages.body);
      expect(raw).toContain("m.room.encrypted");
      expect(raw).not.toContain(secret);
      expect(raw).not.toContain(reply);

      await mkdir(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, "hydrogen-encrypted-room.png"), fullPage: true });
    } catch (err) {
      await mkdir(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, "hydrogen-encrypted-failure.png"), fullPage: true }).catch(() => undefined);
      throw new Error(`${(err as Error).message}${failureContext()}`, { cause: err });
    }
  }, 180_000);
});
