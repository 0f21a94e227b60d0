/**
 * Browser-to-browser message latency (issue 13), in Chromium: two isolated browser contexts, each
 * with its own Service Worker (its own IndexedDB, identity, homeserver and libp2p node), on one
 * `npm start`-like setup — a local rendezvous node (rendezvous/node.ts, in this process) and a static
 * server for the worker bundle with that rendezvous in `config.json`. A browser cannot listen, so
 * the two workers reach each other only through the rendezvous relay.
 *
 * alice (A) creates a public room, bob (B) joins it by ID over federation. Then, as in bench/p2p.ts
 * in Node: one message at a time, bob's `/sync` long-poll is already waiting in page B, alice's page
 * sends (`PUT /send` to worker A), and the latency is from just before that fetch in page A to bob's
 * `/sync` answering with the message in page B (wall clock of the same machine, `Date.now()` in both
 * pages). In the ~50 ms pause before each message, three raw round trips are timed inside worker A:
 * `GET /_matrix/federation/v1/version` to B on a NEW relayed `/hyphae/http/1` stream (open and
 * negotiate the stream, a small frame each way; the `{ hyphae: "peer-rtt" }` diagnostic of
 * src/sw/serviceWorker.ts). Figure: median latency as a ratio to the median of those round trips.
 *
 * The worker is bench/swworker.ts: src/sw/worker.ts with the client API's rate limits lifted.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { chromium } from "playwright-core";
import type { Page } from "playwright-core";
import type { Bench, Figure } from "./harness.ts";
import { registerWorker } from "./swtools.ts";
import { buildWorker } from "../vite.config.ts";
import { serveStatic } from "../src/node/staticServer.ts";
import { CHROMIUM_ARGS, CHROMIUM_PATH } from "../test/e2e/browser.ts";
import { startRendezvous } from "../rendezvous/node.ts";
import { DEFAULTS } from "../rendezvous/config.ts";

const HERE = fileURLToPath(new URL("./", import.meta.url));
const MESSAGES = 30;
const WARMUP = 3;
/** Between two latency samples: the previous message's delivery settles. */
const PAUSE_MS = 50;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Asks the page's worker `message` over a MessageChannel (the app's protocol, src/app/worker.ts). */
function ask<T>(page: Page, message: Record<string, unknown>, timeoutMs = 30_000): Promise<T> {
  return page.evaluate(
    ([message, timeoutMs]) =>
      new Promise<T>((resolve, reject) => {
        const channel = new MessageChannel();
        const timer = setTimeout(() => reject(new Error(`no answer to ${String(message.hyphae)} within ${timeoutMs} ms`)), timeoutMs);
        channel.port1.onmessage = (e: MessageEvent<T & { hyphae: string; error?: string }>) => {
          clearTimeout(timer);
          if (e.data.hyphae === "error") reject(new Error(e.data.error));
          else resolve(e.data);
        };
        navigator.serviceWorker.controller!.postMessage(message, [channel.port2]);
      }),
    [message, timeoutMs] as const,
  );
}

/** A client API call from the page through its worker; throws unless 200. */
function api(page: Page, method: string, path: string, token: string | undefined, body?: unknown): Promise<Record<string, any>> {
  return page.evaluate(
    async ([method, path, token, body]) => {
      const res = await fetch(`/_matrix/client/v3${path}`, {
        method,
        headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { "Content-Type": "application/json" } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const json = (await res.json()) as Record<string, unknown>;
      if (res.status !== 200 && !(path === "/register" && res.status === 401)) throw new Error(`${method} ${path} → ${res.status} ${JSON.stringify(json)}`);
      return json;
    },
    [method, path, token, body] as const,
  );
}

export const swp2pBench: Bench = async () => {
  const rendezvous = await startRendezvous({ ...DEFAULTS, host: "127.0.0.1", port: 0 }, { privateKey: await generateKeyPair("Ed25519") });
  const dir = await mkdtemp(join(tmpdir(), "hyphae-bench-swp2p-"));
  try {
    await buildWorker(join(HERE, "swworker.ts"), "sw.js", dir);
    await writeFile(join(dir, "index.html"), '<!doctype html><meta charset="utf-8"><title>bench</title><p>bench</p>');
    await writeFile(join(dir, "config.json"), JSON.stringify({ rendezvous: [rendezvous.multiaddrs()[0]!.toString()] }));
    const server = await serveStatic(dir);
    const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS });
    try {
      const person = async (name: string): Promise<{ page: Page; token: string; serverName: string }> => {
        const page = await (await browser.newContext()).newPage();
        await page.goto(`${server.url}/`);
        await registerWorker(page);
        const first = await api(page, "POST", "/register", undefined, { username: name, password: "bench password" });
        const reg = await api(page, "POST", "/register", undefined, { username: name, password: "bench password", auth: { type: "m.login.dummy", session: first.session } });
        // The libp2p node holds its rendezvous reservation before anyone is asked to dial it.
        const end = Date.now() + 60_000;
        for (;;) {
          const { status } = await ask<{ status: { p2p: { rendezvousConnected: number; rendezvous: string } } }>(page, { hyphae: "status" });
          if (status.p2p.rendezvousConnected > 0) break;
          if (Date.now() > end) throw new Error(`${name}'s worker is not on the rendezvous: ${status.p2p.rendezvous}`);
          await new Promise((r) => setTimeout(r, 200));
        }
        return { page, token: reg.access_token as string, serverName: (reg.user_id as string).split(":")[1]! };
      };
      const a = await person("alice");
      const b = await person("bob");
      const { room_id: roomId } = (await api(a.page, "POST", "/createRoom", a.token, { preset: "public_chat" })) as { room_id: string };
      await api(b.page, "POST", `/join/${encodeURIComponent(roomId)}?server_name=${a.serverName}`, b.token, {});
      let since = (await api(b.page, "GET", "/sync?timeout=0", b.token)).next_batch as string;

      const rtt = async (): Promise<number> => (await ask<{ ms: number }>(a.page, { hyphae: "peer-rtt", server: b.serverName })).ms;
      for (let i = 0; i < 10; i++) await rtt();
      const latencies: number[] = [];
      /** The part of each latency spent in A's `PUT /send` (until its answer in page A). */
      const sends: number[] = [];
      const rawDuring: number[] = [];
      for (let i = 0; i < MESSAGES + WARMUP; i++) {
        const body = `m${i}`;
        // Bob's long-poll, waiting in page B until the message arrives.
        const waiting = b.page.evaluate(
          async ([since, body, roomId, token]) => {
            for (;;) {
              const res = await fetch(`/_matrix/client/v3/sync?timeout=30000&since=${encodeURIComponent(since)}`, { headers: { Authorization: `Bearer ${token}` } });
              const s = (await res.json()) as { next_batch: string; rooms?: { join?: Record<string, { timeline: { events: { content: { body?: string } }[] } }> } };
              if (!res.ok) throw new Error(`/sync → ${res.status}`);
              since = s.next_batch;
              if (s.rooms?.join?.[roomId]?.timeline.events.some((e) => e.content.body === body)) return { answeredAt: Date.now(), since };
            }
          },
          [since, body, roomId, b.token] as const,
        );
        const pauseEnds = performance.now() + PAUSE_MS;
        for (let k = 0; k < 3; k++) rawDuring.push(await rtt());
        await new Promise((r) => setTimeout(r, Math.max(0, pauseEnds - performance.now())));
        const { startedAt, sentAt } = await a.page.evaluate(
          async ([roomId, token, body, i]) => {
            const startedAt = Date.now();
            const res = await fetch(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/lat${i}`, {
              method: "PUT",
              headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
              body: JSON.stringify({ msgtype: "m.text", body }),
            });
            if (!res.ok) throw new Error(`send → ${res.status} ${await res.text()}`);
            return { startedAt, sentAt: Date.now() };
          },
          [roomId, a.token, body, i] as const,
        );
        const answered = await waiting;
        since = answered.since;
        if (i >= WARMUP) {
          latencies.push(answered.answeredAt - startedAt);
          sends.push(sentAt - startedAt);
        }
      }
      const latencyMs = median(latencies);
      const rawMs = median(rawDuring);
      const figures: Figure[] = [
        {
          name: "browser-to-browser message latency (send in page A → B's /sync answers; two Chromium workers, relayed)",
          value: latencyMs,
          unit: "ms",
          baseline: { name: "raw relayed round trip between the two workers (new stream, GET /version), taken between the messages", value: rawMs, unit: "ms" },
          ratio: latencyMs / rawMs,
          note: `median of ${MESSAGES} messages; latencies ${Math.min(...latencies)}–${Math.max(...latencies)} ms`,
        },
        { name: "of which A's PUT /send until its answer in page A (median)", value: median(sends), unit: "ms" },
      ];
      return figures;
    } finally {
      await browser.close();
      await server.close();
    }
  } finally {
    await rendezvous.stop();
    await rm(dir, { recursive: true, force: true });
  }
};
