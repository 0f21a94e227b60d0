/**
 * People using the hosted app in the browser tests: each an isolated Chromium context (its own
 * storage, so its own Service Worker, identity and homeserver) with its console, its worker's
 * console and its failed requests recorded; *Sign in* on the landing page; the worker's status
 * through the app's message protocol; JSON calls made by the page (so they go through the page's
 * controlling worker, as a client's do); and stopping the context's worker over CDP, which
 * Playwright would otherwise keep alive.
 */
import { expect } from "vitest";
import { join } from "node:path";
import type { Browser, BrowserContext, CDPSession, Page } from "playwright-core";
import { REPO_ROOT } from "../e2e/serve.ts";

/** Where screenshots and logs of the browser tests go. */
export const ARTIFACTS = join(REPO_ROOT, "test-results", "browser");

/** The part of the worker's status (src/sw/serviceWorker.ts `WorkerStatus`) the tests read. */
export interface WorkerStatus {
  instance: string;
  serverName: string;
  outboundQueues: Record<string, number>;
  p2p: { running: boolean; peers: number; rendezvousConnected: number; rendezvous: string };
  activities: { kind: string; roomId: string; phase: string }[];
}

/** The worker's status through the app's message protocol (src/app/worker.ts). */
export function status(page: Page): Promise<WorkerStatus> {
  return page.evaluate(
    () =>
      new Promise<WorkerStatus>((resolve, reject) => {
        const channel = new MessageChannel();
        const timer = setTimeout(() => reject(new Error("no status answer")), 20_000);
        channel.port1.onmessage = (e: MessageEvent<{ status: WorkerStatus; error?: string }>) => {
          clearTimeout(timer);
          if (e.data.error) reject(new Error(e.data.error));
          else resolve(e.data.status);
        };
        navigator.serviceWorker.controller!.postMessage({ hyphae: "status" }, [channel.port2]);
      }),
  );
}

/** One person's browser: an isolated context with its console and failed requests recorded. */
export interface Person {
  name: string;
  context: BrowserContext;
  page: Page;
  logs: string[];
}

export async function person(browser: Browser, name: string): Promise<Person> {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const logs: string[] = [];
  const watch = (page: Page): void => {
    // (the worker's own lines are taken from the worker below, also while no page is open)
    page.on("console", (msg) => void (msg.text().startsWith("[hyphae]") || logs.push(`[${msg.type()}] ${msg.text()}`)));
    page.on("pageerror", (err) => logs.push(`[pageerror] ${err.message}`));
    page.on("response", (res) => {
      if (res.status() >= 400) logs.push(`[http ${res.status()}] ${res.request().method()} ${res.url()}`);
    });
    page.on("requestfailed", (req) => logs.push(`[requestfailed] ${req.method()} ${req.url()} ${req.failure()?.errorText ?? ""}`));
  };
  context.on("page", watch);
  // The worker's own console (its warnings and errors: src/sw/serviceWorker.ts), with a time stamp.
  context.on("serviceworker", (worker) => worker.on("console", (msg) => logs.push(`[sw ${new Date().toISOString()} ${msg.type()}] ${msg.text()}`)));
  return { name, context, page: await context.newPage(), logs };
}

/** A full-page screenshot into {@link ARTIFACTS}; a failing one is ignored (it only illustrates). */
export const shot = (p: Person, file: string): Promise<unknown> => p.page.screenshot({ path: join(ARTIFACTS, file), fullPage: true }).catch(() => undefined);

/**
 * The landing page of the app at `appUrl`, *Sign in*, and Hydrogen open and logged in. Returns
 * the Matrix ID.
 */
export async function signIn(p: Person, appUrl: string, displayName: string): Promise<string> {
  await p.page.goto(`${appUrl}/`);
  await p.page.waitForSelector("body[data-app=ready]", { timeout: 60_000 });
  // The status view's progress line: no join or backfill runs yet.
  expect(await p.page.locator("#status-activity").textContent()).toBe("nothing");
  expect(await p.page.locator("#status-progress").isHidden()).toBe(true);
  await p.page.fill("#name", displayName);
  await p.page.click("#signin-button");
  await p.page.waitForURL(/\/client\//, { timeout: 60_000 });
  await p.page.locator(".SessionView").waitFor({ timeout: 90_000 });
  return p.page.evaluate(() => (JSON.parse(localStorage.getItem("hyphae_account")!) as { userId: string }).userId);
}

/**
 * What a JSON call made by the page got: status 0 when the fetch itself failed (`json.cut` says
 * why); when the page issued it and when the answer (or the failure) came, in `Date.now()` time.
 */
export interface PageAnswer {
  status: number;
  json: Record<string, unknown>;
  sentAt: number;
  answeredAt: number;
}

/** A JSON call made by the page (so it goes through the page's controlling worker). */
export function api(page: Page, method: string, path: string, body?: unknown, token?: string): Promise<PageAnswer> {
  return page.evaluate(
    async ([method, path, body, token]) => {
      const headers: Record<string, string> = { "Content-Type": "application/json" };
      if (token) headers.Authorization = `Bearer ${token}`;
      let res: Response;
      let text: string;
      const sentAt = Date.now();
      try {
        res = await fetch(path, { method, headers, body: body === undefined || body === null ? undefined : JSON.stringify(body) });
        text = await res.text();
      } catch (err) {
        return { status: 0, json: { cut: String(err) }, sentAt, answeredAt: Date.now() };
      }
      const answeredAt = Date.now();
      try {
        return { status: res.status, json: JSON.parse(text) as Record<string, unknown>, sentAt, answeredAt };
      } catch {
        return { status: res.status, json: { notJson: text.slice(0, 200) }, sentAt, answeredAt };
      }
    },
    [method, path, body ?? null, token ?? ""] as const,
  );
}

/** Stops one context's Service Workers over CDP and follows their running status. */
export interface WorkerStopper {
  /** Every running status CDP reported, oldest first. */
  readonly statuses: string[];
  /** When CDP reported the worker stopping, each time (`Date.now()`). */
  readonly stoppingAt: number[];
  /** `ServiceWorker.stopAllWorkers` for this context, resolved once CDP reports the worker stopped (bounded). */
  stop(): Promise<void>;
  detach(): Promise<void>;
}

/**
 * A CDP session on `page` (one of `context`'s pages): the ServiceWorker domain of a page's session
 * covers its own context's storage partition only, so another person's worker keeps running.
 */
export async function workerStopper(context: BrowserContext, page: Page, log?: string[]): Promise<WorkerStopper> {
  const cdp: CDPSession = await context.newCDPSession(page);
  const statuses: string[] = [];
  const stoppingAt: number[] = [];
  cdp.on("ServiceWorker.workerVersionUpdated", (e: { versions: { runningStatus: string }[] }) => {
    for (const v of e.versions) statuses.push(v.runningStatus);
    if (e.versions.some((v) => v.runningStatus === "stopping")) stoppingAt.push(Date.now());
    log?.push(`[cdp ${new Date().toISOString()}] ${e.versions.map((v) => v.runningStatus).join(" ")}`);
  });
  await cdp.send("ServiceWorker.enable");
  return {
    statuses,
    stoppingAt,
    stop: async () => {
      const before = statuses.length;
      await cdp.send("ServiceWorker.stopAllWorkers");
      await expect.poll(() => statuses.slice(before).includes("stopped") || statuses.at(-1) === "stopped", { timeout: 20_000 }).toBe(true);
    },
    detach: () => cdp.detach().catch(() => undefined),
  };
}
