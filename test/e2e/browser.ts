/**
 * Headless Chromium for end-to-end tests: the Debian build at /usr/bin/chromium driven through
 * playwright-core, a fresh profile per launch, everything removed again by `close()`.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import type { BrowserContext, Page } from "playwright-core";

/** Where Chromium is installed on this machine. */
export const CHROMIUM_PATH = "/usr/bin/chromium";

/**
 * Flags for a quiet, reproducible Chromium in a container: no sandbox (we run as root), no GPU, no
 * /dev/shm (small in containers), no QUIC, and none of the background traffic to Google services.
 */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-dev-shm-usage",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** A launched browser with one profile. */
export interface LaunchedBrowser {
  readonly context: BrowserContext;
  /** The first page of the context (a persistent context always opens one). */
  readonly page: Page;
  readonly userDataDir: string;
  /** Console lines and page errors seen so far on every page, for failure messages. */
  logs(): string[];
  /** Closes the browser and removes the profile directory. Safe to call twice. */
  close(): Promise<void>;
}

/** Options for {@link launchChromium}. */
export interface LaunchOptions {
  viewport?: { width: number; height: number };
}

/**
 * Launches Chromium with a fresh temporary `--user-data-dir` (a persistent context is how
 * Playwright passes one; it also keeps Service Workers and IndexedDB real).
 */
export async function launchChromium(options: LaunchOptions = {}): Promise<LaunchedBrowser> {
  const userDataDir = await mkdtemp(join(tmpdir(), "hyphae-chromium-"));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: options.viewport ?? { width: 1280, height: 800 },
    });
  } catch (err) {
    await rm(userDataDir, { recursive: true, force: true });
    throw err;
  }
  const lines: string[] = [];
  const watch = (page: Page): void => {
    page.on("console", (msg) => lines.push(`[${msg.type()}] ${msg.text()}`));
    page.on("pageerror", (err) => lines.push(`[pageerror] ${err.message}`));
    page.on("response", (res) => {
      if (res.status() >= 400) lines.push(`[http ${res.status()}] ${res.request().method()} ${res.url()}`);
    });
    page.on("requestfailed", (req) => lines.push(`[requestfailed] ${req.method()} ${req.url()} ${req.failure()?.errorText ?? ""}`));
  };
  context.pages().forEach(watch);
  context.on("page", watch);
  const page = context.pages()[0] ?? (await context.newPage());
  let closed = false;
  return {
    context,
    page,
    userDataDir,
    logs: () => [...lines],
    close: async () => {
      if (closed) return;
      closed = true;
      try {
        await context.close();
      } finally {
        await rm(userDataDir, { recursive: true, force: true });
      }
    },
  };
}
