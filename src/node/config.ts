/**
 * The Node runner's settings: command-line flags and the JSON config file (docs/DESIGN.md
 * "Contracts"). Precedence: built-in defaults < config file < command-line flags.
 */
import { readFile } from "node:fs/promises";
import { multiaddr } from "@multiformats/multiaddr";
import { dirname, resolve } from "node:path";
import type { SupportInfo } from "../homeserver/context.ts";
import { DEFAULT_FEDERATION_RATE_LIMIT, DEFAULT_RATE_LIMITS, LIMITER_NAMES } from "../homeserver/auth/rateLimit.ts";
import type { FederationRateLimit, LimiterName, RateLimitSettings, TokenBucket } from "../homeserver/auth/rateLimit.ts";
import { DEFAULT_ROOM_VERSION, ROOM_VERSIONS } from "../homeserver/rooms/versions.ts";

/** Everything the runner needs to start. */
export interface NodeConfig {
  /** Explicit server name; default: lowercase hex of the signing key's public key. */
  serverName?: string;
  bindHost: string;
  /** 0 picks a free port (the listening line prints the real one). */
  httpPort: number;
  httpsPort?: number;
  tlsCert?: string;
  tlsKey?: string;
  registrationSharedSecret?: string;
  dataDir: string;
  /** Multiaddrs of rendezvous nodes (P2P mode holds a reservation on each). */
  rendezvous?: string[];
  /** Websocket port of the P2P node (P2P mode; default 0: a free one, printed on start). */
  p2pPort?: number;
  /** Default: true only when bound to a loopback address (the P2P peer's case). */
  enableRegistration: boolean;
  /** Allows open registration on a non-loopback address without any verification step. */
  enableRegistrationWithoutVerification: boolean;
  /** Registration needs a token from `/_synapse/admin/v1/registration_tokens`. */
  registrationRequiresToken: boolean;
  /** The room version of rooms created without `room_version`. */
  defaultRoomVersion: string;
  /** The `rc_*` token buckets. */
  rateLimits: RateLimitSettings;
  /** `rc_federation`, kept for the federation API. */
  federationRateLimit: FederationRateLimit;
  /** Take the client address from `X-Forwarded-For` (a reverse proxy is in front). */
  xForwarded: boolean;
  passwordIterations?: number;
  maxUploadBytes?: number;
  publicBaseUrl?: string;
  /** Lifetime of access tokens for clients that use refresh tokens. */
  accessTokenLifetimeMs?: number;
  /** `/.well-known/matrix/support` contents. */
  support?: SupportInfo;
  /** Guest accounts (`register?kind=guest`); off unless the config file says `allow_guest_access: true`. */
  allowGuestAccess?: boolean;
  logLevel: LogLevel;
  /** Port of the Prometheus metrics listener; metrics are off without it. */
  metricsPort?: number;
  /** Address the metrics listener binds to (default 127.0.0.1: metrics are for the operator). */
  metricsBindHost?: string;
  /** Application service registration files (`app_service_config_files`), absolute paths. */
  appServiceConfigFiles?: string[];
  /** Also send the `hs_token` as `access_token` query parameter (`use_appservice_legacy_authorization`). */
  appServiceLegacyAuth?: boolean;
  /** `federation_custom_ca_list`: PEM files of CAs trusted for outbound federation, absolute paths. */
  federationCustomCaList?: string[];
  /** `federation_verify_certificates` (default true). */
  federationVerifyCertificates?: boolean;
  /** `federation_domain_whitelist`: the only servers federated with, when set. */
  federationDomainWhitelist?: string[];
  /** `trusted_key_servers`: notaries asked for keys a server cannot give itself. */
  trustedKeyServers?: string[];
  /** `directory_peer_ttl_ms` (federation/directory.ts). */
  directoryPeerTtlMs?: number;
  /** `directory_refresh_interval_ms`. */
  directoryRefreshIntervalMs?: number;
}

/** How much the runner logs. */
export type LogLevel = "debug" | "info" | "warn" | "error";
const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

/** Defaults when neither the config file nor a flag says otherwise. */
export const DEFAULTS: NodeConfig = {
  bindHost: "127.0.0.1",
  httpPort: 8008,
  dataDir: "./data/homeserver",
  enableRegistration: true,
  enableRegistrationWithoutVerification: false,
  registrationRequiresToken: false,
  defaultRoomVersion: DEFAULT_ROOM_VERSION,
  rateLimits: DEFAULT_RATE_LIMITS,
  federationRateLimit: DEFAULT_FEDERATION_RATE_LIMIT,
  xForwarded: false,
  logLevel: "info",
};

/** A config error the runner reports and exits on (no stack trace: the user's input is wrong). */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/**
 * A start-up failure caused by the machine's state rather than a bug (a busy port, a bad TLS or
 * seed file, a corrupt or locked database, a data directory of another server): one line, exit 1.
 */
export class StartupError extends Error {
  override readonly name = "StartupError";
}

/** What the command line said. */
export interface CliArgs {
  configFile?: string;
  overrides: Partial<NodeConfig>;
  help: boolean;
  /** `--import FILE`: import this export into the (new) data directory, then start. */
  importFile?: string;
  /** `--export FILE`: write the data directory's homeserver to this file and exit. */
  exportFile?: string;
  /** `--passphrase-file FILE`: the export passphrase (else from an environment variable). */
  passphraseFile?: string;
}

/** The usage text for `npm run serve -- --help`. */
export const USAGE = `Usage: npm run serve -- [--port P] [--data DIR] [--host H] [--rendezvous MULTIADDR]... [--p2p-port P] [--config FILE]
  --port P             HTTP port of the Client-Server API (default 8008; 0 = any free port)
  --data DIR           data directory: signing key seed and database (default ./data/homeserver)
  --host H             address to listen on (default 127.0.0.1)
  --rendezvous ADDR    multiaddr of a rendezvous node, repeatable (P2P mode: federation over libp2p)
  --p2p-port P         websocket port of the P2P node (default 0 = any free port)
  --config FILE        JSON config file (see README "Running a homeserver in Node")
  --import FILE        import an export file into the (new, empty) data directory, then start
  --export FILE        write the data directory's homeserver to an encrypted export file and exit
  --passphrase-file F  the export's passphrase (default: $HYPHAE_IMPORT_PASSPHRASE / $HYPHAE_EXPORT_PASSPHRASE)`;

/** Parses `process.argv.slice(2)`. */
export function parseArgs(argv: readonly string[]): CliArgs {
  const out: CliArgs = { overrides: {}, help: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.startsWith("--") && arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    const value = (): string => {
      if (inline !== undefined) return inline;
      const v = argv[++i];
      if (v === undefined) throw new ConfigError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--port":
        out.overrides.httpPort = parsePort(value(), "--port");
        break;
      case "--data":
        out.overrides.dataDir = value();
        break;
      case "--host":
        out.overrides.bindHost = value();
        break;
      case "--rendezvous":
        out.overrides.rendezvous = [...(out.overrides.rendezvous ?? []), multiaddrText(value(), "--rendezvous")];
        break;
      case "--p2p-port":
        out.overrides.p2pPort = parsePort(value(), "--p2p-port");
        break;
      case "--config":
        out.configFile = value();
        break;
      case "--import":
        out.importFile = value();
        break;
      case "--export":
        out.exportFile = value();
        break;
      case "--passphrase-file":
        out.passphraseFile = value();
        break;
      case "--help":
      case "-h":
        out.help = true;
        break;
      default:
        throw new ConfigError(`unknown argument ${arg} (see --help)`);
    }
  }
  if (out.importFile !== undefined && out.exportFile !== undefined) throw new ConfigError("--import and --export cannot be used together");
  if (out.passphraseFile !== undefined && out.importFile === undefined && out.exportFile === undefined) throw new ConfigError("--passphrase-file needs --import or --export");
  return out;
}

/** A rendezvous address: it must parse as a multiaddr. */
function multiaddrText(v: string, name: string): string {
  try {
    multiaddr(v);
  } catch {
    throw new ConfigError(`${name} must be a multiaddr such as /ip4/203.0.113.5/tcp/4001/ws/p2p/12D3KooW… (got "${v}")`);
  }
  return v;
}

function parsePort(v: unknown, name: string): number {
  const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > 65535) throw new ConfigError(`${name} must be a port number (0-65535)`);
  return n;
}

/** A config key reader; `warn` reports keys inside it that are ignored. */
type KeyReader = (v: unknown, base: string, out: Partial<NodeConfig>, warn: (msg: string) => void) => void;

/** Config file keys → how each is read. Paths are relative to the config file's directory. */
const FILE_KEYS: Record<string, KeyReader> = {
  server_name: (v, _b, o) => (o.serverName = str(v, "server_name")),
  bind_host: (v, _b, o) => (o.bindHost = str(v, "bind_host")),
  http_port: (v, _b, o) => (o.httpPort = parsePort(v, "http_port")),
  https_port: (v, _b, o) => (o.httpsPort = parsePort(v, "https_port")),
  tls_cert: (v, b, o) => (o.tlsCert = resolve(b, str(v, "tls_cert"))),
  tls_key: (v, b, o) => (o.tlsKey = resolve(b, str(v, "tls_key"))),
  registration_shared_secret: (v, _b, o) => (o.registrationSharedSecret = str(v, "registration_shared_secret")),
  data_dir: (v, b, o) => (o.dataDir = resolve(b, str(v, "data_dir"))),
  rendezvous: (v, _b, o) => {
    const list = typeof v === "string" ? [v] : v;
    if (!Array.isArray(list)) throw new ConfigError("rendezvous must be a multiaddr or a list of them");
    o.rendezvous = list.map((a: unknown, i) => multiaddrText(str(a, `rendezvous[${i}]`), "rendezvous"));
  },
  p2p_port: (v, _b, o) => (o.p2pPort = parsePort(v, "p2p_port")),
  enable_registration: (v, _b, o) => (o.enableRegistration = bool(v, "enable_registration")),
  enable_registration_without_verification: (v, _b, o) => (o.enableRegistrationWithoutVerification = bool(v, "enable_registration_without_verification")),
  registration_requires_token: (v, _b, o) => (o.registrationRequiresToken = bool(v, "registration_requires_token")),
  default_room_version: (v, _b, o) => {
    const version = str(v, "default_room_version");
    if (!ROOM_VERSIONS.has(version)) throw new ConfigError(`default_room_version "${version}" is not a room version this server supports (${[...ROOM_VERSIONS.keys()].join(", ")})`);
    o.defaultRoomVersion = version;
  },
  x_forwarded: (v, _b, o) => (o.xForwarded = bool(v, "x_forwarded")),
  rc_federation: (v, _b, o, warn) => (o.federationRateLimit = federationRateLimit(v, warn)),
  ...rateLimitKeys(),
  password_pbkdf2_iterations: (v, _b, o) => (o.passwordIterations = posInt(v, "password_pbkdf2_iterations")),
  max_upload_bytes: (v, _b, o) => (o.maxUploadBytes = posInt(v, "max_upload_bytes")),
  public_baseurl: (v, _b, o) => (o.publicBaseUrl = str(v, "public_baseurl").replace(/\/+$/, "")),
  access_token_lifetime_ms: (v, _b, o) => (o.accessTokenLifetimeMs = posInt(v, "access_token_lifetime_ms")),
  support: (v, _b, o) => (o.support = supportInfo(v)),
  allow_guest_access: (v, _b, o) => (o.allowGuestAccess = bool(v, "allow_guest_access")),
  metrics_port: (v, _b, o) => (o.metricsPort = parsePort(v, "metrics_port")),
  metrics_bind_host: (v, _b, o) => (o.metricsBindHost = str(v, "metrics_bind_host")),
  app_service_config_files: (v, b, o) => {
    if (!Array.isArray(v)) throw new ConfigError("app_service_config_files must be a list of file names");
    o.appServiceConfigFiles = v.map((f: unknown, i) => resolve(b, str(f, `app_service_config_files[${i}]`)));
  },
  use_appservice_legacy_authorization: (v, _b, o) => (o.appServiceLegacyAuth = bool(v, "use_appservice_legacy_authorization")),
  federation_custom_ca_list: (v, b, o) => {
    if (!Array.isArray(v)) throw new ConfigError("federation_custom_ca_list must be a list of PEM file names");
    o.federationCustomCaList = v.map((f: unknown, i) => resolve(b, str(f, `federation_custom_ca_list[${i}]`)));
  },
  federation_verify_certificates: (v, _b, o) => (o.federationVerifyCertificates = bool(v, "federation_verify_certificates")),
  federation_domain_whitelist: (v, _b, o) => {
    if (!Array.isArray(v)) throw new ConfigError("federation_domain_whitelist must be a list of server names");
    o.federationDomainWhitelist = v.map((name: unknown, i) => serverName(name, `federation_domain_whitelist[${i}]`));
  },
  trusted_key_servers: (v, _b, o, warn) => (o.trustedKeyServers = trustedKeyServers(v, warn)),
  directory_peer_ttl_ms: (v, _b, o) => (o.directoryPeerTtlMs = posInt(v, "directory_peer_ttl_ms")),
  directory_refresh_interval_ms: (v, _b, o) => (o.directoryRefreshIntervalMs = posInt(v, "directory_refresh_interval_ms")),
  log_level: (v, _b, o) => {
    const s = str(v, "log_level");
    if (!LOG_LEVELS.includes(s as LogLevel)) throw new ConfigError(`log_level must be one of ${LOG_LEVELS.join(", ")}`);
    o.logLevel = s as LogLevel;
  },
};

/**
 * Readers for the `rc_*` keys: `rc_message: { per_second, burst_count }` and the nested ones
 * (`rc_login: { address: { … }, … }`). A field left out keeps Synapse's default for it.
 */
function rateLimitKeys(): Record<string, KeyReader> {
  const tops = new Map<string, string[]>();
  for (const name of LIMITER_NAMES) {
    const [top, sub] = name.split(".") as [string, string | undefined];
    tops.set(top, [...(tops.get(top) ?? []), ...(sub ? [sub] : [])]);
  }
  const readers: Record<string, KeyReader> = {};
  for (const [top, subs] of tops) {
    readers[top] = (v, _b, o, warn) => {
      const limits: Record<string, TokenBucket> = { ...(o.rateLimits ?? DEFAULT_RATE_LIMITS) };
      const obj = object(v, top);
      if (subs.length === 0) {
        limits[top] = tokenBucket(obj, top, DEFAULT_RATE_LIMITS[top as LimiterName], warn);
      } else {
        for (const [k, inner] of Object.entries(obj)) {
          const name = `${top}.${k}`;
          if (!subs.includes(k)) warn(`config: ignoring unknown key "${name}"`);
          else if (inner !== null) limits[name] = tokenBucket(object(inner, name), name, DEFAULT_RATE_LIMITS[name as LimiterName], warn);
        }
      }
      o.rateLimits = limits as RateLimitSettings;
    };
  }
  return readers;
}

/** `{ "per_second": > 0, "burst_count": integer ≥ 1 }`; a missing field keeps `fallback`'s. */
function tokenBucket(o: Record<string, unknown>, name: string, fallback: TokenBucket, warn: (msg: string) => void): TokenBucket {
  let { perSecond, burstCount } = fallback;
  for (const [k, v] of Object.entries(o)) {
    if (k === "per_second") {
      if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) throw new ConfigError(`${name}.per_second must be a positive number`);
      perSecond = v;
    } else if (k === "burst_count") {
      if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw new ConfigError(`${name}.burst_count must be a positive integer`);
      burstCount = v;
    } else {
      warn(`config: ignoring unknown key "${name}.${k}"`);
    }
  }
  return { perSecond, burstCount };
}

/** `rc_federation`: Synapse's five integers, each optional. */
function federationRateLimit(v: unknown, warn: (msg: string) => void): FederationRateLimit {
  const fields: Record<string, keyof FederationRateLimit> = {
    window_size: "windowSize",
    sleep_limit: "sleepLimit",
    sleep_delay: "sleepDelay",
    reject_limit: "rejectLimit",
    concurrent: "concurrent",
  };
  const out: Record<keyof FederationRateLimit, number> = { ...DEFAULT_FEDERATION_RATE_LIMIT };
  for (const [k, value] of Object.entries(object(v, "rc_federation"))) {
    const field = fields[k];
    if (!field) {
      warn(`config: ignoring unknown key "rc_federation.${k}"`);
      continue;
    }
    // A window must have a length and at least one request must be able to run.
    const min = field === "windowSize" || field === "concurrent" ? 1 : 0;
    if (typeof value !== "number" || !Number.isInteger(value) || value < min) {
      throw new ConfigError(`rc_federation.${k} must be an integer ≥ ${min}`);
    }
    out[field] = value;
  }
  return out;
}

/**
 * `trusted_key_servers`: server names, or Synapse's objects `{ "server_name": …, "verify_keys": … }`.
 * A notary's own keys are fetched like any server's; pinned `verify_keys` are not used.
 */
function trustedKeyServers(v: unknown, warn: (msg: string) => void): string[] {
  if (!Array.isArray(v)) throw new ConfigError("trusted_key_servers must be a list");
  return v.map((entry: unknown, i) => {
    const name = `trusted_key_servers[${i}]`;
    if (typeof entry === "string") return serverName(entry, name);
    const o = object(entry, name);
    for (const k of Object.keys(o)) if (k !== "server_name") warn(`config: ignoring "${name}.${k}"`);
    return serverName(o.server_name, `${name}.server_name`);
  });
}

function serverName(v: unknown, name: string): string {
  const s = str(v, name);
  if (!SERVER_NAME_RE.test(s)) throw new ConfigError(`${name} "${s}" is not a server name`);
  return s;
}

function object(v: unknown, name: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ConfigError(`${name} must be an object`);
  return v as Record<string, unknown>;
}

/** The `support` key: support.yaml's object ("At least one of `contacts` or `support_page` is required"). */
function supportInfo(v: unknown): SupportInfo {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ConfigError("support must be an object with contacts and/or support_page");
  const o = v as Record<string, unknown>;
  const out: SupportInfo = {};
  if (o.support_page !== undefined) out.support_page = str(o.support_page, "support.support_page");
  if (o.contacts !== undefined) {
    if (!Array.isArray(o.contacts)) throw new ConfigError("support.contacts must be a list");
    out.contacts = o.contacts.map((c: unknown, i) => {
      const name = `support.contacts[${i}]`;
      if (typeof c !== "object" || c === null || Array.isArray(c)) throw new ConfigError(`${name} must be an object`);
      const { role, matrix_id, email_address } = c as Record<string, unknown>;
      const contact: { role: string; matrix_id?: string; email_address?: string } = { role: str(role, `${name}.role`) };
      if (matrix_id !== undefined) {
        contact.matrix_id = str(matrix_id, `${name}.matrix_id`);
        if (!/^@[^:]+:.+$/.test(contact.matrix_id)) throw new ConfigError(`${name}.matrix_id must be a Matrix user ID`);
      }
      if (email_address !== undefined) contact.email_address = str(email_address, `${name}.email_address`);
      if (contact.matrix_id === undefined && contact.email_address === undefined) throw new ConfigError(`${name} needs matrix_id or email_address`);
      return contact;
    });
    if (out.support_page === undefined && out.contacts.length === 0) throw new ConfigError("support.contacts must not be empty without support_page");
  }
  if (out.contacts === undefined && out.support_page === undefined) throw new ConfigError("support needs contacts and/or support_page");
  return out;
}

function str(v: unknown, name: string): string {
  if (typeof v !== "string" || v === "") throw new ConfigError(`${name} must be a non-empty string`);
  return v;
}
function bool(v: unknown, name: string): boolean {
  if (typeof v !== "boolean") throw new ConfigError(`${name} must be true or false`);
  return v;
}
function posInt(v: unknown, name: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw new ConfigError(`${name} must be a positive integer`);
  return v;
}

/** Reads a JSON config file; unknown keys are reported through `warn` and otherwise ignored. */
export async function readConfigFile(path: string, warn: (msg: string) => void): Promise<Partial<NodeConfig>> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new ConfigError(`config file ${path} must hold a JSON object`);
  const base = dirname(resolve(path));
  const out: Partial<NodeConfig> = {};
  for (const [k, v] of Object.entries(parsed)) {
    const reader = FILE_KEYS[k];
    // One config file may serve several tools, so a key we do not know is not an error.
    if (!reader) warn(`config: ignoring unknown key "${k}"`);
    else if (v !== null) reader(v, base, out, warn);
  }
  return out;
}

/** Merges defaults, file and flags, and checks the combination. */
export async function resolveConfig(args: CliArgs, warn: (msg: string) => void): Promise<NodeConfig> {
  const file = args.configFile ? await readConfigFile(args.configFile, warn) : {};
  const config: NodeConfig = { ...DEFAULTS, ...file, ...args.overrides };
  config.dataDir = resolve(config.dataDir);
  // Open registration by default only where only this machine can reach it.
  config.enableRegistration = args.overrides.enableRegistration ?? file.enableRegistration ?? isLoopback(config.bindHost);
  if (config.enableRegistration && !isLoopback(config.bindHost) && !config.enableRegistrationWithoutVerification && !config.registrationRequiresToken) {
    throw new ConfigError(
      `open registration on ${config.bindHost} (not a loopback address) has no verification step: set registration_requires_token: true, ` +
        "or enable_registration_without_verification: true to allow it anyway, or enable_registration: false",
    );
  }
  if (config.httpsPort !== undefined && (!config.tlsCert || !config.tlsKey)) throw new ConfigError("https_port needs tls_cert and tls_key");
  if (config.serverName !== undefined && !SERVER_NAME_RE.test(config.serverName)) {
    throw new ConfigError(`server_name "${config.serverName}" is not a valid server name (hostname, IPv4 or [IPv6], optional :port)`);
  }
  return config;
}

/** Whether `host` only accepts connections from this machine (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  return h === "localhost" || h === "::1" || /^(?:::ffff:)?127(?:\.\d{1,3}){3}$/.test(h);
}

// appendices "Server Name": hostname / IPv4 / [IPv6], optionally :port.
const SERVER_NAME_RE = /^(?:[A-Za-z0-9.-]{1,255}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;
