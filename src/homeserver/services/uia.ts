/**
 * User-Interactive Authentication (client-server API "User-Interactive Authentication API").
 * Sessions live in memory per homeserver: a UIA exchange takes seconds, and a restart simply
 * makes the client start a new one.
 */
import { MatrixError, badJson, forbidden } from "../errors.ts";
import type { RequestContext, Services } from "../context.ts";
import { encodeBase64Url } from "../crypto/base64.ts";
import { verifyPassword } from "../auth/password.ts";
import { clientAddress, limitAddressFixed, limitKey, recordKey } from "../auth/rateLimit.ts";
import { checkRegistrationToken } from "../admin/registrationTokens.ts";
import { userIdFromIdentifier } from "../auth/identifiers.ts";
import { isObject } from "../validate.ts";
import type { AccountRecord } from "./accounts.ts";

/** What an endpoint accepts: each flow is a list of stages completed in order. */
export interface UiaOptions {
  flows: string[][];
  params?: Record<string, unknown>;
  /** The authenticated user whose identity stages must prove; undefined for registration. */
  userId?: string;
}

interface UiaSession {
  id: string;
  /** The operation the session was started for ("POST /register"); it may not change. */
  action: string;
  userId: string | undefined;
  completed: string[];
  createdAt: number;
  /** The client address that started it (undefined for local requests). */
  client: string | undefined;
  /** The registration token this session's `m.login.registration_token` stage accepted (a pending use). */
  registrationToken?: string;
  /** The request's parameters (its body without `auth`), for a later request that sends only `auth`. */
  params?: Record<string, unknown>;
  /** When every stage of a flow was done: a retry within RETRY_WINDOW_MS performs the operation again. */
  completedAt?: number;
  /** The account a completed registration created: a retry of the session answers with the same user. */
  registeredUserId?: string;
}

/** What a completed exchange proved beyond "the flow is done". */
export interface UiaResult {
  /** The token of a completed `m.login.registration_token` stage; the caller completes its use. */
  registrationToken?: string;
  /** The session's ID, to record what the operation created (`recordRegistration`). */
  session: string;
}

/** A session is forgotten this long after it was started. */
const SESSION_LIFETIME_MS = 30 * 60_000;
/**
 * A completed session answers retries this long after its completion ("Completed stages cannot be
 * retried by clients, therefore servers must return … the result of the API call if all stages
 * were completed"): long enough for a client whose response was lost, short enough that a
 * completed session is not a lasting credential.
 */
const RETRY_WINDOW_MS = 5 * 60_000;
/**
 * Request parameters are kept with a session up to this size (JSON): a registration's username,
 * password, device fields; a larger body is not remembered, and a later request must repeat it.
 */
const MAX_PARAMS_CHARS = 8 * 1024;
/** At most this many sessions are kept; past it the oldest goes (a client then starts anew). */
export const MAX_UIA_SESSIONS = 1000;
/** At most this many live sessions per client address; its oldest goes first. */
export const MAX_UIA_SESSIONS_PER_CLIENT = 20;

/** Sessions by ID, in creation order (a Map keeps insertion order), plus each client's sessions. */
interface SessionTable {
  byId: Map<string, UiaSession>;
  byClient: Map<string, Set<string>>;
}

const sessions = new WeakMap<Services, SessionTable>();

function forget(t: SessionTable, s: UiaSession): void {
  t.byId.delete(s.id);
  if (s.client === undefined) return;
  const mine = t.byClient.get(s.client);
  mine?.delete(s.id);
  if (mine?.size === 0) t.byClient.delete(s.client);
}

/** The session table, with expired sessions dropped: from the oldest end only, so a request does not scan them all. */
function sessionsOf(hs: Services): SessionTable {
  let t = sessions.get(hs);
  if (!t) sessions.set(hs, (t = { byId: new Map(), byClient: new Map() }));
  const cutoff = hs.clock() - SESSION_LIFETIME_MS;
  for (const s of t.byId.values()) {
    if (s.createdAt >= cutoff) break;
    forget(t, s);
  }
  return t;
}

/** How many UIA sessions a homeserver holds (tests). */
export function uiaSessionCount(hs: Services): number {
  return sessionsOf(hs).byId.size;
}

/** The 401 body of the UIA API: flows, params, session, completed, and an error if a stage failed. */
export class UiaRequired extends MatrixError {
  readonly body: { flows: { stages: string[] }[]; params: Record<string, unknown>; session: string; completed: string[] };
  constructor(body: UiaRequired["body"], failure?: { errcode: string; error: string }) {
    super(401, failure?.errcode ?? "M_UNAUTHORIZED", failure?.error ?? "User-interactive authentication required", failure ?? {});
    this.body = body;
    this.failed = failure !== undefined;
  }
  private readonly failed: boolean;

  override toJSON(): Record<string, unknown> {
    // `completed` is always there, empty at first (as Synapse sends it; clients read it to resume).
    const out: Record<string, unknown> = { ...this.body };
    // The first 401 carries no errcode; a failed stage adds the standard errcode/error fields.
    if (this.failed) Object.assign(out, { errcode: this.errcode, error: this.message });
    return out;
  }
}

/** `POST /_matrix/client/v3/register` → `POST /register`: the same operation under r0, v3 and v1. */
function actionOf(ctx: RequestContext): string {
  return `${ctx.request.method} ${ctx.url.pathname.replace(/^\/_matrix\/client\/(?:r0|v3|v1)/, "")}`;
}

/**
 * How many live sessions hold each registration token as a pending use ("m.login.registration_token":
 * a token is only used up once the registration completes, but pending uses count against it).
 */
export function pendingRegistrationTokens(hs: Services): Map<string, number> {
  const pending = new Map<string, number>();
  for (const s of sessionsOf(hs).byId.values()) {
    // A completed session's token is in its registration's hands (completed with the account).
    if (s.registrationToken !== undefined && s.completedAt === undefined) pending.set(s.registrationToken, (pending.get(s.registrationToken) ?? 0) + 1);
  }
  return pending;
}

/**
 * The live session `body.auth.session` names for this operation, if any (no error otherwise: the
 * exchange itself reports unknown and mismatched sessions). A completed session past its retry
 * window is forgotten here.
 */
function liveSession(ctx: RequestContext, body: Record<string, unknown>): UiaSession | undefined {
  const auth = body.auth;
  if (!isObject(auth) || typeof auth.session !== "string") return undefined;
  const all = sessionsOf(ctx.hs);
  const s = all.byId.get(auth.session);
  if (s?.completedAt !== undefined && ctx.hs.clock() - s.completedAt > RETRY_WINDOW_MS) {
    forget(all, s);
    return undefined;
  }
  return s;
}

/**
 * The body an operation behind UIA works with. A request that carries nothing but `auth` takes the
 * parameters its session remembers from an earlier request (Synapse's behaviour: a client may
 * resubmit only the auth dict, e.g. after finishing a stage elsewhere); any other body is its own.
 */
export function uiaRequestBody(ctx: RequestContext, body: Record<string, unknown>): Record<string, unknown> {
  if (Object.keys(body).some((k) => k !== "auth")) return body;
  const s = liveSession(ctx, body);
  if (!s?.params || s.action !== actionOf(ctx)) return body;
  return { ...s.params, auth: body.auth };
}

/** The user a completed registration session already created, if `body` names such a session. */
export function registeredBySession(ctx: RequestContext, body: Record<string, unknown>): string | undefined {
  const s = liveSession(ctx, body);
  return s?.action === actionOf(ctx) ? s.registeredUserId : undefined;
}

/** Records the account a registration session created: retries of the session answer with it. */
export function recordRegistration(hs: Services, sessionId: string, userId: string): void {
  const s = sessionsOf(hs).byId.get(sessionId);
  if (s) s.registeredUserId = userId;
}

/**
 * Runs the UIA exchange for one request. Returns when a flow is complete; throws the 401 (with
 * session, flows, completed) while stages remain, or when a stage failed.
 */
export async function requireUserInteractiveAuth(ctx: RequestContext, body: Record<string, unknown>, options: UiaOptions): Promise<UiaResult> {
  const hs = ctx.hs;
  const all = sessionsOf(hs);
  const action = actionOf(ctx);
  const auth = body.auth;
  if (auth !== undefined && !isObject(auth)) throw badJson("auth must be an object");

  const respond = (session: UiaSession, failure?: { errcode: string; error: string }): UiaRequired =>
    new UiaRequired(
      { flows: options.flows.map((stages) => ({ stages })), params: options.params ?? {}, session: session.id, completed: [...session.completed] },
      failure,
    );
  const remember = (session: UiaSession): void => {
    const { auth: _auth, ...params } = body;
    if (Object.keys(params).length === 0) return;
    // "If the client provides parameters, update what is persisted" (Synapse): the latest request's.
    if (JSON.stringify(params).length <= MAX_PARAMS_CHARS) session.params = params;
  };
  const newSession = (): UiaSession => {
    const client = clientAddress(ctx);
    // Starting sessions is limited like registering (an unauthenticated `POST /register {}` starts one each time).
    limitAddressFixed(ctx, "uia_session_starts", ctx.hs.config.rateLimits.rc_registration);
    const s: UiaSession = { id: encodeBase64Url(hs.random(18)), action, userId: options.userId, completed: [], createdAt: hs.clock(), client };
    if (client !== undefined) {
      let mine = all.byClient.get(client);
      if (!mine) all.byClient.set(client, (mine = new Set()));
      if (mine.size >= MAX_UIA_SESSIONS_PER_CLIENT) forget(all, all.byId.get(mine.values().next().value!)!);
      mine.add(s.id);
    }
    if (all.byId.size >= MAX_UIA_SESSIONS) forget(all, all.byId.values().next().value!);
    all.byId.set(s.id, s);
    remember(s);
    return s;
  };
  const result = (session: UiaSession): UiaResult =>
    session.registrationToken !== undefined ? { session: session.id, registrationToken: session.registrationToken } : { session: session.id };

  if (auth === undefined) throw respond(newSession());
  const a = auth;
  if (a.session !== undefined && typeof a.session !== "string") throw badJson("auth.session must be a string");
  let session: UiaSession;
  if (typeof a.session === "string") {
    const found = liveSession(ctx, body);
    if (!found) throw new MatrixError(400, "M_UNKNOWN", "Unknown or expired UIA session");
    // The session is bound to the operation (and user) it was created for.
    if (found.action !== action || found.userId !== options.userId) {
      throw new MatrixError(403, "M_FORBIDDEN", "Requested operation has changed during the UI authentication session");
    }
    session = found;
    // A retry of a completed exchange performs the operation (again); no stage is re-checked.
    if (session.completedAt !== undefined) return result(session);
    remember(session);
  } else {
    // A client may skip the initial probe and send a stage straight away.
    session = newSession();
  }

  if (a.type !== undefined) {
    if (typeof a.type !== "string") throw badJson("auth.type must be a string");
    const stage = a.type;
    const expected = options.flows.some(
      (flow) => session.completed.every((done, i) => flow[i] === done) && flow[session.completed.length] === stage,
    );
    const alreadyDone = session.completed.includes(stage);
    if (!expected && !alreadyDone) {
      throw respond(session, { errcode: "M_FORBIDDEN", error: `Authentication stage ${stage} is not expected here` });
    }
    if (!alreadyDone) {
      await attemptStage(ctx, session, stage, a, options, (error, errcode = "M_FORBIDDEN") => respond(session, { errcode, error }));
      session.completed.push(stage);
    }
  }

  const done = options.flows.some((flow) => flow.length === session.completed.length && flow.every((s, i) => session.completed[i] === s));
  if (!done) throw respond(session);
  session.completedAt = hs.clock();
  return result(session);
}

async function attemptStage(
  ctx: RequestContext,
  session: UiaSession,
  stage: string,
  auth: Record<string, unknown>,
  options: UiaOptions,
  fail: (error: string, errcode?: string) => MatrixError,
): Promise<void> {
  switch (stage) {
    case "m.login.dummy":
      return;
    case "m.login.password": {
      // Synapse limits failed UIA passwords per user with the rc_login.failed_attempts settings.
      const limitKeyOf = `uia|${options.userId ?? ""}`;
      limitKey(ctx, "rc_login.failed_attempts", limitKeyOf, "check");
      if (typeof auth.password !== "string") throw fail("Missing password");
      const userId = userIdFromIdentifier(auth, ctx.hs.serverName);
      const account = userId === undefined ? undefined : await ctx.hs.store.read((tx) => tx.get<AccountRecord>("accounts", userId));
      if (!account?.passwordHash || !(await verifyPassword(auth.password, account.passwordHash))) {
        recordKey(ctx, "rc_login.failed_attempts", limitKeyOf);
        throw fail("Invalid username or password");
      }
      // Valid credentials of someone else prove nothing about the requester: a plain 403, not a
      // stage to retry (Synapse: "Invalid auth"; sytest "requires UI auth user to match device owner").
      if (userId !== options.userId) throw forbidden("The authenticated user is not the user making the request");
      return;
    }
    case "m.login.registration_token": {
      // "Token-authenticated registration": the token must be valid now, counting the pending uses
      // of other sessions; this session then holds a pending use until registration completes.
      if (typeof auth.token !== "string") throw fail("Missing token", "M_MISSING_PARAM");
      const token = auth.token;
      const valid = await checkRegistrationToken(ctx.hs, token, () => (session.registrationToken = token));
      if (!valid) throw fail("Invalid registration token", "M_FORBIDDEN");
      return;
    }
    default:
      throw fail(`Unsupported authentication stage ${stage}`);
  }
}

/**
 * The flows that re-prove a logged-in user's identity: their password. An account created without
 * a password has no secret to re-prove, so its valid access token is all there is (dummy stage).
 */
export async function identityFlows(hs: Services, userId: string): Promise<string[][]> {
  const account = await hs.store.read((tx) => tx.get<AccountRecord>("accounts", userId));
  return account?.passwordHash ? [["m.login.password"]] : [["m.login.dummy"]];
}
