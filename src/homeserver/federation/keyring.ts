/**
 * Other servers' signing keys (server-server API "Retrieving server keys"): a cache in the store,
 * filled on demand from the server itself (`/_matrix/key/v2/server`) and, when that fails, through
 * the configured notaries (`/_matrix/key/v2/query`). A P2P server's name is its key (64 hex
 * characters, docs/DESIGN.md "Identity and naming"), so its keys need no round trip at all.
 */
import type { Store } from "../../storage/store.ts";
import { key as storeKey, prefix } from "../../storage/store.ts";
import { decodeBase64, encodeBase64, tryDecodeBase64 } from "../crypto/base64.ts";
import type { Ed25519Verifier } from "../crypto/ed25519.ts";
import type { JsonObject, SigningKey } from "../crypto/signing.ts";
import { verifyJsonSignature } from "../crypto/signing.ts";
import type { Logger } from "../context.ts";
import type { FederationClient } from "./client.ts";

/** One cached key of a server. */
export interface StoredServerKey {
  /** Unpadded base64 of the 32-byte ed25519 public key. */
  key: string;
  /** A current key: valid until then (already capped at 7 days after it was fetched). */
  validUntil?: number;
  /** An old key: valid for anything before then. */
  expiredTs?: number;
  /** The server's signed `/key/v2/server` answer this key came from (served again by the notary API). */
  response: JsonObject;
}

/** How far ahead a fetched key is trusted at most ("the lesser of valid_until_ts and 7 days"). */
const MAX_TRUST_MS = 7 * 24 * 60 * 60 * 1000;
/** After a failed fetch, the same server is not asked again for this long (forged requests cannot make us hammer it). */
const FAILURE_BACKOFF_MS = 10_000;

const HEX_NAME = /^[0-9a-f]{64}$/;

/** Whether `server` is a P2P server name: its own ed25519 public key in lowercase hex. */
export function isKeyServerName(server: string): boolean {
  return HEX_NAME.test(server);
}

/** The public key a P2P server name spells. */
export function keyOfServerName(server: string): Uint8Array {
  const bytes = new Uint8Array(32);
  for (let i = 0; i < 32; i++) bytes[i] = parseInt(server.slice(i * 2, i * 2 + 2), 16);
  return bytes;
}

/** What the keyring is built from. */
export interface KeyringOptions {
  store: Store;
  serverName: string;
  signingKey: SigningKey;
  verifier: Ed25519Verifier;
  clock: () => number;
  logger: Logger;
  /** Outbound requests; absent when the homeserver has no federation transport. */
  client?: FederationClient;
  /** `trusted_key_servers`: notaries asked when a server cannot be asked itself. */
  notaries?: readonly string[];
}

/** Finds and caches other servers' keys. */
export class Keyring {
  private readonly options: KeyringOptions;
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly failedAt = new Map<string, number>();

  constructor(options: KeyringOptions) {
    this.options = options;
  }

  /**
   * The public key `keyId` of `server`, valid at `validAt` (a timestamp; undefined: any key the
   * server ever had, for room versions that do not enforce key validity). Fetches when the cache
   * has no such key; undefined when none can be found. `via`: the server that sent us the event
   * being checked (the origin of a transaction, the resident server of a join), asked as a notary
   * after the configured ones: it verified the same signatures, so it holds the keys even while
   * their server is offline (without it, one offline member server would make every join fail
   * when no `trusted_key_servers` are configured).
   */
  async key(server: string, keyId: string, validAt?: number, via?: string): Promise<Uint8Array | undefined> {
    if (!keyId.startsWith("ed25519:")) return undefined;
    if (server === this.options.serverName) {
      return keyId === this.options.signingKey.keyId ? this.options.signingKey.signer.publicKey : undefined;
    }
    if (isKeyServerName(server)) return keyOfServerName(server);
    const cached = await this.cached(server, keyId);
    if (cached && isValidAt(cached, validAt)) return decodeBase64(cached.key);
    await this.fetch(server, [keyId], via);
    const fetched = await this.cached(server, keyId);
    return fetched && isValidAt(fetched, validAt) ? decodeBase64(fetched.key) : undefined;
  }

  /** The cached keys of `server` (for the notary endpoints); fetches when none is valid at `validAt`. */
  async responsesFor(server: string, validAt: number, fetchIfStale: boolean): Promise<JsonObject[]> {
    let rows = await this.cachedAll(server);
    if (fetchIfStale && !rows.some((r) => r.validUntil !== undefined && r.validUntil >= validAt) && !isKeyServerName(server)) {
      await this.fetch(server, []);
      rows = await this.cachedAll(server);
    }
    const seen = new Set<string>();
    const out: JsonObject[] = [];
    for (const r of rows) {
      const id = JSON.stringify(r.response.verify_keys) + String(r.response.valid_until_ts);
      if (!seen.has(id)) {
        seen.add(id);
        out.push(r.response);
      }
    }
    return out;
  }

  private async cached(server: string, keyId: string): Promise<StoredServerKey | undefined> {
    return this.options.store.read((tx) => tx.get<StoredServerKey>("server_keys", storeKey(server, keyId)));
  }

  private async cachedAll(server: string): Promise<StoredServerKey[]> {
    const rows = await this.options.store.read((tx) => tx.range<StoredServerKey>("server_keys", { prefix: prefix(server) }));
    return rows.map((r) => r.value);
  }

  /**
   * Fetches `server`'s keys once at a time (concurrent callers share the fetch): directly, then
   * through the configured notaries, then through `via`. After a failure only `via` is tried
   * (once per such server) until the backoff ends.
   */
  private fetch(server: string, keyIds: string[], via?: string): Promise<void> {
    const client = this.options.client;
    if (!client || !client.mayContact(server)) return Promise.resolve();
    const extra = via !== undefined && via !== server && via !== this.options.serverName && !(this.options.notaries ?? []).includes(via) && client.mayContact(via) ? via : undefined;
    const failed = this.failedAt.get(server);
    const backingOff = failed !== undefined && this.options.clock() - failed < FAILURE_BACKOFF_MS;
    if (backingOff && extra === undefined) return Promise.resolve();
    const flight = backingOff ? storeKey(server, extra!) : server;
    let pending = this.inFlight.get(flight);
    if (!pending) {
      pending = this.fetchNow(client, server, keyIds, !backingOff, extra).finally(() => this.inFlight.delete(flight));
      this.inFlight.set(flight, pending);
    }
    return pending;
  }

  private async fetchNow(client: FederationClient, server: string, keyIds: string[], full: boolean, extra: string | undefined): Promise<void> {
    if (full) {
      try {
        const direct = await client.json(server, "GET", "/_matrix/key/v2/server", { timeoutMs: 10_000 });
        if (await this.accept(server, direct)) return;
      } catch (err) {
        this.options.logger.debug(`keys of ${server}: direct fetch failed:`, err instanceof Error ? err.message : err);
      }
      for (const notary of this.options.notaries ?? []) {
        if (notary === server || !client.mayContact(notary)) continue;
        if (await this.throughNotary(client, notary, server, keyIds)) return;
      }
    }
    if (extra !== undefined && (await this.throughNotary(client, extra, server, keyIds))) return;
    if (full) this.failedAt.set(server, this.options.clock());
  }

  /** Asks `notary` for `server`'s keys (`POST /_matrix/key/v2/query`); true when a verified answer was cached. */
  private async throughNotary(client: FederationClient, notary: string, server: string, keyIds: string[]): Promise<boolean> {
    try {
      const body = { server_keys: { [server]: Object.fromEntries(keyIds.map((k) => [k, {}])) } };
      const answer = await client.json<{ server_keys?: unknown }>(notary, "POST", "/_matrix/key/v2/query", { body, timeoutMs: 10_000 });
      let any = false;
      for (const response of Array.isArray(answer.server_keys) ? answer.server_keys : []) {
        if (!isObject(response) || response.server_name !== server) continue;
        // The notary vouches with its own signature, on top of the server's.
        const notaryKey = (_s: string, keyId: string) => this.key(notary, keyId, this.options.clock());
        if (!(await verifyJsonSignature(response, notary, notaryKey, this.options.verifier))) continue;
        if (await this.accept(server, response)) any = true;
      }
      return any;
    } catch (err) {
      this.options.logger.debug(`keys of ${server} through ${notary} failed:`, err instanceof Error ? err.message : err);
      return false;
    }
  }

  /** Checks a `/key/v2/server` answer (self-signed by every key it lists as current) and caches its keys. */
  private async accept(server: string, response: unknown): Promise<boolean> {
    if (!isObject(response) || response.server_name !== server || !isObject(response.verify_keys)) return false;
    const validUntilTs = response.valid_until_ts;
    if (typeof validUntilTs !== "number" || !Number.isInteger(validUntilTs)) return false;
    const current = new Map<string, Uint8Array>();
    for (const [keyId, entry] of Object.entries(response.verify_keys)) {
      const bytes = keyId.startsWith("ed25519:") && isObject(entry) && typeof entry.key === "string" ? tryDecodeBase64(entry.key) : undefined;
      if (bytes?.length === 32) current.set(keyId, bytes);
    }
    if (current.size === 0) return false;
    // "the response … MUST be signed by all of the keys in verify_keys"
    for (const keyId of current.keys()) {
      const sigs = (response.signatures as Record<string, Record<string, unknown>> | undefined)?.[server];
      if (!sigs || typeof sigs[keyId] !== "string") return false;
    }
    const lookup = (_s: string, keyId: string) => current.get(keyId);
    if (!(await verifyJsonSignature(response, server, lookup, this.options.verifier))) return false;
    const validUntil = Math.min(validUntilTs, this.options.clock() + MAX_TRUST_MS);
    const rows: [string, StoredServerKey][] = [];
    for (const [keyId, bytes] of current) rows.push([keyId, { key: encodeBase64(bytes), validUntil, response }]);
    if (isObject(response.old_verify_keys)) {
      for (const [keyId, entry] of Object.entries(response.old_verify_keys)) {
        if (!isObject(entry) || typeof entry.key !== "string" || typeof entry.expired_ts !== "number" || current.has(keyId)) continue;
        if (tryDecodeBase64(entry.key)?.length !== 32) continue;
        rows.push([keyId, { key: entry.key, expiredTs: entry.expired_ts, response }]);
      }
    }
    await this.options.store.write(async (tx) => {
      for (const [keyId, row] of rows) tx.put("server_keys", storeKey(server, keyId), row);
    });
    this.failedAt.delete(server);
    return true;
  }
}

function isValidAt(k: StoredServerKey, at: number | undefined): boolean {
  if (at === undefined) return true;
  if (k.validUntil !== undefined) return at <= k.validUntil;
  return k.expiredTs !== undefined && at < k.expiredTs;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
