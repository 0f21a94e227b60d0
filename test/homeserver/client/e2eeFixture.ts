/** A homeserver on a memory store with users, devices and tokens written straight into the tables. */
import { tokenHash } from "../../../src/homeserver/auth/tokens.ts";
import { createHomeserver } from "../../../src/homeserver/homeserver.ts";
import type { Homeserver, HomeserverOptions } from "../../../src/homeserver/homeserver.ts";
import { createMemoryStore } from "../../../src/storage/memory.ts";
import { key, pos } from "../../../src/storage/store.ts";
import { nextStreamPos } from "../../../src/homeserver/context.ts";

export const SERVER = "test.local";

/** A test homeserver plus helpers to call it. */
export interface Fixture {
  hs: Homeserver;
  /** Adds a device (and the account if new); returns its access token. */
  device(localpart: string, deviceId: string, displayName?: string): Promise<string>;
  /** Writes a current membership row (and a room_state member entry) for a user. */
  membership(userId: string, roomId: string, membership: string): Promise<number>;
  call(method: string, path: string, token?: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; json: Record<string, unknown>; res: Response }>;
}

/** Builds a fixture. */
export async function fixture(options: Partial<HomeserverOptions> = {}): Promise<Fixture> {
  const hs = await createHomeserver({ store: createMemoryStore(), seed: new Uint8Array(32).fill(7), serverName: SERVER, ...options });
  return {
    hs,
    async device(localpart, deviceId, displayName) {
      const userId = `@${localpart}:${SERVER}`;
      const token = `tok_${localpart}_${deviceId}`;
      await hs.services.store.write(async (tx) => {
        if (!(await tx.get("accounts", userId))) tx.put("accounts", userId, { userId, createdAt: 0 });
        tx.put("devices", key(userId, deviceId), { userId, deviceId, displayName, createdAt: 0 });
        tx.put("access_tokens", tokenHash(token), { userId, deviceId });
      });
      return token;
    },
    async membership(userId, roomId, membership) {
      const p = await hs.services.store.write(async (tx) => {
        const p = await nextStreamPos(tx);
        tx.put("memberships", key(userId, roomId), { membership, eventId: `$m${p}`, streamPos: p });
        tx.put("room_state", key(roomId, "m.room.member", userId), `$m${p}`);
        // The timeline entry, as the room server writes it (events + stream), minus signatures.
        const pdu = { type: "m.room.member", state_key: userId, sender: userId, room_id: roomId, content: { membership } };
        tx.put("events", `$m${p}`, { eventId: `$m${p}`, roomId, pdu, streamPos: p });
        tx.put("stream", pos(p), { roomId, eventId: `$m${p}` });
        return p;
      });
      hs.services.notifier.notify(p);
      return p;
    },
    async call(method, path, token, body, headers = {}) {
      const h: Record<string, string> = { ...headers };
      if (token) h.Authorization = `Bearer ${token}`;
      let payload: BodyInit | undefined;
      if (body instanceof Uint8Array) payload = body as unknown as BodyInit;
      else if (body !== undefined) {
        payload = JSON.stringify(body);
        h["Content-Type"] ??= "application/json";
      }
      const res = await hs.handle(new Request(`http://localhost${path}`, { method, headers: h, body: payload }));
      const text = await res.clone().text();
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(text) as Record<string, unknown>;
      } catch {
        /* not JSON (media) */
      }
      return { status: res.status, json, res };
    },
  };
}
