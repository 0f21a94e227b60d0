/**
 * Registration tokens ("Token-authenticated registration", the `m.login.registration_token` UIA
 * stage), managed by server admins through Synapse's admin API at
 * `/_synapse/admin/v1/registration_tokens`, so the same tools and docs work against Hyphae.
 * key registration_tokens = token → RegistrationTokenRecord
 * Pending uses are not stored: they are the live UIA sessions holding the token (services/uia.ts),
 * which end with a restart just as those sessions do.
 */
import type { RequestContext, Services, Requester } from "../context.ts";
import type { WriteTx } from "../../storage/store.ts";
import { forbidden, invalidParam, notFound } from "../errors.ts";
import { pendingRegistrationTokens } from "../services/uia.ts";

/** A row of `registration_tokens`. */
export interface RegistrationTokenRecord {
  /** How many registrations may complete with it; null = unlimited. */
  usesAllowed: number | null;
  /** Registrations completed with it. */
  completed: number;
  /** Milliseconds since the epoch after which it is invalid; null = never. */
  expiryTime: number | null;
}

/** The admin API's view of a token (Synapse's field names). */
interface TokenJson {
  token: string;
  uses_allowed: number | null;
  pending: number;
  completed: number;
  expiry_time: number | null;
}

/** The spec's token grammar: 1–64 characters of `[A-Za-z0-9._~-]`. */
const TOKEN_RE = /^[A-Za-z0-9._~-]{1,64}$/;
const TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-";

function isValid(record: RegistrationTokenRecord, pending: number, now: number): boolean {
  if (record.expiryTime !== null && record.expiryTime <= now) return false;
  return record.usesAllowed === null || pending + record.completed < record.usesAllowed;
}

/**
 * Whether `token` may be used for a registration now. When it may, `reserve` runs before anything
 * else can interleave, so two sessions cannot both take a token's last use.
 */
export async function checkRegistrationToken(hs: Services, token: string, reserve?: () => void): Promise<boolean> {
  if (!TOKEN_RE.test(token)) return false;
  const record = await hs.store.read((tx) => tx.get<RegistrationTokenRecord>("registration_tokens", token));
  if (!record || !isValid(record, pendingRegistrationTokens(hs).get(token) ?? 0, hs.clock())) return false;
  reserve?.();
  return true;
}

/** Counts one completed registration with `token`, in the transaction that creates the account. */
export async function completeRegistrationToken(tx: WriteTx, token: string): Promise<void> {
  const record = await tx.get<RegistrationTokenRecord>("registration_tokens", token);
  // An admin may have deleted the token meanwhile; the registration it admitted still stands.
  if (record) tx.put("registration_tokens", token, { ...record, completed: record.completed + 1 });
}

function toJson(token: string, record: RegistrationTokenRecord, pending: Map<string, number>): TokenJson {
  return { token, uses_allowed: record.usesAllowed, pending: pending.get(token) ?? 0, completed: record.completed, expiry_time: record.expiryTime };
}

async function requireAdmin(ctx: RequestContext): Promise<Requester> {
  const me = await ctx.requireAuth();
  if (!me.admin) throw forbidden("You are not a server admin");
  return me;
}

/** `uses_allowed`: a non-negative integer or null. */
function readUsesAllowed(v: unknown): number | null {
  if (v === null) return null;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw invalidParam("uses_allowed must be a non-negative integer or null");
  return v;
}

/** `expiry_time`: milliseconds since the epoch, not in the past, or null. */
function readExpiryTime(v: unknown, now: number): number | null {
  if (v === null) return null;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw invalidParam("expiry_time must be an integer or null");
  if (v < now) throw invalidParam("expiry_time must not be in the past");
  return v;
}

/** `GET /_synapse/admin/v1/registration_tokens` */
export async function getRegistrationTokens(ctx: RequestContext): Promise<Record<string, unknown>> {
  await requireAdmin(ctx);
  const validParam = ctx.query("valid");
  if (validParam !== undefined && validParam !== "true" && validParam !== "false") throw invalidParam("valid must be true or false");
  const rows = await ctx.hs.store.read((tx) => tx.range<RegistrationTokenRecord>("registration_tokens"));
  const pending = pendingRegistrationTokens(ctx.hs);
  const now = ctx.hs.clock();
  const tokens = rows
    .filter((r) => validParam === undefined || isValid(r.value, pending.get(r.key) ?? 0, now) === (validParam === "true"))
    .map((r) => toJson(r.key, r.value, pending));
  return { registration_tokens: tokens };
}

/** `GET /_synapse/admin/v1/registration_tokens/{token}` */
export async function getRegistrationToken(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  await requireAdmin(ctx);
  const token = p.token!;
  const record = await ctx.hs.store.read((tx) => tx.get<RegistrationTokenRecord>("registration_tokens", token));
  if (!record) throw notFound(`No such registration token: ${token}`);
  return { ...toJson(token, record, pendingRegistrationTokens(ctx.hs)) };
}

/** `POST /_synapse/admin/v1/registration_tokens/new` */
export async function postRegistrationToken(ctx: RequestContext): Promise<Record<string, unknown>> {
  const hs = ctx.hs;
  await requireAdmin(ctx);
  const body = await ctx.json({ allowEmpty: true });
  let token: string | undefined;
  if (body.token !== undefined) {
    if (typeof body.token !== "string" || !TOKEN_RE.test(body.token)) {
      throw invalidParam("token must consist only of characters matched by the regex [A-Za-z0-9._~-] and be at most 64 characters");
    }
    token = body.token;
  }
  let length = 16;
  if (body.length !== undefined) {
    if (token !== undefined) throw invalidParam("length cannot be given with token");
    if (typeof body.length !== "number" || !Number.isInteger(body.length) || body.length < 1 || body.length > 64) {
      throw invalidParam("length must be an integer between 1 and 64");
    }
    length = body.length;
  }
  const record: RegistrationTokenRecord = {
    usesAllowed: body.uses_allowed === undefined ? null : readUsesAllowed(body.uses_allowed),
    completed: 0,
    expiryTime: body.expiry_time === undefined ? null : readExpiryTime(body.expiry_time, hs.clock()),
  };
  const chosen = token;
  const created = await hs.store.write(async (tx) => {
    if (chosen !== undefined) {
      if (await tx.get("registration_tokens", chosen)) throw invalidParam(`Token already in use: ${chosen}`);
      tx.put("registration_tokens", chosen, record);
      return chosen;
    }
    // A generated token retries on the (unlikely) collision with an existing one.
    for (let attempt = 0; attempt < 5; attempt++) {
      const candidate = Array.from(hs.random(length), (b) => TOKEN_ALPHABET[b % TOKEN_ALPHABET.length]).join("");
      if (await tx.get("registration_tokens", candidate)) continue;
      tx.put("registration_tokens", candidate, record);
      return candidate;
    }
    throw invalidParam("Could not generate a unique token; ask for a longer one");
  });
  return { ...toJson(created, record, new Map()) };
}

/** `PUT /_synapse/admin/v1/registration_tokens/{token}` */
export async function putRegistrationToken(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  const hs = ctx.hs;
  await requireAdmin(ctx);
  const token = p.token!;
  const body = await ctx.json({ allowEmpty: true });
  const changes: Partial<RegistrationTokenRecord> = {};
  if (body.uses_allowed !== undefined) changes.usesAllowed = readUsesAllowed(body.uses_allowed);
  if (body.expiry_time !== undefined) changes.expiryTime = readExpiryTime(body.expiry_time, hs.clock());
  const updated = await hs.store.write(async (tx) => {
    const record = await tx.get<RegistrationTokenRecord>("registration_tokens", token);
    if (!record) throw notFound(`No such registration token: ${token}`);
    const next = { ...record, ...changes };
    tx.put("registration_tokens", token, next);
    return next;
  });
  return { ...toJson(token, updated, pendingRegistrationTokens(hs)) };
}

/** `DELETE /_synapse/admin/v1/registration_tokens/{token}` */
export async function deleteRegistrationToken(ctx: RequestContext, p: Record<string, string>): Promise<Record<string, unknown>> {
  await requireAdmin(ctx);
  const token = p.token!;
  await ctx.hs.store.write(async (tx) => {
    if (!(await tx.get("registration_tokens", token))) throw notFound(`No such registration token: ${token}`);
    tx.delete("registration_tokens", token);
  });
  return {};
}
