/**
 * Structured log lines: an event name followed by `key=value` fields (logfmt), so one grep or a log
 * shipper can pick fields out. Values with spaces, quotes or `=` are JSON-quoted. Callers pass only
 * what may be logged: never an access token, a password or a secret query parameter.
 */

/** A field value; undefined fields are left out. */
export type LogValue = string | number | boolean | undefined;

/** `event key=value key="value with spaces" …` */
export function logLine(event: string, fields: Record<string, LogValue>): string {
  let line = event;
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    const s = String(v);
    line += ` ${k}=${s === "" || /[\s"=\\]/.test(s) || /[^\x20-\x7e]/.test(s) ? JSON.stringify(s) : s}`;
  }
  return line;
}

/** Query parameters whose values are secrets (tokens, registration secrets): logged as `<redacted>`. */
const SECRET_PARAMS = new Set(["access_token", "token", "login_token", "loginToken", "refresh_token", "client_secret", "sid", "password"]);

/** The path and query of a URL fit for a log line: secret query values replaced. */
export function loggablePath(url: URL): string {
  if (!url.search) return url.pathname;
  const parts: string[] = [];
  for (const [name, value] of new URLSearchParams(url.search)) {
    parts.push(`${encodeURIComponent(name)}=${SECRET_PARAMS.has(name) ? "<redacted>" : encodeURIComponent(value)}`);
  }
  return `${url.pathname}?${parts.join("&")}`;
}
