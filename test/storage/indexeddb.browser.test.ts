/**
 * The storage conformance suite in headless Chromium: against the REAL IndexedDB (plus the
 * IndexedDB upgrade cases) and against sql.js's browser build. The suites and both backends are
 * bundled with vite (vitest's API shimmed, see browser/vitestShim.ts), served from 127.0.0.1 and
 * run in a page; every case must pass there as it does in Node.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServer } from "node:http";
import type { Server } from "node:http";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "vite";
import { launchChromium } from "../e2e/browser.ts";
import type { LaunchedBrowser } from "../e2e/browser.ts";
import type { CaseResult } from "./browser/vitestShim.ts";

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));

describe("storage conformance in Chromium (real IndexedDB, sql.js browser build)", () => {
  let outDir: string;
  let server: Server;
  let browser: LaunchedBrowser | undefined;
  let results: CaseResult[] = [];

  beforeAll(async () => {
    outDir = await mkdtemp(join(tmpdir(), "hyphae-idb-browser-"));
    await build({
      configFile: false,
      logLevel: "warn",
      resolve: { alias: { vitest: here("./browser/vitestShim.ts") } },
      define: { "process.env.NODE_ENV": JSON.stringify("test") },
      build: {
        outDir,
        emptyOutDir: true,
        minify: false,
        lib: { entry: here("./browser/entry.ts"), formats: ["es"], fileName: () => "bundle.js" },
      },
    });
    const bundle = await readFile(join(outDir, "bundle.js"));
    const page = Buffer.from('<!doctype html><meta charset="utf-8"><title>storage conformance</title><script type="module" src="/bundle.js"></script>');
    const sqlJsDist = here("../../node_modules/sql.js/dist/");
    server = createServer((req, res) => {
      const wasm = /^\/sqljs\/([\w.-]+\.wasm)$/.exec(req.url ?? "");
      if (wasm) {
        readFile(join(sqlJsDist, wasm[1])).then(
          (b) => res.writeHead(200, { "content-type": "application/wasm" }).end(b),
          () => res.writeHead(404).end(),
        );
        return;
      }
      const js = req.url === "/bundle.js";
      if (req.url === "/favicon.ico") return void res.writeHead(204).end();
      res.writeHead(req.url === "/" || js ? 200 : 404, { "content-type": js ? "text/javascript" : "text/html" });
      res.end(req.url === "/" ? page : js ? bundle : "");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    if (!address || typeof address === "string") throw new Error("no address");
    browser = await launchChromium();
    await browser.page.goto(`http://127.0.0.1:${address.port}/`);
    await browser.page.waitForFunction(() => "hyphaeResults" in globalThis);
    results = await browser.page.evaluate(() => (globalThis as unknown as { hyphaeResults: Promise<CaseResult[]> }).hyphaeResults);
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await new Promise((r) => server?.close(r));
    if (outDir) await rm(outDir, { recursive: true, force: true });
  });

  it("runs the whole suite", () => {
    // The same cases as in Node (range table, deleteRange table, property test …) for each suite.
    const suites = new Set(results.map((r) => r.name.split(" > ")[0]));
    expect([...suites]).toEqual([
      "storage conformance: indexeddb (Chromium)",
      "upgrade: IndexedDB database written by schema 0 (Chromium)",
      "storage conformance: sqlite (Chromium, sql.js browser build)",
    ]);
    expect(results.length).toBeGreaterThan(100);
  });

  it("passes every case", () => {
    const failed = results.filter((r) => !r.ok);
    expect(failed.map((r) => `${r.name}\n${r.error ?? ""}`).join("\n\n"), browser?.logs().join("\n")).toBe("");
  });
});
