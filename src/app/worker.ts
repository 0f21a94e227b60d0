/**
 * The page side of the app's Service Worker: registering it, keeping it alive while a page of the
 * app is open (Chromium stops an idle worker after 30–45 s, and with it the homeserver's network
 * presence), and asking it for its status. Used by the landing page and by the client page.
 */
import type { WorkerStatus } from "../sw/serviceWorker.ts";

/** How often an open page messages the worker; well under Chromium's idle timeout. */
export const KEEPALIVE_MS = 10_000;

/** Registers `/sw.js` (scope `/`) and resolves once it controls this page. */
export async function registerWorker(scriptUrl = "/sw.js"): Promise<ServiceWorker> {
  if (!("serviceWorker" in navigator)) throw new Error("this browser has no Service Workers (private mode in some browsers disables them)");
  await navigator.serviceWorker.register(scriptUrl, { scope: "/" });
  await navigator.serviceWorker.ready;
  // The worker claims open pages when it activates; wait for that on the very first visit.
  if (!navigator.serviceWorker.controller) {
    await new Promise<void>((resolve) => navigator.serviceWorker.addEventListener("controllerchange", () => resolve(), { once: true }));
  }
  return navigator.serviceWorker.controller!;
}

/** Sends one message to the controlling worker and waits (bounded) for its answer. */
export function ask<T>(message: { hyphae: string }, timeoutMs = 10_000): Promise<T> {
  const controller = navigator.serviceWorker.controller;
  if (!controller) return Promise.reject(new Error("no Service Worker controls this page"));
  return new Promise<T>((resolve, reject) => {
    const channel = new MessageChannel();
    const timer = setTimeout(() => reject(new Error(`the Service Worker did not answer ${message.hyphae} within ${timeoutMs} ms`)), timeoutMs);
    channel.port1.onmessage = (event: MessageEvent<T & { hyphae?: string; error?: string }>) => {
      clearTimeout(timer);
      channel.port1.close();
      if (event.data.hyphae === "error") reject(new Error(event.data.error));
      else resolve(event.data);
    };
    controller.postMessage(message, [channel.port2]);
  });
}

/** The worker's status (Matrix server, queues, storage …). */
export async function workerStatus(): Promise<WorkerStatus> {
  return (await ask<{ status: WorkerStatus }>({ hyphae: "status" })).status;
}

/** Messages the worker every {@link KEEPALIVE_MS} while this page is open; returns a stop function. */
export function keepWorkerAlive(): () => void {
  const tick = (): void => {
    ask({ hyphae: "keepalive" }).catch((err: unknown) => console.warn("[hyphae] keep-alive:", err));
  };
  tick();
  const timer = setInterval(tick, KEEPALIVE_MS);
  return () => clearInterval(timer);
}
