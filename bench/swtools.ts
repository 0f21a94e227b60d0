/**
 * What the Service Worker benches share: registering the worker from a page, and stopping it over
 * CDP as the browser does when it is idle (bench/browser.ts, bench/swmemory.ts, bench/swp2p.ts).
 */
import type { BrowserContext, Page } from "playwright-core";

/** Registers `/sw.js` from `page` and waits until it controls the page. */
export async function registerWorker(page: Page): Promise<void> {
  await page.evaluate(async () => {
    await navigator.serviceWorker.register("/sw.js");
    await navigator.serviceWorker.ready;
    if (!navigator.serviceWorker.controller) await new Promise((r) => navigator.serviceWorker.addEventListener("controllerchange", r, { once: true }));
  });
}

/** `stop()`: CDP `ServiceWorker.stopAllWorkers` for `page`'s context, resolved once CDP reports the worker stopped (at most 20 s). */
export async function workerStopper(context: BrowserContext, page: Page): Promise<{ stop(): Promise<void>; detach(): Promise<void> }> {
  const cdp = await context.newCDPSession(page);
  const states: string[] = [];
  cdp.on("ServiceWorker.workerVersionUpdated", (e: { versions: { runningStatus: string }[] }) => {
    for (const v of e.versions) states.push(v.runningStatus);
  });
  await cdp.send("ServiceWorker.enable");
  return {
    stop: async () => {
      const before = states.length;
      await cdp.send("ServiceWorker.stopAllWorkers");
      const end = Date.now() + 20_000;
      while (!states.slice(before).includes("stopped") && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    },
    detach: () => cdp.detach(),
  };
}
