/**
 * Embedding (issue 13 item 5): a third-party page built on matrix-js-sdk, with its own Service
 * Worker (test/browser/embedding/client-sw.js) that imports Hyphae's worker script (`hyphae-sw.js`
 * from `npm run build`) with `importScripts`, registers an account, creates a room and sees its
 * message come back through /sync — with its homeserver URL set to its own origin. The client's own
 * fetch handler keeps answering its own route; the static server never sees a Matrix path.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyFile, mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "vite";
import { launchChromium } from "../e2e/browser.ts";
import type { LaunchedBrowser } from "../e2e/browser.ts";
import { REPO_ROOT } from "../e2e/serve.ts";
import { serveStatic } from "../../src/node/staticServer.ts";
import type { StaticServer } from "../../src/node/staticServer.ts";
import { buildWorker } from "../../vite.config.ts";

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));

describe("embedding Hyphae's worker in a matrix-js-sdk client's own worker (Chromium)", () => {
  let outDir: string | undefined;
  let server: StaticServer | undefined;
  let browser: LaunchedBrowser | undefined;

  beforeAll(async () => {
    outDir = await mkdtemp(join(tmpdir(), "hyphae-embed-"));
    await build({
      root: here("./embedding"),
      configFile: false,
      logLevel: "error",
      base: "/",
      build: { outDir, emptyOutDir: true, minify: false, reportCompressedSize: false, chunkSizeWarningLimit: 100_000 },
    });
    await copyFile(here("./embedding/client-sw.js"), join(outDir, "client-sw.js"));
    await buildWorker(join(REPO_ROOT, "src/sw/worker.ts"), "hyphae-sw.js", outDir);
    // A Service Worker cannot load code with import(): the libp2p side, imported lazily in the
    // source (src/sw/serviceWorker.ts), must be inlined into the one classic script.
    const script = await readFile(join(outDir, "hyphae-sw.js"), "utf8");
    expect(script).not.toMatch(/\bimport\s*\(/);
    // ASCII only: one non-Latin-1 character makes V8 hold the whole script as a two-byte string.
    expect(script).not.toMatch(/[\u0080-\uffff]/);
    server = await serveStatic(outDir);
    browser = await launchChromium();
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    if (outDir) await rm(outDir, { recursive: true, force: true });
  });

  it("the client's page registers, creates a room and syncs its message through Hyphae; its own route still works", async () => {
    const page = browser!.page;
    try {
      await page.goto(`${server!.url}/`);
      await page.waitForSelector("body[data-ready=yes]", { timeout: 60_000 });
      const result = await page.evaluate(() => (globalThis as unknown as { thirdParty: { run(): Promise<Record<string, unknown>> } }).thirdParty.run());
      expect(result.ownRoute).toBe("answered by the client's own worker");
      expect(result.versions).toContain("v1.11");
      expect(result.userId).toMatch(/^@carol:[0-9a-f]{64}$/);
      expect(result.roomId).toMatch(/^!/);
      expect(result.body).toBe("hello from an embedding client");
      expect(result.room).toBe("Embedded room");
      expect(server!.requested.filter((p) => p.startsWith("/_matrix/") || p.startsWith("/.well-known/"))).toEqual([]);
      expect(server!.requested).not.toContain("/client-own-route");
      await mkdir(join(REPO_ROOT, "test-results", "browser"), { recursive: true });
      await page.screenshot({ path: join(REPO_ROOT, "test-results", "browser", "embedding.png") });
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- browser ---\n${browser!.logs().slice(-40).join("\n")}`, { cause: err });
    }
  }, 180_000);
});
