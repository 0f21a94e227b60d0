/**
 * Other servers' media, fetched over federation and cached (server-server API "Content
 * Repository"): `GET /_matrix/federation/v1/media/download/{mediaId}` and `…/thumbnail/{mediaId}`
 * on the server named in the `mxc://` URI, whose `multipart/mixed` answer holds the bytes or a
 * `Location` to fetch them from; a server that does not know those endpoints (`404
 * M_UNRECOGNIZED`) is asked on the deprecated `/_matrix/media/v3/*` ones with `allow_remote=false`.
 *
 * Tables: remote_media key = serverName|mediaId (or serverName|mediaId|"thumbnail"|w|h|method|animated)
 * → RemoteMediaRecord; remote_media_content, same key → Uint8Array.
 */
import type { Services } from "../context.ts";
import { MatrixError, notFound } from "../errors.ts";
import { key } from "../../storage/store.ts";
import { readBodyBytes } from "../http.ts";
import { FederationError } from "../federation/client.ts";
import { dispositionFilename, multipartBoundary, parseMultipart } from "./multipart.ts";
import type { ThumbnailMethod } from "./thumbnailer.ts";

/** A cached remote file. */
export interface RemoteMediaRecord {
  contentType: string;
  filename?: string;
  size: number;
  /** When it was fetched (the deprecated endpoints never serve it: it was cached after the freeze). */
  cachedAt: number;
}

/** Media as the client-facing handlers serve it. */
export interface FetchedMedia {
  record: RemoteMediaRecord;
  bytes: Uint8Array;
}

/** The thumbnail a client asked for. */
export interface ThumbnailSpec {
  width: number;
  height: number;
  method: ThumbnailMethod;
  animated?: boolean;
}

/** Extra time given to the transport beyond what the remote server may wait for an upload. */
const TRANSPORT_GRACE_MS = 10_000;

/** Requests in flight, so that concurrent downloads of one file fetch it once. */
const inFlight = new WeakMap<Services, Map<string, Promise<FetchedMedia>>>();

/** A remote file, from the cache or fetched from its server (`timeoutMs`: how long it may wait for a pending upload). */
export function remoteDownload(hs: Services, server: string, mediaId: string, timeoutMs: number): Promise<FetchedMedia> {
  return cached(hs, key(server, mediaId), () =>
    fetchMedia(hs, server, {
      path: `/_matrix/federation/v1/media/download/${encodeURIComponent(mediaId)}`,
      legacyPath: `/_matrix/media/v3/download/${encodeURIComponent(server)}/${encodeURIComponent(mediaId)}`,
      query: [["timeout_ms", String(timeoutMs)]],
      timeoutMs,
    }),
  );
}

/** A thumbnail of a remote file, from the cache or made by its server. */
export function remoteThumbnail(hs: Services, server: string, mediaId: string, spec: ThumbnailSpec, timeoutMs: number): Promise<FetchedMedia> {
  const query: [string, string][] = [
    ["width", String(spec.width)],
    ["height", String(spec.height)],
    ["method", spec.method],
    ...(spec.animated !== undefined ? [["animated", String(spec.animated)] as [string, string]] : []),
    ["timeout_ms", String(timeoutMs)],
  ];
  return cached(hs, key(server, mediaId, "thumbnail", String(spec.width), String(spec.height), spec.method, String(spec.animated ?? "")), () =>
    fetchMedia(hs, server, {
      path: `/_matrix/federation/v1/media/thumbnail/${encodeURIComponent(mediaId)}`,
      legacyPath: `/_matrix/media/v3/thumbnail/${encodeURIComponent(server)}/${encodeURIComponent(mediaId)}`,
      query,
      timeoutMs,
    }),
  );
}

async function cached(hs: Services, storeKey: string, fetch: () => Promise<{ contentType: string; filename?: string; bytes: Uint8Array }>): Promise<FetchedMedia> {
  const hit = await hs.store.read(async (tx) => {
    const record = await tx.get<RemoteMediaRecord>("remote_media", storeKey);
    const bytes = record ? await tx.get<Uint8Array>("remote_media_content", storeKey) : undefined;
    return record && bytes ? { record, bytes } : undefined;
  });
  if (hit) return hit;
  let pending = inFlight.get(hs);
  if (!pending) inFlight.set(hs, (pending = new Map()));
  const already = pending.get(storeKey);
  if (already) return already;
  const map = pending;
  const work = (async (): Promise<FetchedMedia> => {
    const got = await fetch();
    const record: RemoteMediaRecord = { contentType: got.contentType, size: got.bytes.byteLength, cachedAt: hs.clock(), ...(got.filename !== undefined ? { filename: got.filename } : {}) };
    await hs.store.write(async (tx) => {
      tx.put("remote_media", storeKey, record);
      tx.put("remote_media_content", storeKey, got.bytes);
    });
    return { record, bytes: got.bytes };
  })();
  map.set(storeKey, work);
  try {
    return await work;
  } finally {
    map.delete(storeKey);
  }
}

/** The client-facing error for a remote server's error answer. */
function fromRemoteStatus(server: string, status: number, errcode: string | undefined): MatrixError {
  if (status === 404) return notFound(`Media not found on ${server}`);
  if (status === 504 && errcode === "M_NOT_YET_UPLOADED") return new MatrixError(504, "M_NOT_YET_UPLOADED", "Content has not yet been uploaded");
  // content_repo.md "Security considerations": remote content too large to proxy is 502 M_TOO_LARGE.
  if (status === 413 || errcode === "M_TOO_LARGE") return new MatrixError(502, "M_TOO_LARGE", "The remote content is too large");
  if (status === 400) return new MatrixError(400, "M_UNKNOWN", `${server} cannot thumbnail this content`);
  return new MatrixError(502, "M_UNKNOWN", `Failed to fetch remote media from ${server} (status ${status})`);
}

async function errcodeOf(response: Response): Promise<string | undefined> {
  try {
    const body = (await response.json()) as { errcode?: unknown };
    return typeof body?.errcode === "string" ? body.errcode : undefined;
  } catch {
    return undefined;
  }
}

/** Reads a remote body within the upload limit: larger content is `502 M_TOO_LARGE`, never stored. */
async function readRemoteBody(hs: Services, response: Response): Promise<Uint8Array> {
  try {
    return await readBodyBytes(response, hs.config.maxUploadBytes);
  } catch (err) {
    if (err instanceof MatrixError && err.errcode === "M_TOO_LARGE") throw new MatrixError(502, "M_TOO_LARGE", "The remote content is too large");
    throw err;
  }
}

async function fetchMedia(
  hs: Services,
  server: string,
  req: { path: string; legacyPath: string; query: [string, string][]; timeoutMs: number },
): Promise<{ contentType: string; filename?: string; bytes: Uint8Array }> {
  const client = hs.federation;
  if (!client) throw notFound("Remote media is not available: this homeserver does not federate");
  const transportTimeout = req.timeoutMs + TRANSPORT_GRACE_MS;
  try {
    const response = await client.fetch(server, "GET", req.path, { query: req.query, timeoutMs: transportTimeout });
    if (response.ok) return await fromMultipart(hs, server, response);
    const errcode = await errcodeOf(response);
    // "servers MUST try the endpoints described below before falling back to the deprecated
    // /_matrix/media/* endpoints when they receive a 404 M_UNRECOGNIZED error. When falling back,
    // servers MUST be sure to set allow_remote to false."
    if (!(response.status === 404 && errcode === "M_UNRECOGNIZED")) throw fromRemoteStatus(server, response.status, errcode);
    const legacy = await client.fetch(server, "GET", req.legacyPath, { query: [...req.query, ["allow_remote", "false"]], timeoutMs: transportTimeout });
    if (!legacy.ok) throw fromRemoteStatus(server, legacy.status, await errcodeOf(legacy));
    const contentType = legacy.headers.get("Content-Type") ?? "application/octet-stream";
    const filename = dispositionFilename(legacy.headers.get("Content-Disposition"));
    return { contentType, ...(filename !== undefined ? { filename } : {}), bytes: await readRemoteBody(hs, legacy) };
  } catch (err) {
    if (err instanceof MatrixError) throw err;
    if (err instanceof FederationError) throw new MatrixError(502, "M_UNKNOWN", `Failed to fetch remote media: ${server} is unreachable`);
    throw err;
  }
}

/** The media of a `multipart/mixed` answer: the second part's bytes, or what its `Location` serves. */
async function fromMultipart(hs: Services, server: string, response: Response): Promise<{ contentType: string; filename?: string; bytes: Uint8Array }> {
  const boundary = multipartBoundary(response.headers.get("Content-Type"));
  const bad = (why: string): MatrixError => new MatrixError(502, "M_UNKNOWN", `Malformed media answer from ${server}: ${why}`);
  if (!boundary) throw bad("not multipart/mixed with a boundary");
  // The JSON part and the headers add a little to the media's own size.
  const parts = parseMultipart(await readBodyBytes(response, hs.config.maxUploadBytes + 64 * 1024).catch(() => {
    throw new MatrixError(502, "M_TOO_LARGE", "The remote content is too large");
  }), boundary);
  if (!parts || parts.length !== 2) throw bad("expected exactly two parts");
  const [meta, media] = parts as [(typeof parts)[0], (typeof parts)[0]];
  if (!(meta.headers.get("content-type") ?? "").toLowerCase().startsWith("application/json")) throw bad("the first part is not JSON");
  if (media.body.byteLength > hs.config.maxUploadBytes) throw new MatrixError(502, "M_TOO_LARGE", "The remote content is too large");
  const location = media.headers.get("location");
  if (location !== undefined) return fromLocation(hs, server, location);
  const filename = dispositionFilename(media.headers.get("content-disposition"));
  return { contentType: media.headers.get("content-type") ?? "application/octet-stream", ...(filename !== undefined ? { filename } : {}), bytes: media.body };
}

/**
 * "a `Location` header to redirect the caller to where the media can be retrieved": an ordinary
 * HTTPS fetch (not signed; the URL is all the authority it needs). Not cached as a URL, only as
 * the bytes it served.
 */
async function fromLocation(hs: Services, server: string, location: string): Promise<{ contentType: string; filename?: string; bytes: Uint8Array }> {
  let url: URL;
  try {
    url = new URL(location);
  } catch {
    throw new MatrixError(502, "M_UNKNOWN", `Malformed media answer from ${server}: bad Location`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new MatrixError(502, "M_UNKNOWN", `Malformed media answer from ${server}: Location is not http(s)`);
  let response: Response;
  try {
    response = await globalThis.fetch(url, { redirect: "follow", signal: AbortSignal.timeout(30_000) });
  } catch {
    throw new MatrixError(502, "M_UNKNOWN", `Failed to fetch remote media from ${server}'s Location`);
  }
  if (!response.ok) throw fromRemoteStatus(server, response.status, undefined);
  const filename = dispositionFilename(response.headers.get("Content-Disposition"));
  return { contentType: response.headers.get("Content-Type") ?? "application/octet-stream", ...(filename !== undefined ? { filename } : {}), bytes: await readRemoteBody(hs, response) };
}
