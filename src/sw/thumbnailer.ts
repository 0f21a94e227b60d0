/**
 * The media Thumbnailer for browsers and workers (the Service Worker has no DOM): decoding with
 * `createImageBitmap`, resizing on an `OffscreenCanvas`, encoding with `convertToBlob`. Same
 * contract and the same output sizes as the Node one on sharp (src/node/thumbnailer.ts), so a
 * client sees the same thumbnails from either runtime.
 */
import type { Thumbnailer, ThumbnailMethod } from "../homeserver/media/thumbnailer.ts";
import { looksAnimated } from "../homeserver/media/media.ts";

/** Images larger than this many pixels are not decoded (decompression bombs), as in Node. */
const MAX_INPUT_PIXELS = 40_000_000;

/** Types Chromium, Firefox and Safari decode; anything else (SVG, TIFF, video …) is left to the core's fallback. */
const DECODABLE = new Set(["image/jpeg", "image/png", "image/gif", "image/webp", "image/avif", "image/apng"]);

/** A rectangle of the source image and the output size it is drawn at. */
export interface ThumbnailPlan {
  sx: number;
  sy: number;
  sw: number;
  sh: number;
  width: number;
  height: number;
}

/**
 * Where to cut and how large to draw, for a `srcW`×`srcH` image (content_repo.md "Thumbnails";
 * never upscaled). "scale" keeps the aspect ratio and covers the requested box ("Servers MUST NOT
 * return a smaller thumbnail than requested, unless the original content makes that impossible");
 * "crop" scales it to cover the box and cuts the middle, capped at the image's own size. These are
 * sharp's `outside` / `cover` with `withoutEnlargement`, which the Node thumbnailer uses.
 */
export function planThumbnail(srcW: number, srcH: number, width: number, height: number, method: ThumbnailMethod): ThumbnailPlan {
  if (method === "scale") {
    const s = Math.min(1, Math.max(width / srcW, height / srcH));
    return { sx: 0, sy: 0, sw: srcW, sh: srcH, width: Math.max(1, Math.round(srcW * s)), height: Math.max(1, Math.round(srcH * s)) };
  }
  const s = Math.min(1, Math.max(width / srcW, height / srcH));
  const outW = Math.max(1, Math.min(width, Math.round(srcW * s)));
  const outH = Math.max(1, Math.min(height, Math.round(srcH * s)));
  const sw = Math.min(srcW, outW / s);
  const sh = Math.min(srcH, outH / s);
  return { sx: (srcW - sw) / 2, sy: (srcH - sh) / 2, sw, sh, width: outW, height: outH };
}

const u32be = (b: Uint8Array, at: number): number => ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
const u16be = (b: Uint8Array, at: number): number => (b[at]! << 8) | b[at + 1]!;
const u16le = (b: Uint8Array, at: number): number => b[at]! | (b[at + 1]! << 8);
const u24le = (b: Uint8Array, at: number): number => b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16);

/**
 * The pixel size from the file header, without decoding (PNG, GIF, JPEG, WebP), so a
 * decompression bomb is refused before `createImageBitmap` allocates it. Undefined if unknown.
 */
export function headerSize(b: Uint8Array): { width: number; height: number } | undefined {
  if (b.length >= 24 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return { width: u32be(b, 16), height: u32be(b, 20) };
  if (b.length >= 10 && b[0] === 0x47 && b[1] === 0x49 && b[2] === 0x46) return { width: u16le(b, 6), height: u16le(b, 8) };
  if (b.length >= 30 && b[0] === 0x52 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x46 && b[8] === 0x57 && b[9] === 0x45 && b[10] === 0x42 && b[11] === 0x50) {
    const chunk = String.fromCharCode(b[12]!, b[13]!, b[14]!, b[15]!);
    if (chunk === "VP8X") return { width: u24le(b, 24) + 1, height: u24le(b, 27) + 1 };
    if (chunk === "VP8 ") return { width: u16le(b, 26) & 0x3fff, height: u16le(b, 28) & 0x3fff };
    if (chunk === "VP8L") {
      const bits = (b[21]! | (b[22]! << 8) | (b[23]! << 16) | (b[24]! << 24)) >>> 0;
      return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
    }
    return undefined;
  }
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) {
    // Walk the JPEG segments to the first start-of-frame (SOF0–SOF15 except DHT, JPG, DAC).
    let at = 2;
    while (at + 9 < b.length) {
      if (b[at] !== 0xff) return undefined;
      const marker = b[at + 1]!;
      if (marker === 0xff) {
        at++;
        continue;
      }
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        return { width: u16be(b, at + 7), height: u16be(b, at + 5) };
      }
      at += 2 + u16be(b, at + 2);
    }
  }
  return undefined;
}

/**
 * content_repo.md "Thumbnails": never upscale; when the image already fits the requested size the
 * original is returned. Thumbnails are still images (the first frame), so an animated original is
 * never handed back as its own thumbnail. JPEG stays JPEG; everything else becomes PNG (keeps
 * transparency). Undefined for what cannot be decoded, so the core falls back as it does in Node.
 */
export const browserThumbnailer: Thumbnailer = async (bytes, contentType, width, height, method) => {
  if (!DECODABLE.has(contentType)) return undefined;
  const declared = headerSize(bytes);
  if (declared && declared.width * declared.height > MAX_INPUT_PIXELS) return undefined;
  let bitmap: ImageBitmap | undefined;
  try {
    // EXIF orientation is applied by the decoder ("from-image"), as sharp's rotate() does.
    bitmap = await createImageBitmap(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: contentType }), { imageOrientation: "from-image" });
    const { width: srcW, height: srcH } = bitmap;
    if (!srcW || !srcH || srcW * srcH > MAX_INPUT_PIXELS) return undefined;
    const animated = looksAnimated(bytes, contentType);
    if (srcW <= width && srcH <= height && !animated) return { bytes, contentType };
    const plan = planThumbnail(srcW, srcH, width, height, method);
    const canvas = new OffscreenCanvas(plan.width, plan.height);
    const ctx = canvas.getContext("2d");
    if (!ctx) return undefined;
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(bitmap, plan.sx, plan.sy, plan.sw, plan.sh, 0, 0, plan.width, plan.height);
    const outType = contentType === "image/jpeg" ? "image/jpeg" : "image/png";
    const blob = await canvas.convertToBlob(outType === "image/jpeg" ? { type: outType, quality: 0.8 } : { type: outType });
    // convertToBlob falls back to PNG for a type it cannot encode; report what was made.
    return { bytes: new Uint8Array(await blob.arrayBuffer()), contentType: blob.type || outType };
  } catch {
    return undefined;
  } finally {
    bitmap?.close();
  }
};
