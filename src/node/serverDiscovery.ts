/**
 * Server discovery for classic-mode federation (server-server API "Resolving server names"): from a
 * server name to where to connect, which `Host` header to send and which name the certificate must
 * be valid for. `/.well-known/matrix/server` answers are cached as the spec recommends; SRV answers
 * briefly. The HTTPS fetch of the well-known file is injected (the transport does it, with the same
 * certificate rules as every federation request).
 */
import { isIP } from "node:net";
import { promises as dns } from "node:dns";
import type { SrvRecord } from "node:dns";
import { isValidServerName } from "../homeserver/rooms/ids.ts";

/** One place to try, in order; the next is tried only when connecting to this one fails. */
export interface Target {
  /** Address or hostname (looked up with A/AAAA, CNAMEs followed) to connect to. */
  connectHost: string;
  port: number;
  /** The `Host` header of the request. */
  hostHeader: string;
  /** The name the server's certificate must be valid for; sent as SNI unless it is an IP address. */
  tlsName: string;
}

/** A server name split into its parts (appendices "Server Name"). */
export interface ParsedServerName {
  /** Hostname or IP address, IPv6 without brackets. */
  host: string;
  port?: number;
  isIpLiteral: boolean;
}

/** What a `/.well-known/matrix/server` fetch gave. */
export type WellKnownResult =
  /** 200 with a body (parsed here, whatever its content type); `maxAgeMs` from Cache-Control/Expires. */
  | { kind: "answer"; status: number; body: string; maxAgeMs?: number }
  /** No answer at all (connection refused, TLS failure, timeout). */
  | { kind: "unreachable" };

/** What discovery is built from; tests inject DNS and the ports. */
export interface DiscoveryOptions {
  /** GET `https://{hostname}/.well-known/matrix/server` (redirects followed). */
  fetchWellKnown: (hostname: string) => Promise<WellKnownResult>;
  /** SRV lookup (default: the system resolver). Rejects or returns [] when there is none. */
  resolveSrv?: (name: string) => Promise<SrvRecord[]>;
  clock?: () => number;
  /** The port used when nothing names one (the spec's 8448; tests use another). */
  defaultPort?: number;
  random?: () => number;
}

/** A server name this module cannot resolve. */
export class DiscoveryError extends Error {
  override readonly name = "DiscoveryError";
}

const DEFAULT_FEDERATION_PORT = 8448;
const HOUR = 60 * 60 * 1000;
/** "The recommended sensible default is 24 hours." */
const WELL_KNOWN_DEFAULT_CACHE_MS = 24 * HOUR;
/** "a maximum cache time for responses: 48 hours is recommended" */
const WELL_KNOWN_MAX_CACHE_MS = 48 * HOUR;
/** Shorter lifetimes in Cache-Control are raised to this, so a `max-age=0` cannot make every request fetch it. */
const WELL_KNOWN_MIN_CACHE_MS = 5 * 60 * 1000;
/** "Errors are recommended to be cached for up to an hour": an answer that is not a valid delegation. */
const WELL_KNOWN_INVALID_CACHE_MS = HOUR;
/** No answer at all: cached for this long, doubling on each further failure up to an hour. */
const WELL_KNOWN_DOWN_CACHE_MS = 2 * 60 * 1000;
/** SRV answers are kept this long (the system resolver does not tell us the TTL). */
const SRV_CACHE_MS = 10 * 60 * 1000;

/** Splits a server name; undefined when it is not one. */
export function parseServerName(name: string): ParsedServerName | undefined {
  if (!isValidServerName(name)) return undefined;
  let host: string;
  let portText: string | undefined;
  if (name.startsWith("[")) {
    const end = name.indexOf("]");
    host = name.slice(1, end);
    portText = name.length > end + 1 ? name.slice(end + 2) : undefined;
    if (isIP(host) !== 6) return undefined;
  } else {
    const i = name.lastIndexOf(":");
    host = i < 0 ? name : name.slice(0, i);
    portText = i < 0 ? undefined : name.slice(i + 1);
  }
  let port: number | undefined;
  if (portText !== undefined) {
    port = Number(portText);
    if (!/^\d{1,5}$/.test(portText) || port < 1 || port > 65535) return undefined;
  }
  return { host, ...(port !== undefined ? { port } : {}), isIpLiteral: isIP(host) !== 0 };
}

interface WellKnownEntry {
  /** The delegated server name, or undefined when there is no valid delegation. */
  delegated: string | undefined;
  expiresAt: number;
  /** Consecutive fetches with no answer (for the back-off). */
  failures: number;
}

/** Resolves server names to connection targets, caching well-known and SRV answers. */
export class ServerDiscovery {
  private readonly options: DiscoveryOptions;
  private readonly clock: () => number;
  private readonly defaultPort: number;
  private readonly wellKnown = new Map<string, WellKnownEntry>();
  private readonly wellKnownInFlight = new Map<string, Promise<string | undefined>>();
  private readonly srv = new Map<string, { records: SrvRecord[]; expiresAt: number }>();

  constructor(options: DiscoveryOptions) {
    this.options = options;
    this.clock = options.clock ?? Date.now;
    this.defaultPort = options.defaultPort ?? DEFAULT_FEDERATION_PORT;
  }

  /** Where to send a request for `serverName`, in the order to try. */
  async resolve(serverName: string): Promise<Target[]> {
    const parsed = parseServerName(serverName);
    if (!parsed) throw new DiscoveryError(`"${serverName}" is not a server name`);
    const { host, port } = parsed;
    // 1. An IP literal: that address, the given port or 8448; certificate for the IP address.
    if (parsed.isIpLiteral) return [{ connectHost: host, port: port ?? this.defaultPort, hostHeader: serverName, tlsName: host }];
    // 2. A hostname with an explicit port: A/AAAA of the hostname, certificate for the hostname.
    if (port !== undefined) return [{ connectHost: host, port, hostHeader: serverName, tlsName: host }];
    // 3. /.well-known/matrix/server.
    const delegated = await this.delegation(host);
    if (delegated !== undefined) {
      const d = parseServerName(delegated)!;
      // 3.1 A delegated IP literal: Host is the IP (with the port when one was given).
      if (d.isIpLiteral) return [{ connectHost: d.host, port: d.port ?? this.defaultPort, hostHeader: delegated, tlsName: d.host }];
      // 3.2 A delegated hostname with a port.
      if (d.port !== undefined) return [{ connectHost: d.host, port: d.port, hostHeader: delegated, tlsName: d.host }];
      // 3.3–3.5 SRV for the delegated hostname, else its address on 8448.
      return this.srvOrDefault(d.host);
    }
    // 4–6. SRV for the hostname itself, else its address on 8448.
    return this.srvOrDefault(host);
  }

  /**
   * SRV `_matrix-fed._tcp.{host}`, then the deprecated `_matrix._tcp.{host}`, else `{host}:8448`.
   * Host header and certificate name stay `host`: the SRV target is not trusted to name itself.
   */
  private async srvOrDefault(host: string): Promise<Target[]> {
    for (const service of ["_matrix-fed._tcp", "_matrix._tcp"]) {
      const records = await this.lookupSrv(`${service}.${host}`);
      if (records.length === 0) continue;
      // RFC 2782: a single record with target "." says the service is decidedly not available.
      if (records.length === 1 && (records[0]!.name === "." || records[0]!.name === "")) {
        throw new DiscoveryError(`${service}.${host} says the service is not available`);
      }
      return orderSrv(records, this.options.random ?? Math.random).map((r) => ({ connectHost: r.name.replace(/\.$/, ""), port: r.port, hostHeader: host, tlsName: host }));
    }
    return [{ connectHost: host, port: this.defaultPort, hostHeader: host, tlsName: host }];
  }

  private async lookupSrv(name: string): Promise<SrvRecord[]> {
    const now = this.clock();
    const cached = this.srv.get(name);
    if (cached && cached.expiresAt > now) return cached.records;
    let records: SrvRecord[];
    try {
      records = await (this.options.resolveSrv ?? ((n: string) => dns.resolveSrv(n)))(name);
    } catch {
      // NXDOMAIN, no data, or a failing resolver: the spec's next step.
      records = [];
    }
    this.srv.set(name, { records, expiresAt: now + SRV_CACHE_MS });
    return records;
  }

  /** The valid `m.server` of `host`'s well-known file, from the cache or a fetch (one at a time per host). */
  private delegation(host: string): Promise<string | undefined> {
    const entry = this.wellKnown.get(host);
    if (entry && entry.expiresAt > this.clock()) return Promise.resolve(entry.delegated);
    let pending = this.wellKnownInFlight.get(host);
    if (!pending) {
      pending = this.fetchDelegation(host, entry?.failures ?? 0).finally(() => this.wellKnownInFlight.delete(host));
      this.wellKnownInFlight.set(host, pending);
    }
    return pending;
  }

  private async fetchDelegation(host: string, failures: number): Promise<string | undefined> {
    let result: WellKnownResult;
    try {
      result = await this.options.fetchWellKnown(host);
    } catch {
      result = { kind: "unreachable" };
    }
    const now = this.clock();
    if (result.kind === "unreachable") {
      // "servers are encouraged to exponentially back off for repeated failures"
      const ms = Math.min(WELL_KNOWN_INVALID_CACHE_MS, WELL_KNOWN_DOWN_CACHE_MS * 2 ** failures);
      this.wellKnown.set(host, { delegated: undefined, expiresAt: now + ms, failures: failures + 1 });
      return undefined;
    }
    const delegated = result.status === 200 ? parseWellKnown(result.body) : undefined;
    const ms =
      delegated === undefined
        ? WELL_KNOWN_INVALID_CACHE_MS
        : Math.min(WELL_KNOWN_MAX_CACHE_MS, Math.max(WELL_KNOWN_MIN_CACHE_MS, result.maxAgeMs ?? WELL_KNOWN_DEFAULT_CACHE_MS));
    this.wellKnown.set(host, { delegated, expiresAt: now + ms, failures: 0 });
    return delegated;
  }
}

/** The `m.server` of a well-known body when it is a valid server name ("If the response is invalid … skip to step 4"). */
export function parseWellKnown(body: string): string | undefined {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) return undefined;
  const server = (json as Record<string, unknown>)["m.server"];
  return typeof server === "string" && parseServerName(server) ? server : undefined;
}

/**
 * How long a response may be cached, from `Cache-Control` (`max-age`, `no-store`/`no-cache` as 0)
 * or `Expires`; undefined when neither says.
 */
export function cacheLifetimeMs(cacheControl: string | null, expires: string | null, now: number): number | undefined {
  if (cacheControl) {
    const directives = cacheControl.toLowerCase().split(",").map((d) => d.trim());
    if (directives.includes("no-store") || directives.includes("no-cache")) return 0;
    for (const d of directives) {
      const m = /^max-age\s*=\s*"?(\d+)"?$/.exec(d);
      if (m) return Number(m[1]) * 1000;
    }
  }
  if (expires) {
    const at = Date.parse(expires);
    if (Number.isFinite(at)) return Math.max(0, at - now);
  }
  return undefined;
}

/** RFC 2782 order: by priority, then a weighted random pick among records of the same priority. */
export function orderSrv(records: readonly SrvRecord[], random: () => number): SrvRecord[] {
  const byPriority = new Map<number, SrvRecord[]>();
  for (const r of records) byPriority.set(r.priority, [...(byPriority.get(r.priority) ?? []), r]);
  const out: SrvRecord[] = [];
  for (const priority of [...byPriority.keys()].sort((a, b) => a - b)) {
    const left = [...byPriority.get(priority)!];
    while (left.length > 0) {
      const total = left.reduce((sum, r) => sum + r.weight, 0);
      let pick = 0;
      if (total > 0) {
        let point = random() * total;
        pick = left.findIndex((r) => (point -= r.weight) < 0);
        if (pick < 0) pick = left.length - 1;
      }
      out.push(left.splice(pick, 1)[0]!);
    }
  }
  return out;
}
