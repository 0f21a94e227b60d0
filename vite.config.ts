/**
 * `npm run build`: the static bundle in `dist/` that any static web server can host.
 * - `/` the landing page (sign in, status), `/client/` the bundled Hydrogen client and `/rooms/` the
 *   public room directory (src/app);
 * - `/sw.js` the app's Service Worker: Hyphae (src/app/sw.ts) followed by Hydrogen's own worker
 *   script from hydrogen-view-sdk, unmodified (one controlling worker per page does both jobs);
 * - `/hyphae-sw.js` Hyphae's worker alone (src/sw/worker.ts) for clients that embed it in their own
 *   worker with `importScripts` (docs/EMBEDDING.md);
 * - `/hyphae-p2p.js` the libp2p side both workers import when their node starts (src/sw/p2pLoader.ts);
 * - `/config.json` (public/) with the rendezvous addresses.
 * The workers are classic scripts without dynamic import(), so every browser can run them.
 * `HYPHAE_DIST=DIR` puts the bundle in DIR instead of dist/ (`npm start` serves it from there too).
 */
import { createHash } from "node:crypto";
import { appendFile, readFile, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build, defineConfig } from "vite";
import type { Plugin } from "vite";
import { CORE_GLOBAL, P2P_SCRIPT, P2P_SHARED_PATHS } from "./src/sw/p2pCore.ts";

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));
export const DIST = process.env["HYPHAE_DIST"] ? resolve(process.env["HYPHAE_DIST"]) : here("./dist");

/**
 * Builds a Service Worker script that installs Hyphae (IIFE, minified) into `outDir`, and next to
 * it the libp2p side it imports when its node starts (`hyphae-p2p.js`, src/sw/p2pLoader.ts).
 */
export function buildWorker(entry: string, fileName: string, outDir = DIST): Promise<void> {
  return buildWorkers([[entry, fileName]], outDir);
}

/** {@link buildWorker} for several worker scripts (`[entry, fileName]`) sharing one libp2p script. */
async function buildWorkers(workers: readonly (readonly [entry: string, fileName: string])[], outDir: string): Promise<void> {
  const p2pScript = await buildP2PScript(outDir);
  for (const [entry, fileName] of workers) await buildScript(entry, fileName, outDir, { define: { __HYPHAE_P2P_SCRIPT__: JSON.stringify(p2pScript) } });
}

/** One classic script (IIFE, minified, ASCII only) from `entry`. */
async function buildScript(entry: string, fileName: string, outDir: string, extra: { define?: Record<string, string>; external?: (id: string, importer: string | undefined) => boolean; globals?: (id: string) => string } = {}): Promise<void> {
  await build({
    configFile: false,
    logLevel: "warn",
    ...(extra.define ? { define: extra.define } : {}),
    build: {
      outDir,
      emptyOutDir: false,
      minify: true,
      target: "es2023",
      reportCompressedSize: false,
      copyPublicDir: false,
      lib: { entry, formats: ["iife"], name: "hyphaeWorker", fileName: () => fileName },
      ...(extra.external ? { rollupOptions: { external: extra.external, output: { globals: extra.globals } } } : {}),
    },
  });
  await asciiOnly(join(outDir, fileName));
}

/**
 * Builds `hyphae-p2p.js` (src/sw/p2pScript.ts). The core modules it shares with the core script
 * (src/sw/p2pCore.ts) are external and read from the global the core fills; any other core module
 * it would carry a copy of fails the build. Returns the name the core imports it by, versioned by
 * its content so no HTTP cache pairs a core script with another build's libp2p side.
 */
async function buildP2PScript(outDir: string): Promise<string> {
  const src = here("./src/");
  const shared = new Set<string>(P2P_SHARED_PATHS);
  const copied = new Set<string>();
  /** A path under `src/` with `/` separators, as P2P_SHARED_PATHS names them. */
  const underSrc = (path: string): string => path.slice(src.length).split("\\").join("/");
  const external = (id: string, importer: string | undefined): boolean => {
    const path = id.startsWith(".") && importer ? resolve(dirname(importer), id) : resolve(id);
    if (!path.startsWith(join(src, "homeserver")) && !path.startsWith(join(src, "storage"))) return false;
    const rel = underSrc(path);
    if (shared.has(rel)) return true;
    copied.add(rel);
    return false;
  };
  const globals = (id: string): string => `${CORE_GLOBAL}[${JSON.stringify(underSrc(resolve(id)))}]`;
  await buildScript(here("./src/sw/p2pScript.ts"), P2P_SCRIPT, outDir, { external, globals });
  if (copied.size > 0) throw new Error(`${P2P_SCRIPT} would carry its own copy of core modules ${[...copied].join(", ")}: add them to P2P_SHARED_PATHS (src/sw/p2pCore.ts) and src/sw/p2pShared.ts`);
  const hash = createHash("sha256").update(await readFile(join(outDir, P2P_SCRIPT))).digest("hex").slice(0, 12);
  return `${P2P_SCRIPT}?v=${hash}`;
}

/**
 * Rewrites every non-ASCII character of a built script as a `\\uXXXX` escape. A script with a single
 * character beyond Latin-1 (multiformats' emoji alphabet) is held by V8 as a two-byte string, so the
 * whole megabyte is scanned and kept at twice the size on every worker start. The bundle's non-ASCII
 * characters sit in string and template literals, where the escape means the same character.
 */
async function asciiOnly(file: string): Promise<void> {
  const text = await readFile(file, "utf8");
  await writeFile(file, text.replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`));
}

/** Builds both workers, and the libp2p script they share once, after the pages (the pages' build empties dist/ first). */
function workers(): Plugin {
  return {
    name: "hyphae-workers",
    apply: "build",
    async closeBundle() {
      await buildWorkers(
        [
          [here("./src/app/sw.ts"), "sw.js"],
          [here("./src/sw/worker.ts"), "hyphae-sw.js"],
        ],
        DIST,
      );
      await appendFile(join(DIST, "sw.js"), "\n// Hydrogen's Service Worker (hydrogen-view-sdk/lib-build/sw.js), unmodified:\n" + (await readFile(here("./node_modules/hydrogen-view-sdk/lib-build/sw.js"), "utf8")));
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
