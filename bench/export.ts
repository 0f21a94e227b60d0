/**
 * Export and import of a whole homeserver (src/export): a memory-store homeserver with 2,000
 * messages and 8 MiB of media, exported to its encrypted file and imported into a fresh memory
 * store, each in file megabytes per second next to the raw primitive under it, measured in the
 * same run just before: AES-256-GCM over the same number of bytes in the file's 1 MiB chunks
 * (WebCrypto `encrypt` / `decrypt`). PBKDF2 is set to 1,000 iterations here so the figure is the
 * streaming, not the key derivation (600,000 iterations by default: a fixed cost per file).
 */
import { createHomeserver } from "../src/homeserver/homeserver.ts";
import { serverNameFromSeed } from "../src/homeserver/keys/server.ts";
import { createMemoryStore } from "../src/storage/memory.ts";
import { exportHomeserver, importHomeserver } from "../src/export/homeserver.ts";
import type { Bench, Figure } from "./harness.ts";
import { seedDevice, time, versus } from "./harness.ts";

const MESSAGES = 2000;
const MEDIA_BYTES = 8 << 20;
const PASSPHRASE = "a benchmark passphrase";
const CHUNK = 1 << 20;

/** The raw primitive: AES-256-GCM over `bytes` bytes in 1 MiB chunks; MB/s encrypting and decrypting. */
async function rawAesGcm(bytes: number): Promise<{ encrypt: number; decrypt: number }> {
  const key = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
  const plain = new Uint8Array(CHUNK).fill(7);
  const chunks = Math.ceil(bytes / CHUNK);
  const iv = (i: number): Uint8Array<ArrayBuffer> => {
    const n = new Uint8Array(12);
    new DataView(n.buffer).setUint32(7, i);
    return n;
  };
  const sealed: ArrayBuffer[] = [];
  const enc = await time(async () => {
    for (let i = 0; i < chunks; i++) sealed.push(await crypto.subtle.encrypt({ name: "AES-GCM", iv: iv(i) }, key, plain));
  });
  const dec = await time(async () => {
    for (let i = 0; i < chunks; i++) await crypto.subtle.decrypt({ name: "AES-GCM", iv: iv(i) }, key, sealed[i]!);
  });
  const mb = (chunks * CHUNK) / 1e6;
  return { encrypt: mb / (enc / 1000), decrypt: mb / (dec / 1000) };
}

export const exportBench: Bench = async () => {
  const seed = new Uint8Array(32).fill(3);
  const serverName = serverNameFromSeed(seed);
  const store = createMemoryStore();
  await store.write(async (tx) => tx.put("settings", "server_name", serverName));
  const hs = await createHomeserver({ store, seed, serverName });
  const token = await seedDevice(hs, `@bench:${serverName}`, "DEV");
  const call = async (method: string, path: string, body: BodyInit): Promise<Record<string, unknown>> => {
    const res = await hs.handle(new Request(`http://localhost${path}`, { method, body, headers: { Authorization: `Bearer ${token}` } }));
    return (await res.json()) as Record<string, unknown>;
  };
  const { room_id: roomId } = (await call("POST", "/_matrix/client/v3/createRoom", "{}")) as { room_id: string };
  for (let i = 0; i < MESSAGES; i++) {
    await call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t${i}`, JSON.stringify({ msgtype: "m.text", body: `message ${i} `.repeat(8) }));
  }
  const media = new Uint8Array(MEDIA_BYTES).map((_, i) => (i * 31) & 0xff);
  await call("POST", "/_matrix/media/v3/upload", media);

  let file = new Uint8Array(0);
  const exportMs = await time(async () => {
    file = new Uint8Array(await new Response(exportHomeserver(store, { seed, serverName }, PASSPHRASE, { iterations: 1000 })).arrayBuffer());
  });
  await hs.close();
  const target = createMemoryStore();
  const importMs = await time(() => importHomeserver(target, file, PASSPHRASE));
  const raw = await rawAesGcm(file.length);
  const mb = file.length / 1e6;
  const figures: Figure[] = [
    versus(`export, ${MESSAGES} messages + 8 MiB media (${mb.toFixed(1)} MB file)`, mb / (exportMs / 1000), "MB/s", "raw AES-256-GCM encrypt, 1 MiB chunks", raw.encrypt),
    versus("import of that file into an empty store (read twice: verify, then write)", mb / (importMs / 1000), "MB/s", "raw AES-256-GCM decrypt, 1 MiB chunks", raw.decrypt),
  ];
  await target.close();
  return figures;
};
