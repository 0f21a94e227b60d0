/**
 * E2EE and media figures (sql.js store in memory), each next to the primitive it is built on, measured in the same run:
 * - the device-list part of an incremental `/sync` (one key change in the window) for a user in
 *   20 rooms of 200 members, computed from the window of news vs. by scanning every room's members;
 * - `keys/claim` through the request path vs. the raw store transaction it performs;
 * - a 96×96 crop thumbnail through the request path vs. calling the sharp thumbnailer directly.
 */
import sharp from "sharp";
import { createHomeserver } from "../src/homeserver/homeserver.ts";
import type { Homeserver } from "../src/homeserver/homeserver.ts";
import { deviceListChanges } from "../src/homeserver/services/e2ee.ts";
import { nextStreamPos, currentStreamPos } from "../src/homeserver/context.ts";
import { createSqliteStore } from "../src/storage/sqlite.ts";
import { key, pos, prefix } from "../src/storage/store.ts";
import { sharpThumbnailer } from "../src/node/thumbnailer.ts";
import type { Bench, Figure } from "./harness.ts";
import { rate, seedDevice, versus } from "./harness.ts";

const SERVER = "bench.test";
const ROOMS = 20;
const MEMBERS = 200;

async function homeserver(): Promise<Homeserver> {
  return createHomeserver({ store: await createSqliteStore(), seed: new Uint8Array(32).fill(3), serverName: SERVER, thumbnailer: sharpThumbnailer });
}

const req = (path: string, token: string, init: RequestInit = {}): Request =>
  new Request(`http://localhost${path}`, { ...init, headers: { Authorization: `Bearer ${token}`, ...(init.headers as Record<string, string>) } });

async function deviceListFigures(): Promise<Figure[]> {
  const hs = await homeserver();
  const me = `@me:${SERVER}`;
  await hs.services.store.write(async (tx) => {
    for (let r = 0; r < ROOMS; r++) {
      const roomId = `!room${r}:${SERVER}`;
      for (let m = -1; m < MEMBERS; m++) {
        const userId = m < 0 ? me : `@u${r}_${m}:${SERVER}`;
        const p = await nextStreamPos(tx);
        const eventId = `$m${p}`;
        tx.put("memberships", key(userId, roomId), { membership: "join", eventId, streamPos: p });
        tx.put("room_state", key(roomId, "m.room.member", userId), eventId);
        tx.put("events", eventId, { eventId, roomId, pdu: { type: "m.room.member", state_key: userId, sender: userId, content: { membership: "join" } }, streamPos: p });
        tx.put("stream", pos(p), { roomId, eventId });
      }
    }
  });
  const since = await currentStreamPos(hs.services.store);
  await hs.services.store.write(async (tx) => {
    const p = await nextStreamPos(tx);
    tx.put("device_list_stream", pos(p), { userId: `@u3_7:${SERVER}` });
  });
  const upTo = await currentStreamPos(hs.services.store);
  const windowed = await rate(() => hs.services.store.read((tx) => deviceListChanges(tx, me, since, upTo)), 700);
  const scan = await rate(() => hs.services.store.read((tx) => deviceListChanges(tx, me, since, upTo, 0)), 700);
  return [
    versus(
      `device lists of an incremental sync (${ROOMS} rooms × ${MEMBERS} members, 1 change)`,
      windowed, "syncs/s", "scanning every room's members", scan, "syncs/s", "sql.js store in memory",
    ),
  ];
}

async function claimFigures(): Promise<Figure[]> {
  // 400 devices with 50 one-time keys each (what Rust crypto keeps uploaded); claims go round-robin.
  const DEVICES = 400;
  const hs = await homeserver();
  const alice = `@alice:${SERVER}`;
  const bobToken = await seedDevice(hs, `@bob:${SERVER}`, "BDEV");
  await seedDevice(hs, alice, "ADEV");
  const fill = async (): Promise<void> =>
    hs.services.store.write(async (tx) => {
      for (let d = 0; d < DEVICES; d++) {
        for (let i = 0; i < 50; i++) tx.put("one_time_keys", key(alice, `D${d}`, `signed_curve25519:${String(i).padStart(6, "0")}`), { key: { key: `k${i}` }, seq: i });
      }
    });
  await fill();
  let n = 0;
  const viaHttp = await rate(async () => {
    const body = JSON.stringify({ one_time_keys: { [alice]: { [`D${n++ % DEVICES}`]: "signed_curve25519" } } });
    const res = await hs.handle(req("/_matrix/client/v3/keys/claim", bobToken, { method: "POST", body, headers: { "Content-Type": "application/json" } }));
    await res.arrayBuffer();
  }, 700);
  await fill();
  const raw = await rate(
    () =>
      hs.services.store.write(async (tx) => {
        const rows = await tx.range<{ seq: number }>("one_time_keys", { prefix: prefix(alice, `D${n++ % DEVICES}`) + "signed_curve25519:" });
        let row = rows[0];
        for (const r of rows) if (row && r.value.seq < row.value.seq) row = r;
        if (row) tx.delete("one_time_keys", row.key);
      }),
    700,
  );
  return [versus("keys/claim (one device of 50 keys) through the request path", viaHttp, "claims/s", "the raw store transaction (range + delete)", raw, "claims/s", "sql.js store in memory")];
}

async function thumbnailFigures(): Promise<Figure[]> {
  const hs = await homeserver();
  const token = await seedDevice(hs, `@alice:${SERVER}`, "ADEV");
  const png = new Uint8Array(await sharp({ create: { width: 1920, height: 1080, channels: 3, background: { r: 1, g: 2, b: 3 } } }).png().toBuffer());
  const up = await hs.handle(req("/_matrix/media/v3/upload", token, { method: "POST", body: png as unknown as BodyInit, headers: { "Content-Type": "image/png" } }));
  const mxc = ((await up.json()) as { content_uri: string }).content_uri.replace("mxc://", "");
  const path = `/_matrix/client/v1/media/thumbnail/${mxc}?width=96&height=96&method=crop`;
  const viaHttp = await rate(async () => {
    const res = await hs.handle(req(path, token));
    await res.arrayBuffer();
  }, 1500);
  const direct = await rate(() => sharpThumbnailer(png, "image/png", 96, 96, "crop"), 1500);
  return [versus("96×96 crop thumbnail of a 1920×1080 PNG through the request path", viaHttp, "thumbs/s", "the sharp thumbnailer called directly", direct, "thumbs/s", "generated on demand, not cached")];
}

/** The E2EE/media benchmark module. */
export const e2eeBench: Bench = async () => [...(await deviceListFigures()), ...(await claimFigures()), ...(await thumbnailFigures())];
