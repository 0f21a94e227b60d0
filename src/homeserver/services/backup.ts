/**
 * Server-side key backups (client-server API "End-to-End Encryption" → "Server-side key backups"):
 * the stored versions and keys behind client/backup.ts.
 *
 * Tables: key_backup_versions userId|pos(version) → BackupVersion (deleted versions stay, flagged,
 * so a version number is never reused); key_backup_keys userId|version|roomId|sessionId →
 * KeyBackupData.
 */
import type { Services } from "../context.ts";
import { MatrixError, invalidParam, notFound } from "../errors.ts";
import type { ReadTx, WriteTx } from "../../storage/store.ts";
import { SEP, key, pos, prefix } from "../../storage/store.ts";
import { dict } from "../validate.ts";

/** A backup version as stored. */
export interface BackupVersion {
  version: string;
  algorithm: string;
  auth_data: Record<string, unknown>;
  /** Bumped on every change to the backup's keys; returned as `etag`. */
  etag: number;
  deleted?: boolean;
}

/** KeyBackupData (definitions/key_backup_data.yaml). */
export interface KeyBackupData {
  first_message_index: number;
  forwarded_count: number;
  is_verified: boolean;
  session_data: Record<string, unknown>;
}

const versionKey = (userId: string, version: number): string => key(userId, pos(version));

/** Versions are decimal numbers; anything else cannot exist here. */
const parseVersion = (v: string): number | undefined => (/^[1-9][0-9]{0,12}$/.test(v) ? Number(v) : undefined);

async function latestVersion(tx: ReadTx, userId: string): Promise<BackupVersion | undefined> {
  const rows = await tx.range<BackupVersion>("key_backup_versions", { prefix: prefix(userId), reverse: true });
  return rows.find((r) => !r.value.deleted)?.value;
}

async function getVersion(tx: ReadTx, userId: string, version: string): Promise<BackupVersion | undefined> {
  const n = parseVersion(version);
  if (n === undefined) return undefined;
  const v = await tx.get<BackupVersion>("key_backup_versions", versionKey(userId, n));
  return v && !v.deleted ? v : undefined;
}

/** The live version `version`, or `404 M_NOT_FOUND`. */
async function requireVersion(tx: ReadTx, userId: string, version: string): Promise<BackupVersion> {
  const v = await getVersion(tx, userId, version);
  if (!v) throw notFound("Unknown backup version");
  return v;
}

const keysPrefix = (userId: string, version: string, roomId?: string): string =>
  roomId === undefined ? prefix(userId, version) : prefix(userId, version, roomId);

async function versionInfo(tx: ReadTx, userId: string, v: BackupVersion): Promise<Record<string, unknown>> {
  return {
    algorithm: v.algorithm,
    auth_data: v.auth_data,
    ...(await countAndEtag(tx, userId, v)),
    version: v.version,
  };
}

/**
 * Whether an uploaded key replaces the stored one ("Server-side key backups"): prefer
 * is_verified, then the lower first_message_index, then the lower forwarded_count.
 */
function replaces(incoming: KeyBackupData, stored: KeyBackupData): boolean {
  if (incoming.is_verified !== stored.is_verified) return incoming.is_verified;
  if (incoming.first_message_index !== stored.first_message_index) return incoming.first_message_index < stored.first_message_index;
  return incoming.forwarded_count < stored.forwarded_count;
}

/** Uploads must go to the current version (`403 M_WRONG_ROOM_KEYS_VERSION` otherwise). */
async function requireCurrent(tx: WriteTx, userId: string, version: string): Promise<BackupVersion> {
  const latest = await latestVersion(tx, userId);
  if (!latest) throw notFound("Unknown backup version");
  if (latest.version !== version) {
    await requireVersion(tx, userId, version);
    throw new MatrixError(403, "M_WRONG_ROOM_KEYS_VERSION", "Wrong backup version.", { current_version: latest.version });
  }
  return latest;
}

async function countAndEtag(tx: ReadTx, userId: string, v: BackupVersion): Promise<{ count: number; etag: string }> {
  return { count: await tx.count("key_backup_keys", { prefix: keysPrefix(userId, v.version) }), etag: String(v.etag) };
}

/** A change to the backup's keys moves its etag on; returns the updated version. */
function bumpEtag(tx: WriteTx, userId: string, v: BackupVersion): BackupVersion {
  const updated = { ...v, etag: v.etag + 1 };
  tx.put("key_backup_versions", versionKey(userId, Number(v.version)), updated);
  return updated;
}

/** Creates a new backup version (numbers are never reused); returns it. */
export async function createBackupVersion(hs: Services, userId: string, algorithm: string, auth_data: Record<string, unknown>): Promise<string> {
  return hs.store.write(async (tx) => {
    const [last] = await tx.range<BackupVersion>("key_backup_versions", { prefix: prefix(userId), reverse: true, limit: 1 });
    const n = last ? Number(last.value.version) + 1 : 1;
    tx.put("key_backup_versions", versionKey(userId, n), { version: String(n), algorithm, auth_data, etag: 0 } satisfies BackupVersion);
    return String(n);
  });
}

/** A version's `room_keys/version` answer: the one named, or the latest live one (404 if none). */
export async function backupVersionInfo(hs: Services, userId: string, version: string | undefined): Promise<Record<string, unknown>> {
  return hs.store.read(async (tx) => {
    const v = version ? await getVersion(tx, userId, version) : await latestVersion(tx, userId);
    if (!v) throw notFound(version ? "Unknown backup version" : "No current backup version");
    return versionInfo(tx, userId, v);
  });
}

/** Replaces a live version's `auth_data` (its algorithm may not change). */
export async function updateBackupVersion(hs: Services, userId: string, version: string, algorithm: string, auth_data: Record<string, unknown>): Promise<void> {
  await hs.store.write(async (tx) => {
    const v = await requireVersion(tx, userId, version);
    // key_backup.yaml: only auth_data may change.
    if (v.algorithm !== algorithm) throw invalidParam("Algorithm does not match");
    tx.put("key_backup_versions", versionKey(userId, Number(v.version)), { ...v, auth_data } satisfies BackupVersion);
  });
}

/** Deletes a live version and its keys (the version number stays taken). */
export async function deleteBackupVersion(hs: Services, userId: string, version: string): Promise<void> {
  await hs.store.write(async (tx) => {
    const v = await requireVersion(tx, userId, version);
    tx.put("key_backup_versions", versionKey(userId, Number(v.version)), { ...v, deleted: true, auth_data: {} } satisfies BackupVersion);
    tx.deleteRange("key_backup_keys", { prefix: keysPrefix(userId, v.version) });
  });
}

/** Stores uploaded sessions in the current version, keeping a stored key that is better; returns count and etag. */
export async function storeBackupKeys(hs: Services, userId: string, version: string, sessions: [roomId: string, sessionId: string, data: KeyBackupData][]): Promise<{ count: number; etag: string }> {
  return hs.store.write(async (tx) => {
    const v = await requireCurrent(tx, userId, version);
    let changed = false;
    for (const [roomId, sessionId, data] of sessions) {
      const k = key(userId, v.version, roomId, sessionId);
      const stored = await tx.get<KeyBackupData>("key_backup_keys", k);
      if (stored && !replaces(data, stored)) continue;
      tx.put("key_backup_keys", k, data);
      changed = true;
    }
    return countAndEtag(tx, userId, changed ? bumpEtag(tx, userId, v) : v);
  });
}

/** The keys of a version: all, one room's, or one session's (404 if that session has none). */
export async function backupKeys(hs: Services, userId: string, version: string, roomId: string | undefined, sessionId: string | undefined): Promise<Record<string, unknown>> {
  return hs.store.read(async (tx) => {
    const v = await requireVersion(tx, userId, version);
    if (roomId !== undefined && sessionId !== undefined) {
      const data = await tx.get<KeyBackupData>("key_backup_keys", key(userId, v.version, roomId, sessionId));
      if (!data) throw notFound("Key not found");
      return data as unknown as Record<string, unknown>;
    }
    const p = keysPrefix(userId, v.version, roomId);
    const rows = await tx.range<KeyBackupData>("key_backup_keys", { prefix: p });
    // Room and session IDs are the client's own strings (`__proto__` included): null-prototype maps.
    if (roomId !== undefined) {
      const sessions = dict<KeyBackupData>();
      for (const r of rows) sessions[r.key.slice(p.length)] = r.value;
      return { sessions };
    }
    const rooms = dict<{ sessions: Record<string, KeyBackupData> }>();
    for (const r of rows) {
      const [rid, sid] = r.key.slice(p.length).split(SEP) as [string, string];
      (rooms[rid] ??= { sessions: dict() }).sessions[sid] = r.value;
    }
    return { rooms };
  });
}

/** Deletes keys of a version (all, one room's or one session's); returns count and etag. */
export async function deleteBackupKeys(hs: Services, userId: string, version: string, roomId: string | undefined, sessionId: string | undefined): Promise<{ count: number; etag: string }> {
  return hs.store.write(async (tx) => {
    const v = await requireVersion(tx, userId, version);
    const range = roomId !== undefined && sessionId !== undefined
      ? { gte: key(userId, v.version, roomId, sessionId), lte: key(userId, v.version, roomId, sessionId) }
      : { prefix: keysPrefix(userId, v.version, roomId) };
    const n = await tx.count("key_backup_keys", range);
    if (n > 0) tx.deleteRange("key_backup_keys", range);
    // Reads inside a transaction see its own writes (all backends), so this counts what is left.
    return countAndEtag(tx, userId, n > 0 ? bumpEtag(tx, userId, v) : v);
  });
}
