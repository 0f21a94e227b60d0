/** Plain-HTTP helpers the real-client tests share: JSON calls, registration, login, waiting. */
import { expect } from "vitest";

/** What `/register` and `/login` answer. */
export interface Session {
  user_id: string;
  access_token: string;
  device_id: string;
}

/** A JSON request with an optional access token; returns the status and the parsed body. */
export async function call(base: string, method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers["Authorization"] = `Bearer ${token}`;
  const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

/** Registers through User-Interactive Auth with the `m.login.dummy` stage (spec: "Account registration"). */
export async function register(base: string, username: string, password = `pw-${username}-secret`): Promise<Session> {
  const first = await call(base, "POST", "/_matrix/client/v3/register", { username, password });
  if (first.status === 200) return first.body as unknown as Session;
  expect(first.status, JSON.stringify(first.body)).toBe(401);
  const session = first.body["session"] as string | undefined;
  const second = await call(base, "POST", "/_matrix/client/v3/register", { username, password, auth: { type: "m.login.dummy", ...(session ? { session } : {}) } });
  expect(second.status, JSON.stringify(second.body)).toBe(200);
  return second.body as unknown as Session;
}

/** `m.login.password` login. */
export async function login(base: string, user: string, password: string): Promise<Session> {
  const r = await call(base, "POST", "/_matrix/client/v3/login", { type: "m.login.password", identifier: { type: "m.id.user", user }, password });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body as unknown as Session;
}

/** Rejects with a clear message if `promise` has not settled after `ms` (a hang guard, not a speed check). */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
