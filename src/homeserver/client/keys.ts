/**
 * End-to-end encryption key distribution (client-server API "End-to-End Encryption": "Key
 * management API", "Cross-signing"): request parsing and answers; the tables are
 * services/e2ee.ts's.
 */
import type { RequestContext } from "../context.ts";
import { MatrixError, badJson, invalidParam } from "../errors.ts";
import { canonicalJson } from "../crypto/canonicalJson.ts";
import { verifyJsonSignature } from "../crypto/signing.ts";
import { isObject, requireCanonicalJson } from "../validate.ts";
import type { JsonObject } from "../crypto/signing.ts";
import { requireUserInteractiveAuth, identityFlows } from "../services/uia.ts";
import { serverOf } from "../rooms/ids.ts";
import { readToken } from "../roomserver/tokens.ts";
import { claimRemoteKeys, queryRemoteKeys } from "../federation/deviceLists.ts";
import type { Usage } from "../services/e2ee.ts";
import {
  USAGES,
  claimLocalKeys,
  crossSigningKeysOf,
  crossSigningPublicKey,
  keyChanges,
  queryLocalKeys,
  storeCrossSigningKeys,
  uploadKeys,
  uploadSignatures,
} from "../services/e2ee.ts";

// ---------------------------------------------------------------------------------------------
// keys/upload

function validateDeviceKeys(dk: unknown, userId: string, deviceId: string): JsonObject {
  if (!isObject(dk)) throw badJson("device_keys must be an object");
  if (dk.user_id !== userId) throw invalidParam("device_keys.user_id does not match the access token");
  if (dk.device_id !== deviceId) throw invalidParam("device_keys.device_id does not match the access token");
  if (!Array.isArray(dk.algorithms) || !dk.algorithms.every((a) => typeof a === "string")) throw badJson("device_keys.algorithms must be a list of strings");
  if (!isObject(dk.keys) || !Object.values(dk.keys).every((v) => typeof v === "string")) throw badJson("device_keys.keys must map key IDs to strings");
  if (!isObject(dk.signatures)) throw badJson("device_keys.signatures must be an object");
  const { unsigned: _unsigned, ...rest } = dk;
  return rest;
}

function validateKeyMap(map: unknown, field: string): [string, unknown][] {
  if (map === undefined) return [];
  if (!isObject(map)) throw badJson(`${field} must be an object`);
  const out: [string, unknown][] = [];
  for (const [id, value] of Object.entries(map)) {
    const colon = id.indexOf(":");
    if (colon <= 0 || colon === id.length - 1) throw badJson(`${field}: key ID ${id} must be algorithm:keyId`);
    if (typeof value !== "string" && !isObject(value)) throw badJson(`${field}.${id} must be a string or an object`);
    out.push([id, value]);
  }
  return out;
}

/** `POST /_matrix/client/v3/keys/upload` */
export async function postKeysUpload(ctx: RequestContext): Promise<Record<string, unknown>> {
  const { userId, deviceId } = await ctx.requireAuth();
  const body = await ctx.json({ allowEmpty: true });
  requireCanonicalJson(body);
  const deviceKeys = body.device_keys === undefined ? undefined : validateDeviceKeys(body.device_keys, userId, deviceId);
  const otks = validateKeyMap(body.one_time_keys, "one_time_keys");
  const fallbacks = validateKeyMap(body.fallback_keys, "fallback_keys");

  const counts = await uploadKeys(ctx.hs, userId, deviceId, deviceKeys, otks, fallbacks);
  return { one_time_key_counts: counts };
}

// ---------------------------------------------------------------------------------------------
// keys/query

/** keys.yaml: "10 seconds is the recommended default" for waiting on remote servers; we cap it at a minute. */
function remoteTimeout(raw: unknown): number {
  if (raw === undefined) return 10_000;
  if (typeof raw !== "number" || !Number.isFinite(raw) || raw < 0) throw badJson("timeout must be a non-negative number");
  return Math.min(raw, 60_000);
}

/** `POST /_matrix/client/v3/keys/query` */
export async function postKeysQuery(ctx: RequestContext): Promise<Record<string, unknown>> {
  const { userId: viewer } = await ctx.requireAuth();
  const body = await ctx.json();
  if (!isObject(body.device_keys)) throw badJson("device_keys must be an object");
  const wanted = Object.entries(body.device_keys);
  for (const [, devices] of wanted) {
    if (devices !== null && !(Array.isArray(devices) && devices.every((d) => typeof d === "string"))) throw badJson("device_keys values must be lists of device IDs");
  }
  const timeoutMs = remoteTimeout(body.timeout);
  const local = ctx.hs.serverName;
  const localWanted = wanted.filter(([u]) => serverOf(u) === local) as [string, string[] | null][];
  const remoteWanted = wanted.filter(([u]) => serverOf(u) !== local) as [string, string[] | null][];
  const result = await queryLocalKeys(ctx.hs, localWanted, viewer);
  // Outside the transaction: other servers are asked (or their users' cached device lists read).
  const remote = await queryRemoteKeys(ctx.hs, remoteWanted, timeoutMs);
  return {
    device_keys: { ...result.device_keys, ...remote.device_keys },
    master_keys: { ...result.master_keys, ...remote.master_keys },
    self_signing_keys: { ...result.self_signing_keys, ...remote.self_signing_keys },
    user_signing_keys: result.user_signing_keys,
    failures: remote.failures,
  };
}

// ---------------------------------------------------------------------------------------------
// keys/claim

/** `POST /_matrix/client/v3/keys/claim` */
export async function postKeysClaim(ctx: RequestContext): Promise<Record<string, unknown>> {
  await ctx.requireAuth();
  const body = await ctx.json();
  if (!isObject(body.one_time_keys)) throw badJson("one_time_keys must be an object");
  const timeoutMs = remoteTimeout(body.timeout);
  const requests: [string, string, string][] = [];
  const remoteRequests: [string, Record<string, string>][] = [];
  for (const [userId, devices] of Object.entries(body.one_time_keys)) {
    if (!isObject(devices)) throw badJson("one_time_keys values must be objects");
    for (const [, alg] of Object.entries(devices)) {
      if (typeof alg !== "string" || alg.includes(":")) throw badJson("one_time_keys must map device IDs to algorithms");
    }
    if (serverOf(userId) !== ctx.hs.serverName) remoteRequests.push([userId, devices as Record<string, string>]);
    else for (const [deviceId, alg] of Object.entries(devices)) requests.push([userId, deviceId, alg as string]);
  }
  const one_time_keys = requests.length > 0 ? await claimLocalKeys(ctx.hs, requests) : {};
  // After the local commit, never inside it: other servers are asked for their users' keys.
  const remote = await claimRemoteKeys(ctx.hs, remoteRequests, timeoutMs);
  return { one_time_keys: { ...one_time_keys, ...remote.one_time_keys }, failures: remote.failures };
}

// ---------------------------------------------------------------------------------------------
// keys/changes

/** `GET /_matrix/client/v3/keys/changes` */
export async function getKeysChanges(ctx: RequestContext): Promise<Record<string, unknown>> {
  const { userId } = await ctx.requireAuth();
  const fromRaw = ctx.query("from");
  const toRaw = ctx.query("to");
  if (fromRaw === undefined) throw new MatrixError(400, "M_MISSING_PARAM", "from is required");
  if (toRaw === undefined) throw new MatrixError(400, "M_MISSING_PARAM", "to is required");
  const from = readToken(fromRaw)?.pos;
  const to = readToken(toRaw)?.pos;
  if (from === undefined || to === undefined) throw invalidParam("from and to must be sync tokens");
  if (to <= from) return { changed: [], left: [] };
  return keyChanges(ctx.hs, userId, from, to);
}

// ---------------------------------------------------------------------------------------------
// Cross-signing

function validateCrossSigningKey(k: unknown, usage: Usage, userId: string): JsonObject {
  if (!isObject(k)) throw badJson(`${usage}_key must be an object`);
  if (k.user_id !== userId) throw invalidParam(`${usage}_key.user_id must be the uploading user`);
  if (!Array.isArray(k.usage) || !k.usage.includes(usage)) throw invalidParam(`${usage}_key.usage must contain ${usage}`);
  if (!crossSigningPublicKey(k)) throw invalidParam(`${usage}_key.keys must hold exactly one ed25519 key, named by its public key`);
  return k;
}

/** `POST /_matrix/client/v3/keys/device_signing/upload` */
export async function postDeviceSigningUpload(ctx: RequestContext): Promise<Record<string, unknown>> {
  const { userId } = await ctx.requireAuth();
  const body = await ctx.json();
  requireCanonicalJson(body);
  const uploaded: Partial<Record<Usage, JsonObject>> = {};
  for (const usage of USAGES) {
    const v = body[`${usage}_key`];
    if (v !== undefined) uploaded[usage] = validateCrossSigningKey(v, usage, userId);
  }
  const existing = await crossSigningKeysOf(ctx.hs, userId);
  // cross_signing.yaml: replacing existing keys needs UIA; the first upload (no master key yet)
  // and a re-upload of identical keys do not (MSC3967, adopted in v1.11).
  const replacing = existing.master !== undefined && USAGES.some((u) => uploaded[u] && canonicalJson(uploaded[u]) !== canonicalJson(existing[u]));
  if (replacing) await requireUserInteractiveAuth(ctx, body, { flows: await identityFlows(ctx.hs, userId), userId });

  const master = uploaded.master ?? existing.master;
  if (!master) throw invalidParam("A master key is required");
  const [masterKeyId, masterRaw] = crossSigningPublicKey(master)!;
  const lookup = (entity: string, keyId: string): Uint8Array | undefined => (entity === userId && keyId === masterKeyId ? masterRaw : undefined);
  for (const usage of ["self_signing", "user_signing"] as const) {
    const k = uploaded[usage];
    if (k && !(await verifyJsonSignature(k, userId, lookup, ctx.hs.verifier))) {
      throw new MatrixError(400, "M_INVALID_SIGNATURE", `${usage}_key is not signed by the master key`);
    }
  }
  await storeCrossSigningKeys(ctx.hs, userId, uploaded, existing);
  return {};
}

/** `POST /_matrix/client/v3/keys/signatures/upload` */
export async function postSignaturesUpload(ctx: RequestContext): Promise<Record<string, unknown>> {
  const { userId: signer } = await ctx.requireAuth();
  const body = await ctx.json();
  requireCanonicalJson(body);
  return { failures: await uploadSignatures(ctx.hs, signer, body) };
}
