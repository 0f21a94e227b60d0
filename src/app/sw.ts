/**
 * The app's Service Worker (`/sw.js`): Hyphae on this origin's Matrix paths, and — appended by the
 * build (vite.config.ts) — Hydrogen's own worker script, unmodified, for everything else (asset
 * cache, its page messages, notifications). A page has one controlling worker, so this one does
 * both jobs. Hyphae's fetch handler runs first and stops the event for the paths it answers.
 *
 * Hydrogen loads authenticated media with `<img src>`, which sends no `Authorization` header; its
 * worker asks the page for the token (`getAuthInfo`). Hyphae answers those paths first, so it asks
 * the same way here.
 */
import { installHyphae } from "../sw/serviceWorker.ts";

const scope = globalThis as unknown as ServiceWorkerGlobalScope;
const waiting = new Map<string, (payload: unknown) => void>();
let nextId = 0;

// Replies from Hydrogen's pages ({ replyTo, payload }); ids of ours never collide with Hydrogen's numeric ones.
scope.addEventListener("message", (event) => {
  const data = event.data as { replyTo?: unknown; payload?: unknown } | null;
  if (typeof data?.replyTo !== "string") return;
  const resolve = waiting.get(data.replyTo);
  if (resolve) {
    waiting.delete(data.replyTo);
    resolve(data.payload);
  }
});

/** The access token of the Hydrogen page that sent the request, if it has a session on this origin. */
async function hydrogenToken(event: FetchEvent): Promise<string | undefined> {
  const path = new URL(event.request.url).pathname;
  if (event.request.method !== "GET" || !/^\/_matrix\/(client\/v1\/media|media\/v3)\//.test(path)) return undefined;
  const client = event.clientId ? await scope.clients.get(event.clientId) : undefined;
  if (!client) return undefined;
  const id = `hyphae-${++nextId}`;
  const reply = new Promise<unknown>((resolve) => waiting.set(id, resolve));
  client.postMessage({ type: "getAuthInfo", id, payload: {} });
  let timer: number | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = self.setTimeout(resolve, 3_000)));
  const auth = (await Promise.race([reply, timeout])) as { accessToken?: unknown; homeserver?: unknown } | undefined;
  clearTimeout(timer);
  waiting.delete(id);
  if (!auth || typeof auth.accessToken !== "string" || typeof auth.homeserver !== "string") return undefined;
  return new URL(auth.homeserver).origin === scope.location.origin ? auth.accessToken : undefined;
}

installHyphae(scope, { authorize: hydrogenToken });
