import { describe, it, expect, afterEach } from "vitest";
import { createServer } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { request as httpRequest } from "node:http";
import { createRequestListener, forwardedFor } from "../../src/node/listener.ts";
import { isFederationPath } from "../../src/node/runner.ts";
import type { Handle } from "../../src/node/listener.ts";
import { silentLogger } from "../../src/homeserver/context.ts";
import { CLIENT_ADDRESS_HEADER } from "../../src/homeserver/auth/rateLimit.ts";

let server: Server | undefined;
afterEach(async () => {
  if (server) await new Promise<void>((r) => server!.close(() => r()));
  server = undefined;
});

async function serve(handle: Handle, maxBodyBytes = 1 << 20, notServed?: (target: string) => boolean): Promise<string> {
  const listener = createRequestListener(handle, { scheme: "http", fallbackHost: "127.0.0.1", maxBodyBytes, logger: silentLogger, ...(notServed ? { notServed } : {}) });
  server = createServer(listener);
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", () => r()));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A request with the target sent exactly as given (fetch would normalise `..`). */
function rawGet(base: string, target: string): Promise<{ status: number; body: string }> {
  const { port } = new URL(base);
  return new Promise((resolveGet, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port: Number(port), path: target, method: "GET" }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolveGet({ status: res.statusCode!, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("Node listener", () => {
  it("answers 404 M_UNRECOGNIZED for the paths it does not serve (the federation API on a classic server's plain HTTP), however they are spelled", async () => {
    const seen: string[] = [];
    const base = await serve(async (req) => {
      seen.push(new URL(req.url).pathname);
      return Response.json({ ok: true });
    }, 1 << 20, isFederationPath);
    for (const target of ["/_matrix/federation/v1/version", "/_matrix/key/v2/server", "/_matrix/client/../federation/v1/version", "/_matrix/./key/v2/server?x=1"]) {
      const r = await rawGet(base, target);
      expect(r.status, target).toBe(404);
      expect(JSON.parse(r.body)).toEqual({ errcode: "M_UNRECOGNIZED", error: "Unrecognized request" });
    }
    expect((await rawGet(base, "/_matrix/client/versions")).status).toBe(200);
    expect((await rawGet(base, "/_matrix/media/v3/config")).status).toBe(200);
    expect(seen).toEqual(["/_matrix/client/versions", "/_matrix/media/v3/config"]);
  });

  it("passes binary request bodies through and streams binary responses back", async () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    const base = await serve(async (req) => {
      const got = new Uint8Array(await req.arrayBuffer());
      // Answer in several chunks: the received bytes, then every byte value.
      const stream = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(got);
          for (let i = 0; i < 4; i++) c.enqueue(all.slice(i * 64, (i + 1) * 64));
          c.close();
        },
      });
      return new Response(stream, { status: 201, headers: { "Content-Type": "application/octet-stream", "X-Method": req.method } });
    });
    const sent = Uint8Array.from([0, 255, 10, 13, 0, 128]);
    const res = await fetch(`${base}/upload?x=1`, { method: "POST", body: sent });
    expect(res.status).toBe(201);
    expect(res.headers.get("x-method")).toBe("POST");
    const body = new Uint8Array(await res.arrayBuffer());
    expect([...body]).toEqual([...sent, ...all]);
  });

  it("builds the URL from the Host header and sets the client address itself", async () => {
    const base = await serve(async (req) => Response.json({ url: req.url, addr: req.headers.get(CLIENT_ADDRESS_HEADER) }));
    const res = await fetch(`${base}/_matrix/client/versions?a=b`, { headers: { [CLIENT_ADDRESS_HEADER]: "6.6.6.6" } });
    const body = (await res.json()) as { url: string; addr: string };
    expect(body.url).toBe(`${base}/_matrix/client/versions?a=b`);
    // A client cannot pick its own rate-limit key.
    expect(body.addr).toBe("127.0.0.1");
  });

  it("answers 413 for bodies over the limit without calling the homeserver", async () => {
    let called = false;
    const base = await serve(async () => {
      called = true;
      return new Response("ok");
    }, 10);
    const res = await fetch(`${base}/x`, { method: "POST", body: "x".repeat(11) });
    expect(res.status).toBe(413);
    expect(((await res.json()) as { errcode: string }).errcode).toBe("M_TOO_LARGE");
    expect(called).toBe(false);
  });
});

describe("forwardedFor (x_forwarded)", () => {
  it.each([
    ["203.0.113.1", "203.0.113.1"],
    ["192.0.2.9, 203.0.113.1", "203.0.113.1"],
    [["192.0.2.9", "203.0.113.1, 2001:db8::1"], "2001:db8::1"],
    ["203.0.113.1:4711", "203.0.113.1"],
    ["[2001:db8::2]:443", "2001:db8::2"],
    ["unknown", undefined],
    ["", undefined],
    [undefined, undefined],
  ] as const)("%j → %s", (header, expected) => {
    expect(forwardedFor(header as string | string[] | undefined)).toBe(expected);
  });
});
