/** One request of the app's pages to this origin's homeserver (the worker answers it). */

/** The answer: HTTP status and text, and the JSON body (`{}` when it has none or is not JSON). */
export interface ApiAnswer {
  status: number;
  statusText: string;
  json: Record<string, unknown>;
}

export async function api(method: string, path: string, body?: unknown, token?: string): Promise<ApiAnswer> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let json: Record<string, unknown> = {};
  try {
    json = (await res.json()) as Record<string, unknown>;
  } catch {
    // an empty or non-JSON body: the status says what happened
  }
  return { status: res.status, statusText: res.statusText, json };
}
