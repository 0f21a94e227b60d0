/**
 * A's Service Worker stopped again and again (issue 13: "A's worker is stopped explicitly (CDP
 * `ServiceWorker.stopAllWorkers`) during a send, during a long-poll and during federation delivery,
 * many times: no message lost or duplicated on either side"). Two isolated Chromium contexts sign in
 * through the app of a real `npm start`; B joins a public room A made (over libp2p, through the
 * rendezvous `npm start` runs). The test then plays the client itself with fetch from the app's
 * landing page (so every call goes through the page's controlling worker, as Hydrogen's do) and
 * retries as clients do: a send cut by the stop is sent again with the same transaction ID, a
 * `/sync` long-poll cut by it is repeated with the same `since`. Only A's context's workers are
 * stopped (a CDP session on A's page); B's worker keeps one instance throughout.
 *
 * 1. During sends: every send of A is followed by a stop at a varied delay.
 * 2. During long-polls: A's sync loop waits; A's worker is stopped; B sends; the loop's retries
 *    see every event of B's once, in order. The loop runs on to the end, through every later stop.
 * 3. During federation delivery: B sends a burst while A's worker is stopped and restarted several
 *    times, and a backlog while A is stopped (A receives each once, B's queue for A drains); A sends
 *    bursts and is stopped while they are queued, so its outbound queue must survive the stop and
 *    resume by itself (B receives each once, A's queue drains).
 * 4. While it starts: stopped 0-90 ms after a wake, ten times; then messages both ways.
 * After each part both sides' `/messages` hold exactly the same messages, each once, in order.
 * Seen failing with the send path's txnId check, or the sender's resume at start, taken out.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { chromium } from "playwright-core";
import type { Browser, Page } from "playwright-core";
import { CHROMIUM_ARGS, CHROMIUM_PATH } from "../e2e/browser.ts";
import { npmStart } from "./npmStart.ts";
import type { StartedApp } from "./npmStart.ts";
import { ARTIFACTS, api, person, signIn, status, workerStopper } from "./appPeople.ts";
import type { PageAnswer, Person, WorkerStopper } from "./appPeople.ts";

/** The bound of every "eventually" here. */
const WAIT_MS = 90_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A person signed in, with the access token of the test's own device. */
interface Signed extends Person {
  userId: string;
  token: string;
}

/** What {@link send} saw: the event ID and each attempt's answer. */
interface Sent {
  eventId: string;
  answers: PageAnswer[];
}

/**
 * One `PUT` by the page, which the test can cut with {@link cutAttempt} (as a browser that fails a
 * fetch whose worker died, instead of dispatching it again, would).
 */
function attempt(page: Page, path: string, body: unknown, token: string, key: string): Promise<PageAnswer> {
  return page.evaluate(
    async ([path, body, token, key]) => {
      const aborts = ((window as unknown as { hyphaeAborts?: Record<string, AbortController> }).hyphaeAborts ??= {});
      const abort = (aborts[key] = new AbortController());
      const sentAt = Date.now();
      try {
        const res = await fetch(path, {
          method: "PUT",
          headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
          body: JSON.stringify(body),
          signal: abort.signal,
        });
        const text = await res.text();
        let json: Record<string, unknown>;
        try {
          json = JSON.parse(text) as Record<string, unknown>;
        } catch {
          json = { notJson: text.slice(0, 200) };
        }
        return { status: res.status, json, sentAt, answeredAt: Date.now() };
      } catch (err) {
        return { status: 0, json: { cut: String(err) }, sentAt, answeredAt: Date.now() };
      } finally {
        if (aborts[key] === abort) delete aborts[key];
      }
    },
    [path, body, token, key] as const,
  );
}

/** Fails the page's attempt `key` if it is still waiting for its answer. */
const cutAttempt = (page: Page, key: string): Promise<void> =>
  page.evaluate((key) => (window as unknown as { hyphaeAborts?: Record<string, AbortController> }).hyphaeAborts?.[key]?.abort(), key);

/**
 * `PUT /rooms/{roomId}/send/m.room.message/{txnId}` as a client sends it: a failure the stop caused
 * (the fetch cut, or the worker's 503 while it restarts) is retried with the same transaction ID
 * until answered.
 */
async function send(p: Signed, roomId: string, txnId: string, body: string): Promise<Sent> {
  const path = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${encodeURIComponent(txnId)}`;
  const deadline = Date.now() + WAIT_MS;
  const answers: PageAnswer[] = [];
  for (;;) {
    const r = await attempt(p.page, path, { msgtype: "m.text", body }, p.token, txnId);
    answers.push(r);
    if (r.status === 200) return { eventId: r.json.event_id as string, answers };
    if (r.status !== 0 && r.status < 500) throw new Error(`${p.name}'s send ${txnId} refused: ${r.status} ${JSON.stringify(r.json)}`);
    if (Date.now() > deadline) throw new Error(`${p.name}'s send ${txnId} still failing after ${answers.length} attempts: ${r.status} ${JSON.stringify(r.json)}`);
    p.logs.push(`[test] send ${txnId} attempt ${answers.length}: ${r.status} ${JSON.stringify(r.json).slice(0, 200)}`);
    await sleep(100);
  }
}

/** Whether one of the attempts was in flight (issued, not yet answered) when the worker was told to stop. */
const cutByStop = (sent: Sent, stoppingAt: readonly number[]): boolean =>
  sent.answers.some((r) => stoppingAt.some((t) => r.sentAt <= t && t <= r.answeredAt));

/** The room's `m.room.message` events as `p` sees them through `/messages`, oldest first (all pages). */
async function messages(p: Signed, roomId: string): Promise<{ eventId: string; body: string }[]> {
  const out: { eventId: string; body: string }[] = [];
  let from = "";
  for (let page = 0; page < 50; page++) {
    const r = await api(p.page, "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=100${from ? `&from=${encodeURIComponent(from)}` : ""}`, undefined, p.token);
    if (r.status !== 200) throw new Error(`${p.name}'s /messages: ${r.status} ${JSON.stringify(r.json)}`);
    const chunk = r.json.chunk as { type: string; event_id: string; content: { body?: unknown } }[];
    for (const e of chunk) if (e.type === "m.room.message") out.push({ eventId: e.event_id, body: String(e.content.body) });
    if (chunk.length === 0 || typeof r.json.end !== "string") return out.reverse();
    from = r.json.end;
  }
  throw new Error(`${p.name}'s /messages did not end within 50 pages`);
}

/** The room's message bodies on `p`, retried while a stop cuts the call. */
async function bodies(p: Signed, roomId: string): Promise<string[]> {
  for (let attempt = 0; ; attempt++) {
    try {
      return (await messages(p, roomId)).map((m) => m.body);
    } catch (err) {
      if (attempt === 5) throw err;
      await sleep(300);
    }
  }
}

/** In-page state of A's sync loop (see `startSyncLoop`). */
interface SyncLoopState {
  ids: string[];
  /** The bodies of the `m.room.message` events among them. */
  bodies: string[];
  responses: number;
  cuts: number;
  errors: string[];
  limited: number;
}

/**
 * A client's sync loop in the page: `/sync?timeout=30000&since=…`, repeated with the same `since`
 * after a cut or an error (as matrix-js-sdk does), recording every timeline event ID of `roomId` in
 * every answer. `set_presence=offline`: the loop's syncs change no presence, so they queue no
 * presence EDU for B (which would wake A's queue and hide a missing resume).
 */
async function startSyncLoop(page: Page, token: string, roomId: string, since: string, filter: string): Promise<void> {
  await page.evaluate(
    ([token, roomId, since, filter]) => {
      const state = { ids: [] as string[], bodies: [] as string[], responses: 0, cuts: 0, errors: [] as string[], limited: 0, stop: false, abort: new AbortController() };
      (window as unknown as { syncLoop: typeof state }).syncLoop = state;
      void (async () => {
        let next = since;
        while (!state.stop) {
          let res: Response;
          let json: { next_batch: string; rooms?: { join?: Record<string, { timeline?: { events?: { event_id: string; type: string; content: { body?: unknown } }[]; limited?: boolean } }> } };
          try {
            res = await fetch(`/_matrix/client/v3/sync?timeout=30000&set_presence=offline&filter=${encodeURIComponent(filter)}&since=${encodeURIComponent(next)}`, {
              headers: { Authorization: `Bearer ${token}` },
              signal: state.abort.signal,
            });
            if (res.status !== 200) {
              state.errors.push(`${res.status} ${(await res.text()).slice(0, 200)}`);
              await new Promise((r) => setTimeout(r, 300));
              continue;
            }
            json = (await res.json()) as typeof json;
          } catch {
            if (state.stop) break;
            state.cuts++;
            await new Promise((r) => setTimeout(r, 300));
            continue;
          }
          state.responses++;
          const timeline = json.rooms?.join?.[roomId]?.timeline;
          if (timeline?.limited) state.limited++;
          for (const e of timeline?.events ?? []) {
            state.ids.push(e.event_id);
            if (e.type === "m.room.message") state.bodies.push(String(e.content.body));
          }
          next = json.next_batch;
        }
      })();
    },
    [token, roomId, since, filter] as const,
  );
}

const syncLoopState = (page: Page): Promise<SyncLoopState> =>
  page.evaluate(() => {
    const s = (window as unknown as { syncLoop: SyncLoopState }).syncLoop;
    return { ids: [...s.ids], bodies: [...s.bodies], responses: s.responses, cuts: s.cuts, errors: [...s.errors], limited: s.limited };
  });

const stopSyncLoop = (page: Page): Promise<void> =>
  page.evaluate(() => {
    const s = (window as unknown as { syncLoop: { stop: boolean; abort: AbortController } }).syncLoop;
    s.stop = true;
    s.abort.abort();
  });

describe("A's worker stopped during sends, long-polls and federation delivery (npm start, Chromium)", () => {
  let app: StartedApp | undefined;
  let browser: Browser | undefined;
  let a: Signed | undefined;
  let b: Signed | undefined;
  let stopperA: WorkerStopper | undefined;
  let roomId = "";
  let instanceB = "";
  /** Every message body sent so far, in the order both sides must show them. */
  const expected: string[] = [];
  /** How many of `expected` were sent before A's sync loop started (it runs from then to the end). */
  let loopFrom = -1;

  beforeAll(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    app = await npmStart();
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS });
    a = { ...(await person(browser, "A")), userId: "", token: "" };
    b = { ...(await person(browser, "B")), userId: "", token: "" };
  }, 240_000);

  afterAll(async () => {
    const logs = [a, b].filter((p) => p !== undefined).flatMap((p) => [`--- ${p.name} ---`, ...p.logs]);
    await writeFile(join(ARTIFACTS, "worker-stops.log"), logs.join("\n") + "\n").catch(() => undefined);
    await stopperA?.detach();
    await browser?.close();
    if (app) {
      await writeFile(join(ARTIFACTS, "worker-stops-npm-start.log"), app.output()).catch(() => undefined);
      expect(await app.stop()).toEqual({ code: 0, signal: null });
    }
  }, 60_000);

  /** Adds the last lines each browser logged to a failure. */
  const explain = (err: unknown): Error =>
    new Error(`${(err as Error).message}\n--- A ---\n${a?.logs.slice(-50).join("\n") ?? ""}\n--- B ---\n${b?.logs.slice(-30).join("\n") ?? ""}`, { cause: err });

  /** Both sides show exactly `expected` (bounded wait: B's copy arrives over federation). */
  async function converged(): Promise<void> {
    const started = Date.now();
    await expect.poll(() => bodies(a!, roomId), { timeout: WAIT_MS, interval: 500 }).toEqual(expected);
    await expect.poll(() => bodies(b!, roomId), { timeout: WAIT_MS, interval: 500 }).toEqual(expected);
    a!.logs.push(`[test] both sides showed the ${expected.length} messages after ${Date.now() - started} ms`);
  }

  /** Stops A's worker, then (after `pauseMs`) wakes it with a message, as the app's page does. */
  async function stopAndWakeA(pauseMs: number): Promise<WorkerStatusSeen> {
    await stopperA!.stop();
    await sleep(pauseMs);
    return status(a!.page);
  }
  type WorkerStatusSeen = Awaited<ReturnType<typeof status>>;

  it("set-up: A and B sign in through the app; B joins A's public room over libp2p", async () => {
    try {
      for (const p of [a!, b!]) {
        p.userId = await signIn(p, app!.url, p.name === "A" ? "Alice" : "Bob");
        // The landing page from now on: it keeps the worker alive and asks its status as the app
        // does, while the test plays the client with fetch through the same worker.
        await p.page.goto(`${app!.url}/`);
        await p.page.waitForSelector("body[data-app=ready]", { timeout: 60_000 });
        const password = await p.page.evaluate(() => (JSON.parse(localStorage.getItem("hyphae_account")!) as { password: string }).password);
        const login = await api(p.page, "POST", "/_matrix/client/v3/login", { type: "m.login.password", identifier: { type: "m.id.user", user: p.userId }, password });
        expect(login.status, JSON.stringify(login.json)).toBe(200);
        p.token = login.json.access_token as string;
      }
      await expect.poll(async () => (await status(a!.page)).p2p.rendezvousConnected, { timeout: 30_000 }).toBe(1);
      await expect.poll(async () => (await status(b!.page)).p2p.rendezvousConnected, { timeout: 30_000 }).toBe(1);
      stopperA = await workerStopper(a!.context, a!.page, a!.logs);

      const created = await api(a!.page, "POST", "/_matrix/client/v3/createRoom", { name: "Stops", preset: "public_chat", room_alias_name: "stops" }, a!.token);
      expect(created.status, JSON.stringify(created.json)).toBe(200);
      roomId = created.json.room_id as string;
      const alias = `#stops:${a!.userId.split(":")[1]!}`;
      const joined = await api(b!.page, "POST", `/_matrix/client/v3/join/${encodeURIComponent(alias)}`, {}, b!.token);
      expect(joined.status, JSON.stringify(joined.json)).toBe(200);
      expect(joined.json.room_id).toBe(roomId);
      await expect
        .poll(async () => (await api(a!.page, "GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/joined_members`, undefined, a!.token)).json.joined, { timeout: WAIT_MS })
        .toHaveProperty([b!.userId]);
      instanceB = (await status(b!.page)).instance;
    } catch (err) {
      throw explain(err);
    }
  }, 300_000);

  it("during sends: each send of A is cut by a stop at a varied point and retried with its txnId; each message once, in order, on both sides", async () => {
    expect(roomId, "the set-up ran").not.toBe("");
    try {
      // The stop is asked for when the page issues the request (Playwright's request event), or
      // a little later: while the request reaches the worker, while the event is built and
      // stored, while the answer goes back. Chromium dispatches a fetch whose worker stopped
      // before answering again to the next instance; every other send the page's request is cut
      // at the stop instead (as a browser that fails it would), and the client sends again.
      // Those clients cannot tell a stop before the event was stored from one after it (the answer
      // lost on its way): they send once more with the same txnId after the restart even when an
      // answer came, and must get the same event, not a second one.
      const delays = [0, 0, 3, 8, 15, 30, 60, 100];
      const eventIds: string[] = [];
      let cut = 0;
      let retried = 0;
      for (let i = 0; i < 15; i++) {
        const body = `send ${i}`;
        const txnId = `stops-send-${i}`;
        const issued = a!.page.waitForEvent("request", { predicate: (r) => r.url().endsWith(`/send/m.room.message/${txnId}`), timeout: 20_000 });
        const sending = send(a!, roomId, txnId, body);
        await issued;
        await sleep(delays[i % delays.length]!);
        const stopping = stopperA!.stop();
        if (i % 2 === 1) await cutAttempt(a!.page, txnId);
        await stopping;
        const sent = await sending;
        if (i % 2 === 1) {
          const again = await send(a!, roomId, txnId, body);
          expect(again.eventId, `the retry of ${txnId}`).toBe(sent.eventId);
        }
        if (cutByStop(sent, stopperA!.stoppingAt)) cut++;
        if (sent.answers.length > 1) retried++;
        eventIds.push(sent.eventId);
        expected.push(body);
      }
      a!.logs.push(`[test] sends in flight when the worker was stopped: ${cut} of 15, retried by the client: ${retried}`);
      // Stops hit sends in flight (how many depends on the machine's speed: the others came just
      // after the answer); the odd sends were cut and sent again in any case.
      expect(cut, "sends in flight when A's worker was stopped").toBeGreaterThanOrEqual(2);
      expect(retried, "sends retried by the client").toBeGreaterThanOrEqual(1);
      expect(new Set(eventIds).size).toBe(15);
      await converged();
      // The IDs the (retried) sends answered are the ones stored, on both sides.
      const ids = (await messages(a!, roomId)).filter((m) => m.body.startsWith("send ")).map((m) => m.eventId);
      expect(ids).toEqual(eventIds);
      expect((await messages(b!, roomId)).filter((m) => m.body.startsWith("send ")).map((m) => m.eventId)).toEqual(eventIds);
    } catch (err) {
      throw explain(err);
    }
  }, 240_000);

  it("during long-polls: A's /sync waits, its worker is stopped, B sends; the retries with the same since get each event once", async () => {
    expect(roomId, "the set-up ran").not.toBe("");
    try {
      const filter = JSON.stringify({ room: { timeline: { limit: 100 } }, presence: { types: [] } });
      const first = await api(a!.page, "GET", `/_matrix/client/v3/sync?timeout=0&filter=${encodeURIComponent(filter)}`, undefined, a!.token);
      expect(first.status, JSON.stringify(first.json)).toBe(200);
      await startSyncLoop(a!.page, a!.token, roomId, first.json.next_batch as string, filter);
      loopFrom = expected.length;
      const sentByB: string[] = [];
      for (let round = 0; round < 4; round++) {
        // The long-poll is open (nothing new for A): cut it.
        await sleep(800);
        await stopperA!.stop();
        for (let k = 0; k < 3; k++) {
          const body = `poll ${round}.${k}`;
          sentByB.push((await send(b!, roomId, `stops-poll-${round}-${k}`, body)).eventId);
          expected.push(body);
          // Once more while B's events are on their way to A.
          if (k === 1) await stopperA!.stop();
        }
        // This round's events reach A's loop before the next round cuts it again.
        await expect.poll(async () => (await syncLoopState(a!.page)).ids.filter((id) => sentByB.includes(id)).length, { timeout: WAIT_MS }).toBe(sentByB.length);
      }
      // (the loop goes on through the next parts, with its long-polls cut by their stops too)
      const state = await syncLoopState(a!.page);
      a!.logs.push(`[test] sync loop: ${state.responses} answers, ${state.cuts} cut, errors ${JSON.stringify(state.errors)}, ${state.limited} limited`);
      expect(state.limited, "no limited timeline (it would hide events)").toBe(0);
      // No event twice across all the answers, B's all there, in the order B sent them.
      expect(state.ids.length).toBe(new Set(state.ids).size);
      expect(state.ids.filter((id) => sentByB.includes(id))).toEqual(sentByB);
      await converged();
    } catch (err) {
      throw explain(err);
    }
  }, 300_000);

  it("during federation delivery: B's burst reaches A through stops; A's queue survives its stops and resumes", async () => {
    expect(roomId, "the set-up ran").not.toBe("");
    try {
      const serverA = a!.userId.split(":")[1]!;
      const serverB = b!.userId.split(":")[1]!;

      // B sends 20 while A's worker is stopped and woken again four times.
      const stops = (async () => {
        for (let i = 0; i < 4; i++) {
          await sleep(600);
          await stopAndWakeA(300);
        }
      })();
      for (let k = 0; k < 20; k++) {
        const body = `burst from B ${k}`;
        await send(b!, roomId, `stops-burst-b-${k}`, body);
        expected.push(body);
      }
      await stops;
      await converged();
      await expect.poll(async () => (await status(b!.page)).outboundQueues[serverA] ?? 0, { timeout: WAIT_MS }).toBe(0);

      // A backlog: B sends 15 right after A's worker is stopped; B's attempt fails and backs off,
      // so they wait in B's queue (A's sync loop restarts A meanwhile) and go out together; A is
      // stopped again 100, 250 and 500 ms after each wake, while it takes them in (a transaction
      // cut halfway is sent again unchanged).
      await stopperA!.stop();
      for (let k = 0; k < 15; k++) {
        const body = `backlog from B ${k}`;
        await send(b!, roomId, `stops-backlog-b-${k}`, body);
        expected.push(body);
      }
      const backlog = (await status(b!.page)).outboundQueues[serverA] ?? 0;
      a!.logs.push(`[test] B's queue for A while A was stopped: ${backlog}`);
      for (const ms of [100, 250, 500]) {
        await status(a!.page);
        await sleep(ms);
        await stopperA!.stop();
      }
      await status(a!.page);
      await converged();
      await expect.poll(async () => (await status(b!.page)).outboundQueues[serverA] ?? 0, { timeout: WAIT_MS }).toBe(0);

      // A sends bursts of five; once its status shows them queued for B (or in flight), its worker
      // is stopped and woken by a status message only (no client request, which could queue
      // something new and so wake the queue): what was queued must survive in A's store and go
      // out from the restarted worker by itself, and A's queue for B must drain. Until a restart
      // found the queue non-empty (so the resume was exercised), up to four rounds.
      const depthsAfterRestart: number[] = [];
      for (let round = 0; round < 4 && !depthsAfterRestart.some((d) => d > 0); round++) {
        for (let k = 0; k < 5; k++) {
          const body = `burst from A ${round}.${k}`;
          await send(a!, roomId, `stops-burst-a-${round}-${k}`, body);
          expected.push(body);
        }
        if (((await status(a!.page)).outboundQueues[serverB] ?? 0) > 0) depthsAfterRestart.push((await stopAndWakeA(200)).outboundQueues[serverB] ?? 0);
        await expect.poll(() => bodies(b!, roomId), { timeout: WAIT_MS, interval: 500 }).toEqual(expected);
        await expect.poll(async () => (await status(a!.page)).outboundQueues[serverB] ?? 0, { timeout: WAIT_MS }).toBe(0);
        await converged();
      }
      a!.logs.push(`[test] A's queue for B right after each restart: ${depthsAfterRestart.join(" ")}`);
      expect(depthsAfterRestart.some((d) => d > 0), `a restart found A's queue for B non-empty: ${depthsAfterRestart.join(" ")}`).toBe(true);

      // Only A's worker was stopped: B's ran as one instance throughout.
      expect((await status(b!.page)).instance).toBe(instanceB);
    } catch (err) {
      throw explain(err);
    }
  }, 300_000);

  it("while it starts: A's worker stopped 0-90 ms after a wake, ten times; then messages both ways, each once", async () => {
    expect(roomId, "the set-up ran").not.toBe("");
    try {
      // A status message wakes the worker, which opens the store and starts the homeserver and
      // its libp2p node; the stop lands somewhere in that start-up.
      for (let i = 0; i < 10; i++) {
        // (a message whose worker stopped before answering is not dispatched again: that answer
        // never comes, and the page's wait for it ends with its own timeout)
        void status(a!.page).catch(() => undefined);
        await sleep(i * 10);
        await stopperA!.stop();
      }
      await sleep(500);
      const woken = Date.now();
      await expect.poll(async () => (await status(a!.page)).p2p.rendezvousConnected, { timeout: WAIT_MS }).toBe(1);
      a!.logs.push(`[test] A's node on the rendezvous ${Date.now() - woken} ms after the start-up stops`);
      await send(a!, roomId, "stops-startup-a", "after start-up stops from A");
      expected.push("after start-up stops from A");
      // (B sends once it has A's: two messages sent at once are concurrent, and each side may order
      // those as they arrived)
      await converged();
      await send(b!, roomId, "stops-startup-b", "after start-up stops from B");
      expected.push("after start-up stops from B");
      await converged();
      expect((await status(b!.page)).instance).toBe(instanceB);

      // A's sync loop, which ran since the long-poll part through every stop after it: each
      // event once across all its answers, and every message in the order /messages shows.
      expect(loopFrom, "the long-poll part ran").toBeGreaterThan(0);
      await expect.poll(async () => (await syncLoopState(a!.page)).bodies, { timeout: WAIT_MS }).toEqual(expected.slice(loopFrom));
      const state = await syncLoopState(a!.page);
      await stopSyncLoop(a!.page);
      a!.logs.push(`[test] sync loop at the end: ${state.responses} answers, ${state.cuts} cut, errors ${JSON.stringify(state.errors)}, ${state.limited} limited`);
      expect(state.limited, "no limited timeline (it would hide events)").toBe(0);
      expect(state.ids.length).toBe(new Set(state.ids).size);
    } catch (err) {
      throw explain(err);
    }
  }, 240_000);
});
