/**
 * The start-up failures of issue 11 item 8, shared by the start-up test (through `npm run serve` in
 * this checkout) and the install test (in a production install): how to prepare each, and what its
 * one line must say.
 */
import { mkdir, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { openNodeStore } from "../../src/node/storage.ts";

/**
 * Every path under `root` with its size (undefined if `root` does not exist). SQLite's own `-wal`
 * and `-shm` companions of an existing database are left out: opening the database to read its
 * server name may leave them (node:sqlite's WAL mode), and they hold no new data.
 */
export async function snapshot(root: string): Promise<string[] | undefined> {
  try {
    await stat(root);
  } catch {
    return undefined;
  }
  const out: string[] = [];
  for (const name of (await readdir(root, { recursive: true })).sort()) {
    if (/\.sqlite-(?:wal|shm)$/.test(name)) continue;
    out.push(`${name}:${(await stat(join(root, name))).size}`);
  }
  return out;
}

/** A case: how to prepare it (returns the args), and what its one line must say. */
export interface Case {
  name: string;
  prepare: (data: string, base: string) => Promise<string[]>;
  says: RegExp;
}

const SEED = new Uint8Array(32).fill(3);

/** The cases; `busyPort` is a port something else holds. */
export function startupCases(busyPort: number): Case[] {
  return [
    { name: "bad flag", prepare: async (data) => ["--data", data, "--prot", "1"], says: /unknown argument --prot/ },
    {
      name: "config file that is not JSON",
      prepare: async (data, base) => {
        await writeFile(join(base, "c.json"), "{ nope");
        return ["--config", join(base, "c.json"), "--data", data];
      },
      says: /c\.json is not valid JSON/,
    },
    {
      name: "config with a bad rate limit",
      prepare: async (data, base) => {
        await writeFile(join(base, "c.json"), JSON.stringify({ rc_login: { failed_attempts: { per_second: -1 } } }));
        return ["--config", join(base, "c.json"), "--data", data];
      },
      says: /rc_login\.failed_attempts\.per_second must be a positive number/,
    },
    {
      name: "config with a bad rc_federation",
      prepare: async (data, base) => {
        await writeFile(join(base, "c.json"), JSON.stringify({ rc_federation: { concurrent: 0 } }));
        return ["--config", join(base, "c.json"), "--data", data];
      },
      says: /rc_federation\.concurrent must be an integer/,
    },
    {
      name: "unknown default_room_version",
      prepare: async (data, base) => {
        await writeFile(join(base, "c.json"), JSON.stringify({ default_room_version: "99" }));
        return ["--config", join(base, "c.json"), "--data", data];
      },
      says: /default_room_version "99" is not a room version/,
    },
    { name: "unreadable config", prepare: async (data, base) => ["--config", join(base, "missing.json"), "--data", data], says: /cannot read config file .*missing\.json/ },
    { name: "busy port", prepare: async (data) => ["--port", String(busyPort), "--data", data], says: new RegExp(`cannot listen on 127\\.0\\.0\\.1:${"\\d+"} \\(http_port\\): the port is already in use`) },
    {
      name: "missing TLS file",
      prepare: async (data, base) => {
        await writeFile(join(base, "c.json"), JSON.stringify({ http_port: 0, https_port: 0, tls_cert: "nope.pem", tls_key: "nokey.pem" }));
        return ["--config", join(base, "c.json"), "--data", data];
      },
      says: /cannot read tls_cert .*nope\.pem/,
    },
    {
      name: "bad TLS file",
      prepare: async (data, base) => {
        await writeFile(join(base, "cert.pem"), "not a certificate");
        await writeFile(join(base, "key.pem"), "not a key");
        await writeFile(join(base, "c.json"), JSON.stringify({ http_port: 0, https_port: 0, tls_cert: "cert.pem", tls_key: "key.pem" }));
        return ["--config", join(base, "c.json"), "--data", data];
      },
      says: /tls_cert .*cert\.pem is not a PEM certificate/,
    },
    {
      name: "missing federation CA file",
      prepare: async (data, base) => {
        await writeFile(join(base, "c.json"), JSON.stringify({ server_name: "127.0.0.1:8448", http_port: 0, federation_custom_ca_list: ["missing-ca.pem"] }));
        return ["--config", join(base, "c.json"), "--data", data];
      },
      says: /cannot read federation_custom_ca_list file .*missing-ca\.pem/,
    },
    {
      name: "federation CA file without a certificate",
      prepare: async (data, base) => {
        await writeFile(join(base, "bad-ca.pem"), "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n");
        await writeFile(join(base, "c.json"), JSON.stringify({ server_name: "127.0.0.1:8448", http_port: 0, federation_custom_ca_list: ["bad-ca.pem"] }));
        return ["--config", join(base, "c.json"), "--data", data];
      },
      says: /federation_custom_ca_list file .*bad-ca\.pem holds no PEM certificate/,
    },
    {
      name: "federation CA file with a broken certificate",
      prepare: async (data, base) => {
        await writeFile(join(base, "broken-ca.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        await writeFile(join(base, "c.json"), JSON.stringify({ server_name: "127.0.0.1:8448", http_port: 0, federation_custom_ca_list: ["broken-ca.pem"] }));
        return ["--config", join(base, "c.json"), "--data", data];
      },
      says: /federation_custom_ca_list file .*broken-ca\.pem holds a certificate that cannot be read/,
    },
    {
      name: "corrupt database",
      prepare: async (data) => {
        await mkdir(data);
        await writeFile(join(data, "identity.seed"), SEED);
        await writeFile(join(data, "homeserver.sqlite"), "SQLite format 3\0 and then garbage");
        return ["--port", "0", "--data", data];
      },
      says: /cannot open the database in .*: .*file is not a database; refusing to start/,
    },
    {
      name: "seed file of the wrong size",
      prepare: async (data) => {
        await mkdir(data);
        await writeFile(join(data, "identity.seed"), new Uint8Array(5));
        return ["--port", "0", "--data", data];
      },
      says: /identity\.seed must hold exactly 32 bytes \(found 5\)/,
    },
    {
      name: "locked database",
      prepare: async (data) => {
        await mkdir(data);
        await writeFile(join(data, "identity.seed"), SEED);
        // This test process is alive, so its pid is a live owner.
        await writeFile(join(data, "homeserver.sqlite.lock"), String(process.pid));
        return ["--port", "0", "--data", data];
      },
      says: new RegExp(`homeserver\\.sqlite is in use by process ${process.pid}`),
    },
    {
      name: "server-name mismatch",
      prepare: async (data) => {
        const store = await openNodeStore(data);
        await store.write(async (tx) => tx.put("settings", "server_name", "other.example"));
        await store.close();
        await writeFile(join(data, "identity.seed"), SEED);
        return ["--port", "0", "--data", data];
      },
      says: /belongs to server "other\.example", not "[0-9a-f]{64}"; refusing to start/,
    },
  ];
}
