/**
 * Client-Server "Third-party Networks" lookups (modules/third_party_networks.md,
 * third_party_lookup.yaml): `/_matrix/client/v3/thirdparty/*`.
 *
 * Third-party networks are provided by application services (bridges): the protocols are those
 * their registrations list, and every lookup is forwarded to the services that bridge the protocol
 * (application service API `/_matrix/app/v1/thirdparty/*`, appservice/queries.ts). Without
 * services the server knows no protocols, portal rooms or third-party users.
 */
import type { RequestContext } from "../context.ts";
import { invalidParam, missingParam, notFound } from "../errors.ts";
import { isRoomAlias, serverOf, isCompliantUserId } from "../rooms/ids.ts";
import { bridgedProtocols, protocolMetadata, thirdPartyLookup } from "../appservice/queries.ts";
import { localAccountExists, localAliasExists } from "../services/rooms.ts";

/** 404 for a protocol no application service bridges. */
function requireProtocol(ctx: RequestContext, protocol: string): void {
  if (!bridgedProtocols(ctx.hs).includes(protocol)) throw notFound(`Unknown protocol ${protocol}`);
}

/** The query parameters forwarded to the services: the protocol's search fields, without credentials. */
function forwardedQuery(ctx: RequestContext): URLSearchParams {
  const q = new URLSearchParams(ctx.url.searchParams);
  for (const k of ["access_token", "user_id", "device_id"]) q.delete(k);
  return q;
}

/** `GET /_matrix/client/v3/thirdparty/protocols` */
export async function getProtocols(ctx: RequestContext): Promise<Record<string, unknown>> {
  await ctx.requireAuth();
  const out: Record<string, unknown> = {};
  for (const protocol of bridgedProtocols(ctx.hs)) {
    // A protocol whose services all fail to answer is left out rather than described wrongly.
    const meta = await protocolMetadata(ctx.hs, protocol);
    if (meta) out[protocol] = meta;
  }
  return out;
}

/** `GET /_matrix/client/v3/thirdparty/protocol/{protocol}` */
export async function getProtocol(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  await ctx.requireAuth();
  requireProtocol(ctx, p.protocol!);
  const meta = await protocolMetadata(ctx.hs, p.protocol!);
  if (!meta) throw notFound(`No application service answered for protocol ${p.protocol!}`);
  return meta;
}

/** `GET /_matrix/client/v3/thirdparty/location/{protocol}` */
export async function getLocationsForProtocol(ctx: RequestContext, p: Record<string, string>): Promise<unknown[]> {
  await ctx.requireAuth();
  requireProtocol(ctx, p.protocol!);
  // "404: No portal rooms were found."
  const found = await thirdPartyLookup(ctx.hs, "location", p.protocol!, forwardedQuery(ctx));
  if (found.length === 0) throw notFound("No portal rooms were found");
  return found;
}

/** `GET /_matrix/client/v3/thirdparty/user/{protocol}` */
export async function getUsersForProtocol(ctx: RequestContext, p: Record<string, string>): Promise<unknown[]> {
  await ctx.requireAuth();
  requireProtocol(ctx, p.protocol!);
  // "404: The Matrix User ID was not found."
  const found = await thirdPartyLookup(ctx.hs, "user", p.protocol!, forwardedQuery(ctx));
  if (found.length === 0) throw notFound("No users were found");
  return found;
}

/** `GET /_matrix/client/v3/thirdparty/location` */
export async function getLocationsByAlias(ctx: RequestContext): Promise<unknown[]> {
  await ctx.requireAuth();
  const alias = ctx.query("alias");
  if (alias === undefined) throw missingParam("alias is required");
  if (!isRoomAlias(alias)) throw invalidParam("alias must be a room alias");
  // "404: The Matrix room alias was not found": decidable for this server's own aliases.
  if (serverOf(alias) === ctx.hs.serverName && !(await localAliasExists(ctx.hs, alias))) {
    throw notFound(`Room alias ${alias} not found`);
  }
  return thirdPartyLookup(ctx.hs, "location", undefined, new URLSearchParams({ alias }));
}

/** `GET /_matrix/client/v3/thirdparty/user` */
export async function getUsersByUserId(ctx: RequestContext): Promise<unknown[]> {
  await ctx.requireAuth();
  const userId = ctx.query("userid");
  if (userId === undefined) throw missingParam("userid is required");
  if (!isCompliantUserId(userId)) throw invalidParam("userid must be a user ID");
  // "404: The Matrix User ID was not found": decidable for this server's own users.
  if (serverOf(userId) === ctx.hs.serverName && !(await localAccountExists(ctx.hs, userId))) {
    throw notFound(`User ${userId} not found`);
  }
  return thirdPartyLookup(ctx.hs, "user", undefined, new URLSearchParams({ userid: userId }));
}
