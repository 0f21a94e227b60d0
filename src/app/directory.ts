/**
 * The app's room directory (the *Public rooms* page, src/app/rooms/): what the bundled Hydrogen
 * (hydrogen-view-sdk 0.3.1) lacks. Hydrogen has no public-room directory view and never publishes
 * the rooms it creates (its create-room request sets no `visibility`), so this page lists the
 * user's public rooms with *Publish* and *Unpublish* (`PUT /directory/list/room/{roomId}`) and the
 * global directory (`/publicRooms` without `server`: every reachable server's published rooms) with
 * *Join*, then opens the joined room in Hydrogen.
 *
 * The page has its own login: a device of the user's account ("Hyphae room directory") logged in
 * with a login token the worker mints for the app's account (`{ hyphae: "login-token" }`, as the
 * landing page's *Sign in* does) and kept in localStorage; a new login reuses that device, which
 * never uploads keys, so end-to-end encrypting clients do not list it. It does not borrow
 * Hydrogen's access token: Hydrogen's storage is Hydrogen's business, and the directory keeps
 * working when Hydrogen logs out or has never been opened. Only Hydrogen's session ID is read (`hydrogen_sessions_v1`), to
 * build the URL that opens a room in it.
 *
 * The pure parts (which rooms may be published, where to join, Hydrogen's room URL) are tested
 * without a page in test/app/directory.test.ts.
 */
import type { Pdu } from "../homeserver/events/types.ts";
import { stateKeyOf } from "../homeserver/events/types.ts";
import { eventPowerLevel, userPowerLevel } from "../homeserver/rooms/powerLevels.ts";
import { roomVersion } from "../homeserver/rooms/versions.ts";
import { api } from "./api.ts";

/** localStorage key of the directory page's own login. */
export const DIRECTORY_SESSION_KEY = "hyphae_directory_session";
/** Hydrogen's list of sessions in localStorage (its `SessionInfoStorage`). */
export const HYDROGEN_SESSIONS_KEY = "hydrogen_sessions_v1";

/** The directory page's login. */
export interface DirectorySession {
  userId: string;
  deviceId: string;
  accessToken: string;
}

/** A refused Matrix request: HTTP status, `errcode` and the server's message. */
export class ApiError extends Error {
  readonly status: number;
  readonly errcode: string;
  constructor(status: number, errcode: string, error: string) {
    super(`${error || "request failed"} (${status}${errcode ? ` ${errcode}` : ""})`);
    this.name = "ApiError";
    this.status = status;
    this.errcode = errcode;
  }
}

/** One request to this origin's homeserver; a non-2xx answer becomes an {@link ApiError}. */
export async function matrixRequest<T = Record<string, unknown>>(method: string, path: string, body?: unknown, token?: string): Promise<T> {
  const { status, statusText, json } = await api(method, path, body, token);
  if (status < 200 || status >= 300) throw new ApiError(status, typeof json.errcode === "string" ? json.errcode : "", typeof json.error === "string" ? json.error : statusText);
  return json as T;
}

/** The stored login of the directory page when it belongs to `userId`. */
export function storedDirectorySession(userId: string, storage: Pick<Storage, "getItem">): DirectorySession | undefined {
  try {
    const s = JSON.parse(storage.getItem(DIRECTORY_SESSION_KEY) ?? "null") as Partial<DirectorySession> | null;
    if (s && s.userId === userId && typeof s.deviceId === "string" && typeof s.accessToken === "string") return s as DirectorySession;
  } catch {
    // unreadable: log in again
  }
  return undefined;
}

/**
 * The directory page's client: requests with its own access token; a token the server no longer
 * knows (`M_UNKNOWN_TOKEN`: the device was deleted, the account's data was replaced) is replaced by a
 * fresh login and the request retried once.
 */
export class DirectoryClient {
  readonly userId: string;
  private readonly mintLoginToken: () => Promise<string>;
  private readonly storage: Pick<Storage, "getItem" | "setItem">;
  /** The login in use; undefined until the first request, and after its token was refused. */
  private session: DirectorySession | undefined;
  private loggingIn: Promise<DirectorySession> | undefined;

  /** `mintLoginToken` asks the worker for a login token of `userId`. */
  constructor(userId: string, mintLoginToken: () => Promise<string>, storage: Pick<Storage, "getItem" | "setItem">) {
    this.userId = userId;
    this.mintLoginToken = mintLoginToken;
    this.storage = storage;
    this.session = storedDirectorySession(userId, storage);
  }

  /** `POST /login` with `m.login.token`, keeping the device of the previous login. */
  private async login(): Promise<DirectorySession> {
    const token = await this.mintLoginToken();
    // The device of the last login (also when its token was just dropped): no new device per login.
    const previous = storedDirectorySession(this.userId, this.storage);
    const res = await matrixRequest<{ user_id: string; device_id: string; access_token: string }>("POST", "/_matrix/client/v3/login", {
      type: "m.login.token",
      token,
      initial_device_display_name: "Hyphae room directory",
      ...(previous ? { device_id: previous.deviceId } : {}),
    });
    if (res.user_id !== this.userId) throw new Error(`logged in as ${res.user_id}, not ${this.userId}`);
    const session = { userId: res.user_id, deviceId: res.device_id, accessToken: res.access_token };
    this.storage.setItem(DIRECTORY_SESSION_KEY, JSON.stringify(session));
    this.session = session;
    return session;
  }

  private token(): Promise<DirectorySession> {
    if (this.session) return Promise.resolve(this.session);
    this.loggingIn ??= this.login().finally(() => (this.loggingIn = undefined));
    return this.loggingIn;
  }

  /** An authenticated request (see the class comment for the retry). */
  async request<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T> {
    const session = await this.token();
    try {
      return await matrixRequest<T>(method, path, body, session.accessToken);
    } catch (err) {
      if (!(err instanceof ApiError) || err.errcode !== "M_UNKNOWN_TOKEN") throw err;
      if (this.session === session) this.session = undefined;
      return matrixRequest<T>(method, path, body, (await this.token()).accessToken);
    }
  }
}

/** A state event as `GET /rooms/{roomId}/state` returns it. */
export interface ClientStateEvent {
  type: string;
  state_key: string;
  sender: string;
  content: Record<string, unknown>;
}

/** One of the user's rooms as the *Publish* list shows it. */
export interface OwnRoom {
  roomId: string;
  name?: string;
  alias?: string;
  joinRule?: string;
  /** Whether the user may change the room's directory entry (the server's rule, client/directory.ts). */
  mayPublish: boolean;
}

/**
 * What the *Publish* list needs of a room, from its current state: its name, canonical alias, join
 * rule, and whether `userId` has the power to send `m.room.canonical_alias` — the homeserver's
 * condition for `PUT /directory/list/room` — by the same power-level rules the server applies
 * (v12 creators included).
 */
export function ownRoom(roomId: string, state: readonly ClientStateEvent[], userId: string): OwnRoom {
  const map = new Map<string, Pdu>();
  for (const e of state) map.set(stateKeyOf(e.type, e.state_key), { type: e.type, state_key: e.state_key, sender: e.sender, content: e.content } as unknown as Pdu);
  const content = (type: string): Record<string, unknown> | undefined => map.get(stateKeyOf(type, ""))?.content as Record<string, unknown> | undefined;
  const version = roomVersion(String(content("m.room.create")?.room_version ?? "1"));
  const mayPublish = version !== undefined && userPowerLevel(userId, map, version) >= eventPowerLevel("m.room.canonical_alias", true, map);
  const out: OwnRoom = { roomId, mayPublish };
  const name = content("m.room.name")?.name;
  const alias = content("m.room.canonical_alias")?.alias;
  const joinRule = content("m.room.join_rules")?.join_rule;
  if (typeof name === "string" && name) out.name = name;
  if (typeof alias === "string" && alias) out.alias = alias;
  if (typeof joinRule === "string") out.joinRule = joinRule;
  return out;
}

/** A `/publicRooms` entry ("PublishedRoomsChunk"), the fields the page shows. */
export interface PublicRoom {
  room_id: string;
  num_joined_members: number;
  name?: string;
  topic?: string;
  canonical_alias?: string;
  join_rule?: string;
}

/** The server part of a room ID or alias (`!id:server`, `#alias:server`); v12 room IDs have none. */
export function serverPart(id: string): string | undefined {
  const i = id.indexOf(":");
  return i > 0 && i < id.length - 1 ? id.slice(i + 1) : undefined;
}

/**
 * The servers to join a listed room through (`server_name`): the server of its canonical alias
 * (where it was published with that alias, so in the room), then the server in its room ID (room
 * versions before 12: the creator's server). Empty when neither is known; the homeserver then
 * tries the servers whose directories list the room.
 */
export function joinServers(room: Pick<PublicRoom, "room_id" | "canonical_alias">): string[] {
  const out: string[] = [];
  for (const id of [room.canonical_alias, room.room_id]) {
    const server = id ? serverPart(id) : undefined;
    if (server && !out.includes(server)) out.push(server);
  }
  return out;
}

/** `POST /join/{roomId}` with each server as a `server_name` query parameter. */
export function joinPath(room: Pick<PublicRoom, "room_id" | "canonical_alias">): string {
  const query = joinServers(room).map((s) => `server_name=${encodeURIComponent(s)}`).join("&");
  return `/_matrix/client/v3/join/${encodeURIComponent(room.room_id)}${query ? `?${query}` : ""}`;
}

/**
 * The URL that opens `roomId` in Hydrogen's session of `userId` on `origin` (Hydrogen's URL scheme
 * `#/session/<id>/room/<roomId>`), the most recently used such session; undefined when Hydrogen
 * has none (it was never opened, or logged out).
 */
export function hydrogenRoomUrl(sessionsJson: string | null, userId: string, origin: string, roomId: string): string | undefined {
  let sessions: unknown;
  try {
    sessions = JSON.parse(sessionsJson ?? "[]");
  } catch {
    return undefined;
  }
  if (!Array.isArray(sessions)) return undefined;
  const sameOrigin = (url: unknown): boolean => {
    try {
      return typeof url === "string" && new URL(url).origin === origin;
    } catch {
      return false;
    }
  };
  const mine = (sessions as { id?: unknown; userId?: unknown; homeserver?: unknown; lastUsed?: unknown }[])
    .filter((s) => typeof s?.id === "string" && s.userId === userId && sameOrigin(s.homeserver))
    .sort((a, b) => (typeof b.lastUsed === "number" ? b.lastUsed : 0) - (typeof a.lastUsed === "number" ? a.lastUsed : 0));
  const session = mine[0];
  return session ? `/client/#/session/${encodeURIComponent(session.id as string)}/room/${encodeURIComponent(roomId)}` : undefined;
}
