/**
 * Other servers' users' device lists and keys (server-server API "Device Management", "End-to-End
 * Encryption"): a cache of remote users' device lists, and the client-server `keys/query` and
 * `keys/claim` fanned out to the servers of remote users.
 *
 * "When a server wishes to determine a remote user's device list for the first time, it should
 * populate a local cache from the result of a `/user/keys/query` API on the remote server." Updates
 * then arrive as `m.device_list_update` (and `m.signing_key_update`) EDUs, whose handler
 * (federation/edus.ts) calls `markStale` (or records a device-list change for the user, which has
 * the same effect): the next read fetches the list again, which is what the spec asks when an
 * update cannot be applied in place, and it is always correct. A cached list is trusted only while
 * no change was recorded for its user since it was fetched, the user shares a room with one of our
 * users (only then do their server's updates reach us) and has not joined a room since.
 *
 * Tables: remote_device_lists key = userId → RemoteDeviceList; device_list_latest key = userId →
 * the stream position of the latest device-list change recorded for the user (local or remote).
 */
import type { Services } from "../context.ts";
import { streamPosIn } from "../context.ts";
import type { ReadTx } from "../../storage/store.ts";
import { key, prefix } from "../../storage/store.ts";
import type { JsonObject } from "../crypto/signing.ts";
import { verifyJsonSignature } from "../crypto/signing.ts";
import { tryDecodeBase64 } from "../crypto/base64.ts";
import { isObject } from "../validate.ts";
import { isUserId, serverOf } from "../rooms/ids.ts";
import { FederationError } from "./client.ts";
import { recordDeviceListChange } from "../services/e2ee.ts";

/** One device of a remote user as cached. */
export interface RemoteDevice {
  /** The signed device keys, if the device uploaded any. */
  keys?: JsonObject;
  displayName?: string;
}

/** A remote user's device list as cached. */
export interface RemoteDeviceList {
  userId: string;
  devices: Record<string, RemoteDevice>;
  masterKey?: JsonObject;
  selfSigningKey?: JsonObject;
  /** The remote server's `stream_id` for this list, when it came from `/user/devices`. */
  streamId?: number;
  /** Our stream position when it was fetched: a join after this one means updates may have been missed. */
  fetchedPos: number;
  /**
   * The user's device_list_latest when the fetch began: a change recorded since (an update that
   * arrived during or after the fetch) makes the list stale.
   */
  basis: number;
}

/** What `devicesOf` answers: the user's devices as `/user/devices` lists them. */
export interface DeviceListView {
  userId: string;
  streamId: number;
  devices: { device_id: string; keys?: JsonObject; device_display_name?: string }[];
  masterKey?: JsonObject;
  selfSigningKey?: JsonObject;
}

/** How long a fan-out waits for a server by default (keys.yaml recommends 10 seconds). */
const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * Records that `userId`'s devices or cross-signing keys changed on their server (an
 * `m.device_list_update` or `m.signing_key_update` EDU from it): the cached list is fetched again
 * before its next use, and our users sharing a room with them see them in `device_lists.changed`
 * of their next `/sync` (so their clients query the keys again). Local users are ignored.
 */
export async function markStale(hs: Services, userId: string): Promise<void> {
  if (!isUserId(userId) || serverOf(userId) === hs.serverName) return;
  // A device_list_stream row, read by deviceListChanges for /sync.
  const streamPos = await hs.store.write((tx) => recordDeviceListChange(tx, userId));
  hs.notifier.notify(streamPos);
}

/**
 * A remote user's device list: from the cache when it can be trusted, else fetched from their
 * server (`GET /_matrix/federation/v1/user/devices/{userId}`) and cached. Throws a
 * `FederationError` when the server cannot be asked.
 */
export async function devicesOf(hs: Services, userId: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<DeviceListView> {
  const { cached, trusted, basis } = await hs.store.read(async (tx) => {
    const cached = await tx.get<RemoteDeviceList>("remote_device_lists", userId);
    return { cached, trusted: cached !== undefined && (await trustworthy(tx, hs.serverName, cached)), basis: await latestChange(tx, userId) };
  });
  if (cached && trusted) return view(cached);
  const client = requireFederation(hs, serverOf(userId));
  const answer = await client.json(serverOf(userId), "GET", `/_matrix/federation/v1/user/devices/${encodeURIComponent(userId)}`, { timeoutMs });
  if (answer.user_id !== userId) throw new FederationError(serverOf(userId), 502, `/user/devices for ${userId} answered for another user`);
  const devices: Record<string, RemoteDevice> = {};
  for (const d of Array.isArray(answer.devices) ? answer.devices : []) {
    if (!isObject(d) || typeof d.device_id !== "string") continue;
    const keys = isObject(d.keys) ? await validDeviceKeys(hs, d.keys, userId, d.device_id) : undefined;
    devices[d.device_id] = { ...(keys ? { keys } : {}), ...(typeof d.device_display_name === "string" ? { displayName: d.device_display_name } : {}) };
  }
  const list = await store(hs, userId, basis, {
    devices,
    ...crossSigning(userId, answer.master_key, answer.self_signing_key),
    ...(typeof answer.stream_id === "number" ? { streamId: answer.stream_id } : {}),
  });
  return view(list);
}

function view(list: Omit<RemoteDeviceList, "fetchedPos" | "basis">): DeviceListView {
  return {
    userId: list.userId,
    streamId: list.streamId ?? 0,
    devices: Object.entries(list.devices).map(([device_id, d]) => ({
      device_id,
      ...(d.keys ? { keys: d.keys } : {}),
      ...(d.displayName !== undefined ? { device_display_name: d.displayName } : {}),
    })),
    ...(list.masterKey ? { masterKey: list.masterKey } : {}),
    ...(list.selfSigningKey ? { selfSigningKey: list.selfSigningKey } : {}),
  };
}

function requireFederation(hs: Services, server: string): NonNullable<Services["federation"]> {
  if (!hs.federation) throw new FederationError(server, 0, "This homeserver has no federation transport");
  return hs.federation;
}

/**
 * Whether a cached list may be used: no change was recorded for its user since the fetch began,
 * they still share a room with one of ours (so their server still sends us updates), and every
 * room shared now was shared already when the list was fetched: neither did they join it since,
 * nor did our server (its earliest joined member) come into it since. Otherwise there may have
 * been a time when we shared no room with them and their server sent us nothing (a user of ours
 * who left their only shared room and joined it again).
 */
async function trustworthy(tx: ReadTx, local: string, cached: RemoteDeviceList): Promise<boolean> {
  if ((await latestChange(tx, cached.userId)) !== cached.basis) return false;
  const p = prefix(cached.userId);
  const rooms = await tx.range<{ membership: string; streamPos?: number }>("memberships", { prefix: p });
  let shares = false;
  for (const r of rooms) {
    if (r.value.membership !== "join") continue;
    if ((r.value.streamPos ?? 0) > cached.fetchedPos) return false;
    const since = await localMembersSince(tx, local, r.key.slice(p.length));
    if (since === undefined) continue;
    if (since > cached.fetchedPos) return false;
    shares = true;
  }
  return shares;
}

/** Whether any of our users is joined to the room (room_state key = roomId|m.room.member|userId). */
async function hasLocalMember(tx: ReadTx, local: string, roomId: string): Promise<boolean> {
  return (await localMembersSince(tx, local, roomId)) !== undefined;
}

/**
 * Since when our server has had a member joined in the room: the earliest stream position among
 * the joins of our currently joined users; undefined when none is joined.
 */
async function localMembersSince(tx: ReadTx, local: string, roomId: string): Promise<number | undefined> {
  const p = prefix(roomId, "m.room.member");
  let since: number | undefined;
  for (const r of await tx.range<string>("room_state", { prefix: p })) {
    const userId = r.key.slice(p.length);
    if (serverOf(userId) !== local) continue;
    const m = await tx.get<{ membership: string; streamPos?: number }>("memberships", key(userId, roomId));
    if (m?.membership === "join") since = Math.min(since ?? Infinity, m.streamPos ?? 0);
  }
  return since;
}

/** The position of the latest device-list change recorded for a user (0 if none). */
async function latestChange(tx: ReadTx, userId: string): Promise<number> {
  return (await tx.get<number>("device_list_latest", userId)) ?? 0;
}

/**
 * Stores a freshly fetched list, based on the user's latest change when the fetch began: if an
 * update arrived meanwhile, the stored list is stale at once (the caller still uses what it
 * fetched). Returns the list.
 */
async function store(hs: Services, userId: string, basis: number, fetched: Pick<RemoteDeviceList, "devices" | "masterKey" | "selfSigningKey" | "streamId">): Promise<RemoteDeviceList> {
  return hs.store.write(async (tx) => {
    const now = await tx.get<RemoteDeviceList>("remote_device_lists", userId);
    const list: RemoteDeviceList = { userId, ...fetched, fetchedPos: await streamPosIn(tx), basis };
    // Users who share no room with ours are not cached: nothing would tell us when the list changes.
    if (now || (await sharesRoom(tx, hs.serverName, userId))) tx.put("remote_device_lists", userId, list);
    return list;
  });
}

async function sharesRoom(tx: ReadTx, local: string, userId: string): Promise<boolean> {
  const p = prefix(userId);
  for (const r of await tx.range<{ membership: string }>("memberships", { prefix: p })) {
    if (r.value.membership === "join" && (await hasLocalMember(tx, local, r.key.slice(p.length)))) return true;
  }
  return false;
}

/**
 * Device keys from another server, checked before they are used or cached: they name the user and
 * device they are listed under and carry the device's own valid signature (clients check it too;
 * the server will not hand on keys that were altered on the way).
 */
async function validDeviceKeys(hs: Services, keys: JsonObject, userId: string, deviceId: string): Promise<JsonObject | undefined> {
  if (keys.user_id !== userId || keys.device_id !== deviceId) return undefined;
  if (!Array.isArray(keys.algorithms) || !isObject(keys.keys)) return undefined;
  const ed = keys.keys[`ed25519:${deviceId}`];
  const raw = typeof ed === "string" ? tryDecodeBase64(ed) : undefined;
  if (raw?.length !== 32) return undefined;
  const ok = await verifyJsonSignature(keys, userId, (entity, keyId) => (entity === userId && keyId === `ed25519:${deviceId}` ? raw : undefined), hs.verifier);
  if (!ok) {
    hs.logger.info(`device keys of ${userId} ${deviceId} from ${serverOf(userId)} are not validly self-signed; dropped`);
    return undefined;
  }
  return keys;
}

/** The cross-signing keys of an answer that belong to `userId` and have the right usage. */
function crossSigning(userId: string, master: unknown, selfSigning: unknown): Pick<RemoteDeviceList, "masterKey" | "selfSigningKey"> {
  const ok = (k: unknown, usage: string): k is JsonObject => isObject(k) && k.user_id === userId && Array.isArray(k.usage) && k.usage.includes(usage) && isObject(k.keys);
  return { ...(ok(master, "master") ? { masterKey: master } : {}), ...(ok(selfSigning, "self_signing") ? { selfSigningKey: selfSigning } : {}) };
}

/** A `failures` entry for a server that could not be asked (Synapse's shape: status and message). */
function failure(err: unknown): { status: number; message: string } {
  if (err instanceof FederationError) return { status: err.unreachable ? 503 : err.status, message: err.message };
  return { status: 503, message: err instanceof Error ? err.message : String(err) };
}

/** Groups entries by the server of their user ID. */
function byServer<T>(entries: [string, T][]): Map<string, [string, T][]> {
  const out = new Map<string, [string, T][]>();
  for (const e of entries) {
    const s = serverOf(e[0]);
    let list = out.get(s);
    if (!list) out.set(s, (list = []));
    list.push(e);
  }
  return out;
}

/** The remote part of a client-server `keys/query` answer. */
export interface RemoteKeys {
  device_keys: Record<string, Record<string, unknown>>;
  master_keys: Record<string, unknown>;
  self_signing_keys: Record<string, unknown>;
  failures: Record<string, { status: number; message: string }>;
}

/**
 * The client-server `keys/query` for remote users: users whose device list is cached and trusted
 * are answered from the cache; the others with one `POST /_matrix/federation/v1/user/keys/query`
 * per server, all servers at once, each given `timeoutMs`. Servers that cannot be asked are listed
 * in `failures`; a server that answers but does not know a user simply leaves them out.
 */
export async function queryRemoteKeys(hs: Services, wanted: [userId: string, devices: readonly string[] | null][], timeoutMs = DEFAULT_TIMEOUT_MS): Promise<RemoteKeys> {
  const out: RemoteKeys = { device_keys: {}, master_keys: {}, self_signing_keys: {}, failures: {} };
  if (wanted.length === 0) return out;
  const cached = await hs.store.read(async (tx) => {
    const found = new Map<string, RemoteDeviceList>();
    for (const [userId] of wanted) {
      const c = await tx.get<RemoteDeviceList>("remote_device_lists", userId);
      if (c && (await trustworthy(tx, hs.serverName, c))) found.set(userId, c);
    }
    return found;
  });
  const put = (list: Pick<RemoteDeviceList, "userId" | "devices" | "masterKey" | "selfSigningKey">, devices: readonly string[] | null): void => {
    const filter = devices && devices.length > 0 ? new Set(devices) : undefined;
    const keys: Record<string, unknown> = {};
    for (const [deviceId, d] of Object.entries(list.devices)) {
      if (!d.keys || (filter && !filter.has(deviceId))) continue;
      keys[deviceId] = d.displayName !== undefined ? { ...d.keys, unsigned: { device_display_name: d.displayName } } : d.keys;
    }
    out.device_keys[list.userId] = keys;
    if (list.masterKey) out.master_keys[list.userId] = list.masterKey;
    if (list.selfSigningKey) out.self_signing_keys[list.userId] = list.selfSigningKey;
  };
  const toFetch: [string, readonly string[] | null][] = [];
  for (const [userId, devices] of wanted) {
    const c = cached.get(userId);
    if (c) put(c, devices);
    else toFetch.push([userId, devices]);
  }
  await Promise.all(
    [...byServer(toFetch)].map(async ([server, users]) => {
      try {
        const client = requireFederation(hs, server);
        const bases = await hs.store.read(async (tx) => {
          const b = new Map<string, number>();
          for (const [u] of users) b.set(u, await latestChange(tx, u));
          return b;
        });
        // Every device is asked for, so that the whole list can be cached; the filter applies after.
        const answer = await client.json(server, "POST", "/_matrix/federation/v1/user/keys/query", {
          body: { device_keys: Object.fromEntries(users.map(([u]) => [u, []])) },
          timeoutMs,
        });
        const deviceKeys = isObject(answer.device_keys) ? answer.device_keys : {};
        const masters = isObject(answer.master_keys) ? answer.master_keys : {};
        const selfs = isObject(answer.self_signing_keys) ? answer.self_signing_keys : {};
        for (const [userId, devices] of users) {
          // Only what the server says about its own users, for the users we asked about.
          const listed = deviceKeys[userId];
          if (!isObject(listed)) continue;
          const list: Record<string, RemoteDevice> = {};
          for (const [deviceId, k] of Object.entries(listed)) {
            if (!isObject(k)) continue;
            const { unsigned, ...signed } = k;
            const keys = await validDeviceKeys(hs, signed, userId, deviceId);
            if (!keys) continue;
            const displayName = isObject(unsigned) && typeof unsigned.device_display_name === "string" ? unsigned.device_display_name : undefined;
            list[deviceId] = { keys, ...(displayName !== undefined ? { displayName } : {}) };
          }
          const fetched = { userId, devices: list, ...crossSigning(userId, masters[userId], selfs[userId]) };
          await store(hs, userId, bases.get(userId) ?? 0, fetched);
          put(fetched, devices);
        }
      } catch (err) {
        hs.logger.info(`keys/query: ${server} could not be asked`, err instanceof Error ? err.message : err);
        out.failures[server] = failure(err);
      }
    }),
  );
  return out;
}

/** The remote part of a client-server `keys/claim` answer. */
export interface RemoteClaims {
  one_time_keys: Record<string, Record<string, Record<string, unknown>>>;
  failures: Record<string, { status: number; message: string }>;
}

/**
 * The client-server `keys/claim` for remote users: one `POST /_matrix/federation/v1/user/keys/claim`
 * per server, all at once. One-time keys are never cached (each may be handed out only once).
 */
export async function claimRemoteKeys(hs: Services, wanted: [userId: string, devices: Record<string, string>][], timeoutMs = DEFAULT_TIMEOUT_MS): Promise<RemoteClaims> {
  const out: RemoteClaims = { one_time_keys: {}, failures: {} };
  await Promise.all(
    [...byServer(wanted)].map(async ([server, users]) => {
      try {
        const client = requireFederation(hs, server);
        const answer = await client.json(server, "POST", "/_matrix/federation/v1/user/keys/claim", { body: { one_time_keys: Object.fromEntries(users) }, timeoutMs });
        const claimed = isObject(answer.one_time_keys) ? answer.one_time_keys : {};
        for (const [userId, devices] of users) {
          const forUser = claimed[userId];
          if (!isObject(forUser)) continue;
          for (const [deviceId, keys] of Object.entries(forUser)) {
            // Only devices we asked for, with keys of the algorithm we asked for.
            const alg = devices[deviceId];
            if (alg === undefined || !isObject(keys)) continue;
            const good = Object.entries(keys).filter(([id, k]) => id.startsWith(`${alg}:`) && (typeof k === "string" || isObject(k)));
            if (good.length > 0) (out.one_time_keys[userId] ??= {})[deviceId] = Object.fromEntries(good.slice(0, 1));
          }
        }
      } catch (err) {
        hs.logger.info(`keys/claim: ${server} could not be asked`, err instanceof Error ? err.message : err);
        out.failures[server] = failure(err);
      }
    }),
  );
  return out;
}
