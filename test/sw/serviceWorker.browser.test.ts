/**
 * Hyphae as a Service Worker in headless Chromium (issue 5: E2EE and media "in the Service Worker
 * as well as in Node"). src/sw/worker.ts is bundled with vite into one `sw.js`, served from
 * 127.0.0.1 next to a test page; the page registers it and drives the Client-Server API through
 * plain `fetch`. The static server answers no Matrix path, so every Matrix answer the page gets
 * came from the worker. Then the worker is stopped over CDP and everything must still be there
 * (IndexedDB, same identity).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServer } from "node:http";
import type { Server } from "node:http";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { build } from "vite";
import type { Page } from "playwright-core";
import { launchChromium } from "../e2e/browser.ts";
import type { LaunchedBrowser } from "../e2e/browser.ts";
import type { ApiResult, ImageResult } from "./page.ts";

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));
const RESULTS_DIR = here("../../test-results/");

type Helpers = {
  api(method: string, path: string, body?: unknown, token?: string): Promise<ApiResult>;
  makeImage(name: string, width: number, height: number, type?: string): Promise<{ size: number; sha256: string }>;
  upload(name: string, token: string): Promise<ApiResult>;
  getImage(path: string, token?: string, label?: string): Promise<ImageResult>;
  thumbnail(source: string | number[], contentType: string, width: number, height: number, method: "crop" | "scale"): Promise<(ImageResult & { sameBytes: boolean }) | null>;
  show(caption: string): Promise<void>;
};
type Args = unknown[];

/** Calls one of the page's helpers (page.ts) with JSON-serialisable arguments. */
function call<K extends keyof Helpers>(page: Page, name: K, ...args: Parameters<Helpers[K]>): Promise<Awaited<ReturnType<Helpers[K]>>> {
  return page.evaluate(
    ([n, a]) => ((globalThis as unknown as { hyphaeTest: Record<string, (...x: Args) => unknown> }).hyphaeTest[n as string]!(...(a as Args)) as Promise<never>),
    [name, args] as const,
  ) as Promise<Awaited<ReturnType<Helpers[K]>>>;
}

/** Registration through the User-Interactive Authentication dummy stage (client_server_api.md "Account registration"). */
async function register(page: Page, username: string, password: string): Promise<{ user_id: string; access_token: string; device_id: string }> {
  const first = await call(page, "api", "POST", "/_matrix/client/v3/register", { username, password });
  expect(first.status, JSON.stringify(first.json)).toBe(401);
  const flows = first.json.flows as { stages: string[] }[];
  expect(flows.some((f) => f.stages.length === 1 && f.stages[0] === "m.login.dummy")).toBe(true);
  const second = await call(page, "api", "POST", "/_matrix/client/v3/register", {
    username,
    password,
    initial_device_display_name: `${username}'s browser`,
    auth: { type: "m.login.dummy", session: first.json.session },
  });
  expect(second.status, JSON.stringify(second.json)).toBe(200);
  return second.json as { user_id: string; access_token: string; device_id: string };
}

describe("Hyphae in a Service Worker (Chromium)", () => {
  let outDir: string;
  let server: Server;
  let base: string;
  let browser: LaunchedBrowser | undefined;
  let page: Page;
  let swSource: Buffer;
  const seenByNetwork: string[] = [];

  beforeAll(async () => {
    outDir = await mkdtemp(join(tmpdir(), "hyphae-sw-"));
    const warnings: string[] = [];
    const onwarn = (w: { message: string }): void => void warnings.push(w.message);
    // The worker: one classic script, minified as it would ship.
    await build({
      configFile: false,
      logLevel: "error",
      build: {
        outDir: join(outDir, "sw"),
        emptyOutDir: true,
        minify: true,
        target: "es2023",
        reportCompressedSize: false,
        rollupOptions: { onwarn },
        lib: { entry: here("../../src/sw/worker.ts"), formats: ["iife"], name: "hyphaeServiceWorker", fileName: () => "sw.js" },
      },
    });
    await build({
      configFile: false,
      logLevel: "error",
      build: {
        outDir: join(outDir, "page"),
        emptyOutDir: true,
        minify: false,
        reportCompressedSize: false,
        lib: { entry: here("./page.ts"), formats: ["es"], fileName: () => "page.js" },
      },
    });
    // Nothing in the worker may need Node: vite replaces Node built-ins with an empty stub and warns.
    expect(warnings.filter((w) => /externalized|node:|built-in/i.test(w))).toEqual([]);
    swSource = await readFile(join(outDir, "sw", "sw.js"));
    const pageJs = await readFile(join(outDir, "page", "page.js"));
    const html = Buffer.from('<!doctype html><meta charset="utf-8"><title>Hyphae Service Worker</title><body><p>Hyphae Service Worker test</p><script type="module" src="/page.js"></script>');
    server = createServer((req, res) => {
      const path = new URL(req.url ?? "/", "http://x").pathname;
      seenByNetwork.push(path);
      if (path === "/") return void res.writeHead(200, { "content-type": "text/html", "cache-control": "no-store" }).end(html);
      if (path === "/sw.js") return void res.writeHead(200, { "content-type": "text/javascript", "cache-control": "no-store" }).end(swSource);
      if (path === "/page.js") return void res.writeHead(200, { "content-type": "text/javascript", "cache-control": "no-store" }).end(pageJs);
      if (path === "/hello.txt") return void res.writeHead(200, { "content-type": "text/plain" }).end("from the network");
      res.writeHead(404, { "content-type": "text/plain" }).end("not here");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    if (!address || typeof address === "string") throw new Error("no address");
    base = `http://127.0.0.1:${address.port}`;
    browser = await launchChromium({ viewport: { width: 900, height: 600 } });
    page = browser.page;
    await page.goto(`${base}/`);
    await page.waitForFunction(() => "hyphaeTest" in globalThis);
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    if (server) {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
    if (outDir) await rm(outDir, { recursive: true, force: true });
  });

  it("bundles the worker as one script without dynamic import", () => {
    const code = swSource.toString("utf8");
    expect(code).not.toMatch(/\bimport\s*\(/);
    expect(code).not.toMatch(/\bimport\s*[{*\w][^;]*\bfrom\s*["']/);
    const gzipped = gzipSync(swSource, { level: 9 }).length;
    console.log(`sw.js: ${swSource.length} bytes minified, ${gzipped} bytes gzipped`);
    expect(swSource.length).toBeGreaterThan(10_000);
  });

  it("thumbnails in the browser: crop and scale sizes, no upscaling, originals and refusals (unit)", async () => {
    await call(page, "makeImage", "unit", 640, 480);
    const crop = await call(page, "thumbnail", "unit", "image/png", 96, 96, "crop");
    expect([crop?.width, crop?.height, crop?.contentType, crop?.sameBytes]).toEqual([96, 96, "image/png", false]);
    const scale = await call(page, "thumbnail", "unit", "image/png", 320, 240, "scale");
    expect([scale?.width, scale?.height]).toEqual([320, 240]);
    // "scale" keeps the aspect ratio and is never smaller than the box; "crop" takes the box's aspect ratio.
    const scaleSquare = await call(page, "thumbnail", "unit", "image/png", 100, 100, "scale");
    expect([scaleSquare?.width, scaleSquare?.height]).toEqual([133, 100]);
    // Never upscaled: a crop wider than the image is capped at its width.
    const wideCrop = await call(page, "thumbnail", "unit", "image/png", 1000, 100, "crop");
    expect([wideCrop?.width, wideCrop?.height]).toEqual([640, 100]);
    // Larger than the original in both directions: the original itself.
    for (const method of ["crop", "scale"] as const) {
      const big = await call(page, "thumbnail", "unit", "image/png", 2000, 1500, method);
      expect([big?.width, big?.height, big?.sameBytes], method).toEqual([640, 480, true]);
    }
    // JPEG stays JPEG.
    await call(page, "makeImage", "unitJpeg", 400, 300, "image/jpeg");
    const jpeg = await call(page, "thumbnail", "unitJpeg", "image/jpeg", 96, 96, "crop");
    expect([jpeg?.contentType, jpeg?.width, jpeg?.height]).toEqual(["image/jpeg", 96, 96]);
    // What the core must handle itself: not an image, SVG, corrupt bytes.
    expect(await call(page, "thumbnail", [...new TextEncoder().encode("hello")], "text/plain", 32, 32, "crop")).toBeNull();
    const svg = '<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><rect width="100" height="100"/></svg>';
    expect(await call(page, "thumbnail", [...new TextEncoder().encode(svg)], "image/svg+xml", 32, 32, "crop")).toBeNull();
    expect(await call(page, "thumbnail", [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3], "image/png", 32, 32, "crop")).toBeNull();
    // A 1×1 GIF with two frames: animated, so even though it is small its thumbnail is a still PNG.
    const frame = [0x21, 0xf9, 0x04, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0x02, 0x02, 0x44, 0x01, 0x00];
    const gif = [0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 1, 0, 1, 0, 0x80, 0, 0, 0, 0, 0, 255, 255, 255, ...frame, ...frame, 0x3b];
    const still = await call(page, "thumbnail", gif, "image/gif", 96, 96, "crop");
    expect([still?.contentType, still?.width, still?.height, still?.sameBytes]).toEqual(["image/png", 1, 1, false]);
  });

  it("serves the Matrix API from the worker: accounts, rooms, sync, E2EE keys, to-device, media; and survives a stop", async () => {
    const p = page;
    await p.evaluate(async () => {
      await navigator.serviceWorker.register("/sw.js");
      await navigator.serviceWorker.ready;
    });
    // clients.claim() on activate makes the worker control this page without a reload.
    await p.waitForFunction(() => navigator.serviceWorker.controller !== null, undefined, { timeout: 30_000 });

    const versions = await call(p, "api", "GET", "/_matrix/client/versions");
    expect(versions.status).toBe(200);
    expect(versions.json.versions).toContain("v1.11");
    const wellKnown = await call(p, "api", "GET", "/.well-known/matrix/client");
    expect(wellKnown.status).toBe(200);
    expect((wellKnown.json["m.homeserver"] as { base_url: string }).base_url).toBe(base);

    // Everything that is not a Matrix path still goes to the network.
    expect(await p.evaluate(async () => (await fetch("/hello.txt")).text())).toBe("from the network");

    const alice = await register(p, "alice", "alice's long password");
    const bob = await register(p, "bob", "bob's long password");
    const serverName = alice.user_id.split(":")[1]!;
    expect(serverName).toMatch(/^[0-9a-f]{64}$/);
    expect(bob.user_id).toBe(`@bob:${serverName}`);
    const who = await call(p, "api", "GET", "/_matrix/client/v3/account/whoami", undefined, alice.access_token);
    expect(who.json).toMatchObject({ user_id: alice.user_id, device_id: alice.device_id });

    // An encrypted room: alice creates it and invites bob, bob joins.
    const created = await call(p, "api", "POST", "/_matrix/client/v3/createRoom", {
      preset: "private_chat",
      name: "SW room",
      invite: [bob.user_id],
      initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    }, alice.access_token);
    expect(created.status, JSON.stringify(created.json)).toBe(200);
    const roomId = created.json.room_id as string;
    const bobFirst = await call(p, "api", "GET", "/_matrix/client/v3/sync?timeout=0", undefined, bob.access_token);
    expect(Object.keys((bobFirst.json.rooms as { invite: object }).invite)).toEqual([roomId]);
    const joined = await call(p, "api", "POST", `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {}, bob.access_token);
    expect(joined.status, JSON.stringify(joined.json)).toBe(200);

    // E2EE: bob publishes device keys and one-time keys; alice claims one.
    const b64 = (n: number): string => Buffer.alloc(32, n).toString("base64").replace(/=+$/, "");
    const deviceKeys = {
      user_id: bob.user_id,
      device_id: bob.device_id,
      algorithms: ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
      keys: { [`curve25519:${bob.device_id}`]: b64(1), [`ed25519:${bob.device_id}`]: b64(2) },
      signatures: { [bob.user_id]: { [`ed25519:${bob.device_id}`]: Buffer.alloc(64, 3).toString("base64").replace(/=+$/, "") } },
    };
    const otks: Record<string, unknown> = {};
    for (let i = 0; i < 3; i++) otks[`signed_curve25519:AAAA${i}`] = { key: b64(10 + i), signatures: { [bob.user_id]: { [`ed25519:${bob.device_id}`]: "sig" } } };
    const uploaded = await call(p, "api", "POST", "/_matrix/client/v3/keys/upload", { device_keys: deviceKeys, one_time_keys: otks }, bob.access_token);
    expect(uploaded.status, JSON.stringify(uploaded.json)).toBe(200);
    expect(uploaded.json.one_time_key_counts).toEqual({ signed_curve25519: 3 });
    const queried = await call(p, "api", "POST", "/_matrix/client/v3/keys/query", { device_keys: { [bob.user_id]: [] } }, alice.access_token);
    expect((queried.json.device_keys as Record<string, Record<string, { keys: object }>>)[bob.user_id]![bob.device_id]!.keys).toEqual(deviceKeys.keys);
    const claimed = await call(p, "api", "POST", "/_matrix/client/v3/keys/claim", { one_time_keys: { [bob.user_id]: { [bob.device_id]: "signed_curve25519" } } }, alice.access_token);
    expect(claimed.status).toBe(200);
    const got = (claimed.json.one_time_keys as Record<string, Record<string, Record<string, { key: string }>>>)[bob.user_id]![bob.device_id]!;
    expect(Object.keys(got)).toHaveLength(1);
    expect(Object.keys(got)[0]).toMatch(/^signed_curve25519:AAAA[0-2]$/);

    // A message in the room and a to-device message reach bob through /sync; the to-device one once.
    const since = bobFirst.json.next_batch as string;
    const sent = await call(p, "api", "PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.encrypted/t1`, {
      algorithm: "m.megolm.v1.aes-sha2", ciphertext: "AwgAEn...", sender_key: b64(5), session_id: "s1", device_id: alice.device_id,
    }, alice.access_token);
    expect(sent.status, JSON.stringify(sent.json)).toBe(200);
    const eventId = sent.json.event_id as string;
    const toDevice = await call(p, "api", "PUT", "/_matrix/client/v3/sendToDevice/m.room_key_request/td1", {
      messages: { [bob.user_id]: { [bob.device_id]: { action: "request_cancellation", request_id: "r1", requesting_device_id: alice.device_id } } },
    }, alice.access_token);
    expect(toDevice.status).toBe(200);
    const bobSync = await call(p, "api", "GET", `/_matrix/client/v3/sync?timeout=0&since=${encodeURIComponent(since)}`, undefined, bob.access_token);
    const joinedRooms = (bobSync.json.rooms as { join: Record<string, { timeline: { events: { event_id: string; type: string }[] } }> }).join;
    expect(joinedRooms[roomId]!.timeline.events.map((e) => e.event_id)).toContain(eventId);
    const toDeviceEvents = (bobSync.json.to_device as { events: { type: string; sender: string }[] }).events;
    expect(toDeviceEvents.map((e) => [e.type, e.sender])).toEqual([["m.room_key_request", alice.user_id]]);
    expect(bobSync.json.device_one_time_keys_count).toEqual({ signed_curve25519: 2 });
    const bobAgain = await call(p, "api", "GET", `/_matrix/client/v3/sync?timeout=0&since=${encodeURIComponent(bobSync.json.next_batch as string)}`, undefined, bob.access_token);
    expect((bobAgain.json.to_device as { events: unknown[] } | undefined)?.events ?? []).toEqual([]);

    // Media: a 640×480 PNG made in the page, downloaded byte for byte, thumbnailed by the worker.
    const original = await call(p, "makeImage", "photo", 640, 480);
    const up = await call(p, "upload", "photo", alice.access_token);
    expect(up.status, JSON.stringify(up.json)).toBe(200);
    const mxc = up.json.content_uri as string;
    expect(mxc.startsWith(`mxc://${serverName}/`)).toBe(true);
    const mediaPath = mxc.slice("mxc://".length);
    const download = await call(p, "getImage", `/_matrix/client/v1/media/download/${mediaPath}`, bob.access_token);
    expect([download.status, download.contentType, download.sha256, download.width, download.height]).toEqual([200, "image/png", original.sha256, 640, 480]);
    const crop = await call(p, "getImage", `/_matrix/client/v1/media/thumbnail/${mediaPath}?width=96&height=96&method=crop`, bob.access_token);
    expect([crop.status, crop.width, crop.height]).toEqual([200, 96, 96]);
    expect(["image/png", "image/jpeg"]).toContain(crop.contentType);
    expect(crop.size).toBeLessThan(original.size);
    const scale = await call(p, "getImage", `/_matrix/client/v1/media/thumbnail/${mediaPath}?width=320&height=240&method=scale`, bob.access_token);
    expect([scale.status, scale.width, scale.height]).toEqual([200, 320, 240]);
    expect(["image/png", "image/jpeg"]).toContain(scale.contentType);
    expect(scale.size).toBeLessThan(original.size);
    expect(scale.sha256).not.toBe(original.sha256);
    const anonymous = await call(p, "getImage", `/_matrix/client/v1/media/download/${mediaPath}`);
    expect([anonymous.status, anonymous.json?.errcode]).toEqual([401, "M_MISSING_TOKEN"]);
    const anonymousThumb = await call(p, "getImage", `/_matrix/client/v1/media/thumbnail/${mediaPath}?width=96&height=96&method=crop`);
    expect([anonymousThumb.status, anonymousThumb.json?.errcode]).toEqual([401, "M_MISSING_TOKEN"]);

    // The network never saw a Matrix request: the worker answered them all.
    expect(seenByNetwork.filter((path) => path.startsWith("/_matrix/") || path.startsWith("/.well-known/"))).toEqual([]);
    expect(seenByNetwork).toContain("/hello.txt");

    // Persistence 1: a reload; the page is controlled again and the old token still works.
    await p.reload();
    await p.waitForFunction(() => "hyphaeTest" in globalThis && navigator.serviceWorker.controller !== null, undefined, { timeout: 30_000 });
    expect((await call(p, "api", "GET", "/_matrix/client/v3/account/whoami", undefined, bob.access_token)).json.user_id).toBe(bob.user_id);

    // Persistence 2: the worker is stopped (its memory, the homeserver object included, is gone);
    // the next fetch starts a new instance that must rebuild everything from IndexedDB.
    const cdp = await browser!.context.newCDPSession(p);
    const statuses: string[] = [];
    cdp.on("ServiceWorker.workerVersionUpdated", (e: { versions: { runningStatus: string }[] }) => {
      for (const v of e.versions) statuses.push(v.runningStatus);
    });
    await cdp.send("ServiceWorker.enable");
    await cdp.send("ServiceWorker.stopAllWorkers");
    await expect.poll(() => statuses.at(-1), { timeout: 20_000 }).toBe("stopped");
    const stoppedAt = statuses.length;

    const whoAfter = await call(p, "api", "GET", "/_matrix/client/v3/account/whoami", undefined, alice.access_token);
    expect(whoAfter.status).toBe(200);
    expect(whoAfter.json).toMatchObject({ user_id: alice.user_id, device_id: alice.device_id });
    // It really was a new instance that answered.
    expect(statuses.slice(stoppedAt)).toContain("running");
    const login = await call(p, "api", "POST", "/_matrix/client/v3/login", {
      type: "m.login.password", identifier: { type: "m.id.user", user: "alice" }, password: "alice's long password",
    });
    expect(login.status, JSON.stringify(login.json)).toBe(200);
    expect(login.json.user_id).toBe(`@alice:${serverName}`);
    const newToken = login.json.access_token as string;
    const rooms = await call(p, "api", "GET", "/_matrix/client/v3/joined_rooms", undefined, newToken);
    expect(rooms.json.joined_rooms).toEqual([roomId]);
    const event = await call(p, "api", "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(eventId)}`, undefined, bob.access_token);
    expect([event.status, event.json.type, (event.json.content as { ciphertext: string }).ciphertext]).toEqual([200, "m.room.encrypted", "AwgAEn..."]);
    const encryption = await call(p, "api", "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.encryption/`, undefined, newToken);
    expect(encryption.json).toEqual({ algorithm: "m.megolm.v1.aes-sha2" });
    const downloadAfter = await call(p, "getImage", `/_matrix/client/v1/media/download/${mediaPath}`, newToken);
    expect([downloadAfter.status, downloadAfter.sha256]).toEqual([200, original.sha256]);
    // Thumbnails from the restarted worker, kept by the page for the screenshot.
    const cropAfter = await call(p, "getImage", `/_matrix/client/v1/media/thumbnail/${mediaPath}?width=96&height=96&method=crop`, newToken, "96×96 crop");
    expect([cropAfter.status, cropAfter.width, cropAfter.height, cropAfter.sha256]).toEqual([200, 96, 96, crop.sha256]);
    const scaleAfter = await call(p, "getImage", `/_matrix/client/v1/media/thumbnail/${mediaPath}?width=320&height=240&method=scale`, newToken, "320×240 scale");
    expect([scaleAfter.status, scaleAfter.width, scaleAfter.height]).toEqual([200, 320, 240]);
    const keysAfter = await call(p, "api", "POST", "/_matrix/client/v3/keys/claim", { one_time_keys: { [bob.user_id]: { [bob.device_id]: "signed_curve25519" } } }, newToken);
    const second = (keysAfter.json.one_time_keys as Record<string, Record<string, Record<string, unknown>>>)[bob.user_id]![bob.device_id]!;
    expect(Object.keys(second)).toHaveLength(1);
    expect(Object.keys(second)[0]).not.toBe(Object.keys(got)[0]);
    await cdp.detach();

    await call(p, "show", `Hyphae in a Service Worker\nserver ${serverName}\nroom ${roomId}\nthumbnails of ${mxc}, made in the worker:`);
    await mkdir(RESULTS_DIR, { recursive: true });
    await p.screenshot({ path: join(RESULTS_DIR, "sw-homeserver.png") });
  }, 180_000);
});
