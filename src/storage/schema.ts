/**
 * The schema: an append-only list of migrations; the array index is the schema version. A
 * migration creates tables and may transform data through the generic transaction. Never edit or
 * reorder an entry that has shipped; add a new one at the end.
 */
import type { WriteTx } from "./store.ts";
import { SEP, key } from "./store.ts";
import { tokenHash } from "../homeserver/auth/tokens.ts";

/** One schema step. */
export interface Migration {
  /** Tables this step creates. */
  readonly createTables: readonly string[];
  /** Tables this step drops (their data is gone). */
  readonly dropTables?: readonly string[];
  /** Data changes, run in the same transaction after the tables exist. */
  readonly migrate?: (tx: WriteTx) => Promise<void>;
}

export const MIGRATIONS: readonly Migration[] = [
  // 0: the first schema.
  {
    createTables: [
      "settings", // key = name
      "accounts", // key = userId → Account
      "devices", // key = userId|deviceId → Device
      "access_tokens", // key = token → { userId, deviceId }
      "login_tokens", // key = token → { userId, expiresAt }
      "txn_ids", // key = userId|deviceId|txnId → eventId (or response)
      "filters", // key = userId|filterId → filter JSON
      "rooms", // key = roomId → RoomRecord
      "events", // key = eventId → StoredEvent
      "timeline", // key = roomId|pos(streamPos) → eventId
      "stream", // key = pos(streamPos) → { roomId, eventId }
      "room_state", // key = roomId|type|stateKey → eventId (current state)
      "state_snapshots", // key = eventId → state after the event { "type|stateKey": eventId }
      "extremities", // key = roomId|eventId → true (forward extremities)
      "memberships", // key = userId|roomId → { membership, eventId, streamPos }
      "relations", // key = relatesToEventId|relType|eventId → { type, sender }
      "aliases", // key = alias → { roomId, creator }
      "room_directory", // key = roomId → { visibility }
      "account_data", // key = userId|roomId or ""|type → content
      "account_data_stream", // key = pos → { userId, roomId, type }
      "receipts", // key = roomId|receiptType|userId|threadId → { eventId, ts, streamPos }
      "to_device", // key = userId|deviceId|pos → message
      "device_keys", // key = userId|deviceId → signed device keys
      "one_time_keys", // key = userId|deviceId|algorithm:keyId → key object
      "fallback_keys", // key = userId|deviceId|algorithm → { keyId, key, used }
      "cross_signing_keys", // key = userId|usage → key object
      "device_list_stream", // key = pos → userId
      "key_backup_versions", // key = userId|pos(version) → version record
      "key_backup_keys", // key = userId|version|roomId|sessionId → key data
      "media", // key = mediaId → metadata
      "media_content", // key = mediaId → Uint8Array
      "federation_queue", // key = destination|pos(seq) → { pdu: eventId } | { edu } (federation/sender.ts)
      "server_keys", // key = serverName|keyId → verify key
      "presence", // key = userId → presence
      "pushers", // key = userId|appId|pushkey → pusher
      "notifications", // key = userId|pos → notification
      "reports", // key = pos → report
    ],
  },
  // 1: an index from a device to its access tokens, so deleting a device revokes them without a scan.
  {
    createTables: [
      "device_tokens", // key = userId|deviceId|token → true
    ],
    // Index the tokens a schema-0 database already holds, so deleting their devices revokes them.
    migrate: async (tx) => {
      for (const row of await tx.range<{ userId: string; deviceId: string }>("access_tokens")) {
        tx.put("device_tokens", key(row.value.userId, row.value.deviceId, row.key), true);
      }
    },
  },
  // 2: refresh tokens (indexed by device in device_tokens too) and OpenID tokens.
  {
    createTables: [
      "refresh_tokens", // key = token → { userId, deviceId, accessToken, supersedes?, next? }
      "openid_tokens", // key = token → { userId, expiresAt }
    ],
  },
  // 3: notifications waiting for a push gateway (push/sender.ts), kept so a restart loses none.
  {
    createTables: [
      "push_queue", // key = userId|appId|pushkey|pos(streamPos) → { eventId, roomId, actions, queuedAt }
    ],
  },
  // 4: application service delivery (appservice/transactions.ts).
  {
    createTables: [
      "appservice_state", // key = asId → { streamPos, nextTxnId }
      "appservice_txns", // key = asId|pos(txnId) → { events }
    ],
  },
  // 5: room state as delta groups instead of a full snapshot per event, and a per-room log of
  // current-state changes by stream position (what /sync reads for since → now).
  {
    createTables: [
      "state_groups", // key = groupId (an event ID) → { roomId, depth, base?, delta }
      "event_state", // key = eventId → { after: groupId, before?: groupId }
      "room_state_log", // key = roomId|pos(streamPos)|type|stateKey → { id?: eventId now, prev?: eventId before }
    ],
    migrate: migrateSnapshotsToGroups,
  },
  // 6: the full snapshots migration 5 converted are no longer read.
  { createTables: [], dropTables: ["state_snapshots"] },
  // 7: access and refresh tokens are stored as hashes (auth/tokens.ts tokenHash), never in plaintext.
  // access_tokens key = tokenHash(token); refresh_tokens key = tokenHash(token) with accessToken,
  // supersedes and next hashed; device_tokens key = userId|deviceId|tokenHash(token).
  {
    createTables: [],
    migrate: async (tx) => {
      const h = (v: unknown): unknown => (typeof v === "string" ? tokenHash(v) : v);
      for (const row of await tx.range<Record<string, unknown>>("access_tokens")) {
        tx.delete("access_tokens", row.key);
        const { supersedes, ...rest } = row.value;
        tx.put("access_tokens", tokenHash(row.key), supersedes === undefined ? rest : { ...rest, supersedes: h(supersedes) });
      }
      for (const row of await tx.range<Record<string, unknown>>("refresh_tokens")) {
        tx.delete("refresh_tokens", row.key);
        const v: Record<string, unknown> = { ...row.value, accessToken: h(row.value.accessToken) };
        for (const f of ["supersedes", "next"]) if (v[f] !== undefined) v[f] = h(v[f]);
        tx.put("refresh_tokens", tokenHash(row.key), v);
      }
      for (const row of await tx.range<unknown>("device_tokens")) {
        const cut = row.key.lastIndexOf(SEP);
        tx.delete("device_tokens", row.key);
        tx.put("device_tokens", row.key.slice(0, cut + 1) + tokenHash(row.key.slice(cut + 1)), row.value);
      }
    },
  },
  // 8: registration tokens (admin/registrationTokens.ts).
  {
    createTables: [
      "registration_tokens", // key = token → { usesAllowed, completed, expiryTime }
    ],
  },
  // 9: the transaction each destination is being sent, fixed before its first attempt (federation/sender.ts).
  {
    createTables: [
      "federation_inflight", // key = destination → { txnId, keys, body }
    ],
  },
  // 10: federation queries (federation/deviceLists.ts, media/remote.ts).
  {
    createTables: [
      "remote_device_lists", // key = userId (a remote user) → RemoteDeviceList
      "device_list_latest", // key = userId → pos of their latest device_list_stream row (for local users, the federation stream_id)
      "remote_media", // key = serverName|mediaId or serverName|mediaId|thumbnail spec → RemoteMediaRecord
      "remote_media_content", // key = as remote_media → Uint8Array
    ],
  },
  // 11: inbound federation transactions already answered (federation/transactions.ts), so a retry
  // of the same transaction ID gets the first answer.
  {
    createTables: [
      "federation_txns", // key = origin|txnId → { response, receivedAt }
    ],
  },
  // 12: the global room directory (federation/directory.ts): other servers' published rooms, cached.
  {
    createTables: [
      "directory_peers", // key = serverName → { lastSeen, fetchedAt? }
      "directory_rooms", // key = serverName|roomId → { chunk, fetchedAt }
      "directory_index", // key = roomId|serverName → fetchedAt (which servers list a room)
      "directory_relays", // key = roomId → { since } (a remote room this server lists because a local user joined it)
    ],
  },
  // 13: history fetched from other servers with /backfill (federation/backfill.ts), ordered from
  // the newest backfilled event (ordinal 1) back to the room's creation; /messages walks it after
  // the timeline.
  {
    createTables: [
      "backfill", // key = roomId|pos(ordinal) → eventId
    ],
  },
  // 14: remote redactions whose target had not arrived yet (roomserver/persist.ts): applied when it does.
  {
    createTables: [
      "redactions_pending", // key = targetEventId|redactionEventId → true
    ],
  },
  // 15: the unread counts /sync computed, so that a restarted server (a Service Worker the browser
  // stopped) extends them instead of rescanning each room (services/sync.ts).
  {
    createTables: [
      "unread_counts", // key = userId|roomId → { sig, upTo, main, threads }
    ],
  },
];

/**
 * Migration 5's data step. Each full snapshot becomes a root group (same size as before; new
 * events then store deltas on top), an event that shared a snapshot points at that group, and the
 * current-state log is rebuilt from consecutive snapshots of each room (rooms were linear then).
 */
async function migrateSnapshotsToGroups(tx: WriteTx): Promise<void> {
  const SAME_AS = "=";
  const lastState = new Map<string, Record<string, string>>();
  for (const row of await tx.range<{ roomId: string; eventId: string }>("stream")) {
    const { roomId, eventId } = row.value;
    let snap = await tx.get<Record<string, string>>("state_snapshots", eventId);
    if (!snap) continue;
    let groupId = eventId;
    for (let hops = 0; snap?.[SAME_AS] !== undefined && hops < 10_000; hops++) {
      groupId = snap[SAME_AS];
      snap = await tx.get<Record<string, string>>("state_snapshots", groupId);
    }
    if (!snap) continue;
    if (groupId === eventId || !(await tx.get("state_groups", groupId))) {
      tx.put("state_groups", groupId, { roomId, depth: 0, delta: snap });
    }
    tx.put("event_state", eventId, { after: groupId });
    const before = lastState.get(roomId) ?? {};
    for (const [sk, id] of Object.entries(snap)) {
      if (before[sk] !== id) tx.put("room_state_log", key(roomId, row.key, sk), { id, ...(before[sk] !== undefined ? { prev: before[sk] } : {}) });
    }
    lastState.set(roomId, snap);
  }
  tx.deleteRange("state_snapshots", {});
}

/** Every table name the current schema has. */
export type TableName = string;

/** The current schema version: how many migrations exist. */
export const SCHEMA_VERSION = MIGRATIONS.length;

/** Tables present after applying every migration, in creation order. */
export function currentTables(): string[] {
  const tables = new Set<string>();
  for (const m of MIGRATIONS) {
    for (const t of m.createTables) tables.add(t);
    for (const t of m.dropTables ?? []) tables.delete(t);
  }
  return [...tables];
}
