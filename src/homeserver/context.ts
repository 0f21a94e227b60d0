/** The capabilities a homeserver is built from, and the per-request context handlers receive. */
import type { SearchJob } from "./services/search.ts";
import type { ReadTx, Store, WriteTx } from "../storage/store.ts";
import type { SigningKey } from "./crypto/signing.ts";
import type { Ed25519Verifier } from "./crypto/ed25519.ts";
import { guestAccessForbidden, missingToken, unknownToken, MatrixError } from "./errors.ts";
import type { AccessTokenRecord } from "./auth/tokens.ts";
import { settleSupersededToken, tokenHash } from "./auth/tokens.ts";
import { recordDeviceActivity } from "./auth/activity.ts";
import { CLIENT_ADDRESS_HEADER, DEFAULT_FEDERATION_RATE_LIMIT, DEFAULT_RATE_LIMITS } from "./auth/rateLimit.ts";
import type { FederationRateLimit, RateLimitSettings, RateLimiters } from "./auth/rateLimit.ts";
import { DEFAULT_ROOM_VERSION } from "./rooms/versions.ts";
import { guestMayUse } from "./auth/guestAccess.ts";
import { jsonBodyLimit, parseJsonObject, readBodyBytes } from "./http.ts";
import type { Notifier } from "./notifier.ts";
import type { OutputStream } from "./output.ts";
import type { FederationSender } from "./federation/sender.ts";
import type { CatchUp } from "./federation/catchup.ts";
import type { DirectoryService } from "./federation/directory.ts";
import type { Thumbnailer } from "./media/thumbnailer.ts";
import type { PushSender } from "./push/sender.ts";
import type { AppServices } from "./appservice/client.ts";
import { appServiceRequester } from "./appservice/client.ts";
import type { FederationClient } from "./federation/client.ts";
import type { Keyring } from "./federation/keyring.ts";
import type { FederationRateLimiter } from "./federation/rateLimit.ts";
import { verifyXMatrix } from "./federation/xmatrix.ts";
import type { AccountRecord } from "./services/accounts.ts";

/** Where the homeserver writes its log lines. */
export interface Logger {
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}

/** A logger that drops everything (tests). */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * Told about every answered request, for an operator's metrics (the Node runner's prom-client
 * wiring, src/node/metrics.ts). `route` is the route table's path template, or `unmatched`.
 */
export interface RequestObserver {
  requestFinished(method: string, route: string, status: number, seconds: number): void;
}

/** Settings a deployment may change. */
export interface HomeserverConfig {
  /** Whether `POST /register` is open to anyone (default true). */
  enableRegistration: boolean;
  /** Shared secret for `/_synapse/admin/v1/register`; the endpoint is off without it. */
  registrationSharedSecret?: string;
  /** PBKDF2 iterations for password hashes. */
  passwordIterations: number;
  /** Largest media upload, bytes. */
  maxUploadBytes: number;
  /** Base URL clients should use (for `.well-known`); defaults to the request's origin. */
  publicBaseUrl?: string;
  /** Lifetime of access tokens issued to clients that asked for a refresh token (`refresh_token: true`). */
  accessTokenLifetimeMs: number;
  /** What `/.well-known/matrix/support` serves; without it that endpoint answers 404. */
  support?: SupportInfo;
  /** Guest accounts ("Guest access"): `register?kind=guest`, and guests' tokens work (default false). */
  allowGuestAccess: boolean;
  /** `POST /register` asks for a registration token (the `m.login.registration_token` stage). */
  registrationRequiresToken: boolean;
  /** The room version of rooms created without `room_version`. */
  defaultRoomVersion: string;
  /** The `rc_*` token buckets (auth/rateLimit.ts). */
  rateLimits: RateLimitSettings;
  /** `rc_federation`, for the federation API. */
  federationRateLimit: FederationRateLimit;
  /** `trusted_key_servers`: notaries asked for a server's keys when it cannot be asked itself. */
  trustedKeyServers: string[];
  /** `federation_domain_whitelist`: when set, the only servers federated with (both directions). */
  federationDomainWhitelist?: string[];
  /** `directory_peer_ttl_ms`: how long a server may be unreachable before its rooms leave the global directory (federation/directory.ts). */
  directoryPeerTtlMs: number;
  /** `directory_refresh_interval_ms`: how often the online servers' directories are fetched again. */
  directoryRefreshIntervalMs: number;
}

/** Server contact and support details (`GET /.well-known/matrix/support`, support.yaml). */
export interface SupportInfo {
  contacts?: { role: string; matrix_id?: string; email_address?: string }[];
  support_page?: string;
}

export const DEFAULT_CONFIG: HomeserverConfig = {
  enableRegistration: true,
  passwordIterations: 100_000,
  maxUploadBytes: 50 * 1024 * 1024,
  accessTokenLifetimeMs: 5 * 60_000,
  allowGuestAccess: false,
  registrationRequiresToken: false,
  defaultRoomVersion: DEFAULT_ROOM_VERSION,
  rateLimits: DEFAULT_RATE_LIMITS,
  federationRateLimit: DEFAULT_FEDERATION_RATE_LIMIT,
  trustedKeyServers: [],
  directoryPeerTtlMs: 60 * 60_000,
  directoryRefreshIntervalMs: 5 * 60_000,
};

/** Everything a homeserver is made of; injected so tests control clock and randomness. */
export interface Services {
  readonly store: Store;
  readonly serverName: string;
  readonly signingKey: SigningKey;
  readonly verifier: Ed25519Verifier;
  readonly clock: () => number;
  readonly random: (bytes: number) => Uint8Array;
  readonly logger: Logger;
  readonly config: HomeserverConfig;
  /** Wakes `/sync` long-polls after a commit. */
  readonly notifier: Notifier;
  /** The post-commit output stream (output.ts): room events and other news, for every consumer. */
  readonly output: OutputStream;
  /** Makes media thumbnails; without it the original image is served (media/thumbnailer.ts). */
  readonly thumbnailer?: Thumbnailer;
  /** Calls push gateways (push/sender.ts); absent where the homeserver has no outbound HTTP. */
  readonly pushSender?: PushSender;
  /** Configured application services (appservice/), if any. */
  readonly appservices?: AppServices;
  /** Called after a commit that stored room events up to `streamPos` (wakes the application service sender). */
  readonly onEventsCommitted?: (streamPos: number) => void;
  /** This server's rate limit buckets (auth/rateLimit.ts). */
  readonly rateLimiters: RateLimiters;
  /** Other servers' signing keys (federation/keyring.ts); knows our own and P2P names' keys without a transport. */
  readonly keyring: Keyring;
  /** `rc_federation` per origin server (federation/rateLimit.ts). */
  readonly federationRateLimiter: FederationRateLimiter;
  /** Signed requests to other servers; absent when the homeserver has no federation transport. */
  readonly federation?: FederationClient;
  /**
   * Told whenever another server is heard from: an answer to our request, or an authenticated
   * request of its own (the outbound queues reset that destination's backoff).
   */
  readonly heardFrom: ((server: string) => void)[];
  /** The outbound federation queues (federation/sender.ts); absent without a federation transport. */
  readonly federationSender?: FederationSender;
  /** Catch-up from any peer (federation/catchup.ts); absent without a federation transport. */
  readonly catchUp?: CatchUp;
  /** Keeps the global room directory's cache fresh (federation/directory.ts); absent without a federation transport. */
  readonly directory?: DirectoryService;
  /** Runs heavy read-only requests off this thread; absent where there is none (the browser), and they run here. */
  readonly readWorker?: ReadWorker;
}

/**
 * Runs heavy read-only requests away from the thread that answers everyone else (the Node runner:
 * a worker thread on its own read connection to the same database, src/node/readWorker.ts). It
 * sees every write committed before the call, as a `store.read()` started then would.
 */
export interface ReadWorker {
  /** The `/search` response body for `job`, as UTF-8 JSON. */
  search(job: SearchJob): Promise<Uint8Array<ArrayBuffer>>;
  /** Waits for the requests in progress, then stops; before the store closes. */
  close(): Promise<void>;
}

/** The authenticated caller of a request. */
export interface Requester {
  userId: string;
  deviceId: string;
  accessToken: string;
  isGuest: boolean;
  /** Suspended by a server admin ("Account suspension"): some actions answer 403 M_USER_SUSPENDED. */
  suspended?: boolean;
  /** Set when an application service makes the request with its `as_token` (appservice/client.ts). */
  appserviceId?: string;
  /**
   * Whether the service's `rate_limited` applies to this request: false for its sender and for
   * services registered with `rate_limited: false` (exempt from rate limits, as in Synapse).
   */
  appserviceRateLimited?: boolean;
  /** A server admin (exempt from rate limits, may use the admin APIs). */
  admin?: boolean;
}

/** What handlers receive: the services, the request, and helpers to read it. */
export class RequestContext {
  private requesterCache: (Requester & { locked: boolean }) | undefined;
  private originCache: string | undefined;

  readonly hs: Services;
  readonly request: Request;
  readonly url: URL;
  /** The server the transport proved the request comes from (P2P: the libp2p peer's key), if it knows. */
  readonly transportOrigin: string | undefined;

  constructor(hs: Services, request: Request, url: URL, transportOrigin?: string) {
    this.hs = hs;
    this.request = request;
    this.url = url;
    this.transportOrigin = transportOrigin;
  }

  /** A query parameter, or undefined. */
  query(name: string): string | undefined {
    return this.url.searchParams.get(name) ?? undefined;
  }

  /** All values of a repeated query parameter. */
  queryAll(name: string): string[] {
    return this.url.searchParams.getAll(name);
  }

  /**
   * The JSON object body (`M_NOT_JSON` / `M_BAD_JSON` otherwise), within the endpoint's size limit
   * (`413 M_TOO_LARGE`). A check ahead of the handler (application service registration) and the
   * handler can both call it.
   */
  async json(options: { allowEmpty?: boolean } = {}): Promise<Record<string, unknown>> {
    return parseJsonObject(await this.bodyBytes(), options);
  }

  private body: Promise<Uint8Array> | undefined;

  /**
   * The request body within the endpoint's size limit, read once: every caller (a check ahead of
   * the handler, the handler, the X-Matrix check) parses it anew. Reading a clone each time tees
   * the stream, which costs a Service Worker more than the rest of the parsing.
   */
  private bodyBytes(): Promise<Uint8Array> {
    return (this.body ??= readBodyBytes(this.request, jsonBodyLimit(this.url.pathname)));
  }

  /** The access token from the Authorization header or the deprecated query parameter. */
  accessToken(): string | undefined {
    const header = this.request.headers.get("Authorization");
    if (header) {
      const m = /^Bearer\s+(\S+)$/i.exec(header);
      return m ? m[1] : undefined;
    }
    return this.query("access_token");
  }

  /**
   * The authenticated user; `401 M_MISSING_TOKEN` / `401 M_UNKNOWN_TOKEN` otherwise. An expired
   * token is a soft logout ("Refreshing access tokens"); a locked account answers
   * `401 M_USER_LOCKED` everywhere but logout ("Account locking"), which passes `allowLocked`.
   */
  async requireAuth(options: { allowLocked?: boolean } = {}): Promise<Requester> {
    const cached = this.requesterCache ?? (this.requesterCache = await this.lookupRequester());
    if (cached.locked && !options.allowLocked) throw userLocked();
    const { locked: _l, ...requester } = cached;
    return requester;
  }

  private async lookupRequester(): Promise<Requester & { locked: boolean }> {
    const token = this.accessToken();
    if (!token) throw missingToken();
    const appservice = this.hs.appservices?.registry.byToken(token);
    if (appservice) return appServiceRequester(this, appservice, token);
    const hashed = tokenHash(token);
    const found = await this.hs.store.read(async (tx) => {
      const t = await tx.get<AccessTokenRecord>("access_tokens", hashed);
      if (!t) return undefined;
      const account = await tx.get<AccountRecord>("accounts", t.userId);
      if (!account || account.deactivated) return undefined;
      return { t, account };
    }, { tables: ["access_tokens", "accounts"] });
    if (!found) throw unknownToken();
    const { t, account } = found;
    if (t.expiresAt !== undefined && t.expiresAt <= this.hs.clock()) throw unknownToken(true);
    // Guest access: guests reach only the module's endpoints, and nothing once the operator turned
    // guest access off (the account can still be upgraded through /register).
    if (account.isGuest && !(this.hs.config.allowGuestAccess && guestMayUse(this.request.method, this.url))) throw guestAccessForbidden();
    // The first use of a refreshed token retires the refresh token it replaced.
    if (t.supersedes !== undefined) await this.hs.store.write((tx) => settleSupersededToken(tx, hashed));
    const headers = this.request.headers;
    await recordDeviceActivity(this.hs, t.userId, t.deviceId, headers.get(CLIENT_ADDRESS_HEADER) ?? undefined, headers.get("User-Agent") ?? undefined);
    return {
      userId: t.userId,
      deviceId: t.deviceId,
      accessToken: token,
      isGuest: account.isGuest === true,
      suspended: account.suspended === true,
      admin: account.admin === true,
      locked: account.locked === true,
    };
  }

  /**
   * The server that signed this federation request (server-server API "Request Authentication");
   * `401 M_UNAUTHORIZED` when the `X-Matrix` header is missing, malformed, for another destination,
   * signed with an unknown key or not covering this method, URI and body; `403 M_FORBIDDEN` for a
   * server outside `federation_domain_whitelist`.
   */
  async requireServer(): Promise<string> {
    if (this.originCache !== undefined) return this.originCache;
    let content: unknown;
    if (this.request.method !== "GET" && this.request.method !== "HEAD") {
      const text = decodeBodyText(await this.bodyBytes());
      if (text.length > 0) {
        try {
          content = JSON.parse(text);
        } catch {
          throw new MatrixError(400, "M_NOT_JSON", "Request body is not valid JSON");
        }
      }
    }
    const result = await verifyXMatrix(
      this.request.headers.get("Authorization"),
      { method: this.request.method, uri: this.url.pathname + this.url.search, content },
      this.hs.serverName,
      (server, keyId) => this.hs.keyring.key(server, keyId, this.hs.clock()),
      this.hs.verifier,
    );
    if ("failure" in result) throw new MatrixError(401, "M_UNAUTHORIZED", `Federation request not authenticated (${result.failure})`);
    // Over libp2p the stream's peer key names the sender: a peer may not sign as another server.
    if (this.transportOrigin !== undefined && result.origin !== this.transportOrigin) {
      throw new MatrixError(401, "M_UNAUTHORIZED", "Federation request not authenticated (the origin is not the server that sent it)");
    }
    const allowed = this.hs.config.federationDomainWhitelist;
    if (allowed && !allowed.includes(result.origin)) throw new MatrixError(403, "M_FORBIDDEN", "Federation with this server is not allowed");
    this.originCache = result.origin;
    for (const listener of this.hs.heardFrom) listener(result.origin);
    return result.origin;
  }

  /** The server this request authenticated as, if it did (for the request log line). */
  authenticatedServer(): string | undefined {
    return this.originCache;
  }

  /** The user this request authenticated as, if it did (for the request log line). */
  authenticatedUserId(): string | undefined {
    return this.requesterCache?.userId;
  }

  /** The authenticated user if a token was given, else undefined (a bad token is still an error). */
  async optionalAuth(): Promise<Requester | undefined> {
    return this.accessToken() ? this.requireAuth() : undefined;
  }
}

/**
 * Allocates the next position of the one global stream (events, account data, receipts,
 * to-device, device lists all share it), so a `/sync` token is one number.
 * key settings|stream_pos → number
 */
export async function nextStreamPos(tx: WriteTx): Promise<number> {
  const current = await streamPosIn(tx);
  const next = current + 1;
  tx.put("settings", "stream_pos", next);
  return next;
}

/** The newest stream position (what a `/sync` with no news returns as `next_batch`). */
export async function currentStreamPos(store: Store): Promise<number> {
  return store.read(streamPosIn, { tables: ["settings"] });
}

/** The newest stream position, read inside a transaction. */
export async function streamPosIn(tx: ReadTx): Promise<number> {
  return (await tx.get<number>("settings", "stream_pos")) ?? 0;
}

/** The body as text (`M_NOT_JSON` unless UTF-8). */
function decodeBodyText(bytes: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new MatrixError(400, "M_NOT_JSON", "Request body is not valid UTF-8");
  }
}

/** `401 M_USER_LOCKED` with `soft_logout: true` ("Account locking"). */
export const userLocked = (): MatrixError =>
  new MatrixError(401, "M_USER_LOCKED", "This account has been locked", { soft_logout: true });

/** `403 M_USER_SUSPENDED` ("Account suspension"). */
export const userSuspended = (): MatrixError => new MatrixError(403, "M_USER_SUSPENDED", "You cannot perform this action while suspended.");

/** Refuses an action the spec recommends forbidding to suspended accounts ("Account suspension"). */
export function refuseIfSuspended(me: Requester): void {
  if (me.suspended) throw userSuspended();
}

export { MatrixError };
