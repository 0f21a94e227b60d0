/**
 * `npm run build`: the static bundle in `dist/` that any static web server can host.
 * - `/` the landing page (sign in, status), `/client/` the bundled Hydrogen client and `/rooms/` the
 *   public room directory (src/app);
 * - `/sw.js` the app's Service Worker: Hyphae (src/app/sw.ts) followed by Hydrogen's own worker
 *   script from hydrogen-view-sdk, unmodified (one controlling worker per page does both jobs);
 * - `/hyphae-sw.js` Hyphae's worker alone (src/sw/worker.ts) for clients that embed it in their own
 *   worker with `importScripts` (docs/EMBEDDING.md);
 * - `/config.json` (public/) with the rendezvous addresses.
 * The workers are classic scripts without dynamic import(), so every browser can run them.
 * `HYPHAE_DIST=DIR` puts the bundle in DIR instead of dist/ (`npm start` serves it from there too).
 */
import { appendFile, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build, defineConfig } from "vite";
import type { Plugin } from "vite";

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));
export const DIST = process.env["HYPHAE_DIST"] ? resolve(process.env["HYPHAE_DIST"]) : here("./dist");

/** Builds one Service Worker script (IIFE, minified) into dist/. */
export async function buildWorker(entry: string, fileName: string, outDir = DIST): Promise<void> {
  await build({
    configFile: false,
    logLevel: "warn",
    build: {
      outDir,
      emptyOutDir: false,
      minify: true,
      target: "es2023",
      reportCompressedSize: false,
      copyPublicDir: false,
      lib: { entry, formats: ["iife"], name: "hyphaeWorker", fileName: () => fileName },
    },
  });
  await asciiOnly(join(outDir, fileName));
}

/**
 * Rewrites every non-ASCII character of a built script as a `\\uXXXX` escape. A script with a single
 * character beyond Latin-1 (multiformats' emoji alphabet) is held by V8 as a two-byte string, so the
 * whole megabyte is scanned and kept at twice the size on every worker start. The bundle's non-ASCII
 * characters sit in string and template literals, where the escape means the same character.
 */
async function asciiOnly(file: string): Promise<void> {
  const text = await readFile(file, "utf8");
  // eslint-disable-next-line no-control-regex
  await writeFile(file, text.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`));
}

/** Builds both workers after the pages (the pages' build empties dist/ first). */
function workers(): Plugin {
  return {
    name: "hyphae-workers",
    apply: "build",
    async closeBundle() {
      await buildWorker(here("./src/app/sw.ts"), "sw.js");
      await appendFile(join(DIST, "sw.js"), "\n// Hydrogen's Service Worker (hydrogen-view-sdk/lib-build/sw.js), unmodified:\n" + (await readFile(here("./node_modules/hydrogen-view-sdk/lib-build/sw.js"), "utf8")));
      await buildWorker(here("./src/sw/worker.ts"), "hyphae-sw.js");
    },
  };
}

export default defineConfig({
  root: here("./src/app"),
  publicDir: here("./public"),
  base: "/",
  // olm.js mentions Node's fs/path/crypto for its Node flavour; vite stubs them.
  logLevel: "warn",
  build: {
    outDir: DIST,
    emptyOutDir: true,
    target: "es2022",
    reportCompressedSize: false,
    chunkSizeWarningLimit: 4096,
    rollupOptions: { input: { main: here("./src/app/index.html"), client: here("./src/app/client/index.html"), rooms: here("./src/app/rooms/index.html") } },
  },
  plugins: [workers()],
});
