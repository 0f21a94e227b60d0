/**
 * Shared-secret registration, exactly as Synapse serves it at `/_synapse/admin/v1/register`, so
 * the same tools (`register_new_matrix_user`, test harnesses) work against Hyphae.
 * Nonces live in memory: they are single use and expire after a minute.
 */
import type { RequestContext, Services } from "../context.ts";
import { MatrixError, limitExceeded } from "../errors.ts";
import { constantTimeEqual } from "../auth/password.ts";
import { clientAddress } from "../auth/rateLimit.ts";
import { createAccount } from "../services/accounts.ts";

/** Synapse's NONCE_TIMEOUT. */
const NONCE_TIMEOUT_MS = 60_000;
/** Synapse's `UserTypes.ALL_USER_TYPES`. */
const USER_TYPES = ["support", "bot"];

/** At most this many nonces are outstanding; past it `GET` answers 429 until the oldest expires. */
export const MAX_NONCES = 1000;

/** Outstanding nonces → when issued, in issue order (a Map keeps insertion order). */
const nonces = new WeakMap<Services, Map<string, number>>();

/** The outstanding nonces, expired ones dropped from the oldest end (no full scan per request). */
function noncesOf(hs: Services): Map<string, number> {
  let m = nonces.get(hs);
  if (!m) nonces.set(hs, (m = new Map()));
  const now = hs.clock();
  for (const [n, t] of m) {
    if (now - t <= NONCE_TIMEOUT_MS) break;
    m.delete(n);
  }
  return m;
}

const hex = (bytes: Uint8Array): string => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

// Synapse answers these with SynapseError(400, msg), i.e. errcode M_UNKNOWN unless it says otherwise.
const synapseError = (status: number, msg: string, errcode = "M_UNKNOWN"): MatrixError => new MatrixError(status, errcode, msg);

/** `GET /_synapse/admin/v1/register` */
export async function getAdminRegisterNonce(ctx: RequestContext): Promise<Record<string, unknown>> {
  // Synapse hands out nonces whether or not a secret is configured; POST is what refuses.
  const all = noncesOf(ctx.hs);
  if (all.size >= MAX_NONCES) {
    // Refused rather than evicting: an unauthenticated flood must not invalidate an admin's nonce.
    const oldest = all.values().next().value!;
    throw limitExceeded(Math.max(1, oldest + NONCE_TIMEOUT_MS - ctx.hs.clock()));
  }
  const nonce = hex(ctx.hs.random(64));
  all.set(nonce, ctx.hs.clock());
  return { nonce };
}

/** The HMAC-SHA1 Synapse expects: nonce NUL username NUL password NUL admin|notadmin [NUL user_type]. */
export async function registrationMac(secret: string, nonce: string, username: string, password: string, admin: boolean, userType?: string): Promise<string> {
  const enc = new TextEncoder();
  const parts = [nonce, username, password, admin ? "admin" : "notadmin"];
  if (userType) parts.push(userType);
  const key = await crypto.subtle.importKey("raw", enc.encode(secret), { name: "HMAC", hash: "SHA-1" }, false, ["sign"]);
  return hex(new Uint8Array(await crypto.subtle.sign("HMAC", key, enc.encode(parts.join("\0")))));
}

/** `POST /_synapse/admin/v1/register` */
export async function postAdminRegister(ctx: RequestContext): Promise<Record<string, unknown>> {
  const hs = ctx.hs;
  const all = noncesOf(hs);
  const secret = hs.config.registrationSharedSecret;
  if (!secret) throw synapseError(400, "Shared secret registration is not enabled");
  const body = await ctx.json();

  if (!("nonce" in body)) throw synapseError(400, "nonce must be specified", "M_BAD_JSON");
  const nonce = body.nonce;
  if (typeof nonce !== "string" || !all.has(nonce)) throw synapseError(400, "unrecognised nonce");
  // Deleted before anything else is checked, so a nonce is never usable twice, even if invalid.
  all.delete(nonce);

  if (!("username" in body)) throw synapseError(400, "username must be specified", "M_BAD_JSON");
  const username = body.username;
  if (typeof username !== "string" || username.length > 512 || username.includes("\0")) throw synapseError(400, "Invalid username");
  if (!("password" in body)) throw synapseError(400, "password must be specified", "M_BAD_JSON");
  const password = body.password;
  if (typeof password !== "string" || password.length > 512 || password.includes("\0")) throw synapseError(400, "Invalid password");

  const admin = Boolean(body.admin);
  const userType = body.user_type;
  if (userType !== undefined && userType !== null && (typeof userType !== "string" || !USER_TYPES.includes(userType))) {
    throw synapseError(400, "Invalid user type");
  }
  if (!("mac" in body)) throw synapseError(400, "mac must be specified", "M_BAD_JSON");
  const gotMac = typeof body.mac === "string" ? body.mac : "";
  const wantMac = await registrationMac(secret, nonce, username, password, admin, (userType as string | null | undefined) ?? undefined);
  const enc = new TextEncoder();
  if (!constantTimeEqual(enc.encode(wantMac), enc.encode(gotMac))) throw synapseError(403, "HMAC incorrect");

  const displayname = typeof body.displayname === "string" ? body.displayname : undefined;
  const created = await createAccount(hs, {
    localpart: username.toLowerCase(),
    password,
    displayname,
    admin,
    userType: (userType as string | null | undefined) ?? undefined,
    login: { ip: clientAddress(ctx) },
  });
  return { user_id: created.userId, home_server: hs.serverName, access_token: created.session?.accessToken, device_id: created.session?.deviceId };
}
