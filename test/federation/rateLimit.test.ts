/**
 * `rc_federation` on inbound federation requests: per origin, sleep past `sleep_limit` in a window,
 * at most `concurrent` at once (in arrival order), 429 when more than `reject_limit` wait; through
 * the `federation()` route helper with real X-Matrix signatures between two harness servers.
 */
import { afterEach, describe, expect, it } from "vitest";
import { FederationRateLimiter } from "../../src/homeserver/federation/rateLimit.ts";
import { RequestContext } from "../../src/homeserver/context.ts";
import { MatrixError } from "../../src/homeserver/errors.ts";
import { CLIENT_ADDRESS_HEADER } from "../../src/homeserver/auth/rateLimit.ts";
import { federation } from "../../src/homeserver/routeHelpers.ts";
import { authorizationHeader } from "../../src/homeserver/federation/xmatrix.ts";
import type { Federation, FedServer } from "./harness.ts";
import { createFederation } from "./harness.ts";

const settings = { windowSize: 1000, sleepLimit: 2, sleepDelay: 500, rejectLimit: 1, concurrent: 2 };

/** A gate a test opens by hand. */
function gate(): { wait: Promise<void>; open(): void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

/** Lets pending promise callbacks run. */
const settle = () => new Promise((r) => setTimeout(r, 0));

describe("FederationRateLimiter", () => {
  it("delays requests past sleep_limit in a window, not the first ones, and not after the window", async () => {
    let now = 0;
    const slept: number[] = [];
    const limiter = new FederationRateLimiter({ ...settings, rejectLimit: 10 }, () => now, async (ms) => void slept.push(ms));
    for (let i = 0; i < 4; i++) await limiter.run("a.test", async () => i);
    expect(slept).toEqual([500, 500]);
    now += 1000;
    await limiter.run("a.test", async () => 0);
    // Another origin has its own window.
    await limiter.run("b.test", async () => 0);
    expect(slept).toEqual([500, 500]);
  });

  it("runs at most `concurrent` at once, the rest in arrival order", async () => {
    const limiter = new FederationRateLimiter({ ...settings, sleepLimit: 100, rejectLimit: 100 }, () => 0);
    const gates = [gate(), gate(), gate(), gate()];
    const started: number[] = [];
    const runs = gates.map((g, i) =>
      limiter.run("a.test", async () => {
        started.push(i);
        await g.wait;
      }),
    );
    await settle();
    expect(started).toEqual([0, 1]);
    gates[1]!.open();
    await settle();
    expect(started).toEqual([0, 1, 2]);
    gates[0]!.open();
    await settle();
    expect(started).toEqual([0, 1, 2, 3]);
    // Other origins are not held up by a.test's queue.
    expect(await limiter.run("b.test", async () => "b")).toBe("b");
    for (const g of gates) g.open();
    await Promise.all(runs);
    // A failing request gives its slot back too.
    await expect(limiter.run("a.test", async () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    const after = await Promise.all([limiter.run("a.test", async () => 1), limiter.run("a.test", async () => 2)]);
    expect(after).toEqual([1, 2]);
  });

  it("refuses with 429 M_LIMIT_EXCEEDED while more than reject_limit wait", async () => {
    const wake = gate();
    const limiter = new FederationRateLimiter({ ...settings, sleepLimit: 0, rejectLimit: 1 }, () => 0, () => wake.wait);
    const first = limiter.run("a.test", async () => "first");
    const second = limiter.run("a.test", async () => "second");
    const refused = await limiter.run("a.test", async () => "third").catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(MatrixError);
    expect((refused as MatrixError).status).toBe(429);
    expect((refused as MatrixError).errcode).toBe("M_LIMIT_EXCEEDED");
    // Synapse's retry hint: window_size / sleep_limit (here sleep_limit 0 counts as 1).
    expect((refused as MatrixError).extra).toEqual({ retry_after_ms: 1000 });
    wake.open();
    expect(await Promise.all([first, second])).toEqual(["first", "second"]);
  });
});

describe("rc_federation on federation routes", () => {
  let fed: Federation | undefined;
  afterEach(async () => {
    await fed?.close();
    fed = undefined;
  });

  async function signedRequest(from: FedServer, to: FedServer, overNetwork: boolean): Promise<Request> {
    const uri = "/_matrix/federation/v1/limit_test";
    const headers: Record<string, string> = { Authorization: await authorizationHeader(from.hs.services.signingKey, to.name, "GET", uri) };
    if (overNetwork) headers[CLIENT_ADDRESS_HEADER] = "127.0.0.1";
    return new Request(`https://${to.name}${uri}`, { headers });
  }

  it("holds an origin's requests beyond `concurrent` when they came over the network", async () => {
    fed = await createFederation(["a.test", "b.test"], { federationRateLimit: { windowSize: 60_000, sleepLimit: 100, sleepDelay: 0, rejectLimit: 100, concurrent: 1 } });
    const [a, b] = fed.servers as [FedServer, FedServer];
    const first = gate();
    const seen: string[] = [];
    const [route] = federation("GET", "/v1/limit_test", async (_ctx, _params, origin) => {
      seen.push(origin);
      if (seen.length === 1) await first.wait;
      return { status: 200, body: {} };
    });
    const call = async (overNetwork: boolean) => {
      const request = await signedRequest(a, b, overNetwork);
      return route!.handler(new RequestContext(b.hs.services, request, new URL(request.url)), {});
    };
    const one = call(true);
    const two = call(true);
    // Poll with a deadline: signature checks take a few ticks.
    for (const deadline = Date.now() + 5_000; seen.length < 1 && Date.now() < deadline; ) await settle();
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toEqual(["a.test"]);
    // In-process requests (no listener) are not limited: the Service Worker's own, the harness's.
    await call(false);
    expect(seen).toEqual(["a.test", "a.test"]);
    first.open();
    await Promise.all([one, two]);
    expect(seen).toEqual(["a.test", "a.test", "a.test"]);
  });
});
