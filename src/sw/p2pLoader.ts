/**
 * Loading the libp2p side (`hyphae-p2p.js`, src/sw/p2pScript.ts) into the core worker script.
 *
 * A Service Worker can run only classic scripts here (no `import()`), and after its installation
 * it may `importScripts` only what it imported while installing. So the worker imports the
 * libp2p script once at its first evaluation, which puts it among the worker's installed scripts,
 * and every later instance (a worker the browser restarted for a fetch) imports it from there
 * when its node starts, after the first answer is on its way.
 */
import type { Logger } from "../homeserver/context.ts";
import type { startWorkerP2P } from "./p2p.ts";
import { P2P_GLOBAL, P2P_SCRIPT } from "./p2pCore.ts";
import { exposeCore } from "./p2pShared.ts";

/** What the libp2p script defines. */
export interface P2PScript {
  startWorkerP2P: typeof startWorkerP2P;
}

/** The versioned name the build gives the libp2p script (vite.config.ts), so no cache pairs a core with another build's libp2p side. */
declare const __HYPHAE_P2P_SCRIPT__: string | undefined;

/** The libp2p script's URL: next to the worker script (`scriptUrl`, the worker's `location`). */
export function p2pScriptUrl(scriptUrl: string): string {
  const name = typeof __HYPHAE_P2P_SCRIPT__ === "string" ? __HYPHAE_P2P_SCRIPT__ : P2P_SCRIPT;
  return new URL(name, scriptUrl).href;
}

const loaded = (): P2PScript | undefined => (globalThis as Record<string, unknown>)[P2P_GLOBAL] as P2PScript | undefined;

/** Imports the libp2p script (once per worker instance) and returns what it defines. */
export function loadP2PScript(url: string): P2PScript {
  if (!loaded()) {
    if (typeof importScripts !== "function") throw new Error("the libp2p script loads only in a worker");
    exposeCore();
    importScripts(url);
  }
  const script = loaded();
  if (!script) throw new Error(`${url} did not define the libp2p side`);
  return script;
}

/**
 * At the worker's first evaluation (state `parsed`, before its installation), imports the libp2p
 * script so that later instances may import it. Browsers without `ServiceWorkerGlobalScope.serviceWorker`
 * cannot tell, so they import it at every start. A script that cannot be loaded leaves a worker
 * without federation (logged; its status says so when the node would start).
 */
export function preloadP2PScript(scope: ServiceWorkerGlobalScope, url: string, logger: Logger): void {
  if (typeof importScripts !== "function") return; // not a worker (the Node tests' stand-in scope)
  const state = (scope as { serviceWorker?: { state?: string } }).serviceWorker?.state;
  if (state !== undefined && state !== "parsed" && state !== "installing") return;
  try {
    loadP2PScript(url);
  } catch (err) {
    logger.warn(`could not import ${url}; this worker will run without federation`, err);
  }
}
