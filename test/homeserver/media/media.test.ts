import { describe, it, expect, beforeEach } from "vitest";
import sharp from "sharp";
import { fixture, SERVER } from "../client/e2eeFixture.ts";
import type { Fixture } from "../client/e2eeFixture.ts";
import { sharpThumbnailer } from "../../../src/node/thumbnailer.ts";
import { contentDisposition, isInlineSafe, looksAnimated } from "../../../src/homeserver/media/media.ts";

const png = (w: number, h: number): Promise<Buffer> =>
  sharp({ create: { width: w, height: h, channels: 4, background: { r: 200, g: 30, b: 30, alpha: 1 } } }).png().toBuffer();

/** A two-frame animation (red, then blue) in the given format. */
async function animation(format: "gif" | "webp", w = 40, h = 30): Promise<Uint8Array> {
  const raw = Buffer.alloc(w * h * 2 * 4);
  for (let i = 0; i < raw.length; i += 4) {
    raw[i + (i < w * h * 4 ? 0 : 2)] = 255;
    raw[i + 3] = 255;
  }
  const img = sharp(raw, { raw: { width: w, height: h * 2, channels: 4, pageHeight: h } as never });
  return new Uint8Array(await (format === "gif" ? img.gif() : img.webp()).toBuffer());
}

const mediaIdOf = (uri: unknown): string => String(uri).replace(`mxc://${SERVER}/`, "");

describe("media repository", () => {
  let f: Fixture;
  let t: string;
  const upload = (bytes: Uint8Array, type: string, filename?: string, token = t) =>
    f.call("POST", `/_matrix/media/v3/upload${filename ? `?filename=${encodeURIComponent(filename)}` : ""}`, token, bytes, { "Content-Type": type });

  beforeEach(async () => {
    f = await fixture({ thumbnailer: sharpThumbnailer, config: { maxUploadBytes: 1_000_000 } });
    t = await f.device("alice", "ADEV");
  });

  it("uploads (v3 and r0) and downloads through the authenticated path", async () => {
    const up = await upload(new TextEncoder().encode("hello"), "text/plain", "hi.txt");
    expect(up.status).toBe(200);
    expect(String(up.json.content_uri)).toMatch(new RegExp(`^mxc://${SERVER}/[A-Za-z0-9_-]+$`));
    const id = mediaIdOf(up.json.content_uri);
    const authed = await f.call("GET", `/_matrix/client/v1/media/download/${SERVER}/${id}`, t);
    expect(authed.status).toBe(200);
    expect(await authed.res.text()).toBe("hello");
    expect(authed.res.headers.get("Content-Type")).toBe("text/plain");
    expect(authed.res.headers.get("Content-Disposition")).toBe('inline; filename="hi.txt"');
    expect(authed.res.headers.get("X-Content-Type-Options")).toBe("nosniff");
    expect(authed.res.headers.get("Content-Security-Policy")).toMatch(/^sandbox; default-src 'none'/);
    const named = await f.call("GET", `/_matrix/client/v1/media/download/${SERVER}/${id}/other%20name.txt`, t);
    expect(named.res.headers.get("Content-Disposition")).toBe('inline; filename="other name.txt"');
    expect((await f.call("POST", `/_matrix/media/r0/upload`, t, new Uint8Array([1]), { "Content-Type": "application/octet-stream" })).status).toBe(200);
  });

  it("freezes the unauthenticated endpoints: new uploads are 404 there, media from before the freeze is still served", async () => {
    const id = mediaIdOf((await upload(new TextEncoder().encode("new"), "image/png", "n.png")).json.content_uri);
    for (const path of [
      `/_matrix/media/v3/download/${SERVER}/${id}`,
      `/_matrix/media/r0/download/${SERVER}/${id}/n.png`,
      `/_matrix/media/v3/thumbnail/${SERVER}/${id}?width=32&height=32`,
      `/_matrix/media/r0/thumbnail/${SERVER}/${id}?width=32&height=32`,
    ]) {
      const r = await f.call("GET", path);
      expect(r.status, path).toBe(404);
      expect(r.json.errcode).toBe("M_NOT_FOUND");
      // A token does not unfreeze them either: the deprecated endpoints are simply closed to new media.
      expect((await f.call("GET", path, t)).status, path).toBe(404);
    }
    // Created and uploaded asynchronously: frozen too.
    const created = mediaIdOf((await f.call("POST", "/_matrix/media/v1/create", t)).json.content_uri);
    await f.call("PUT", `/_matrix/media/v3/upload/${SERVER}/${created}`, t, new Uint8Array([1]), { "Content-Type": "text/plain" });
    expect((await f.call("GET", `/_matrix/media/v3/download/${SERVER}/${created}`)).status).toBe(404);
    expect((await f.call("GET", `/_matrix/client/v1/media/download/${SERVER}/${created}`, t)).status).toBe(200);
    // A record stored before the freeze (no authenticatedOnly flag) stays reachable.
    await f.hs.services.store.write(async (tx) => {
      tx.put("media", "oldmedia", { mediaId: "oldmedia", uploader: "@alice:hs.test", createdAt: 1, uploaded: true, contentType: "text/plain", size: 5 });
      tx.put("media_content", "oldmedia", new TextEncoder().encode("hello"));
    });
    for (const v of ["v3", "r0"]) {
      const legacy = await f.call("GET", `/_matrix/media/${v}/download/${SERVER}/oldmedia`);
      expect(legacy.status).toBe(200);
      expect(await legacy.res.text()).toBe("hello");
    }
  });

  it("refuses unauthenticated requests on the v1 endpoints", async () => {
    const id = mediaIdOf((await upload(new Uint8Array([1, 2, 3]), "application/octet-stream")).json.content_uri);
    for (const path of [`/_matrix/client/v1/media/download/${SERVER}/${id}`, `/_matrix/client/v1/media/thumbnail/${SERVER}/${id}?width=32&height=32`, "/_matrix/client/v1/media/config"]) {
      const r = await f.call("GET", path);
      expect(r.status, path).toBe(401);
      expect(r.json.errcode).toBe("M_MISSING_TOKEN");
    }
    const upload401 = await f.call("POST", "/_matrix/media/v3/upload", undefined, new Uint8Array([1]));
    expect(upload401.status).toBe(401);
  });

  it("serves dangerous types as attachments, never inline", async () => {
    for (const type of ["text/html", "image/svg+xml", "application/javascript", "text/html; charset=utf-8"]) {
      const id = mediaIdOf((await upload(new TextEncoder().encode("<script>alert(1)</script>"), type)).json.content_uri);
      const r = await f.call("GET", `/_matrix/client/v1/media/download/${SERVER}/${id}`, t);
      expect(r.res.headers.get("Content-Disposition"), type).toBe("attachment");
      expect(r.res.headers.get("Content-Security-Policy")).toContain("sandbox");
    }
    expect(isInlineSafe("image/png")).toBe(true);
    expect(isInlineSafe("IMAGE/SVG+XML")).toBe(false);
    expect(contentDisposition("attachment", "naïve \"x\".txt")).toBe("attachment; filename*=utf-8''na%C3%AFve%20%22x%22.txt");
  });

  it("answers 413 M_TOO_LARGE for an oversized upload", async () => {
    const r = await upload(new Uint8Array(1_000_001), "application/octet-stream");
    expect(r.status).toBe(413);
    expect(r.json.errcode).toBe("M_TOO_LARGE");
    // Also when the body is streamed without a Content-Length.
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < 11; i++) c.enqueue(new Uint8Array(100_000));
        c.close();
      },
    });
    const res = await f.hs.handle(
      new Request("http://localhost/_matrix/media/v3/upload", { method: "POST", headers: { Authorization: `Bearer ${t}` }, body: stream, duplex: "half" } as RequestInit),
    );
    expect(res.status).toBe(413);
  });

  it("answers 404 M_NOT_FOUND for unknown and remote media, and refuses traversal", async () => {
    const unknown = await f.call("GET", `/_matrix/client/v1/media/download/${SERVER}/doesNotExist`, t);
    expect(unknown.status).toBe(404);
    expect(unknown.json.errcode).toBe("M_NOT_FOUND");
    const remote = await f.call("GET", `/_matrix/client/v1/media/download/matrix.org/abc`, t);
    expect(remote.status).toBe(404);
    expect(remote.json.errcode).toBe("M_NOT_FOUND");
    for (const bad of ["..%2F..%2Fetc%2Fpasswd", "..%2F..", "a.b", "%2E%2E"]) {
      const r = await f.call("GET", `/_matrix/client/v1/media/download/${SERVER}/${bad}`, t);
      expect([400, 404], bad).toContain(r.status);
      expect(r.res.headers.get("Content-Type")).toBe("application/json");
      const legacy = await f.call("GET", `/_matrix/media/v3/download/${SERVER}/${bad}`);
      expect([400, 404], bad).toContain(legacy.status);
    }
    const badServer = await f.call("GET", `/_matrix/client/v1/media/download/..%2F../abc`, t);
    expect([400, 404]).toContain(badServer.status);
  });

  it("makes thumbnails with sharp, never upscaling", async () => {
    const id = mediaIdOf((await upload(new Uint8Array(await png(800, 600)), "image/png", "big.png")).json.content_uri);
    const scale = await f.call("GET", `/_matrix/client/v1/media/thumbnail/${SERVER}/${id}?width=320&height=240&method=scale`, t);
    expect(scale.status).toBe(200);
    expect(scale.res.headers.get("Content-Type")).toBe("image/png");
    expect(scale.res.headers.get("Content-Disposition")).toMatch(/^inline/);
    let meta = await sharp(Buffer.from(await scale.res.arrayBuffer())).metadata();
    expect([meta.width, meta.height]).toEqual([320, 240]);
    const crop = await f.call("GET", `/_matrix/client/v1/media/thumbnail/${SERVER}/${id}?width=96&height=96&method=crop`, t);
    meta = await sharp(Buffer.from(await crop.res.arrayBuffer())).metadata();
    expect([meta.width, meta.height]).toEqual([96, 96]);
    const larger = await f.call("GET", `/_matrix/client/v1/media/thumbnail/${SERVER}/${id}?width=2000&height=2000`, t);
    meta = await sharp(Buffer.from(await larger.res.arrayBuffer())).metadata();
    expect([meta.width, meta.height]).toEqual([800, 600]);
    const bad = await f.call("GET", `/_matrix/client/v1/media/thumbnail/${SERVER}/${id}?width=-1&height=10`, t);
    expect(bad.status).toBe(400);
    const missing = await f.call("GET", `/_matrix/client/v1/media/thumbnail/${SERVER}/${id}`, t);
    expect(missing.status).toBe(400);
    const notImage = mediaIdOf((await upload(new Uint8Array([1, 2]), "application/pdf")).json.content_uri);
    const r = await f.call("GET", `/_matrix/client/v1/media/thumbnail/${SERVER}/${notImage}?width=32&height=32`, t);
    expect(r.status).toBe(400);
    expect(r.json.errcode).toBe("M_UNKNOWN");
  });

  it("serves the original image as the thumbnail when there is no thumbnailer, and says so", async () => {
    const g = await fixture();
    const token = await g.device("bob", "BDEV");
    const bytes = new Uint8Array(await png(200, 200));
    const up = await g.call("POST", "/_matrix/media/v3/upload", token, bytes, { "Content-Type": "image/png" });
    const r = await g.call("GET", `/_matrix/client/v1/media/thumbnail/${SERVER}/${mediaIdOf(up.json.content_uri)}?width=32&height=32`, token);
    expect(r.status).toBe(200);
    expect(new Uint8Array(await r.res.arrayBuffer())).toEqual(bytes);
    expect(r.res.headers.get("X-Hyphae-Thumbnail")).toContain("original");
  });

  it("never returns an animated thumbnail: sharp makes a still one, the fallback refuses animated=false", async () => {
    const gif = await animation("gif");
    expect(looksAnimated(gif, "image/gif")).toBe(true);
    expect(looksAnimated(await animation("webp"), "image/webp")).toBe(true);
    expect(looksAnimated(new Uint8Array(await png(10, 10)), "image/png")).toBe(false);

    const id = mediaIdOf((await upload(gif, "image/gif")).json.content_uri);
    const thumb = await f.call("GET", `/_matrix/client/v1/media/thumbnail/${SERVER}/${id}?width=96&height=96&animated=false`, t);
    expect(thumb.status).toBe(200);
    expect(thumb.res.headers.get("Content-Type")).toBe("image/png");
    expect((await sharp(Buffer.from(await thumb.res.arrayBuffer()), { pages: -1 }).metadata()).pages ?? 1).toBe(1);

    const g = await fixture();
    const token = await g.device("bob", "BDEV");
    const other = mediaIdOf((await g.call("POST", "/_matrix/media/v3/upload", token, gif, { "Content-Type": "image/gif" })).json.content_uri);
    const refused = await g.call("GET", `/_matrix/client/v1/media/thumbnail/${SERVER}/${other}?width=96&height=96&animated=false`, token);
    expect(refused.status).toBe(400);
    const original = await g.call("GET", `/_matrix/client/v1/media/thumbnail/${SERVER}/${other}?width=96&height=96`, token);
    expect(original.status).toBe(200);
    expect(original.res.headers.get("X-Hyphae-Thumbnail")).toContain("original");
  });

  it("supports asynchronous uploads (create, then PUT)", async () => {
    const created = await f.call("POST", "/_matrix/media/v1/create", t);
    expect(created.status).toBe(200);
    expect(typeof created.json.unused_expires_at).toBe("number");
    const id = mediaIdOf(created.json.content_uri);
    const early = await f.call("GET", `/_matrix/client/v1/media/download/${SERVER}/${id}?timeout_ms=0`, t);
    expect(early.status).toBe(504);
    expect(early.json.errcode).toBe("M_NOT_YET_UPLOADED");

    // A download waiting for the bytes gets them once they arrive.
    const waiting = f.call("GET", `/_matrix/client/v1/media/download/${SERVER}/${id}?timeout_ms=10000`, t);
    const bob = await f.device("bob", "BDEV");
    const notMine = await f.call("PUT", `/_matrix/media/v3/upload/${SERVER}/${id}`, bob, new Uint8Array([1]), { "Content-Type": "text/plain" });
    expect(notMine.status).toBe(403);
    const put = await f.call("PUT", `/_matrix/media/v3/upload/${SERVER}/${id}?filename=a.txt`, t, new TextEncoder().encode("later"), { "Content-Type": "text/plain" });
    expect(put.status).toBe(200);
    const got = await waiting;
    expect(got.status).toBe(200);
    expect(await got.res.text()).toBe("later");

    const again = await f.call("PUT", `/_matrix/media/v3/upload/${SERVER}/${id}`, t, new Uint8Array([1]), { "Content-Type": "text/plain" });
    expect(again.status).toBe(409);
    expect(again.json.errcode).toBe("M_CANNOT_OVERWRITE_MEDIA");
    const unknown = await f.call("PUT", `/_matrix/media/v3/upload/${SERVER}/nope`, t, new Uint8Array([1]));
    expect(unknown.status).toBe(404);
  });

  it("limits concurrent pending uploads with 429 M_LIMIT_EXCEEDED, and forgets lapsed ones", async () => {
    let now = 1_000_000;
    const g = await fixture({ clock: () => now });
    const token = await g.device("carol", "CDEV");
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) {
      const r = await g.call("POST", "/_matrix/media/v1/create", token);
      expect(r.status).toBe(200);
      ids.push(mediaIdOf(r.json.content_uri));
    }
    const refused = await g.call("POST", "/_matrix/media/v1/create", token);
    expect(refused.status).toBe(429);
    expect(refused.json.errcode).toBe("M_LIMIT_EXCEEDED");
    // Uploading one frees a slot.
    expect((await g.call("PUT", `/_matrix/media/v3/upload/${SERVER}/${ids[0]}`, token, new Uint8Array([1]))).status).toBe(200);
    expect((await g.call("POST", "/_matrix/media/v1/create", token)).status).toBe(200);
    // A day later the rest have lapsed: they are gone, and new ones can be created.
    now += 25 * 60 * 60_000;
    expect((await g.call("PUT", `/_matrix/media/v3/upload/${SERVER}/${ids[1]}`, token, new Uint8Array([1]))).status).toBe(404);
    expect((await g.call("POST", "/_matrix/media/v1/create", token)).status).toBe(200);
    expect((await g.call("GET", `/_matrix/client/v1/media/download/${SERVER}/${ids[2]}`, token)).status).toBe(404);
  });

  it("reports the upload limit and refuses URL previews honestly", async () => {
    expect((await f.call("GET", "/_matrix/client/v1/media/config", t)).json).toEqual({ "m.upload.size": 1_000_000 });
    expect((await f.call("GET", "/_matrix/media/v3/config", t)).json).toEqual({ "m.upload.size": 1_000_000 });
    const p = await f.call("GET", `/_matrix/client/v1/media/preview_url?url=${encodeURIComponent("https://matrix.org")}`, t);
    expect(p.status).toBe(403);
    expect(p.json.errcode).toBe("M_FORBIDDEN");
    expect((await f.call("GET", `/_matrix/client/v1/media/preview_url`, t)).status).toBe(400);
    expect((await f.call("GET", `/_matrix/client/v1/media/preview_url?url=https://x`)).status).toBe(401);
  });
});
