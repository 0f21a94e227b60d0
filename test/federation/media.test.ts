/**
 * Media across servers: the federation `/media/download` and `/media/thumbnail` answers
 * (`multipart/mixed`), and a client fetching another server's media through its own server's
 * authenticated endpoints (cached, the deprecated endpoints frozen for it, the fallback to the
 * deprecated endpoints for servers that predate the federation ones, `Location` answers).
 */
import { afterEach, describe, expect, it } from "vitest";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { Federation, FedServer } from "./harness.ts";
import { createFederation } from "./harness.ts";
import type { HomeserverConfig } from "../../src/homeserver/context.ts";
import { authorizationHeader } from "../../src/homeserver/federation/xmatrix.ts";
import { encodeMultipart, multipartBoundary, parseMultipart } from "../../src/homeserver/media/multipart.ts";

let fed: Federation | undefined;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  await fed?.close();
  fed = undefined;
  for (const c of cleanups.splice(0)) await c();
});

/** A 1×1 PNG. */
const PNG = Uint8Array.from(
  atob("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="),
  (c) => c.charCodeAt(0),
);

async function start(names = ["a.test", "b.test"], config: Partial<HomeserverConfig> = {}): Promise<FedServer[]> {
  fed = await createFederation(names, config);
  return fed.servers;
}

async function upload(server: FedServer, token: string, bytes: Uint8Array, contentType: string, filename: string): Promise<string> {
  const res = await server.hs.handle(
    new Request(`http://localhost/_matrix/media/v3/upload?filename=${encodeURIComponent(filename)}`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": contentType },
      body: bytes as unknown as BodyInit,
    }),
  );
  expect(res.status).toBe(200);
  return ((await res.json()) as { content_uri: string }).content_uri.split("/").pop()!;
}

async function get(server: FedServer, path: string, token?: string): Promise<Response> {
  return server.hs.handle(new Request(`http://localhost${path}`, { headers: token ? { Authorization: `Bearer ${token}` } : {} }));
}

async function fedGet(from: FedServer, to: FedServer, uri: string, sign = true): Promise<Response> {
  const headers: Record<string, string> = sign ? { Authorization: await authorizationHeader(from.hs.services.signingKey, to.name, "GET", uri) } : {};
  return to.hs.handle(new Request(`https://${to.name}${uri}`, { headers }));
}

describe("serving media to other servers", () => {
  it("answers /media/download and /media/thumbnail with two parts, metadata then media", async () => {
    const [a, b] = await start();
    const bob = await b.register("bob");
    const mediaId = await upload(b, bob.token, new TextEncoder().encode("hello from b"), "text/plain", "hello.txt");

    const res = await fedGet(a, b, `/_matrix/federation/v1/media/download/${mediaId}`);
    expect(res.status).toBe(200);
    const contentType = res.headers.get("Content-Type")!;
    expect(contentType).toMatch(/^multipart\/mixed; boundary=\S+$/);
    const boundary = contentType.split("boundary=")[1]!;
    // The raw body, as RFC 2046 lays it out (checked independently of the parser).
    const text = new TextDecoder().decode(await res.arrayBuffer());
    const sections = text.split(`--${boundary}`);
    expect(sections).toHaveLength(4); // preamble "", two parts, closing "--\r\n"
    expect(sections[0]).toBe("");
    expect(sections[1]).toBe("\r\nContent-Type: application/json\r\n\r\n{}\r\n");
    expect(sections[2]).toBe('\r\nContent-Type: text/plain\r\nContent-Disposition: inline; filename="hello.txt"\r\n\r\nhello from b\r\n');
    expect(sections[3]).toBe("--\r\n");

    const thumb = await fedGet(a, b, `/_matrix/federation/v1/media/thumbnail/${await upload(b, bob.token, PNG, "image/png", "dot.png")}?width=32&height=32&method=scale`);
    expect(thumb.status).toBe(200);
    const parts = parseMultipart(new Uint8Array(await thumb.arrayBuffer()), multipartBoundary(thumb.headers.get("Content-Type"))!)!;
    expect(parts).toHaveLength(2);
    expect(parts[1]!.headers.get("content-type")).toBe("image/png");
    expect(parts[1]!.body).toEqual(PNG);

    expect((await fedGet(a, b, "/_matrix/federation/v1/media/download/unknown123")).status).toBe(404);
    expect((await fedGet(a, b, `/_matrix/federation/v1/media/download/${mediaId}`, false)).status).toBe(401);
    expect((await fedGet(a, b, `/_matrix/federation/v1/media/thumbnail/${mediaId}?width=32&height=32`)).status).toBe(400); // text cannot be thumbnailed
    expect((await fedGet(a, b, `/_matrix/federation/v1/media/thumbnail/${mediaId}`)).status).toBe(400); // width and height are required
  });

  it("parses what it writes, and refuses malformed multipart bodies", () => {
    const body = encodeMultipart("xyz", [
      { headers: { "Content-Type": "application/json" }, body: new TextEncoder().encode("{}") },
      { headers: { "Content-Type": "application/octet-stream" }, body: Uint8Array.from([0x0d, 0x0a, 0x2d, 0x2d, 0x78, 0x79]) },
    ]);
    const parts = parseMultipart(body, "xyz")!;
    expect(parts.map((p) => p.body)).toEqual([new TextEncoder().encode("{}"), Uint8Array.from([0x0d, 0x0a, 0x2d, 0x2d, 0x78, 0x79])]);
    expect(parseMultipart(new TextEncoder().encode("--xyz\r\nContent-Type: a/b\r\n\r\nno end"), "xyz")).toBeUndefined();
    expect(parseMultipart(new TextEncoder().encode("nothing here"), "xyz")).toBeUndefined();
    expect(multipartBoundary('multipart/mixed; boundary="a b"')).toBe("a b");
    expect(multipartBoundary("multipart/form-data; boundary=x")).toBeUndefined();
  });
});

describe("a client reading another server's media", () => {
  it("fetches it over federation through the authenticated endpoints, caches it, and keeps the deprecated ones frozen", async () => {
    const [a, b] = await start();
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const fileId = await upload(b, bob.token, new TextEncoder().encode("hello from b"), "text/plain", "hello.txt");
    const pngId = await upload(b, bob.token, PNG, "image/png", "dot.png");

    const res = await get(a, `/_matrix/client/v1/media/download/b.test/${fileId}`, alice.token);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("hello from b");
    expect(res.headers.get("Content-Type")).toBe("text/plain");
    expect(res.headers.get("Content-Disposition")).toBe('inline; filename="hello.txt"');
    const renamed = await get(a, `/_matrix/client/v1/media/download/b.test/${fileId}/other.txt`, alice.token);
    expect(renamed.headers.get("Content-Disposition")).toBe('inline; filename="other.txt"');

    const thumb = await get(a, `/_matrix/client/v1/media/thumbnail/b.test/${pngId}?width=16&height=16&method=crop`, alice.token);
    expect(thumb.status).toBe(200);
    expect(thumb.headers.get("Content-Type")).toBe("image/png");
    expect(new Uint8Array(await thumb.arrayBuffer())).toEqual(PNG);

    // Cached: served while B is offline.
    fed!.network.setOnline("b.test", false);
    expect(await (await get(a, `/_matrix/client/v1/media/download/b.test/${fileId}`, alice.token)).text()).toBe("hello from b");
    expect((await get(a, `/_matrix/client/v1/media/thumbnail/b.test/${pngId}?width=16&height=16&method=crop`, alice.token)).status).toBe(200);
    // Not cached and B offline: 502.
    const down = await get(a, `/_matrix/client/v1/media/download/b.test/${pngId}`, alice.token);
    expect(down.status).toBe(502);
    fed!.network.setOnline("b.test", true);

    // The deprecated endpoints serve no remote media (all of it was cached after the freeze).
    const legacy = await get(a, `/_matrix/media/v3/download/b.test/${fileId}`);
    expect(legacy.status).toBe(404);
    expect(((await legacy.json()) as { errcode: string }).errcode).toBe("M_NOT_FOUND");
    expect((await get(a, `/_matrix/media/v3/thumbnail/b.test/${pngId}?width=16&height=16`)).status).toBe(404);

    const unknown = await get(a, "/_matrix/client/v1/media/download/b.test/nothing", alice.token);
    expect(unknown.status).toBe(404);
    expect((await get(a, `/_matrix/client/v1/media/download/b.test/${fileId}`)).status).toBe(401);
    expect((await get(a, `/_matrix/client/v1/media/download/b.test/bad%2Fid`, alice.token)).status).toBe(400);
  });

  it("falls back to the deprecated endpoint with allow_remote=false for a server without the federation ones", async () => {
    const [a] = await start(["a.test"]);
    const alice = await a.register("alice");
    const asked: string[] = [];
    fed!.network.attach("old.test", async (req) => {
      const url = new URL(req.url);
      asked.push(url.pathname + url.search);
      if (url.pathname.startsWith("/_matrix/federation/v1/media/")) return Response.json({ errcode: "M_UNRECOGNIZED", error: "Unrecognized request" }, { status: 404 });
      if (url.pathname === "/_matrix/media/v3/download/old.test/OLD" && url.searchParams.get("allow_remote") === "false") {
        return new Response("old bytes", { headers: { "Content-Type": "text/plain", "Content-Disposition": "attachment; filename*=utf-8''%C3%A9t%C3%A9.txt" } });
      }
      return Response.json({ errcode: "M_NOT_FOUND" }, { status: 404 });
    });
    const res = await get(a, "/_matrix/client/v1/media/download/old.test/OLD", alice.token);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("old bytes");
    expect(res.headers.get("Content-Disposition")).toBe("inline; filename*=utf-8''%C3%A9t%C3%A9.txt");
    expect(asked).toEqual(["/_matrix/federation/v1/media/download/OLD?timeout_ms=20000", "/_matrix/media/v3/download/old.test/OLD?timeout_ms=20000&allow_remote=false"]);
    // A plain 404 from the federation endpoint is not a reason to fall back.
    fed!.network.attach("new.test", async () => Response.json({ errcode: "M_NOT_FOUND" }, { status: 404 }));
    expect((await get(a, "/_matrix/client/v1/media/download/new.test/X", alice.token)).status).toBe(404);
  });

  it("follows a Location part, and refuses remote content over the size limit with 502 M_TOO_LARGE", async () => {
    const [a] = await start(["a.test"], { maxUploadBytes: 1000 });
    const alice = await a.register("alice");
    const http = createServer((_req, res) => {
      res.writeHead(200, { "Content-Type": "image/png", "Content-Disposition": 'inline; filename="cdn.png"' });
      res.end(Buffer.from(PNG));
    });
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise((resolve) => http.close(() => resolve())));
    const port = (http.address() as AddressInfo).port;
    const multipart = (second: { headers: Record<string, string>; body: Uint8Array }): Response =>
      new Response(encodeMultipart("b0undary", [{ headers: { "Content-Type": "application/json" }, body: new TextEncoder().encode("{}") }, second]) as unknown as BodyInit, {
        headers: { "Content-Type": "multipart/mixed; boundary=b0undary" },
      });
    fed!.network.attach("cdn.test", async () => multipart({ headers: { Location: `http://127.0.0.1:${port}/file` }, body: new Uint8Array(0) }));
    const res = await get(a, "/_matrix/client/v1/media/download/cdn.test/PIC", alice.token);
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toBe("image/png");
    expect(res.headers.get("Content-Disposition")).toBe('inline; filename="cdn.png"');
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(PNG);

    fed!.network.attach("big.test", async () => multipart({ headers: { "Content-Type": "application/octet-stream" }, body: new Uint8Array(2000) }));
    const big = await get(a, "/_matrix/client/v1/media/download/big.test/HUGE", alice.token);
    expect(big.status).toBe(502);
    expect(((await big.json()) as { errcode: string }).errcode).toBe("M_TOO_LARGE");
    expect(await a.store.read((tx) => tx.count("remote_media_content"))).toBe(1);

    fed!.network.attach("junk.test", async () => new Response("not multipart", { headers: { "Content-Type": "text/plain" } }));
    expect((await get(a, "/_matrix/client/v1/media/download/junk.test/X", alice.token)).status).toBe(502);
  });
});
