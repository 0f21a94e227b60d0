/**
 * Client-Server "Third-party Networks" lookups (modules/third_party_networks.md,
 * third_party_lookup.yaml): `/_matrix/client/v3/thirdparty/*`.
 *
 * Third-party networks are provided by application services (bridges). This homeserver has no
 * application services, so it knows no protocols, no portal rooms and no third-party users: the
 * empty answers below are the true ones, not placeholders. When application services arrive, their
 * registered `protocols` are merged here and the lookups are forwarded to them (application
 * service API `/_matrix/app/v1/thirdparty/*`), as the module describes.
 */
import type { RequestContext } from "../context.ts";
import { invalidParam, missingParam, notFound } from "../errors.ts";
import { isRoomAlias, serverOf } from "../roomserver/ids.ts";
import { isCompliantUserId } from "./mutualRooms.ts";

/** The protocols the application services of this server bridge: none (no application services). */
function knownProtocols(): Record<string, unknown> {
  return {};
}

/** 404 for a protocol no application service provides (which, here, is every protocol). */
function requireProtocol(protocol: string): void {
  if (!Object.hasOwn(knownProtocols(), protocol)) throw notFound(`Unknown protocol ${protocol}`);
}

/** `GET /_matrix/client/v3/thirdparty/protocols` */
export async function getProtocols(ctx: RequestContext): Promise<Record<string, unknown>> {
  await ctx.requireAuth();
  return knownProtocols();
}

/** `GET /_matrix/client/v3/thirdparty/protocol/{protocol}` */
export async function getProtocol(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  await ctx.requireAuth();
  requireProtocol(p.protocol!);
  return {};
}

/** `GET /_matrix/client/v3/thirdparty/location/{protocol}` */
export async function getLocationsForProtocol(ctx: RequestContext, p: Record<string, string>): Promise<unknown[]> {
  await ctx.requireAuth();
  // "404: No portal rooms were found" — with no bridge for the protocol there are none.
  requireProtocol(p.protocol!);
  return [];
}

/** `GET /_matrix/client/v3/thirdparty/user/{protocol}` */
export async function getUsersForProtocol(ctx: RequestContext, p: Record<string, string>): Promise<unknown[]> {
  await ctx.requireAuth();
  // "404: The Matrix User ID was not found" — no bridge, so no third-party user maps to one.
  requireProtocol(p.protocol!);
  return [];
}

/** `GET /_matrix/client/v3/thirdparty/location` */
export async function getLocationsByAlias(ctx: RequestContext): Promise<unknown[]> {
  await ctx.requireAuth();
  const alias = ctx.query("alias");
  if (alias === undefined) throw missingParam("alias is required");
  if (!isRoomAlias(alias)) throw invalidParam("alias must be a room alias");
  // "404: The Matrix room alias was not found": decidable for this server's own aliases.
  if (serverOf(alias) === ctx.hs.serverName && !(await ctx.hs.store.read((tx) => tx.get("aliases", alias)))) {
    throw notFound(`Room alias ${alias} not found`);
  }
  return [];
}

/** `GET /_matrix/client/v3/thirdparty/user` */
export async function getUsersByUserId(ctx: RequestContext): Promise<unknown[]> {
  await ctx.requireAuth();
  const userId = ctx.query("userid");
  if (userId === undefined) throw missingParam("userid is required");
  if (!isCompliantUserId(userId)) throw invalidParam("userid must be a user ID");
  // "404: The Matrix User ID was not found": decidable for this server's own users.
  if (serverOf(userId) === ctx.hs.serverName && !(await ctx.hs.store.read((tx) => tx.get("accounts", userId)))) {
    throw notFound(`User ${userId} not found`);
  }
  return [];
}
