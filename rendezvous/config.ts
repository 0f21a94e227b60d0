/**
 * The rendezvous node's configuration: command-line flags, the JSON `--config` file, defaults.
 * Flags win over the file; every error is a `UsageError` (the CLI prints it with the usage text
 * and exits 2).
 */
import { readFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { multiaddr } from "@multiformats/multiaddr";

/** Per-peer and overall limits (see docs/SCALING.md for what each costs). 0 = unlimited where noted. */
export interface RendezvousLimits {
  /** Relay reservations held at once, all peers together (libp2p's own reservation store size). */
  maxReservations: number;
  /** Reservations at once from one IP address (one peer ID holds at most one anyway). */
  maxReservationsPerIp: number;
  /** Relayed connections at once that one peer is an end of (as dialler or as destination). */
  maxCircuitsPerPeer: number;
  /** Relayed bytes per second one peer may send plus receive through the relay; 0 = unlimited. */
  bytesPerSecondPerPeer: number;
  /** Bytes a peer may relay in one burst above its rate (token bucket size). */
  burstBytesPerPeer: number;
  /** Connections at once (libp2p's connection manager prunes untagged ones above it). */
  maxConnections: number;
  /** New inbound connections per second from one host before libp2p refuses more. */
  inboundConnectionsPerSecondPerHost: number;
}

/** The resolved configuration of one rendezvous node. */
export interface RendezvousConfig {
  host: string;
  port: number;
  /** File holding the node's 32-byte ed25519 seed; a fresh identity each start when absent. */
  keyFile?: string;
  /** Other rendezvous nodes to join, kept connected. */
  peers: string[];
  /** Addresses to announce instead of the listening ones (behind a proxy or NAT). */
  announce: string[];
  /** Port of the plain-HTTP health endpoint (0 = any free port); none when absent. */
  healthPort?: number;
  /** Interface of the health endpoint (default: `host`). */
  healthHost?: string;
  /** Seconds between status log lines. */
  statusIntervalSeconds: number;
  limits: RendezvousLimits;
}

/** Limits when nothing says otherwise: generous enough for federation, small enough to share. */
export const DEFAULT_LIMITS: RendezvousLimits = {
  maxReservations: 1024,
  maxReservationsPerIp: 32,
  maxCircuitsPerPeer: 64,
  bytesPerSecondPerPeer: 4 * 1024 * 1024,
  burstBytesPerPeer: 8 * 1024 * 1024,
  maxConnections: 2048,
  inboundConnectionsPerSecondPerHost: 20,
};

export const DEFAULTS: RendezvousConfig = {
  host: "127.0.0.1",
  port: 4001,
  peers: [],
  announce: [],
  statusIntervalSeconds: 60,
  limits: DEFAULT_LIMITS,
};

/** Bad flags or a bad config file: the user's input is wrong (exit 2, with the usage text). */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** The usage text for `npm run rendezvous -- --help`. */
export const USAGE = `Usage: npm run rendezvous -- [--host H] [--port P] [--key FILE] [--peer MULTIADDR]... [--announce MULTIADDR]...
                           [--health-port P] [--config FILE]
  --host H            interface to listen on (default 127.0.0.1; 0.0.0.0 for all)
  --port P            websocket port (default 4001; 0 = any free port)
  --key FILE          the node's identity (32-byte ed25519 seed), created if missing (mode 0600);
                      without it the peer ID changes on every start
  --peer MULTIADDR    another rendezvous node to join, with /p2p/<id> (repeatable); redialled
                      with backoff whenever the connection drops
  --announce MULTIADDR address to announce instead of the listening one (repeatable), e.g.
                      /dns4/rv.example.org/tcp/443/wss behind a TLS proxy
  --health-port P     serve GET /health (JSON) over plain HTTP on this port (0 = any free port)
  --config FILE       JSON file with the same keys (host, port, key, peers, announce, health_port,
                      health_host, status_interval_seconds) and "limits" (see README "Running a
                      rendezvous node"); flags win over the file`;

/** What the command line said. */
export interface CliArgs {
  configFile?: string;
  overrides: Partial<Omit<RendezvousConfig, "limits">>;
  help: boolean;
}

/** Parses `process.argv.slice(2)`. */
export function parseArgs(argv: readonly string[]): CliArgs {
  const out: CliArgs = { overrides: {}, help: false };
  const peers: string[] = [];
  const announce: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const [flag, inline] = eq > 0 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg, undefined];
    const value = (): string => {
      if (inline !== undefined) return inline;
      const v = argv[++i];
      if (v === undefined || v.startsWith("--")) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case "--host":
        out.overrides.host = host(value(), "--host");
        break;
      case "--port":
        out.overrides.port = port(value(), "--port");
        break;
      case "--key":
        out.overrides.keyFile = value();
        break;
      case "--peer":
        peers.push(peerAddr(value(), "--peer"));
        break;
      case "--announce":
        announce.push(addr(value(), "--announce"));
        break;
      case "--health-port":
        out.overrides.healthPort = port(value(), "--health-port");
        break;
      case "--config":
        out.configFile = value();
        break;
      case "--help":
      case "-h":
        out.help = true;
        break;
      default:
        throw new UsageError(`unknown argument ${arg}`);
    }
  }
  if (peers.length) out.overrides.peers = peers;
  if (announce.length) out.overrides.announce = announce;
  return out;
}

/** The configuration: defaults, then the config file, then the flags. */
export async function resolveConfig(args: CliArgs): Promise<RendezvousConfig> {
  const fromFile = args.configFile ? await readConfigFile(args.configFile) : {};
  const limits = { ...DEFAULT_LIMITS, ...fromFile.limits };
  const config: RendezvousConfig = { ...DEFAULTS, ...fromFile, ...args.overrides, limits };
  if (config.limits.maxReservationsPerIp > config.limits.maxReservations) config.limits.maxReservationsPerIp = config.limits.maxReservations;
  return config;
}

/** Reads and checks a JSON config file; relative paths in it are relative to its directory. */
export async function readConfigFile(path: string): Promise<Partial<Omit<RendezvousConfig, "limits">> & { limits?: Partial<RendezvousLimits> }> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`config file ${path} is not JSON: ${(err as Error).message}`);
  }
  if (!isObject(json)) throw new UsageError(`config file ${path} must hold a JSON object`);
  const base = dirname(resolve(path));
  const out: Partial<Omit<RendezvousConfig, "limits">> & { limits?: Partial<RendezvousLimits> } = {};
  for (const [k, v] of Object.entries(json)) {
    switch (k) {
      case "host":
        out.host = host(v, k);
        break;
      case "port":
        out.port = port(v, k);
        break;
      case "key":
        out.keyFile = resolve(base, str(v, k));
        break;
      case "peers":
        out.peers = list(v, k).map((p, i) => peerAddr(p, `peers[${i}]`));
        break;
      case "announce":
        out.announce = list(v, k).map((p, i) => addr(p, `announce[${i}]`));
        break;
      case "health_port":
        out.healthPort = port(v, k);
        break;
      case "health_host":
        out.healthHost = host(v, k);
        break;
      case "status_interval_seconds":
        out.statusIntervalSeconds = positive(v, k);
        break;
      case "limits":
        out.limits = limitsFrom(v);
        break;
      default:
        throw new UsageError(`config file ${path}: unknown key "${k}"`);
    }
  }
  return out;
}

/** Config file `limits` keys → the field each sets. */
const LIMIT_KEYS: Record<string, { field: keyof RendezvousLimits; zeroOk: boolean }> = {
  max_reservations: { field: "maxReservations", zeroOk: false },
  max_reservations_per_ip: { field: "maxReservationsPerIp", zeroOk: false },
  max_circuits_per_peer: { field: "maxCircuitsPerPeer", zeroOk: false },
  bytes_per_second_per_peer: { field: "bytesPerSecondPerPeer", zeroOk: true },
  burst_bytes_per_peer: { field: "burstBytesPerPeer", zeroOk: false },
  max_connections: { field: "maxConnections", zeroOk: false },
  inbound_connections_per_second_per_host: { field: "inboundConnectionsPerSecondPerHost", zeroOk: false },
};

function limitsFrom(v: unknown): Partial<RendezvousLimits> {
  if (!isObject(v)) throw new UsageError(`"limits" must be an object with keys ${Object.keys(LIMIT_KEYS).join(", ")}`);
  const out: Partial<RendezvousLimits> = {};
  for (const [k, n] of Object.entries(v)) {
    const spec = LIMIT_KEYS[k];
    if (!spec) throw new UsageError(`unknown key "limits.${k}" (known: ${Object.keys(LIMIT_KEYS).join(", ")})`);
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < (spec.zeroOk ? 0 : 1)) {
      throw new UsageError(`limits.${k} must be an integer ≥ ${spec.zeroOk ? 0 : 1}`);
    }
    out[spec.field] = n;
  }
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(v: unknown, name: string): string {
  if (typeof v !== "string" || v === "") throw new UsageError(`${name} must be a non-empty string`);
  return v;
}

function list(v: unknown, name: string): unknown[] {
  if (!Array.isArray(v)) throw new UsageError(`${name} must be a list of multiaddrs`);
  return v;
}

function positive(v: unknown, name: string): number {
  if (typeof v !== "number" || !(v > 0) || !Number.isFinite(v)) throw new UsageError(`${name} must be a positive number`);
  return v;
}

function port(v: unknown, name: string): number {
  const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > 65535) throw new UsageError(`${name} must be a port number (0-65535), not ${JSON.stringify(v)}`);
  return n;
}

function host(v: unknown, name: string): string {
  const h = str(v, name);
  // An IP literal or a host name; multiaddrs need to know which, so only IPs are accepted.
  if (!/^(\d{1,3}(\.\d{1,3}){3}|[0-9a-fA-F:]+)$/.test(h)) throw new UsageError(`${name} must be an IPv4 or IPv6 address, not ${JSON.stringify(h)}`);
  return h;
}

function addr(v: unknown, name: string): string {
  const s = str(v, name);
  try {
    return multiaddr(s).toString();
  } catch (err) {
    throw new UsageError(`${name} is not a multiaddr (${JSON.stringify(s)}): ${(err as Error).message}`);
  }
}

/** A multiaddr naming its peer (`/p2p/<id>` last): the joined node must be known by its ID to be kept connected. */
function peerAddr(v: unknown, name: string): string {
  const s = addr(v, name);
  if (multiaddr(s).getComponents().at(-1)?.name !== "p2p") throw new UsageError(`${name} must end in /p2p/<peer id> (the "rendezvous listening on" line of that node prints it): ${s}`);
  return s;
}
