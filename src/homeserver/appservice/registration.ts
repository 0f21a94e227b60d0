/**
 * Application service registrations (Application Service API "Registration"): validating the
 * parsed registration document and answering which service a user ID, room alias or room ID
 * belongs to. The runner reads the YAML files (`app_service_config_files`); the core only sees the
 * parsed objects.
 */
import { MatrixError } from "../errors.ts";
import { isCompliantLocalpart } from "../rooms/ids.ts";

/** One namespace entry: a regular expression over user IDs, room aliases or room IDs. */
export interface Namespace {
  exclusive: boolean;
  regex: string;
}

/** A validated registration, as the registration file states it. */
export interface AppServiceRegistration {
  id: string;
  /** Where the homeserver pushes transactions and queries; null = the service wants no traffic. */
  url: string | null;
  asToken: string;
  hsToken: string;
  senderLocalpart: string;
  namespaces: { users: Namespace[]; aliases: Namespace[]; rooms: Namespace[] };
  /** Whether requests from masqueraded users are rate-limited (the sender never is). Default true. */
  rateLimited: boolean;
  protocols: string[];
}

/** A registration file's content is wrong; the message names the field. */
export class RegistrationError extends Error {
  override readonly name = "RegistrationError";
}

/** `400 M_EXCLUSIVE`: an ID inside a namespace another party owns, or outside the service's own. */
export const exclusive = (msg: string): MatrixError => new MatrixError(400, "M_EXCLUSIVE", msg);

const NAMESPACE_KINDS = ["users", "aliases", "rooms"] as const;

/** Checks a parsed registration document (registration.yaml's schema) and returns it typed. */
export function parseRegistration(doc: unknown, source = "registration"): AppServiceRegistration {
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) throw new RegistrationError(`${source}: must be a mapping`);
  const o = doc as Record<string, unknown>;
  const str = (field: string): string => {
    const v = o[field];
    if (typeof v !== "string" || v === "") throw new RegistrationError(`${source}: ${field} must be a non-empty string`);
    return v;
  };
  const id = str("id");
  // `url` is required but may be null ("Optionally set to null if no traffic is required").
  if (!("url" in o)) throw new RegistrationError(`${source}: url is required (null for no traffic)`);
  let url: string | null = null;
  if (o.url !== null) {
    const u = str("url");
    try {
      const parsed = new URL(u);
      if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new Error("scheme");
    } catch {
      throw new RegistrationError(`${source}: url must be an http(s) URL`);
    }
    url = u.replace(/\/+$/, "");
  }
  const asToken = str("as_token");
  const hsToken = str("hs_token");
  const senderLocalpart = str("sender_localpart");
  if (!isCompliantLocalpart(senderLocalpart)) throw new RegistrationError(`${source}: sender_localpart is not a valid user localpart`);

  const ns = o.namespaces;
  if (ns === null || typeof ns !== "object" || Array.isArray(ns)) throw new RegistrationError(`${source}: namespaces must be a mapping`);
  const namespaces = { users: [] as Namespace[], aliases: [] as Namespace[], rooms: [] as Namespace[] };
  for (const kind of NAMESPACE_KINDS) {
    const list = (ns as Record<string, unknown>)[kind];
    if (list === undefined || list === null) continue;
    if (!Array.isArray(list)) throw new RegistrationError(`${source}: namespaces.${kind} must be a list`);
    list.forEach((entry: unknown, i) => {
      const name = `${source}: namespaces.${kind}[${i}]`;
      if (entry === null || typeof entry !== "object" || Array.isArray(entry)) throw new RegistrationError(`${name} must be a mapping`);
      const e = entry as Record<string, unknown>;
      if (typeof e.exclusive !== "boolean") throw new RegistrationError(`${name}.exclusive must be true or false`);
      if (typeof e.regex !== "string" || e.regex === "") throw new RegistrationError(`${name}.regex must be a non-empty string`);
      try {
        new RegExp(e.regex, "u");
      } catch (err) {
        throw new RegistrationError(`${name}.regex is not a valid regular expression: ${(err as Error).message}`);
      }
      namespaces[kind].push({ exclusive: e.exclusive, regex: e.regex });
    });
  }
  if (o.rate_limited !== undefined && typeof o.rate_limited !== "boolean") throw new RegistrationError(`${source}: rate_limited must be true or false`);
  let protocols: string[] = [];
  if (o.protocols !== undefined && o.protocols !== null) {
    if (!Array.isArray(o.protocols) || !o.protocols.every((p) => typeof p === "string" && p !== "")) {
      throw new RegistrationError(`${source}: protocols must be a list of strings`);
    }
    protocols = o.protocols as string[];
  }
  return { id, url, asToken, hsToken, senderLocalpart, namespaces, rateLimited: o.rate_limited !== false, protocols };
}

/**
 * Compiles a namespace regex. Anchored at the start only, as Synapse matches (`re.match`), so
 * `@_irc_.*` and `@_irc_` cover the same users in both servers.
 */
const compile = (n: Namespace): { exclusive: boolean; re: RegExp } => ({ exclusive: n.exclusive, re: new RegExp(`^(?:${n.regex})`, "u") });

/** One configured application service, with its namespaces compiled. */
export class AppService {
  /** The full user ID of `sender_localpart`. */
  readonly sender: string;
  private readonly users: { exclusive: boolean; re: RegExp }[];
  private readonly aliases: { exclusive: boolean; re: RegExp }[];
  private readonly rooms: { exclusive: boolean; re: RegExp }[];

  readonly registration: AppServiceRegistration;
  private readonly serverName: string;

  constructor(registration: AppServiceRegistration, serverName: string) {
    this.registration = registration;
    this.serverName = serverName;
    this.sender = `@${registration.senderLocalpart}:${serverName}`;
    this.users = registration.namespaces.users.map(compile);
    this.aliases = registration.namespaces.aliases.map(compile);
    this.rooms = registration.namespaces.rooms.map(compile);
  }

  get id(): string {
    return this.registration.id;
  }

  /** Whether a user ID is in the users namespaces (any, or only exclusive ones). */
  matchesUser(userId: string, exclusiveOnly = false): boolean {
    return this.users.some((n) => (!exclusiveOnly || n.exclusive) && n.re.test(userId));
  }

  /** Whether a room alias is in the aliases namespaces. */
  matchesAlias(alias: string, exclusiveOnly = false): boolean {
    return this.aliases.some((n) => (!exclusiveOnly || n.exclusive) && n.re.test(alias));
  }

  /** Whether a room ID is in the rooms namespaces. */
  matchesRoom(roomId: string): boolean {
    return this.rooms.some((n) => n.re.test(roomId));
  }

  /** Whether the service has alias namespaces at all (saves alias lookups when not). */
  get hasAliasNamespaces(): boolean {
    return this.aliases.length > 0;
  }

  /**
   * Whether the service is interested in a user: its sender, or a *local* user in its users
   * namespaces (registration "users" note: only local users count).
   */
  isInterestedInUser(userId: string): boolean {
    if (userId === this.sender) return true;
    return userId.endsWith(`:${this.serverName}`) && this.matchesUser(userId);
  }
}

/** Every configured application service, looked up by token, ID or namespace. */
export class AppServiceRegistry {
  readonly all: readonly AppService[];
  private readonly byAsToken = new Map<string, AppService>();
  private readonly byIdMap = new Map<string, AppService>();

  constructor(registrations: readonly AppServiceRegistration[], serverName: string) {
    this.all = registrations.map((r) => new AppService(r, serverName));
    for (const as of this.all) {
      // "each as_token and id MUST be unique per application service … The homeserver MUST enforce this."
      if (this.byIdMap.has(as.id)) throw new RegistrationError(`two application services have the id "${as.id}"`);
      if (this.byAsToken.has(as.registration.asToken)) throw new RegistrationError(`application services "${this.byAsToken.get(as.registration.asToken)!.id}" and "${as.id}" share an as_token`);
      this.byIdMap.set(as.id, as);
      this.byAsToken.set(as.registration.asToken, as);
    }
  }

  /** The service whose `as_token` this is. */
  byToken(token: string): AppService | undefined {
    return this.byAsToken.get(token);
  }

  /** The service with this `id`. */
  byId(id: string): AppService | undefined {
    return this.byIdMap.get(id);
  }

  /**
   * Refuses to let `actor` (a service, or undefined for an ordinary user) create or take a user
   * ID: a service only inside its own users namespaces, anyone else only outside every exclusive
   * one ("Server admin style permissions": `M_EXCLUSIVE`).
   */
  checkUserId(userId: string, actor?: AppService): void {
    // The service's own sender counts as its own (Synapse's is_interested_in_user), so registering it again is M_USER_IN_USE.
    if (actor && userId !== actor.sender && !actor.matchesUser(userId)) throw exclusive("This user ID is not in the application service's namespace");
    const owner = this.all.find((as) => as !== actor && as.matchesUser(userId, true));
    if (owner) throw exclusive("This user ID is reserved by an application service");
  }

  /** As `checkUserId`, for room aliases. */
  checkAlias(alias: string, actor?: AppService): void {
    if (actor && !actor.matchesAlias(alias)) throw exclusive("This room alias is not in the application service's namespace");
    const owner = this.all.find((as) => as !== actor && as.matchesAlias(alias, true));
    if (owner) throw exclusive("This room alias is reserved by an application service");
  }

  /** The services that claim an alias (exclusive ones first): who to ask about an unknown alias. */
  servicesForAlias(alias: string): AppService[] {
    return this.all.filter((as) => as.registration.url !== null && as.matchesAlias(alias)).sort((a, b) => Number(b.matchesAlias(alias, true)) - Number(a.matchesAlias(alias, true)));
  }

  /** The services that claim a user ID (exclusive ones first). */
  servicesForUser(userId: string): AppService[] {
    return this.all.filter((as) => as.registration.url !== null && as.matchesUser(userId)).sort((a, b) => Number(b.matchesUser(userId, true)) - Number(a.matchesUser(userId, true)));
  }

  /** The services that bridge a protocol. */
  servicesForProtocol(protocol: string): AppService[] {
    return this.all.filter((as) => as.registration.url !== null && as.registration.protocols.includes(protocol));
  }
}
