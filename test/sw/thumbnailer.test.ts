/**
 * The browser thumbnailer's pure parts in Node: its geometry must give the sizes the Node
 * thumbnailer (sharp) gives, so clients see the same thumbnails from both runtimes; and the header
 * sniffing that refuses decompression bombs before decoding.
 */
import { describe, expect, it } from "vitest";
import sharp from "sharp";
import { headerSize, planThumbnail } from "../../src/sw/thumbnailer.ts";
import { browserThumbnailer } from "../../src/sw/thumbnailer.ts";

const SOURCES: [number, number][] = [[640, 480], [1000, 500], [480, 640], [97, 3], [1, 1]];
const REQUESTS: [number, number][] = [[32, 32], [96, 96], [320, 240], [640, 480], [1000, 100], [100, 1000], [33, 7]];

describe("planThumbnail", () => {
  it("gives sharp's sizes (outside / cover, without enlargement) for crop and scale", async () => {
    for (const [sw, sh] of SOURCES) {
      const src = await sharp({ create: { width: sw, height: sh, channels: 3, background: "#369" } }).png().toBuffer();
      for (const [w, h] of REQUESTS) {
        for (const method of ["crop", "scale"] as const) {
          const out = await sharp(src).resize(w, h, { fit: method === "crop" ? "cover" : "outside", withoutEnlargement: true }).png().toBuffer();
          const meta = await sharp(out).metadata();
          const plan = planThumbnail(sw, sh, w, h, method);
          expect([plan.width, plan.height], `${sw}×${sh} → ${w}×${h} ${method}`).toEqual([meta.width, meta.height]);
        }
      }
    }
  });

  it("never reads outside the image and never upscales", () => {
    for (const [sw, sh] of SOURCES) {
      for (const [w, h] of REQUESTS) {
        for (const method of ["crop", "scale"] as const) {
          const p = planThumbnail(sw, sh, w, h, method);
          expect(p.sx).toBeGreaterThanOrEqual(0);
          expect(p.sy).toBeGreaterThanOrEqual(0);
          expect(p.sx + p.sw).toBeLessThanOrEqual(sw + 1e-9);
          expect(p.sy + p.sh).toBeLessThanOrEqual(sh + 1e-9);
          expect(p.width).toBeLessThanOrEqual(Math.max(1, Math.round(p.sw)));
          expect(p.height).toBeLessThanOrEqual(Math.max(1, Math.round(p.sh)));
        }
      }
    }
  });

  it("crop keeps the requested aspect ratio; scale keeps the image's", () => {
    expect(planThumbnail(640, 480, 96, 96, "crop")).toEqual({ sx: 80, sy: 0, sw: 480, sh: 480, width: 96, height: 96 });
    expect(planThumbnail(640, 480, 100, 100, "scale")).toEqual({ sx: 0, sy: 0, sw: 640, sh: 480, width: 133, height: 100 });
    // content_repo.md: never smaller than requested unless the original is.
    expect(planThumbnail(1000, 500, 320, 240, "scale")).toMatchObject({ width: 480, height: 240 });
    expect(planThumbnail(300, 500, 320, 240, "scale")).toMatchObject({ width: 300, height: 500 });
  });
});

describe("headerSize", () => {
  it("reads PNG, GIF, JPEG and WebP (lossy, lossless, extended) dimensions", async () => {
    const base = sharp({ create: { width: 123, height: 45, channels: 4, background: { r: 1, g: 2, b: 3, alpha: 0.5 } } });
    const cases: [string, Buffer][] = [
      ["png", await base.clone().png().toBuffer()],
      ["gif", await base.clone().gif().toBuffer()],
      ["jpeg", await base.clone().jpeg().toBuffer()],
      ["webp lossy", await base.clone().removeAlpha().webp({ lossless: false }).toBuffer()],
      ["webp lossless", await base.clone().webp({ lossless: true }).toBuffer()],
      ["webp alpha", await base.clone().webp({ lossless: false, alphaQuality: 50 }).toBuffer()],
    ];
    for (const [name, bytes] of cases) expect(headerSize(new Uint8Array(bytes)), name).toEqual({ width: 123, height: 45 });
  });

  it("knows nothing of other bytes", () => {
    expect(headerSize(new TextEncoder().encode("<svg xmlns='http://www.w3.org/2000/svg'/>"))).toBeUndefined();
    expect(headerSize(new Uint8Array([0xff, 0xd8, 0x00]))).toBeUndefined();
  });

  it("makes the thumbnailer refuse a decompression bomb before decoding", async () => {
    // A PNG header claiming 10000×10000 (100 M pixels): refused without createImageBitmap (absent in Node).
    const png = new Uint8Array(33);
    png.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]);
    new DataView(png.buffer).setUint32(16, 10_000);
    new DataView(png.buffer).setUint32(20, 10_000);
    expect(headerSize(png)).toEqual({ width: 10_000, height: 10_000 });
    expect(await browserThumbnailer(png, "image/png", 96, 96, "crop")).toBeUndefined();
    expect(await browserThumbnailer(png, "image/svg+xml", 96, 96, "crop")).toBeUndefined();
  });
});
