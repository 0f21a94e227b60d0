/**
 * The content repository (client-server API "Content repository"): upload, asynchronous upload
 * (create + PUT), download and thumbnails on the authenticated `/_matrix/client/v1/media/*`
 * endpoints and the deprecated `/_matrix/media/{v3,r0}/*` ones, config and URL previews.
 *
 * Tables: media mediaId → MediaRecord; media_content mediaId → Uint8Array. Other servers' media
 * are fetched over federation and cached by media/remote.ts.
 */
import type { RequestContext, Requester, Services } from "../context.ts";
import { refuseIfSuspended } from "../context.ts";
import { MatrixError, forbidden, invalidParam, limitExceeded, missingParam, notFound, tooLarge } from "../errors.ts";
import { key } from "../../storage/store.ts";
import { CORS_HEADERS, readBodyBytes } from "../http.ts";
import type { ThumbnailMethod } from "./thumbnailer.ts";
import { remoteDownload, remoteThumbnail } from "./remote.ts";

/** What the media table holds. key = mediaId. */
export interface MediaRecord {
  mediaId: string;
  /** The user who uploaded (or created) it. */
  uploader: string;
  createdAt: number;
  /** False between `POST /create` and the PUT of its bytes. */
  uploaded: boolean;
  /** For a created, not yet uploaded ID: when it lapses. */
  unusedExpiresAt?: number;
  contentType?: string;
  filename?: string;
  size?: number;
  /**
   * Uploaded after the freeze of the unauthenticated endpoints (content_repo.md: "any media uploaded
   * after (or during) the freeze SHOULD only be accessible through the new, authenticated,
   * endpoints"). Every upload since this field exists has it; older records lack it and stay
   * reachable on the deprecated endpoints.
   */
  authenticatedOnly?: boolean;
}

/** content_repo.md: a media ID is only `A-Za-z0-9`, `_` and `-` (this also rules out traversal). */
const MEDIA_ID = /^[A-Za-z0-9_-]{1,255}$/;
/** appendices.md "Server name": hostname (DNS name, IPv4, bracketed IPv6) with an optional port. */
const SERVER_NAME = /^(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,255})(?::[0-9]{1,5})?$/;

/** How many created-but-not-uploaded media IDs a user may hold at once. */
const MAX_PENDING_UPLOADS = 10;
/** How long a created media ID may wait for its bytes ("unused_expires_at"). */
const UNUSED_EXPIRY_MS = 24 * 60 * 60_000;
/** The default and the largest `timeout_ms` a download waits for a pending upload. */
const DEFAULT_WAIT_MS = 20_000;
const MAX_WAIT_MS = 60_000;
/** Larger images are not thumbnailed (content_repo.md "Security considerations"). */
const MAX_THUMBNAIL_SOURCE_BYTES = 32 * 1024 * 1024;

/** content_repo.md "Serving inline content": the types that may be served `inline`. */
const INLINE_TYPES = new Set([
  "text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
  "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
  "video/mp4", "video/webm", "video/ogg", "video/quicktime",
  "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave", "audio/wav", "audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac",
]);
/** Thumbnail responses must be one of these image types (authed-content-repo.yaml). */
const THUMBNAIL_TYPES = new Set(["image/jpeg", "image/png", "image/apng", "image/gif", "image/webp"]);

/** Sent with every media body: content never runs as a page, never sniffed. */
const MEDIA_SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "Content-Security-Policy": "sandbox; default-src 'none'; script-src 'none'; object-src 'none'; style-src 'unsafe-inline'",
  "X-Content-Type-Options": "nosniff",
  "Cross-Origin-Resource-Policy": "cross-origin",
  "Cache-Control": "private, max-age=31536000, immutable",
};

const baseType = (contentType: string): string => contentType.split(";")[0]!.trim().toLowerCase();

/** Whether a content type may be served `inline` (never HTML, SVG or anything scriptable). */
export function isInlineSafe(contentType: string): boolean {
  return INLINE_TYPES.has(baseType(contentType));
}

/** A `Content-Disposition` value (RFC 6266), with the file name quoted or RFC 5987-encoded. */
export function contentDisposition(kind: "inline" | "attachment", filename: string | undefined): string {
  if (filename === undefined || filename === "") return kind;
  if (/^[\x20-\x7e]*$/.test(filename) && !/["\\]/.test(filename)) return `${kind}; filename="${filename}"`;
  const encoded = encodeURIComponent(filename).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `${kind}; filename*=utf-8''${encoded}`;
}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

function newMediaId(hs: Services): string {
  // 24 characters from 62: about 143 bits; rejection sampling keeps the distribution uniform.
  let out = "";
  while (out.length < 24) {
    for (const b of hs.random(32)) {
      if (b < 248 && out.length < 24) out += ALPHABET[b % 62];
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Waiting for asynchronous uploads

const waiters = new WeakMap<Services, Map<string, Set<() => void>>>();

function wakeWaiters(hs: Services, mediaId: string): void {
  const m = waiters.get(hs);
  const set = m?.get(mediaId);
  if (!set) return;
  m!.delete(mediaId);
  for (const wake of set) wake();
}

/** Resolves when `mediaId` is uploaded or after `ms`. */
function waitForUpload(hs: Services, mediaId: string, ms: number): Promise<void> {
  let m = waiters.get(hs);
  if (!m) waiters.set(hs, (m = new Map()));
  let set = m.get(mediaId);
  if (!set) m.set(mediaId, (set = new Set()));
  const s = set;
  return new Promise((resolve) => {
    const wake = (): void => {
      clearTimeout(timer);
      s.delete(wake);
      resolve();
    };
    const timer = setTimeout(wake, ms);
    s.add(wake);
  });
}

// ---------------------------------------------------------------------------------------------
// Upload

/** The authenticated uploader; a suspended account may not upload (as Synapse: media is sent to rooms, which it may not). */
async function uploader(ctx: RequestContext): Promise<Requester> {
  const me = await ctx.requireAuth();
  refuseIfSuspended(me);
  return me;
}

function uploadMetadata(ctx: RequestContext): { contentType: string; filename: string | undefined } {
  const contentType = ctx.request.headers.get("Content-Type")?.trim() || "application/octet-stream";
  const filename = ctx.query("filename");
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (filename !== undefined && (filename.length > 255 || /[\u0000-\u001f/\\]/.test(filename))) throw invalidParam("Invalid filename");
  return { contentType, filename };
}

/** `POST /_matrix/media/v3/upload` */
export async function postUpload(ctx: RequestContext): Promise<Record<string, unknown>> {
  const { userId } = await uploader(ctx);
  const { contentType, filename } = uploadMetadata(ctx);
  const bytes = await readBodyBytes(ctx.request, ctx.hs.config.maxUploadBytes);
  const hs = ctx.hs;
  const mediaId = newMediaId(hs);
  const record: MediaRecord = { mediaId, uploader: userId, createdAt: hs.clock(), uploaded: true, contentType, filename, size: bytes.byteLength, authenticatedOnly: true };
  await hs.store.write(async (tx) => {
    tx.put("media", mediaId, record);
    tx.put("media_content", mediaId, bytes);
  });
  return { content_uri: `mxc://${hs.serverName}/${mediaId}` };
}

/** A user's pending uploads (created, not uploaded, not expired). key settings|"media_pending"|userId → PendingUpload[] */
interface PendingUpload {
  mediaId: string;
  expiresAt: number;
}
const pendingKey = (userId: string): string => key("media_pending", userId);

/** `POST /_matrix/media/v1/create` */
export async function postCreate(ctx: RequestContext): Promise<Record<string, unknown>> {
  const { userId } = await uploader(ctx);
  const hs = ctx.hs;
  const mediaId = newMediaId(hs);
  const now = hs.clock();
  const record: MediaRecord = { mediaId, uploader: userId, createdAt: now, uploaded: false, unusedExpiresAt: now + UNUSED_EXPIRY_MS, authenticatedOnly: true };
  await hs.store.write(async (tx) => {
    const all = (await tx.get<PendingUpload[]>("settings", pendingKey(userId))) ?? [];
    const pending = all.filter((p) => p.expiresAt >= now);
    // content-repo.yaml: limit concurrent pending uploads per user with 429 M_LIMIT_EXCEEDED.
    if (pending.length >= MAX_PENDING_UPLOADS) {
      const soonest = Math.min(...pending.map((p) => p.expiresAt));
      throw limitExceeded(Math.max(soonest - now, 1000));
    }
    // Lapsed IDs are forgotten here, so they never accumulate.
    for (const p of all) if (p.expiresAt < now) tx.delete("media", p.mediaId);
    tx.put("settings", pendingKey(userId), [...pending, { mediaId, expiresAt: record.unusedExpiresAt! }]);
    tx.put("media", mediaId, record);
  });
  return { content_uri: `mxc://${hs.serverName}/${mediaId}`, unused_expires_at: record.unusedExpiresAt };
}

/** Checks the server name and media ID of a path. */
function mediaParams(params: Record<string, string>): { serverName: string; mediaId: string } {
  const serverName = params.serverName!;
  const mediaId = params.mediaId!;
  if (!MEDIA_ID.test(mediaId)) throw invalidParam("Invalid media ID");
  if (!SERVER_NAME.test(serverName)) throw invalidParam("Invalid server name");
  return { serverName, mediaId };
}

/** Checks a media ID for a request that only makes sense for this server's media (uploads, media IDs of the federation API). */
export function localMediaId(ctx: RequestContext, params: Record<string, string>): string {
  const { serverName, mediaId } = mediaParams({ serverName: ctx.hs.serverName, ...params });
  if (serverName !== ctx.hs.serverName) throw notFound("Media not found");
  return mediaId;
}

/** `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}` */
export async function putUpload(ctx: RequestContext, params: Record<string, string>): Promise<Record<string, unknown>> {
  const { userId } = await uploader(ctx);
  const mediaId = localMediaId(ctx, params);
  const hs = ctx.hs;
  const pending = await hs.store.read((tx) => tx.get<MediaRecord>("media", mediaId));
  // content-repo.yaml: 404 for unknown or lapsed IDs, 403 for someone else's, 409 once uploaded.
  if (!pending || (!pending.uploaded && (pending.unusedExpiresAt ?? Infinity) < hs.clock())) throw notFound("Unknown media ID");
  if (pending.uploader !== userId) throw forbidden("This media ID was created by another user");
  if (pending.uploaded) throw new MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded");
  const { contentType, filename } = uploadMetadata(ctx);
  const bytes = await readBodyBytes(ctx.request, hs.config.maxUploadBytes);
  await hs.store.write(async (tx) => {
    const current = await tx.get<MediaRecord>("media", mediaId);
    if (current?.uploaded) throw new MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media already uploaded");
    const record: MediaRecord = { mediaId, uploader: userId, createdAt: pending.createdAt, uploaded: true, contentType, filename, size: bytes.byteLength, authenticatedOnly: true };
    tx.put("media", mediaId, record);
    tx.put("media_content", mediaId, bytes);
    const pendingList = (await tx.get<PendingUpload[]>("settings", pendingKey(userId))) ?? [];
    tx.put("settings", pendingKey(userId), pendingList.filter((p) => p.mediaId !== mediaId));
  });
  wakeWaiters(hs, mediaId);
  return {};
}

// ---------------------------------------------------------------------------------------------
// Download and thumbnails

/** The record and bytes of uploaded local media, waiting up to `timeout_ms` for a pending upload. */
async function loadMedia(ctx: RequestContext, mediaId: string): Promise<{ record: MediaRecord; bytes: Uint8Array }> {
  const hs = ctx.hs;
  const read = (): Promise<{ record: MediaRecord | undefined; bytes: Uint8Array | undefined }> =>
    hs.store.read(async (tx) => {
      const record = await tx.get<MediaRecord>("media", mediaId);
      return { record, bytes: record?.uploaded ? await tx.get<Uint8Array>("media_content", mediaId) : undefined };
    });
  let found = await read();
  if (found.record && !found.record.uploaded) {
    if ((found.record.unusedExpiresAt ?? Infinity) < hs.clock()) throw notFound("Media not found");
    const wait = waitParam(ctx);
    if (wait > 0) {
      await waitForUpload(hs, mediaId, wait);
      found = await read();
    }
    if (found.record && !found.record.uploaded) {
      throw new MatrixError(504, "M_NOT_YET_UPLOADED", "Content has not yet been uploaded");
    }
  }
  if (!found.record || !found.bytes) throw notFound("Media not found");
  return { record: found.record, bytes: found.bytes };
}

/** How long a download may wait for a pending upload (`timeout_ms`, capped). */
function waitParam(ctx: RequestContext): number {
  const raw = Number(ctx.query("timeout_ms") ?? DEFAULT_WAIT_MS);
  return Number.isFinite(raw) ? Math.min(Math.max(raw, 0), MAX_WAIT_MS) : DEFAULT_WAIT_MS;
}

/** Media ready to serve: the bytes and the headers that describe them. */
export interface MediaBody {
  bytes: Uint8Array;
  contentType: string;
  disposition: string;
  extra?: Record<string, string>;
}

function mediaResponse(body: MediaBody): Response {
  return new Response(body.bytes as unknown as BodyInit, {
    status: 200,
    headers: {
      ...CORS_HEADERS,
      ...MEDIA_SECURITY_HEADERS,
      "Content-Type": body.contentType,
      "Content-Length": String(body.bytes.byteLength),
      "Content-Disposition": body.disposition,
      ...body.extra,
    },
  });
}

/** The body of a download: never `inline` unless the type is safe to show. */
function downloadBody(bytes: Uint8Array, contentType: string, filename: string | undefined): MediaBody {
  return { bytes, contentType, disposition: contentDisposition(isInlineSafe(contentType) ? "inline" : "attachment", filename) };
}

/** A local file as a download (also what the federation's `/media/download` sends). */
export async function localDownload(ctx: RequestContext, mediaId: string, fileName?: string): Promise<MediaBody> {
  const { record, bytes } = await loadMedia(ctx, mediaId);
  // authed-content-repo.yaml: the file name in the path replaces the uploaded one.
  return downloadBody(bytes, record.contentType ?? "application/octet-stream", fileName ? fileName : record.filename);
}

async function serveDownload(ctx: RequestContext, params: Record<string, string>): Promise<Response> {
  const { serverName, mediaId } = mediaParams(params);
  if (serverName === ctx.hs.serverName) return mediaResponse(await localDownload(ctx, mediaId, params.fileName));
  const { record, bytes } = await remoteDownload(ctx.hs, serverName, mediaId, waitParam(ctx));
  return mediaResponse(downloadBody(bytes, record.contentType, params.fileName ? params.fileName : record.filename));
}

function thumbnailParams(ctx: RequestContext): { width: number; height: number; method: ThumbnailMethod } {
  const w = ctx.query("width");
  const h = ctx.query("height");
  if (w === undefined || h === undefined) throw missingParam("width and height are required");
  const width = Number(w);
  const height = Number(h);
  if (!/^\d+$/.test(w) || !/^\d+$/.test(h) || width < 1 || height < 1 || width > 10_000 || height > 10_000) {
    throw invalidParam("width and height must be positive integers");
  }
  const m = ctx.query("method") ?? "scale";
  if (m !== "crop" && m !== "scale") throw invalidParam("method must be crop or scale");
  return { width, height, method: m };
}

const thumbName = (type: string): string => `thumbnail.${type.split("/")[1] ?? "bin"}`;

/** A thumbnail of a local file, as the query asks (also what the federation's `/media/thumbnail` sends). */
export async function localThumbnail(ctx: RequestContext, mediaId: string): Promise<MediaBody> {
  const { width, height, method } = thumbnailParams(ctx);
  const { record, bytes } = await loadMedia(ctx, mediaId);
  const contentType = baseType(record.contentType ?? "application/octet-stream");
  if (bytes.byteLength > MAX_THUMBNAIL_SOURCE_BYTES) throw tooLarge("Content is too large to thumbnail");
  const thumbnailer = ctx.hs.thumbnailer;
  if (thumbnailer) {
    let made: { bytes: Uint8Array; contentType: string } | undefined;
    try {
      made = await thumbnailer(bytes, contentType, width, height, method);
    } catch (err) {
      ctx.hs.logger.warn("thumbnailer failed", mediaId, err);
    }
    if (made && THUMBNAIL_TYPES.has(baseType(made.contentType))) {
      return { bytes: made.bytes, contentType: made.contentType, disposition: contentDisposition("inline", thumbName(baseType(made.contentType))) };
    }
  }
  // No thumbnailer (or it could not decode the image): an image the client can display is served
  // as it is, which the spec allows for content too small to thumbnail; the header says so. With
  // `animated=false` an animated original must not be returned.
  if (THUMBNAIL_TYPES.has(contentType) && !(ctx.query("animated") === "false" && looksAnimated(bytes, contentType))) {
    return {
      bytes,
      contentType,
      disposition: contentDisposition("inline", thumbName(contentType)),
      extra: { "X-Hyphae-Thumbnail": thumbnailer ? "original (could not be thumbnailed)" : "original (no thumbnailer configured)" },
    };
  }
  throw new MatrixError(400, "M_UNKNOWN", "Cannot generate thumbnails for the requested content");
}

async function serveThumbnail(ctx: RequestContext, params: Record<string, string>): Promise<Response> {
  const { serverName, mediaId } = mediaParams(params);
  if (serverName === ctx.hs.serverName) return mediaResponse(await localThumbnail(ctx, mediaId));
  const spec = thumbnailParams(ctx);
  const animatedRaw = ctx.query("animated");
  if (animatedRaw !== undefined && animatedRaw !== "true" && animatedRaw !== "false") throw invalidParam("animated must be true or false");
  const { record, bytes } = await remoteThumbnail(ctx.hs, serverName, mediaId, { ...spec, ...(animatedRaw !== undefined ? { animated: animatedRaw === "true" } : {}) }, waitParam(ctx));
  const contentType = baseType(record.contentType);
  // Whatever the other server sent, only an image type is served as a thumbnail.
  if (!THUMBNAIL_TYPES.has(contentType)) throw new MatrixError(502, "M_UNKNOWN", `${serverName} answered with a thumbnail that is not an image`);
  return mediaResponse({ bytes, contentType, disposition: contentDisposition("inline", thumbName(contentType)) });
}

const ascii = (bytes: Uint8Array, at: number, text: string): boolean => {
  for (let i = 0; i < text.length; i++) if (bytes[at + i] !== text.charCodeAt(i)) return false;
  return true;
};

/**
 * Whether an image is animated, from its bytes alone (no decoder in the core): a GIF with more
 * than one graphic control block, a PNG with an `acTL` chunk (APNG), a WebP whose VP8X header has
 * the animation flag. Errs towards "animated", which only costs a still fallback.
 */
export function looksAnimated(bytes: Uint8Array, contentType: string): boolean {
  switch (baseType(contentType)) {
    case "image/gif": {
      let frames = 0;
      for (let i = 0; i + 2 < bytes.length; i++) {
        if (bytes[i] === 0x21 && bytes[i + 1] === 0xf9 && bytes[i + 2] === 0x04 && ++frames > 1) return true;
      }
      return false;
    }
    case "image/png":
    case "image/apng": {
      // Chunks: length(4) type(4) data crc(4), after the 8-byte signature; acTL must precede IDAT.
      let at = 8;
      while (at + 8 <= bytes.length) {
        const len = ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0;
        if (ascii(bytes, at + 4, "acTL")) return true;
        if (ascii(bytes, at + 4, "IDAT")) return false;
        at += 12 + len;
      }
      return false;
    }
    case "image/webp":
      return ascii(bytes, 0, "RIFF") && ascii(bytes, 8, "WEBPVP8X") && ((bytes[20] ?? 0) & 0x02) !== 0;
    default:
      return false;
  }
}

/** `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}` and `…/{fileName}` */
export async function getDownloadAuthed(ctx: RequestContext, params: Record<string, string>): Promise<Response> {
  await ctx.requireAuth();
  return serveDownload(ctx, params);
}

/** `GET /_matrix/media/v3/download/{serverName}/{mediaId}` and `…/{fileName}` (deprecated, unauthenticated) */
export async function getDownloadLegacy(ctx: RequestContext, params: Record<string, string>): Promise<Response> {
  await refuseFrozen(ctx, params);
  return serveDownload(ctx, params);
}

/** The deprecated endpoints are frozen: media uploaded since the freeze is `404 M_NOT_FOUND` there (content-repo.yaml allows it). */
async function refuseFrozen(ctx: RequestContext, params: Record<string, string>): Promise<void> {
  const { serverName, mediaId } = mediaParams(params);
  // "For remote media, 'newly-uploaded' is determined by the date the cache was populated": every
  // remote file here was cached after the freeze, so the deprecated endpoints serve none.
  if (serverName !== ctx.hs.serverName) throw notFound("Remote media is only served on the authenticated /_matrix/client/v1/media endpoints");
  const record = await ctx.hs.store.read((tx) => tx.get<MediaRecord>("media", mediaId));
  if (record?.authenticatedOnly) throw notFound("Media not found (use the authenticated /_matrix/client/v1/media endpoints)");
}

/** `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}` */
export async function getThumbnailAuthed(ctx: RequestContext, params: Record<string, string>): Promise<Response> {
  await ctx.requireAuth();
  return serveThumbnail(ctx, params);
}

/** `GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId}` (deprecated, unauthenticated) */
export async function getThumbnailLegacy(ctx: RequestContext, params: Record<string, string>): Promise<Response> {
  await refuseFrozen(ctx, params);
  return serveThumbnail(ctx, params);
}

/** `GET /_matrix/client/v1/media/config` (and the deprecated `GET /_matrix/media/v3/config`) */
export async function getConfig(ctx: RequestContext): Promise<Record<string, unknown>> {
  await ctx.requireAuth();
  return { "m.upload.size": ctx.hs.config.maxUploadBytes };
}

/**
 * `GET /_matrix/client/v1/media/preview_url` (and the deprecated `GET /_matrix/media/v3/preview_url`)
 *
 * The core makes no outbound HTTP requests (in a browser it could not read other origins anyway),
 * so it cannot fetch the page; it says so with `403 M_FORBIDDEN`, as servers with previews
 * disabled do, instead of returning an empty preview that would look like a page without metadata.
 */
export async function getPreviewUrl(ctx: RequestContext): Promise<Record<string, unknown>> {
  await ctx.requireAuth();
  const url = ctx.query("url");
  if (url === undefined) throw missingParam("url is required");
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalidParam("url is not a valid URL");
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw invalidParam("Only http and https URLs can be previewed");
  throw forbidden("URL previews are disabled: this homeserver makes no outbound HTTP requests");
}
