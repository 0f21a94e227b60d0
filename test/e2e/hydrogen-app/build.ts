/**
 * Builds the Hydrogen page (index.html + main.ts in this directory) with vite into a directory and
 * serves a directory over loopback HTTP, for the Hydrogen end-to-end test.
 */
import { copyFile, readFile, stat } from "node:fs/promises";
import { createServer } from "node:http";
import type { Server } from "node:http";
import { extname, join, normalize, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "vite";

const APP_DIR = fileURLToPath(new URL(".", import.meta.url));

/** Builds the app into `outDir` (emptied first), with Hydrogen's Service Worker as `sw.js`. */
export async function buildHydrogenApp(outDir: string): Promise<void> {
  await build({
    root: APP_DIR,
    configFile: false,
    // olm.js mentions Node's fs/path/crypto for its Node flavour; vite stubs them and says so.
    logLevel: "error",
    base: "./",
    build: { outDir, emptyOutDir: true, minify: false, reportCompressedSize: false, sourcemap: false },
  });
  // The SDK README: the app must supply Hydrogen's worker at the path given as assetPaths.serviceWorker.
  const sdkSw = resolve(APP_DIR, "../../../node_modules/hydrogen-view-sdk/lib-build/sw.js");
  await copyFile(sdkSw, join(outDir, "sw.js"));
}

const MIME: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".svg": "image/svg+xml",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".png": "image/png",
};

/** A static file server for `root` on 127.0.0.1 (random port); `/` is `index.html`. */
export async function serveStatic(root: string): Promise<{ url: string; close(): Promise<void> }> {
  const base = resolve(root);
  const server: Server = createServer((req, res) => {
    void (async () => {
      const pathname = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
      const file = normalize(join(base, pathname.endsWith("/") ? pathname + "index.html" : pathname));
      if (file !== base && !file.startsWith(base + sep)) {
        res.writeHead(403).end();
        return;
      }
      try {
        if (!(await stat(file)).isFile()) throw new Error("not a file");
        const body = await readFile(file);
        res.writeHead(200, {
          "content-type": MIME[extname(file)] ?? "application/octet-stream",
          "cache-control": "no-store",
        });
        res.end(body);
      } catch {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found");
      }
    })();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
