/**
 * The media Thumbnailer for Node, on `sharp` (libvips). Kept out of the core so the browser build
 * never pulls in native code; the runner passes it to `createHomeserver({ thumbnailer })`.
 */
import sharp from "sharp";
import type { Thumbnailer } from "../homeserver/media/thumbnailer.ts";

/** Images larger than this many pixels are not decoded (decompression bombs). */
const MAX_INPUT_PIXELS = 40_000_000;

/** Types sharp decodes here; anything else is left to the core's fallback. */
const DECODABLE = new Set(["image/jpeg", "image/png", "image/gif", "image/webp", "image/avif", "image/tiff", "image/apng"]);

/**
 * content_repo.md "Thumbnails": "scale" keeps the aspect ratio and covers the requested box (never
 * smaller than requested unless the original is), "crop" fills it exactly; never upscale, and when the image is already within the requested size the
 * original is returned. JPEG stays JPEG; everything else becomes PNG (keeps transparency).
 */
export const sharpThumbnailer: Thumbnailer = async (bytes, contentType, width, height, method) => {
  if (!DECODABLE.has(contentType)) return undefined;
  try {
    const image = sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS, failOn: "error" });
    const meta = await image.metadata();
    if (!meta.width || !meta.height) return undefined;
    // Thumbnails are always still images (sharp decodes the first frame only), so an animated
    // original is never handed back as its own thumbnail (authed-content-repo.yaml, `animated`).
    const animated = (meta.pages ?? 1) > 1;
    if (meta.width <= width && meta.height <= height && !animated) return { bytes, contentType };
    const resized = image.rotate().resize(width, height, { fit: method === "crop" ? "cover" : "outside", withoutEnlargement: true });
    if (contentType === "image/jpeg") return { bytes: new Uint8Array(await resized.jpeg({ quality: 80 }).toBuffer()), contentType: "image/jpeg" };
    return { bytes: new Uint8Array(await resized.png().toBuffer()), contentType: "image/png" };
  } catch {
    return undefined;
  }
};
