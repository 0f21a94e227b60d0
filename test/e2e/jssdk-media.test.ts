/**
 * Acceptance test for the media repository on `npm run serve`: matrix-js-sdk uploads a real PNG,
 * downloads it and a thumbnail through the authenticated `/_matrix/client/v1/media/*` endpoints;
 * unauthenticated, unknown, traversal and oversized requests are refused over real HTTP.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import sharp from "sharp";
import { createClient } from "matrix-js-sdk";
import type { MatrixClient } from "matrix-js-sdk";
import { startServe } from "./serve.ts";
import type { ServedHomeserver } from "./serve.ts";
import { register } from "./http.ts";
import type { Session } from "./http.ts";

describe("media through matrix-js-sdk on the Node runner", () => {
  let hs: ServedHomeserver | undefined;
  let client: MatrixClient | undefined;
  let session: Session;

  beforeAll(async () => {
    hs = await startServe();
    session = await register(hs.url, "mediauser");
    client = createClient({ baseUrl: hs.url, userId: session.user_id, accessToken: session.access_token, deviceId: session.device_id });
  }, 120_000);

  afterAll(async () => {
    client?.stopClient();
    await hs?.stop();
  });

  const auth = (): Record<string, string> => ({ Authorization: `Bearer ${session.access_token}` });

  it("uploads a PNG and downloads it and a thumbnail with authentication", async () => {
    const png = await sharp({ create: { width: 640, height: 480, channels: 3, background: { r: 10, g: 120, b: 200 } } }).png().toBuffer();
    const { content_uri } = await client!.uploadContent(png, { name: "photo.png", type: "image/png" });
    expect(content_uri).toMatch(/^mxc:\/\/[^/]+\/[A-Za-z0-9_-]+$/);

    const downloadUrl = client!.mxcUrlToHttp(content_uri, undefined, undefined, undefined, false, true, true)!;
    expect(downloadUrl).toContain("/_matrix/client/v1/media/download/");
    const download = await fetch(downloadUrl, { headers: auth() });
    expect(download.status).toBe(200);
    expect(Buffer.from(await download.arrayBuffer()).equals(png)).toBe(true);
    expect(download.headers.get("content-type")).toBe("image/png");
    expect(download.headers.get("content-disposition")).toBe('inline; filename="photo.png"');
    expect(download.headers.get("x-content-type-options")).toBe("nosniff");
    expect(download.headers.get("content-security-policy")).toMatch(/^sandbox; default-src 'none'/);

    const thumbUrl = client!.mxcUrlToHttp(content_uri, 96, 96, "crop", false, true, true)!;
    expect(thumbUrl).toContain("/_matrix/client/v1/media/thumbnail/");
    const thumb = await fetch(thumbUrl, { headers: auth() });
    expect(thumb.status).toBe(200);
    expect(thumb.headers.get("content-disposition")).toMatch(/^inline/);
    const meta = await sharp(Buffer.from(await thumb.arrayBuffer())).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(["png", 96, 96]);

    // The same URLs without the access token are refused.
    for (const url of [downloadUrl, thumbUrl]) {
      const r = await fetch(url);
      expect(r.status).toBe(401);
      expect(((await r.json()) as { errcode: string }).errcode).toBe("M_MISSING_TOKEN");
    }
  });

  it("refuses unknown media, remote media, traversal and oversized uploads", async () => {
    const base = hs!.url;
    const get = async (path: string): Promise<{ status: number; errcode?: string }> => {
      const r = await fetch(base + path, { headers: auth() });
      const body = (await r.json().catch(() => ({}))) as { errcode?: string };
      return { status: r.status, errcode: body.errcode };
    };
    const serverName = session.user_id.slice(session.user_id.indexOf(":") + 1);
    expect(await get(`/_matrix/client/v1/media/download/${serverName}/NoSuchMedia`)).toEqual({ status: 404, errcode: "M_NOT_FOUND" });
    // A server this P2P peer cannot reach (a DNS name has no libp2p identity): the fetch fails, 502.
    expect(await get(`/_matrix/client/v1/media/download/example.org/abc`)).toEqual({ status: 502, errcode: "M_UNKNOWN" });
    for (const bad of ["..%2F..", "..%2F..%2F..%2Fetc%2Fpasswd", "%2E%2E"]) {
      const r = await get(`/_matrix/client/v1/media/download/${serverName}/${bad}`);
      expect([400, 404], bad).toContain(r.status);
    }

    const config = (await (await fetch(`${base}/_matrix/client/v1/media/config`, { headers: auth() })).json()) as Record<string, number>;
    const limit = config["m.upload.size"]!;
    expect(limit).toBeGreaterThan(0);
    const tooBig = await fetch(`${base}/_matrix/media/v3/upload`, {
      method: "POST",
      headers: { ...auth(), "Content-Type": "application/octet-stream" },
      body: new Uint8Array(limit + 1),
    });
    expect(tooBig.status).toBe(413);
    expect(((await tooBig.json()) as { errcode: string }).errcode).toBe("M_TOO_LARGE");
  }, 120_000);
});
