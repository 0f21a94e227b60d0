/**
 * Server ACLs (`m.room.server_acl`, Client-Server "Server Access Control Lists (ACLs) for rooms",
 * server-server API "Server Access Control Lists"): whether a server may take part in a room.
 * Checked on every inbound PDU and room EDU, and by the endpoints that serve a room's data.
 */
import type { ReadTx } from "../../storage/store.ts";
import { currentStateContent } from "../roomserver/state.ts";

/** Appendices "Glob-style matching": `*` any run of characters, `?` one character; case-insensitive here. */
function globMatches(pattern: string, name: string): boolean {
  const p = pattern.toLowerCase();
  const s = name.toLowerCase();
  // Iterative matcher with one backtrack point per `*` (linear-ish, no RegExp built from input).
  let pi = 0;
  let si = 0;
  let star = -1;
  let mark = 0;
  while (si < s.length) {
    if (pi < p.length && (p[pi] === "?" || p[pi] === s[si])) {
      pi++;
      si++;
    } else if (pi < p.length && p[pi] === "*") {
      star = pi++;
      mark = si;
    } else if (star >= 0) {
      pi = star + 1;
      si = ++mark;
    } else return false;
  }
  while (pi < p.length && p[pi] === "*") pi++;
  return pi === p.length;
}

/** The host part of a server name: "the suspect server's port number must not be considered". */
function hostOf(serverName: string): string {
  if (serverName.startsWith("[")) {
    const end = serverName.indexOf("]");
    return end > 0 ? serverName.slice(0, end + 1) : serverName;
  }
  const colon = serverName.lastIndexOf(":");
  return colon >= 0 ? serverName.slice(0, colon) : serverName;
}

function isIpLiteral(host: string): boolean {
  return host.startsWith("[") || /^\d{1,3}(\.\d{1,3}){3}$/.test(host);
}

/** Whether an `m.room.server_acl` content lets `serverName` take part (the event schema's five steps). */
export function aclAllows(content: Record<string, unknown> | undefined, serverName: string): boolean {
  // 1. "If there is no m.room.server_acl event in the room state, allow."
  if (!content) return true;
  const host = hostOf(serverName);
  // 2. IP literals, when `allow_ip_literals` is present and false ("Defaults to true if missing or
  // otherwise not a boolean").
  if (content.allow_ip_literals === false && isIpLiteral(host)) return false;
  const list = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);
  // 3. deny, 4. allow, 5. otherwise deny (allow "defaults to an empty list").
  if (list(content.deny).some((g) => globMatches(g, host))) return false;
  return list(content.allow).some((g) => globMatches(g, host));
}

/** Whether the current ACL of `roomId` lets `serverName` take part. */
export async function serverAllowedInRoom(tx: ReadTx, roomId: string, serverName: string): Promise<boolean> {
  return aclAllows(await currentStateContent(tx, roomId, "m.room.server_acl", ""), serverName);
}
