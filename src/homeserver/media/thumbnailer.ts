/**
 * The thumbnailing capability the media repository is given. The pure core never decodes images
 * itself: the Node runner injects one built on `sharp` (src/node/thumbnailer.ts); without one,
 * thumbnail requests get the original image (content_repo.md "Thumbnails" allows returning the
 * original when it cannot be made smaller).
 */

/** The two thumbnail methods of the spec. */
export type ThumbnailMethod = "crop" | "scale";

/**
 * Makes a thumbnail of at least `width`×`height` (never upscaled), or returns undefined when the
 * bytes are not an image it can decode. Returning the input unchanged is allowed when the image is
 * already small enough.
 */
export type Thumbnailer = (
  bytes: Uint8Array,
  contentType: string,
  width: number,
  height: number,
  method: ThumbnailMethod,
) => Promise<{ bytes: Uint8Array; contentType: string } | undefined>;
