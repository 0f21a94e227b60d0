/**
 * Robustness: a property-based sweep over EVERY route of the route table with hostile path
 * parameters, bodies, query strings and tokens. The property ("bad input gets a clear Matrix error;
 * nothing crashes"): no 5xx, no hang, every 4xx is `{ errcode: "M_…", error: string }`, nothing is
 * logged as an unhandled error, and the server still answers normal requests afterwards.
 *
 * Deterministic: a fixed seed (override with FUZZ_SEED=n, FUZZ_RUNS=n); fast-check prints the seed
 * and the counterexample path on failure.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { createHomeserver } from "../../src/homeserver/homeserver.ts";
import type { Homeserver } from "../../src/homeserver/homeserver.ts";
import type { Logger } from "../../src/homeserver/context.ts";
import { createMemoryStore } from "../../src/storage/memory.ts";
import { isMediaUpload, jsonBodyLimit } from "../../src/homeserver/http.ts";

const SERVER = "hs.test";
const SEED = Number(process.env.FUZZ_SEED ?? 20261127);
const RUNS = Number(process.env.FUZZ_RUNS ?? 60);
/** A request that takes longer than this counts as a hang (long-poll timeouts are forced to 0). */
const HANG_MS = 5_000;

/** One generated request. */
interface FuzzRequest {
  path: string;
  query: [string, string][];
  token: "none" | "alice" | "bob" | "garbage" | "fresh" | "malformed" | "query";
  body: { kind: "none" } | { kind: "text"; text: string; contentType?: string } | { kind: "bytes"; bytes: Uint8Array };
}

const loggedErrors: unknown[][] = [];
const logger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error: (...args: unknown[]) => void loggedErrors.push(args),
};

let now = 1_800_000_000_000;
let hs: Homeserver;
const ids = {
  alice: { userId: "", token: "", deviceId: "" },
  bob: { userId: "", token: "", deviceId: "" },
  roomId: "",
  eventId: "",
  mediaId: "",
  alias: `#fuzz:${SERVER}`,
};

async function call(method: string, path: string, body?: unknown, token?: string, rawBody?: BodyInit): Promise<{ status: number; json: any }> {
  const headers: Record<string, string> = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  const init: RequestInit = { method, headers };
  if (rawBody !== undefined) init.body = rawBody;
  else if (body !== undefined) init.body = JSON.stringify(body);
  const res = await hs.handle(new Request(`http://localhost${path}`, init));
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = text;
  }
  return { status: res.status, json };
}

async function ok(method: string, path: string, body?: unknown, token?: string, rawBody?: BodyInit): Promise<any> {
  const r = await call(method, path, body, token, rawBody);
  if (r.status !== 200) throw new Error(`${method} ${path} → ${r.status} ${JSON.stringify(r.json)}`);
  return r.json;
}

async function register(localpart: string): Promise<{ userId: string; token: string; deviceId: string }> {
  const b = await ok("POST", "/_matrix/client/v3/register", { username: localpart, password: "correct horse", auth: { type: "m.login.dummy" } });
  return { userId: b.user_id, token: b.access_token, deviceId: b.device_id };
}

let victims = 0;
/** A throwaway user's session, for routes that may end sessions or the account they are called with. */
async function freshToken(): Promise<string> {
  return (await register(`victim${++victims}`)).token;
}

// --- generators -----------------------------------------------------------------------------

/** Path segments (raw, as they appear in the URL): valid ones, and hostile ones. */
function validSegments(): string[] {
  return [
    ...PROTO_KEYS,
    ids.roomId, ids.eventId, ids.alice.userId, ids.bob.userId, ids.mediaId, SERVER, ids.alias,
    ids.alice.deviceId, "m.room.message", "m.room.name", "m.room.member", "m.read", "m.fully_read",
    "global", "override", "content", ".m.rule.master", "m.tag", "u.work", "displayname", "avatar_url", "txn1", "1", "0", "m.reference", "m.thread",
  ].map(encodeURIComponent);
}

const HOSTILE_SEGMENTS = [
  "", "%00", "..%2F..", "..", ".", "%ZZ", "%E2%82", "%", "@", "!", "$", "#", "%40", "%21", "%23", "%24", "@:", "!:", "@alice", "alice",
  `%40alice%3A${SERVER}%3A`, "%40%3A", "%F0%9F%98%80", "%C3%A9%C3%A9", "a".repeat(10_000), "%20", "%0A", "%2F", "null", "undefined", "-1", "NaN",
  "__proto__", "constructor", "toString", "hasOwnProperty", `!nope:${SERVER}`, `$nope:${SERVER}`, `@nobody:${SERVER}`, "%40alice%3Aother.example", "%21r%3Aother.example",
  "%23nope%3Ahs.test", "1e309", "%7B%7D", "[]",
];

/** The right kind of value for a named path parameter, so requests get past the lookup. */
function fittingSegments(name: string): string[] {
  const byName: Record<string, string[]> = {
    roomId: [ids.roomId],
    roomIdOrAlias: [ids.roomId, ids.alias],
    roomAlias: [ids.alias, `#new:${SERVER}`],
    eventId: [ids.eventId],
    userId: [ids.alice.userId, ids.bob.userId],
    deviceId: [ids.alice.deviceId],
    mediaId: [ids.mediaId],
    serverName: [SERVER],
    eventType: ["m.room.message", "m.room.name", "m.room.topic", "m.room.power_levels", "m.room.member", "m.reaction", "m.room.encrypted"],
    stateKey: ["", ids.alice.userId, ids.bob.userId],
    txnId: ["t1", "t2"],
    receiptType: ["m.read", "m.read.private", "m.fully_read"],
    type: ["m.direct", "m.fully_read", "m.push_rules", "org.example"],
    tag: ["m.favourite", "u.work"],
    keyName: ["displayname", "avatar_url", "m.tz"],
    scope: ["global"],
    kind: ["override", "content", "room", "sender", "underride"],
    ruleId: [".m.rule.master", "myrule", ids.roomId],
    relType: ["m.thread", "m.annotation", "m.reference"],
    version: ["1", "2"],
    sessionId: ["s1"],
    filterId: ["0", "1"],
    keyId: ["ed25519:auto"],
    fileName: ["a.txt"],
    protocol: ["irc"],
  };
  return (byName[name] ?? []).map(encodeURIComponent);
}

const segmentArb = (name: string): fc.Arbitrary<string> => {
  const fitting = fittingSegments(name);
  return fc.oneof(
    { weight: fitting.length > 0 ? 4 : 0, arbitrary: fc.constantFrom(...fitting, "x") },
    { weight: 2, arbitrary: fc.constantFrom(...validSegments()) },
    { weight: 1, arbitrary: fc.constantFrom(...PROTO_KEYS) },
    { weight: 3, arbitrary: fc.constantFrom(...HOSTILE_SEGMENTS) },
    { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 20 }).map(encodeURIComponent) },
  );
};

/** The fields handlers read, to be given wrong types. */
const FIELDS = [
  "body", "msgtype", "content", "membership", "user_id", "reason", "limit", "timeout", "filter", "device_keys", "one_time_keys",
  "fallback_keys", "auth", "type", "identifier", "password", "new_password", "room_version", "initial_state", "invite", "invite_3pid",
  "visibility", "name", "topic", "power_level_content_override", "creation_content", "preset", "room_alias_name", "is_direct",
  "username", "device_id", "initial_device_display_name", "inhibit_login", "refresh_token", "logout_devices", "devices",
  "display_name", "displayname", "avatar_url", "presence", "status_msg", "typing", "m.fully_read", "m.read", "m.read.private",
  "thread_id", "actions", "conditions", "pattern", "enabled", "kind", "app_id", "pushkey", "data", "lang", "app_display_name",
  "device_display_name", "profile_tag", "append", "room_id", "new_version", "server", "since", "include_all_networks",
  "third_party_instance_id", "search_term", "search_categories", "account_data", "event_fields", "event_format", "room",
  "messages", "master_key", "self_signing_key", "user_signing_key", "algorithm", "auth_data", "version", "rooms", "sessions",
  "first_message_index", "forwarded_count", "is_verified", "session_data", "token", "medium", "address", "client_secret", "sid",
  "id_server", "id_access_token", "send_attempt", "score", "order", "via", "ts", "dir", "event_id", "session", "keys",
  "timeout_ms", "user", "order_by", "event_context", "include_state", "groupings", "filter_id", "not_senders", "senders",
  "types", "not_types", "not_rooms", "contains_url", "lazy_load_members", "unread_thread_notifications", "redacts", "state_key",
];

/** Nesting far past any recursion limit (a stack overflow is a 500). */
const DEEP = 20_000;
const DEEP_JSON = `${"[".repeat(DEEP)}${"]".repeat(DEEP)}`;
const DEEP_BODY = `{"content":${DEEP_JSON}}`;
/** Stands for DEEP_JSON in generated values (too deep to build and stringify as a value). */
const DEEP_MARK = "\u0001deep\u0001";

/** JSON text of a generated value, with DEEP_MARK strings replaced by the deep nesting. */
const serialise = (v: unknown): string => JSON.stringify(v).replaceAll(JSON.stringify(DEEP_MARK), DEEP_JSON);

/** Strings of the right type but the wrong form: IDs without sigil or server, malformed MXC URIs, … */
const HOSTILE_STRINGS = [
  "@alice", "@:", "@alice:", "@ALICE:hs.test", `@alice:${SERVER}:1:2`, "!:", "!x", "$", "$x:y", "#", "#:", "#a:b:c", ":", "a:b", "mxc://", `mxc://${SERVER}/`,
  "mxc://../x", "mxc:///x", "http://x", "\u0000", "\ud800", "😀".repeat(300), "a".repeat(70_000), " ", "\n", "m.", ".", "*", "%00", "__proto__",
];

const nastyValue = fc.oneof(
  fc.constantFrom<unknown>(...HOSTILE_STRINGS),
  fc.constant<unknown>(DEEP_MARK),
  fc.constantFrom<unknown>(null, 0, -1, 1.5, -0.5, 1e308, -1e308, Number.MAX_SAFE_INTEGER + 2, true, false, "", [], {}, [null], [[]], { a: { b: { c: [] } } }, "x".repeat(70_000), "😀", "\u0000", "@", "!", "$", "#"),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.string({ maxLength: 10 }),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 3 }),
  fc.dictionary(fc.constantFrom(...FIELDS, "x", "m.text", "@alice:hs.test"), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
);

/** Plausible values, so a request sometimes gets past the first field to the next. */
const plausibleValue = (): fc.Arbitrary<unknown> =>
  fc.constantFrom<unknown>(
    "m.text", "hello", ids.roomId, ids.eventId, ids.alice.userId, ids.bob.userId, ids.alias, "join", "leave", "invite", "ban",
    "public", "private", "private_chat", 10, 1, { type: "m.login.dummy" }, { type: "m.id.user", user: "alice" },
    { msgtype: "m.text", body: "x" }, ["m.room.message"], "12", "m.megolm_backup.v1.curve25519-aes-sha2", "online",
  );

const fieldObject = (): fc.Arbitrary<Record<string, unknown>> =>
  fc.dictionary(fc.constantFrom(...FIELDS), fc.oneof({ weight: 3, arbitrary: nastyValue }, { weight: 1, arbitrary: plausibleValue() }), {
    minKeys: 1,
    maxKeys: 6,
  });

/** Every path into a JSON value (object keys and array indexes), up to a depth. */
function pathsOf(v: unknown, depth = 4, prefix: (string | number)[] = []): (string | number)[][] {
  if (depth === 0 || v === null || typeof v !== "object") return [];
  const entries: [string | number, unknown][] = Array.isArray(v) ? v.map((x, i) => [i, x]) : Object.entries(v);
  return entries.flatMap(([k, x]) => [[...prefix, k], ...pathsOf(x, depth - 1, [...prefix, k])]);
}

/** A copy of `v` with the value at `path` replaced (or removed when `value` is the REMOVE marker). */
const REMOVE = Symbol("remove");
function withValueAt(v: unknown, path: (string | number)[], value: unknown): unknown {
  if (path.length === 0) return value;
  const copy: any = Array.isArray(v) ? [...v] : { ...(v as object) };
  const [head, ...rest] = path;
  const own = Object.hasOwn(copy, head!) ? copy[head!] : undefined;
  const next = withValueAt(own, rest, value);
  if (next === REMOVE) {
    if (Array.isArray(copy)) copy.splice(head as number, 1);
    else delete copy[head!];
  } else {
    // defineProperty, so that a key named `__proto__` becomes an own property (as JSON.parse makes it).
    Object.defineProperty(copy, head!, { value: next, enumerable: true, writable: true, configurable: true });
  }
  return copy;
}

/** Keys that name members of Object.prototype: a handler indexing a plain object with them finds functions. */
const PROTO_KEYS = ["__proto__", "constructor", "toString", "hasOwnProperty", "valueOf"];

/** The paths of `v` that hold objects (the root included), where a key can be added. */
const objectPaths = (v: unknown): (string | number)[][] =>
  [[], ...pathsOf(v)].filter((p) => {
    const x = p.reduce<any>((acc, k) => acc?.[k], v);
    return x !== null && typeof x === "object" && !Array.isArray(x);
  });

/** A good body with one or two values swapped for wrong types, removed, or keyed by a prototype name. */
const mutatedTemplate = (template: unknown): fc.Arbitrary<unknown> => {
  const paths = pathsOf(template);
  if (paths.length === 0) return fc.constant(template);
  const valueAt = (p: (string | number)[]): unknown => p.reduce<any>((acc, k) => acc?.[k], template);
  const swap = fc.tuple(fc.constantFrom(...paths), fc.oneof({ weight: 4, arbitrary: nastyValue }, { weight: 1, arbitrary: fc.constant<unknown>(REMOVE) }));
  // A prototype-named key next to the real ones, holding a copy of a real value or a wrong one.
  const protoKey = fc
    .tuple(fc.constantFrom(...objectPaths(template)), fc.constantFrom(...PROTO_KEYS), fc.constantFrom(...paths), fc.boolean(), nastyValue)
    .map(([at, k, sibling, copy, nasty]) => [[...at, k], copy ? valueAt(sibling) : nasty] as [(string | number)[], unknown]);
  const mutation = fc.oneof({ weight: 4, arbitrary: swap }, { weight: 1, arbitrary: protoKey });
  return fc.array(mutation, { minLength: 0, maxLength: 2 }).map((ms) => ms.reduce<unknown>((acc, [path, value]) => {
    try {
      return withValueAt(acc, path, value);
    } catch {
      return acc; // the path no longer exists after an earlier mutation
    }
  }, template));
};

const bodyArb = (route: { method: string; path: string }): fc.Arbitrary<FuzzRequest["body"]> => {
  const template = templateFor(route);
  return fc.oneof(
    { weight: template === undefined ? 0 : 6, arbitrary: mutatedTemplate(template ?? {}).map((v) => ({ kind: "text" as const, text: serialise(v), contentType: "application/json" })) },
    { weight: 1, arbitrary: fc.constant({ kind: "none" as const }) },
    { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => ({ kind: "text" as const, text: JSON.stringify(v) ?? "null" })) },
    { weight: 5, arbitrary: fieldObject().map((o) => ({ kind: "text" as const, text: serialise(o), contentType: "application/json" })) },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom(DEEP_BODY, "", " ", "{", "not json", "{\"a\":}", "[1,2", "\"str\"", "123", "null", "true", "{\"__proto__\":{\"x\":1}}", "\uFEFF{}", "{}{}", "NaN")
        .map((text) => ({ kind: "text" as const, text, contentType: "application/json" })),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((bytes) => ({ kind: "bytes" as const, bytes })) },
  );
};

/** A valid request body per endpoint (by path suffix), mutated by the generator. */
function templateFor(route: { method: string; path: string }): unknown {
  const a = ids.alice.userId;
  const b = ids.bob.userId;
  const dev = ids.alice.deviceId;
  const password = { type: "m.login.password", identifier: { type: "m.id.user", user: "alice" }, password: "wrong" };
  const table: [RegExp, unknown][] = [
    [/POST .*\/register$/, { username: "fuzzy", password: "pw", auth: { type: "m.login.dummy" }, initial_device_display_name: "d", inhibit_login: false, device_id: "D1" }],
    [/POST .*\/login$/, password],
    [/POST .*\/login\/get_token$/, { auth: password }],
    [/POST .*\/account\/password$/, { new_password: "x", logout_devices: false, auth: password }],
    [/POST .*\/account\/deactivate$/, { auth: password, erase: false, id_server: "x" }],
    [/POST .*\/requestToken$/, { client_secret: "abc", email: "a@b.c", country: "GB", phone_number: "1", send_attempt: 1, next_link: "https://x" }],
    [/POST .*\/account\/3pid\/(add|bind|delete|unbind)$/, { client_secret: "abc", sid: "s", medium: "email", address: "a@b.c", id_server: "x", id_access_token: "t", auth: password }],
    [/PUT .*\/devices\/\{deviceId\}$/, { display_name: "x" }],
    [/DELETE .*\/devices\/\{deviceId\}$/, { auth: password }],
    [/POST .*\/delete_devices$/, { devices: [dev, "X"], auth: password }],
    [/POST .*\/createRoom$/, {
      preset: "private_chat", name: "n", topic: "t", invite: [b], visibility: "private", is_direct: false, room_version: "12", room_alias_name: "x",
      initial_state: [{ type: "m.room.topic", state_key: "", content: { topic: "x" } }], power_level_content_override: { users: { [a]: 100 }, events: { "m.room.name": 50 } },
      creation_content: { "m.federate": true, type: "m.space" }, invite_3pid: [{ id_server: "x", id_access_token: "t", medium: "email", address: "a@b.c" }],
    }],
    [/\/send\/\{eventType\}\/\{txnId\}$/, { msgtype: "m.text", body: "hi", "m.relates_to": { rel_type: "m.thread", event_id: ids.eventId, "m.in_reply_to": { event_id: ids.eventId } } }],
    [/PUT .*\/state\//, { name: "x", topic: "t", membership: "join", users: { [a]: 100 }, users_default: 0, events: {}, displayname: "x" }],
    [/\/redact\//, { reason: "r" }],
    [/\/(join|knock)\/\{roomIdOrAlias\}$|\/join$|\/leave$|\/forget$/, { reason: "r", third_party_signed: { sender: a, mxid: b, token: "t", signatures: {} } }],
    [/\/(invite|kick|ban|unban)$/, { user_id: b, reason: "r" }],
    [/\/upgrade$/, { new_version: "12", additional_creators: [b] }],
    [/\/search$/, { search_categories: { room_events: { search_term: "hello", keys: ["content.body"], filter: { limit: 5, rooms: [ids.roomId] }, order_by: "rank", event_context: { before_limit: 1, after_limit: 1, include_profile: true }, include_state: true, groupings: { group_by: [{ key: "room_id" }] } } } }],
    [/\/report/, { reason: "r", score: -100 }],
    [/\/filter$/, { room: { timeline: { limit: 5, types: ["m.room.message"], not_senders: [b] }, state: { lazy_load_members: true }, rooms: [ids.roomId] }, event_fields: ["content.body"], event_format: "client", presence: { types: ["m.presence"] }, account_data: { limit: 1 } }],
    [/\/typing\//, { typing: true, timeout: 1000 }],
    [/\/receipt\//, { thread_id: "main" }],
    [/\/read_markers$/, { "m.fully_read": ids.eventId, "m.read": ids.eventId, "m.read.private": ids.eventId }],
    [/\/account_data\//, { x: 1 }],
    [/\/tags\//, { order: 0.5 }],
    [/\/profile\//, { displayname: "x", avatar_url: `mxc://${SERVER}/${ids.mediaId}`, "m.tz": "Europe/London" }],
    [/\/presence\//, { presence: "online", status_msg: "x" }],
    [/\/pushrules\/.*\/enabled$/, { enabled: true }],
    [/\/pushrules\/.*\/actions$/, { actions: ["notify", { set_tweak: "sound", value: "default" }] }],
    [/\/pushrules\//, { actions: ["notify"], conditions: [{ kind: "event_match", key: "content.body", pattern: "x" }, { kind: "event_property_is", key: "content.x", value: 1 }], pattern: "x" }],
    [/\/pushers\/set$/, { kind: "http", app_id: "a", pushkey: "k", app_display_name: "a", device_display_name: "d", lang: "en", data: { url: "https://x.example/_matrix/push/v1/notify", format: "event_id_only" }, append: false, profile_tag: "p" }],
    [/\/directory\/room\//, { room_id: ids.roomId }],
    [/\/directory\/list\/room\//, { visibility: "public" }],
    [/POST .*\/publicRooms$/, { limit: 5, since: "", filter: { generic_search_term: "x", room_types: [null, "m.space"] }, include_all_networks: false, third_party_instance_id: "x" }],
    [/\/user_directory\/search$/, { search_term: "al", limit: 5 }],
    [/\/keys\/upload$/, {
      device_keys: { user_id: a, device_id: dev, algorithms: ["m.olm.v1.curve25519-aes-sha2"], keys: { [`ed25519:${dev}`]: "x", [`curve25519:${dev}`]: "y" }, signatures: { [a]: { [`ed25519:${dev}`]: "s" } } },
      one_time_keys: { "signed_curve25519:AAAA": { key: "x", signatures: { [a]: { [`ed25519:${dev}`]: "s" } } } },
      fallback_keys: { "signed_curve25519:BBBB": { key: "x", fallback: true, signatures: {} } },
    }],
    [/\/keys\/query$/, { device_keys: { [a]: [], [b]: [dev] }, timeout: 10 }],
    [/\/keys\/claim$/, { one_time_keys: { [a]: { [dev]: "signed_curve25519" } }, timeout: 10 }],
    [/\/keys\/device_signing\/upload$/, { master_key: { user_id: a, usage: ["master"], keys: { "ed25519:m": "m" } }, self_signing_key: { user_id: a, usage: ["self_signing"], keys: { "ed25519:s": "s" }, signatures: {} }, user_signing_key: { user_id: a, usage: ["user_signing"], keys: { "ed25519:u": "u" } }, auth: password }],
    [/\/keys\/signatures\/upload$/, { [a]: { [dev]: { user_id: a, device_id: dev, algorithms: [], keys: {}, signatures: { [a]: { "ed25519:m": "x" } } } } }],
    [/\/sendToDevice\//, { messages: { [b]: { "*": { x: 1 } }, [a]: { [dev]: { y: 2 } } } }],
    [/\/room_keys\/version/, { algorithm: "m.megolm_backup.v1.curve25519-aes-sha2", auth_data: { public_key: "x", signatures: {} }, version: "1" }],
    [/\/room_keys\/keys\/\{roomId\}\/\{sessionId\}$/, { first_message_index: 0, forwarded_count: 0, is_verified: false, session_data: { ciphertext: "x" } }],
    [/\/room_keys\/keys\/\{roomId\}$/, { sessions: { s1: { first_message_index: 0, forwarded_count: 0, is_verified: false, session_data: {} } } }],
    [/\/room_keys\/keys$/, { rooms: { [ids.roomId]: { sessions: { s1: { first_message_index: 0, forwarded_count: 0, is_verified: false, session_data: {} } } } } }],
    [/_synapse\/admin\/v1\/register$/, { nonce: "n", username: "u", password: "p", admin: false, mac: "m" }],
  ];
  const key = `${route.method} ${route.path}`;
  return table.find(([re]) => re.test(key))?.[1];
}

const QUERY_NAMES = [
  "limit", "from", "to", "dir", "filter", "since", "full_state", "set_presence", "ts", "recurse", "max_depth", "suggested_only",
  "server", "via", "server_name", "membership", "not_membership", "at", "width", "height", "method", "url", "allow_remote",
  "version", "animated", "user_id", "kind", "filename", "allow_redirect", "recurse", "include", "org.matrix.msc3874.exclude_threads",
];

const queryValue = fc.oneof(
  fc.constantFrom(`{"room":${'{"timeline":'.repeat(DEEP)}1${"}".repeat(DEEP)}}`, "", "-1", "0", "1", "abc", "1e400", "NaN", "Infinity", "9999999999999999999999", "0.5", "-0", "b", "f", "x", "{", "{}",
    "{\"room\":{\"timeline\":{\"limit\":\"x\"}}}", "{\"limit\":-5}", "[]", "s", "s99999999", "t1_2", "%", "\u0000", "true", "false", "😀",
    "m.room.message", SERVER, "http://127.0.0.1:1/"),
  fc.string({ maxLength: 12 }),
  fc.integer().map(String),
);

/** Stands for the newest key backup version (versions are never reused, and fuzzed DELETEs remove them). */
const CURRENT_BACKUP = "<current backup>";

/** Query parameters an endpoint needs to get past its first check (the generator may drop them). */
function baseQueryFor(route: { method: string; path: string }): [string, string][] {
  const p = route.path;
  if (p.endsWith("/messages")) return [["dir", "b"], ["limit", "5"]];
  if (p.endsWith("/register/available")) return [["username", "free"]];
  if (p.endsWith("/validity")) return [["token", "t"]];
  if (p.endsWith("/keys/changes")) return [["from", "0"], ["to", "99"]];
  if (p.includes("/room_keys/keys")) return [["version", CURRENT_BACKUP]];
  if (p.endsWith("/timestamp_to_event")) return [["ts", "1"], ["dir", "f"]];
  if (p.includes("/thumbnail/")) return [["width", "32"], ["height", "32"], ["method", "scale"]];
  if (p.endsWith("/preview_url")) return [["url", "https://example.org/"]];
  if (p.endsWith("/hierarchy")) return [["limit", "5"], ["max_depth", "2"]];
  return [];
}

/** Long-poll parameters only ever get values that do not wait. */
const timeoutValue = fc.oneof({ weight: 4, arbitrary: fc.constant("0") }, { weight: 1, arbitrary: fc.constantFrom("-1", "abc", "", "NaN", "-0", "0.5", "1e-9") });

const requestArb = (route: { method: string; path: string }): fc.Arbitrary<FuzzRequest> => {
  const params = [...route.path.matchAll(/\{([^}?]+)\??\}/g)].map((m) => [m[0], m[1]!] as const);
  return fc.record({
    segments: fc.tuple(...params.map(([, name]) => segmentArb(name))),
    query: fc.array(fc.tuple(fc.constantFrom(...QUERY_NAMES), queryValue), { maxLength: 4 }),
    keepBase: fc.boolean(),
    timeout: timeoutValue,
    token: fc.constantFrom<FuzzRequest["token"]>("none", "alice", "alice", "alice", "alice", "bob", "garbage", "malformed", "query"),
    body: bodyArb(route),
  }).map(({ segments, query, keepBase, timeout, token, body }) => {
    let path = route.path;
    params.forEach(([p], i) => (path = path.replace(p, segments[i] ?? "")));
    const base = keepBase ? baseQueryFor(route) : [];
    return { path, query: [...base, ...query, ["timeout", timeout], ["timeout_ms", timeout]], token: sessionEnding(route.path) && token !== "none" && token !== "garbage" ? "fresh" : token, body };
  });
};

/** Routes that may end the session or account they are called with; they get a throwaway user's token. */
const sessionEnding = (path: string): boolean => /\/(logout|logout\/all|account\/deactivate|account\/password|delete_devices|devices\/\{deviceId\})$/.test(path);

async function send(method: string, req: FuzzRequest): Promise<Response> {
  const headers: Record<string, string> = {};
  const token = req.token === "alice" ? ids.alice.token : req.token === "bob" ? ids.bob.token : req.token === "garbage" ? "syt_garbage" : req.token === "fresh" ? await freshToken() : undefined;
  if (token) headers.Authorization = `Bearer ${token}`;
  // A header that is not a bearer token, and the deprecated `access_token` query parameter.
  if (req.token === "malformed") headers.Authorization = "Basic YWxpY2U6cHc=";
  let query = req.token === "query" ? [...req.query, ["access_token", ids.alice.token] as [string, string]] : req.query;
  if (query.some(([, v]) => v === CURRENT_BACKUP)) {
    const latest = await call("GET", "/_matrix/client/v3/room_keys/version", undefined, token ?? ids.alice.token);
    query = query.map(([k, v]) => [k, v === CURRENT_BACKUP ? String(latest.json?.version ?? "1") : v]);
  }
  const init: RequestInit = { method, headers };
  if (method !== "GET" && req.body.kind === "text") {
    init.body = req.body.text;
    if (req.body.contentType) headers["Content-Type"] = req.body.contentType;
  } else if (method !== "GET" && req.body.kind === "bytes") {
    init.body = req.body.bytes as Uint8Array<ArrayBuffer>;
    headers["Content-Type"] = "application/octet-stream";
  }
  const qs = new URLSearchParams(query).toString();
  const request = new Request(`http://localhost${req.path}${qs ? `?${qs}` : ""}`, init);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`hang: no response within ${HANG_MS} ms`)), HANG_MS);
  });
  try {
    return await Promise.race([hs.handle(request), hang]);
  } finally {
    clearTimeout(timer);
  }
}

/** Outcomes per route (`FUZZ_STATS=1` prints them), to see that requests get past the first check. */
const stats = new Map<string, Map<string, number>>();

/** The property for one response. */
async function checkResponse(route: string, res: Response): Promise<void> {
  const text = await res.text();
  if (process.env.FUZZ_STATS) {
    const m = stats.get(route) ?? new Map<string, number>();
    const outcome = `${res.status}${res.status >= 400 ? ` ${/"errcode":"(\w+)"/.exec(text)?.[1] ?? ""}` : ""}`;
    m.set(outcome, (m.get(outcome) ?? 0) + 1);
    stats.set(route, m);
  }
  expect(res.status, `status ${res.status}: ${text.slice(0, 300)}`).toBeLessThan(500);
  if (res.status >= 400) {
    let body: any;
    try {
      body = JSON.parse(text);
    } catch {
      throw new Error(`${res.status} body is not JSON: ${text.slice(0, 200)}`);
    }
    // A User-Interactive Authentication challenge (401 with flows) carries an errcode only after a failed stage.
    if (res.status === 401 && Array.isArray(body?.flows) && body.errcode === undefined) return;
    expect(typeof body?.errcode, `errcode in ${text.slice(0, 300)}`).toBe("string");
    expect(body.errcode, text.slice(0, 300)).toMatch(/^M_[A-Z0-9_]+$/);
    expect(typeof body.error, `error in ${text.slice(0, 300)}`).toBe("string");
  }
  expect(loggedErrors, "an error was logged").toEqual([]);
}

/** The server still answers normal requests after a route was fuzzed. */
async function checkHealthy(): Promise<void> {
  const who = await call("GET", "/_matrix/client/v3/account/whoami", undefined, ids.alice.token);
  expect(who.status, JSON.stringify(who.json)).toBe(200);
  expect(who.json.user_id).toBe(ids.alice.userId);
  const sync = await call("GET", "/_matrix/client/v3/sync?timeout=0", undefined, ids.alice.token);
  expect(sync.status, JSON.stringify(sync.json)).toBe(200);
  expect(typeof sync.json.next_batch).toBe("string");
  const ev = await call("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(ids.roomId)}/event/${encodeURIComponent(ids.eventId)}`, undefined, ids.alice.token);
  expect([200, 403, 404], JSON.stringify(ev.json)).toContain(ev.status);
  // Read back what the fuzzed writes may have stored under odd keys (`__proto__` room IDs, tags, rule IDs …):
  // whatever was accepted must still be servable.
  const room = encodeURIComponent(ids.roomId);
  const me = encodeURIComponent(ids.alice.userId);
  const backup = await call("GET", "/_matrix/client/v3/room_keys/version", undefined, ids.alice.token);
  const reads: [string, string, unknown?][] = [
    ["GET", "/_matrix/client/v3/sync?timeout=0&full_state=true"],
    ["GET", `/_matrix/client/v3/room_keys/keys?version=${encodeURIComponent(String(backup.json?.version ?? "1"))}`],
    ["GET", `/_matrix/client/v3/user/${me}/rooms/${room}/tags`],
    ["GET", `/_matrix/client/v3/user/${me}/account_data/m.direct`],
    ["GET", "/_matrix/client/v3/pushrules/"],
    ["GET", "/_matrix/client/v3/pushers"],
    ["GET", "/_matrix/client/v3/devices"],
    ["GET", "/_matrix/client/v3/joined_rooms"],
    ["GET", "/_matrix/client/v3/notifications"],
    ["GET", `/_matrix/client/v3/profile/${me}`],
    ["GET", `/_matrix/client/v3/rooms/${room}/state`],
    ["GET", `/_matrix/client/v3/rooms/${room}/members`],
    ["GET", `/_matrix/client/v3/rooms/${room}/messages?dir=b&limit=50`],
    ["GET", `/_matrix/client/v3/rooms/${room}/aliases`],
    ["GET", `/_matrix/client/v1/rooms/${room}/threads`],
    ["GET", `/_matrix/client/v1/rooms/${room}/relations/${encodeURIComponent(ids.eventId)}`],
    ["GET", "/_matrix/client/v3/initialSync?limit=5"],
    ["GET", "/_matrix/client/v3/publicRooms"],
    ["GET", "/_matrix/client/v3/keys/changes?from=0&to=999999"],
    ["POST", "/_matrix/client/v3/keys/query", { device_keys: { [ids.alice.userId]: [], [ids.bob.userId]: [] } }],
    ["POST", "/_matrix/client/v3/search", { search_categories: { room_events: { search_term: "hello" } } }],
  ];
  for (const [method, path, body] of reads) {
    loggedErrors.length = 0;
    const r = await call(method, path, body, ids.alice.token);
    expect(r.status, `${method} ${path} after fuzzing: ${JSON.stringify(r.json).slice(0, 300)}`).toBeLessThan(500);
    expect(loggedErrors, `${method} ${path} logged an error`).toEqual([]);
  }
}

beforeAll(async () => {
  hs = await createHomeserver({
    store: createMemoryStore(),
    seed: new Uint8Array(32).fill(9),
    serverName: SERVER,
    clock: () => (now += 1),
    logger,
    config: { passwordIterations: 10, maxUploadBytes: 64 * 1024 },
  });
  ids.alice = await register("alice");
  ids.bob = await register("bob");
  ids.roomId = (await ok("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat", room_alias_name: "fuzz", invite: [ids.bob.userId] }, ids.alice.token)).room_id;
  await ok("POST", `/_matrix/client/v3/join/${encodeURIComponent(ids.roomId)}`, {}, ids.bob.token);
  ids.eventId = (await ok("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(ids.roomId)}/send/m.room.message/t1`, { msgtype: "m.text", body: "hello" }, ids.alice.token)).event_id;
  const up = await ok("POST", "/_matrix/media/v3/upload?filename=a.txt", undefined, ids.alice.token, new TextEncoder().encode("media bytes"));
  ids.mediaId = String(up.content_uri).split("/").pop()!;
});

afterAll(async () => {
  await hs?.close();
});

describe("every route answers bad input with a Matrix error", () => {
  it("lists the routes", () => {
    expect(routesUnderTest().length).toBeGreaterThan(100);
  });

  it("answers unknown paths and methods with a Matrix error", async () => {
    await fc.assert(
      fc.asyncProperty(anyPathArb(), async ({ method, path }) => {
        loggedErrors.length = 0;
        const token = ids.alice.token;
        const res = await hs.handle(new Request(`http://localhost${path}`, { method, headers: { Authorization: `Bearer ${token}` } }));
        await checkResponse(`${method} *`, res);
      }),
      { seed: SEED, numRuns: RUNS * 20 },
    );
    await checkHealthy();
  });

  it("fuzzes every route", async () => {
    const failures: string[] = [];
    for (const [i, route] of routesUnderTest().entries()) {
      // Each route gets its own seed derived from the run's seed, so the routes see different inputs.
      const seed = SEED + i;
      try {
        await fc.assert(
          fc.asyncProperty(requestArb(route), async (req) => {
            loggedErrors.length = 0;
            await checkResponse(`${route.method} ${route.path}`, await send(route.method, req));
          }),
          { seed, numRuns: RUNS, endOnFailure: false },
        );
        await checkHealthy();
      } catch (err) {
        failures.push(`${route.method} ${route.path}\n${describeError(err)}\nlogged: ${loggedErrors.map((a) => a.map(String).join(" ")).join("\n").slice(0, 800)}`);
        loggedErrors.length = 0;
      }
    }
    if (process.env.FUZZ_STATS) for (const [r, m] of stats) console.log(r, JSON.stringify(Object.fromEntries(m)));
    expect(failures, `seed ${SEED}\n${failures.join("\n\n")}`).toEqual([]);
  }, 240_000);
});

describe("the limits hold on every route", () => {
  /** A JSON object of exactly `bytes` bytes. */
  const jsonOf = (bytes: number): string => `{"x":"${"a".repeat(bytes - 8)}"}`;

  it("refuses an oversized body on every route that takes one (413, declared or streamed), and stays healthy", async () => {
    const failures: string[] = [];
    for (const route of routesUnderTest()) {
      if (route.method === "GET") continue;
      const path = route.path.replace(/\{([^}?]+)\??\}/g, (_, name: string) => fittingSegments(name)[0] ?? "x");
      const limit = isMediaUpload(path) ? 64 * 1024 : jsonBodyLimit(path);
      const body = jsonOf(limit + 1);
      for (const declared of [true, false]) {
        loggedErrors.length = 0;
        const token = sessionEnding(route.path) ? await freshToken() : ids.alice.token;
        const headers: Record<string, string> = { Authorization: `Bearer ${token}`, "Content-Type": "application/json" };
        if (declared) headers["Content-Length"] = String(body.length);
        const stream = new ReadableStream<Uint8Array>({
          start(c) {
            for (let i = 0; i < body.length; i += 16 * 1024) c.enqueue(new TextEncoder().encode(body.slice(i, i + 16 * 1024)));
            c.close();
          },
        });
        const req = new Request(`http://localhost${path}`, { method: route.method, headers, body: stream, duplex: "half" } as RequestInit);
        const started = Date.now();
        const res = await Promise.race([hs.handle(req), new Promise<undefined>((r) => setTimeout(r, HANG_MS))]);
        if (!res) {
          failures.push(`${route.method} ${path}: hang`);
          continue;
        }
        const text = await res.text();
        // Declared too large: a JSON route refuses before anything else. Streamed, or a media upload: refused
        // when the handler reads the body (one that refuses earlier, e.g. 403 or 409, never reads it).
        if (res.status >= 500 || (declared && res.status !== 413 && !isMediaUpload(path)) || loggedErrors.length > 0) {
          failures.push(`${route.method} ${path} (${declared ? "declared" : "streamed"}) → ${res.status} ${text.slice(0, 200)} in ${Date.now() - started} ms`);
        }
      }
    }
    expect(failures).toEqual([]);
    await checkHealthy();
  }, 120_000);

  it("answers huge client limits on every GET route without a 5xx or a hang", async () => {
    const huge = "1000000000";
    const failures: string[] = [];
    for (const route of routesUnderTest()) {
      if (route.method !== "GET") continue;
      const path = route.path.replace(/\{([^}?]+)\??\}/g, (_, name: string) => fittingSegments(name)[0] ?? "x");
      const query = new URLSearchParams([...baseQueryFor(route), ["limit", huge], ["max_depth", huge], ["timeout", "0"], ["timeout_ms", "0"]]);
      query.set("limit", huge);
      loggedErrors.length = 0;
      const res = await Promise.race([
        hs.handle(new Request(`http://localhost${path}?${query}`, { headers: { Authorization: `Bearer ${ids.alice.token}` } })),
        new Promise<undefined>((r) => setTimeout(r, HANG_MS)),
      ]);
      if (!res) failures.push(`${path}: hang`);
      else if (res.status >= 500 || loggedErrors.length > 0) failures.push(`${path} → ${res.status} ${(await res.text()).slice(0, 200)}`);
      else await res.body?.cancel();
    }
    // And the body-borne limits: search context, user directory, public rooms.
    for (const [path, body] of [
      ["/_matrix/client/v3/search", { search_categories: { room_events: { search_term: "hello", filter: { limit: 1e9 }, event_context: { before_limit: 1e9, after_limit: 1e9, include_profile: true } } } }],
      ["/_matrix/client/v3/user_directory/search", { search_term: "a", limit: 1e9 }],
      ["/_matrix/client/v3/publicRooms", { limit: 1e9 }],
    ] as const) {
      loggedErrors.length = 0;
      const r = await call("POST", path, body, ids.alice.token);
      if (r.status >= 500 || loggedErrors.length > 0) failures.push(`${path} → ${r.status} ${JSON.stringify(r.json).slice(0, 200)}`);
    }
    // And the filter-borne ones: inline filters of /sync, /messages and /context, and a stored
    // filter used by /sync, each with limits far past any cap (every `limit` a filter has).
    const hugeFilter = { limit: 1e9, account_data: { limit: 1e9 }, presence: { limit: 1e9 }, room: { timeline: { limit: 1e9 }, state: { limit: 1e9 }, ephemeral: { limit: 1e9 }, account_data: { limit: 1e9 } } };
    const stored = await call("POST", `/_matrix/client/v3/user/${encodeURIComponent(ids.alice.userId)}/filter`, hugeFilter, ids.alice.token);
    const room = encodeURIComponent(ids.roomId);
    const inline = encodeURIComponent(JSON.stringify(hugeFilter));
    const eventFilter = encodeURIComponent(JSON.stringify({ limit: 1e9, lazy_load_members: true }));
    for (const path of [
      `/_matrix/client/v3/sync?timeout=0&filter=${inline}`,
      `/_matrix/client/v3/sync?timeout=0&full_state=true&filter=${encodeURIComponent(String(stored.json.filter_id))}`,
      `/_matrix/client/v3/rooms/${room}/messages?dir=b&limit=1000000000&filter=${eventFilter}`,
      `/_matrix/client/v3/rooms/${room}/context/${encodeURIComponent(ids.eventId)}?limit=1000000000&filter=${eventFilter}`,
      `/_matrix/client/v3/rooms/${room}/relations/${encodeURIComponent(ids.eventId)}?limit=1000000000&recurse=true`,
      `/_matrix/client/v3/initialSync?limit=1000000000`,
    ]) {
      loggedErrors.length = 0;
      const r = await Promise.race([call("GET", path, undefined, ids.alice.token), new Promise<undefined>((res) => setTimeout(res, HANG_MS))]);
      if (!r) failures.push(`${path}: hang`);
      else if (r.status >= 500 || loggedErrors.length > 0) failures.push(`${path} → ${r.status} ${JSON.stringify(r.json).slice(0, 200)}`);
    }
    expect(failures).toEqual([]);
    await checkHealthy();
  }, 120_000);
});

describe("UIA sessions stay bounded with hostile parameters", () => {
  it("an oversized parameter set is not remembered; an auth-only request then works on its own body, and the server stays healthy", async () => {
    loggedErrors.length = 0;
    // Just under the JSON body limit of /register: far past what a session remembers.
    const big = { username: "bigparams", password: "pw", device_id: "BIG", initial_device_display_name: "d".repeat(jsonBodyLimit("/_matrix/client/v3/register") - 200) };
    const probe = await call("POST", "/_matrix/client/v3/register", big);
    expect(probe.status).toBe(401);
    // Only auth: nothing remembered, so a server-chosen user ID, not "bigparams".
    const done = await call("POST", "/_matrix/client/v3/register", { auth: { type: "m.login.dummy", session: probe.json.session } });
    expect(done.status).toBe(200);
    expect(done.json.user_id).not.toBe(`@bigparams:${SERVER}`);
    // A retried completed session with a hostile body answers with the same account, no 5xx.
    for (const body of [{ auth: { type: "m.login.dummy", session: probe.json.session }, username: 7 }, { auth: { session: probe.json.session, type: ["x"] } }, { auth: { session: probe.json.session }, inhibit_login: true }]) {
      const r = await call("POST", "/_matrix/client/v3/register", body);
      expect(r.status, JSON.stringify(r.json)).toBeLessThan(500);
      if (r.status === 200) expect(r.json.user_id).toBe(done.json.user_id);
    }
    expect(loggedErrors).toEqual([]);
    await checkHealthy();
  });
});

/** An assertion failure with fast-check's counterexample and the underlying cause. */
function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? `\ncause: ${err.cause.message}` : "";
  return `${err.message.replace(/\nHint:.*$/s, "").slice(0, 1500)}${cause.slice(0, 800)}`;
}

/** Paths built from the route table's literal segments and hostile ones, with any method. */
const anyPathArb = (): fc.Arbitrary<{ method: string; path: string }> => {
  const literals = [...new Set(hs.routes().flatMap((r) => r.path.split("/").filter((x) => x && !x.startsWith("{"))))];
  return fc.record({
    method: fc.constantFrom("GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "PROPFIND"),
    segments: fc.array(fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...literals) }, { weight: 2, arbitrary: fc.constantFrom(...validSegments(), ...HOSTILE_SEGMENTS) }), { minLength: 0, maxLength: 8 }),
    trailing: fc.constantFrom("", "/", "//", "?", "?x=%ZZ", "#frag"),
  }).map(({ method, segments, trailing }) => ({ method, path: `/${segments.join("/")}${trailing}` }));
};

/** The route table without the r0 aliases (they share their v3 handler). */
function routesUnderTest(): { method: string; path: string }[] {
  return hs.routes().filter((r) => !r.path.startsWith("/_matrix/client/r0/") && !r.path.startsWith("/_matrix/media/r0/"));
}
