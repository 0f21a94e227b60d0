/**
 * The page side of the Service Worker test, bundled with vite and loaded by index.html: small
 * helpers the test calls through `page.evaluate` (fetch the worker's API, make and decode images),
 * and the browser thumbnailer itself for its unit checks in a real browser.
 */
import { browserThumbnailer, planThumbnail } from "../../src/sw/thumbnailer.ts";

/** A JSON API answer as seen by the page. */
export interface ApiResult {
  status: number;
  json: Record<string, unknown>;
}

/** An image answer: its type, size, hash, and dimensions when it decodes. */
export interface ImageResult {
  status: number;
  contentType: string;
  size: number;
  sha256: string;
  width?: number;
  height?: number;
  json?: Record<string, unknown>;
}

/** Images made in this page, by name. */
const images = new Map<string, Blob>();
/** Thumbnails fetched, for the screenshot. */
const shown: { label: string; blob: Blob }[] = [];

const hex = (buf: ArrayBuffer): string => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
const sha256 = async (blob: Blob): Promise<string> => hex(await crypto.subtle.digest("SHA-256", await blob.arrayBuffer()));

async function api(method: string, path: string, body?: unknown, token?: string): Promise<ApiResult> {
  const headers: Record<string, string> = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = { notJson: text.slice(0, 200) };
  }
  return { status: res.status, json };
}

/** A noisy gradient (so PNG cannot compress it to nothing) of `width`×`height`, kept as `name`. */
async function makeImage(name: string, width: number, height: number, type = "image/png"): Promise<{ size: number; sha256: string }> {
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext("2d")!;
  const data = ctx.createImageData(width, height);
  let seed = 12345;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      const i = (y * width + x) * 4;
      data.data[i] = (x * 255) / width;
      data.data[i + 1] = (y * 255) / height;
      data.data[i + 2] = seed >>> 24;
      data.data[i + 3] = 255;
    }
  }
  ctx.putImageData(data, 0, 0);
  const blob = await canvas.convertToBlob({ type });
  images.set(name, blob);
  return { size: blob.size, sha256: await sha256(blob) };
}

async function describeImage(blob: Blob, status: number, contentType: string): Promise<ImageResult> {
  const out: ImageResult = { status, contentType, size: blob.size, sha256: await sha256(blob) };
  try {
    const bitmap = await createImageBitmap(blob);
    out.width = bitmap.width;
    out.height = bitmap.height;
    bitmap.close();
  } catch {
    try {
      out.json = JSON.parse(await blob.text()) as Record<string, unknown>;
    } catch {
      // neither an image nor JSON
    }
  }
  return out;
}

/** `POST /_matrix/media/v3/upload` of a stored image. */
async function upload(name: string, token: string): Promise<ApiResult> {
  const blob = images.get(name)!;
  const res = await fetch(`/_matrix/media/v3/upload?filename=${encodeURIComponent(name)}.png`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": blob.type },
    body: blob,
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** GET of a media path; the result describes the bytes (decoded when an image). */
async function getImage(path: string, token?: string, label?: string): Promise<ImageResult> {
  const res = await fetch(path, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  const blob = await res.blob();
  if (label && res.ok) shown.push({ label, blob });
  return describeImage(blob, res.status, res.headers.get("content-type") ?? "");
}

/** Runs the browser thumbnailer directly on a stored image (or raw bytes). */
async function thumbnail(
  source: string | number[],
  contentType: string,
  width: number,
  height: number,
  method: "crop" | "scale",
): Promise<(ImageResult & { sameBytes: boolean }) | null> {
  const bytes = typeof source === "string" ? new Uint8Array(await images.get(source)!.arrayBuffer()) : Uint8Array.from(source);
  const made = await browserThumbnailer(bytes, contentType, width, height, method);
  if (!made) return null;
  const same = made.bytes === bytes || (made.bytes.length === bytes.length && made.bytes.every((b, i) => b === bytes[i]));
  const blob = new Blob([made.bytes as Uint8Array<ArrayBuffer>], { type: made.contentType });
  return { ...(await describeImage(blob, 200, made.contentType)), sameBytes: same };
}

/** Puts the fetched thumbnails and a caption on the page, for the screenshot. */
async function show(caption: string): Promise<void> {
  document.body.innerHTML = "";
  const p = document.createElement("pre");
  p.textContent = caption;
  p.style.whiteSpace = "pre-wrap";
  p.style.wordBreak = "break-all";
  document.body.append(p);
  for (const { label, blob } of shown) {
    const fig = document.createElement("figure");
    fig.style.display = "inline-block";
    const img = document.createElement("img");
    img.src = URL.createObjectURL(blob);
    const cap = document.createElement("figcaption");
    cap.textContent = label;
    fig.append(img, cap);
    document.body.append(fig);
    await img.decode();
  }
}

(globalThis as unknown as { hyphaeTest: unknown }).hyphaeTest = { api, makeImage, upload, getImage, thumbnail, planThumbnail, show };
