/**
 * *Sign in* on the landing page: nothing to type, nothing to remember. The worker creates the
 * homeserver's identity (an ed25519 seed in IndexedDB) the first time it starts; this page creates
 * the account on it with a random password, asks it for a login token
 * (`POST /_matrix/client/v1/login/get_token`) and hands the token to the bundled client, which logs
 * in with `m.login.token` the way it completes an SSO login (`/client/?loginToken=…`).
 *
 * The random password is kept in this origin's localStorage, next to the IndexedDB that holds the
 * homeserver itself: it guards nothing the origin's storage does not already hold, and lets the
 * page mint a new login token on the next *Sign in*.
 */
import { ask, registerWorker } from "./worker.ts";
import { api } from "./api.ts";
import type { ApiAnswer } from "./api.ts";

/** localStorage key of the account the landing page created. */
export const ACCOUNT_KEY = "hyphae_account";
/** Hydrogen's setting (prefix `hydrogen_setting_v1_`) naming the homeserver of an SSO/token login in progress. */
export const HYDROGEN_SSO_HOMESERVER = "hydrogen_setting_v1_sso_ongoing_login_homeserver";

/** The account kept by the landing page. */
export interface StoredAccount {
  userId: string;
  password: string;
}

const failure = (what: string, a: ApiAnswer): Error =>
  new Error(`${what} failed: ${a.status} ${String(a.json.errcode ?? "")} ${String(a.json.error ?? "")}`.trim());

/** The account this browser created, if any. */
export function storedAccount(): StoredAccount | undefined {
  try {
    const raw = localStorage.getItem(ACCOUNT_KEY);
    const parsed = raw ? (JSON.parse(raw) as Partial<StoredAccount>) : undefined;
    return typeof parsed?.userId === "string" && typeof parsed.password === "string" ? (parsed as StoredAccount) : undefined;
  } catch {
    return undefined;
  }
}

const randomToken = (bytes: number): string =>
  btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(bytes))))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");

/** A localpart from a display name (`[a-z0-9._=-]`), or `user`. */
export function localpartFor(name: string): string {
  const cleaned = name
    .normalize("NFKD")
    .toLowerCase()
    .replace(/[^a-z0-9._=-]+/g, "")
    .slice(0, 32);
  return cleaned || "user";
}

/** Registers through the dummy UIA stage; a taken name gets a random suffix. Returns the session. */
async function register(displayName: string): Promise<{ account: StoredAccount; accessToken: string }> {
  const password = randomToken(24);
  let username = localpartFor(displayName);
  for (let attempt = 0; attempt < 5; attempt++) {
    const first = await api("POST", "/_matrix/client/v3/register", { username, password });
    if (first.status === 400 && first.json.errcode === "M_USER_IN_USE") {
      username = `${localpartFor(displayName)}-${randomToken(3).toLowerCase().replace(/[^a-z0-9]/g, "x")}`;
      continue;
    }
    if (first.status !== 401) throw failure("registration", first);
    const second = await api("POST", "/_matrix/client/v3/register", {
      username,
      password,
      initial_device_display_name: "Hyphae sign-in",
      auth: { type: "m.login.dummy", session: first.json.session },
    });
    if (second.status !== 200) throw failure("registration", second);
    const account = { userId: second.json.user_id as string, password };
    if (displayName.trim()) {
      await api("PUT", `/_matrix/client/v3/profile/${encodeURIComponent(account.userId)}/displayname`, { displayname: displayName.trim() }, second.json.access_token as string);
    }
    return { account, accessToken: second.json.access_token as string };
  }
  throw new Error("registration failed: no free user name");
}

/** A login token for the session's user (one UIA round with the password). */
async function loginToken(userId: string, password: string, accessToken: string): Promise<string> {
  let a = await api("POST", "/_matrix/client/v1/login/get_token", {}, accessToken);
  if (a.status === 401 && a.json.session !== undefined) {
    a = await api("POST", "/_matrix/client/v1/login/get_token", {
      auth: { type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password, session: a.json.session },
    }, accessToken);
  }
  if (a.status !== 200 || typeof a.json.login_token !== "string") throw failure("login token", a);
  return a.json.login_token;
}

/**
 * The whole *Sign in*: the worker running (it creates the identity), persistent storage asked for,
 * the account created (or found again), and a login token for the client. Returns the token and
 * the Matrix ID; `openClient` then hands the token to Hydrogen.
 */
export async function signIn(displayName = ""): Promise<{ userId: string; loginToken: string; persisted: boolean }> {
  await registerWorker();
  // Only a page can ask (StorageManager.persist is not exposed to workers); best effort.
  const persisted = await navigator.storage?.persist?.().catch(() => false) ?? false;
  const known = storedAccount();
  if (known) {
    // A returning (or imported) user: the worker mints the token for its own account.
    const minted = await ask<{ userId: string; loginToken: string }>({ hyphae: "login-token", userId: known.userId } as { hyphae: string }).catch(() => undefined);
    if (minted) return { userId: minted.userId, loginToken: minted.loginToken, persisted };
    // The homeserver does not know it (site data cleared): a new account.
  }
  const { account, accessToken } = await register(displayName);
  localStorage.setItem(ACCOUNT_KEY, JSON.stringify(account));
  const token = await loginToken(account.userId, account.password, accessToken);
  // The sign-in device served its purpose; the client logs in as its own device.
  await api("POST", "/_matrix/client/v3/logout", {}, accessToken);
  return { userId: account.userId, loginToken: token, persisted };
}

/**
 * *Import*: the export file of another browser's (or a Node runner's) homeserver replaces this
 * fresh one; then the same *Sign in* as a returning user. Refused by the worker unless this
 * homeserver holds nothing but its generated identity.
 */
export async function importAndSignIn(file: Blob, passphrase: string): Promise<{ userId: string; loginToken: string }> {
  await registerWorker();
  await ask({ hyphae: "import", file, passphrase } as { hyphae: string }, 300_000);
  const minted = await ask<{ userId: string; loginToken: string }>({ hyphae: "login-token" });
  // The imported account's password stays unknown here; sign-ins go through the worker's tokens.
  localStorage.setItem(ACCOUNT_KEY, JSON.stringify({ userId: minted.userId, password: "" } satisfies StoredAccount));
  return minted;
}

/** *Export*: the whole homeserver as one file encrypted with `passphrase`. */
export async function exportFile(passphrase: string): Promise<Blob> {
  return (await ask<{ file: Blob }>({ hyphae: "export", passphrase } as { hyphae: string }, 300_000)).file;
}

/** Opens the bundled client with the token (Hydrogen's SSO completion path). */
export function openClient(loginToken: string): void {
  localStorage.setItem(HYDROGEN_SSO_HOMESERVER, location.origin);
  location.assign(`/client/?loginToken=${encodeURIComponent(loginToken)}`);
}
