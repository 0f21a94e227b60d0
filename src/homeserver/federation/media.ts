/**
 * This server's media for other servers (server-server API "Content Repository"): the same files
 * and thumbnails as the client endpoints, answered as `multipart/mixed` with exactly two parts,
 * the metadata (an empty JSON object) and the media with its `Content-Type` and
 * `Content-Disposition`. Only local media: a server never proxies a third server's files.
 */
import type { RequestContext } from "../context.ts";
import type { MediaBody } from "../media/media.ts";
import { localDownload, localMediaId, localThumbnail } from "../media/media.ts";
import { encodeMultipart, newBoundary } from "../media/multipart.ts";

function multipartResponse(ctx: RequestContext, media: MediaBody): Response {
  const boundary = newBoundary(ctx.hs.random);
  const body = encodeMultipart(boundary, [
    { headers: { "Content-Type": "application/json" }, body: new TextEncoder().encode("{}") },
    { headers: { "Content-Type": media.contentType, "Content-Disposition": media.disposition }, body: media.bytes },
  ]);
  return new Response(body as unknown as BodyInit, {
    status: 200,
    headers: { "Content-Type": `multipart/mixed; boundary=${boundary}`, "Content-Length": String(body.byteLength) },
  });
}

/** `GET /_matrix/federation/v1/media/download/{mediaId}` */
export async function getFederationMediaDownload(ctx: RequestContext, p: Record<string, string>): Promise<Response> {
  const mediaId = localMediaId(ctx, { mediaId: p.mediaId! });
  return multipartResponse(ctx, await localDownload(ctx, mediaId));
}

/** `GET /_matrix/federation/v1/media/thumbnail/{mediaId}` */
export async function getFederationMediaThumbnail(ctx: RequestContext, p: Record<string, string>): Promise<Response> {
  const mediaId = localMediaId(ctx, { mediaId: p.mediaId! });
  return multipartResponse(ctx, await localThumbnail(ctx, mediaId));
}
