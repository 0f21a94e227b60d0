/**
 * Asking application services about entities they may create (Application Service API
 * "Querying", "Third-party networks"): room aliases and users in their namespaces that this server
 * does not know yet, and third-party protocol lookups.
 */
import type { Services } from "../context.ts";
import { isObject } from "../validate.ts";
import { callAppService, describeFailure } from "./http.ts";
import type { AppService } from "./registration.ts";

/** How long a query may block the client's request ("the application service is blocking the homeserver"). */
const QUERY_TIMEOUT_MS = 10_000;

/**
 * Asks the services whose alias namespaces cover `alias` to create it (`GET /_matrix/app/v1/rooms/{roomAlias}`),
 * when the alias is local and unknown. Returns once one answered 200 (it created the room and the
 * alias through the Client-Server API before answering) or all declined; the caller reads the alias again.
 */
export async function queryAliasIfUnknown(hs: Services, alias: string): Promise<void> {
  if (!hs.appservices || !alias.endsWith(`:${hs.serverName}`)) return;
  const candidates = hs.appservices.registry.servicesForAlias(alias);
  if (candidates.length === 0) return;
  if (await hs.store.read((tx) => tx.get("aliases", alias))) return;
  for (const as of candidates) {
    const res = await callAppService(hs.appservices.http, as, "GET", `/_matrix/app/v1/rooms/${encodeURIComponent(alias)}`, {}, undefined, QUERY_TIMEOUT_MS);
    if (res.ok) return;
    // A 404 is the service declining; anything else is worth a line in the log.
    if (res.status !== 404) hs.logger.warn(`appservice ${as.id}: alias query for ${alias} failed: ${describeFailure(res)}`);
  }
}

/**
 * Asks the services whose user namespaces cover `userId` to create it (`GET /_matrix/app/v1/users/{userId}`),
 * when the user is local and has no account. Returns whether one answered 200.
 */
export async function queryUserIfUnknown(hs: Services, userId: string): Promise<boolean> {
  if (!hs.appservices || !userId.endsWith(`:${hs.serverName}`)) return false;
  const candidates = hs.appservices.registry.servicesForUser(userId);
  if (candidates.length === 0) return false;
  if (await hs.store.read((tx) => tx.get("accounts", userId))) return false;
  for (const as of candidates) {
    const res = await callAppService(hs.appservices.http, as, "GET", `/_matrix/app/v1/users/${encodeURIComponent(userId)}`, {}, undefined, QUERY_TIMEOUT_MS);
    if (res.ok) return true;
    if (res.status !== 404) hs.logger.warn(`appservice ${as.id}: user query for ${userId} failed: ${describeFailure(res)}`);
  }
  return false;
}

/** Every protocol some service bridges. */
export function bridgedProtocols(hs: Services): string[] {
  const out = new Set<string>();
  for (const as of hs.appservices?.registry.all ?? []) if (as.registration.url !== null) for (const p of as.registration.protocols) out.add(p);
  return [...out];
}

/**
 * The metadata of a protocol (`GET /_matrix/app/v1/thirdparty/protocol/{protocol}` on each
 * service that bridges it): the first answer, with the `instances` of every answer combined and
 * each instance given the `instance_id` the Client-Server API requires. Undefined if none answered.
 */
export async function protocolMetadata(hs: Services, protocol: string): Promise<Record<string, unknown> | undefined> {
  if (!hs.appservices) return undefined;
  let merged: Record<string, unknown> | undefined;
  const instances: unknown[] = [];
  for (const as of hs.appservices.registry.servicesForProtocol(protocol)) {
    const res = await callAppService(hs.appservices.http, as, "GET", `/_matrix/app/v1/thirdparty/protocol/${encodeURIComponent(protocol)}`, {}, undefined, QUERY_TIMEOUT_MS);
    if (!res.ok || !isObject(res.body)) {
      hs.logger.warn(`appservice ${as.id}: protocol query for ${protocol} failed: ${describeFailure(res)}`);
      continue;
    }
    merged ??= { ...res.body };
    for (const inst of Array.isArray(res.body.instances) ? res.body.instances : []) {
      if (!isObject(inst)) continue;
      // The service names its networks (`network_id`); the instance ID must be unique across services.
      instances.push({ ...inst, instance_id: typeof inst.instance_id === "string" ? inst.instance_id : `${as.id}|${String(inst.network_id ?? "")}` });
    }
  }
  if (merged) merged.instances = instances;
  return merged;
}

/**
 * A third-party lookup (`/_matrix/app/v1/thirdparty/{kind}[/{protocol}]`) on every service that
 * bridges `protocol` (or, for the reverse lookups without a protocol, every service with any
 * protocol), with the results concatenated. Services that fail or answer 404 add nothing.
 */
export async function thirdPartyLookup(hs: Services, kind: "user" | "location", protocol: string | undefined, query: URLSearchParams): Promise<unknown[]> {
  if (!hs.appservices) return [];
  const services: AppService[] =
    protocol !== undefined ? hs.appservices.registry.servicesForProtocol(protocol) : hs.appservices.registry.all.filter((as) => as.registration.url !== null && as.registration.protocols.length > 0);
  const path = `/_matrix/app/v1/thirdparty/${kind}${protocol !== undefined ? `/${encodeURIComponent(protocol)}` : ""}`;
  const out: unknown[] = [];
  for (const as of services) {
    const res = await callAppService(hs.appservices.http, as, "GET", path, query, undefined, QUERY_TIMEOUT_MS);
    if (res.ok && Array.isArray(res.body)) out.push(...res.body);
    else if (res.status !== 404) hs.logger.warn(`appservice ${as.id}: third-party ${kind} lookup failed: ${describeFailure(res)}`);
  }
  return out;
}
