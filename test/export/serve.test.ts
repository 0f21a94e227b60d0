/**
 * Moving a homeserver from the browser to an always-on machine and back, through the real
 * `npm run serve` child process: a homeserver built on IndexedDB (fake-indexeddb, as the Service
 * Worker stores it) is exported, `npm run serve -- --import FILE` serves it (same server name, same
 * accounts, rooms, history, E2EE keys, media), `--export` writes it back out, and that file
 * imports into a fresh IndexedDB. Refusals exit 1 with one line and leave no data directory.
 */
import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import { openAsBlob } from "node:fs";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createIndexedDbStore } from "../../src/storage/indexeddb.ts";
import { exportHomeserver, importHomeserver, readExport } from "../../src/export/homeserver.ts";
import { openNodeStore } from "../../src/node/storage.ts";
import { REPO, runServe, spawnServe } from "../node/spawnServe.ts";
import type { Spawned } from "../node/spawnServe.ts";
import { SEED, SERVER_NAME, client, dump, homeserverOn, populate, verify } from "./fixture.ts";
import type { Populated } from "./fixture.ts";

const PASSPHRASE = "a passphrase for moving day";
const BIN = join(REPO, "node_modules/.bin");
const envWith = (vars: Record<string, string>): { cwd: string; env: NodeJS.ProcessEnv } => ({
  cwd: REPO,
  env: { ...process.env, PATH: `${BIN}:${process.env.PATH ?? ""}`, HYPHAE_IMPORT_PASSPHRASE: "", HYPHAE_EXPORT_PASSPHRASE: "", ...vars },
});
const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false);

let work: string;
let browserFile: string;
let passphraseFile: string;
let populated: Populated;
let browserRows: Awaited<ReturnType<typeof dump>>;
const running: Spawned[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "hyphae-export-serve-"));
  // The browser side: the core on IndexedDB, filled through the API, exported while it runs.
  const store = await createIndexedDbStore({ name: "hyphae", indexedDB: new IDBFactory() });
  const hs = await homeserverOn(store);
  populated = await populate(client((r) => hs.handle(r)));
  const bytes = new Uint8Array(await new Response(exportHomeserver(store, { seed: SEED, serverName: SERVER_NAME }, PASSPHRASE)).arrayBuffer());
  browserRows = await dump(store);
  await hs.close();
  browserFile = join(work, "browser.hyphae");
  await writeFile(browserFile, bytes);
  passphraseFile = join(work, "passphrase.txt");
  await writeFile(passphraseFile, PASSPHRASE + "\n");
}, 120_000);

afterAll(async () => {
  for (const s of running) await s.stop("SIGKILL", true).catch(() => undefined);
  await rm(work, { recursive: true, force: true });
});

describe("npm run serve -- --import / --export", () => {
  it("--import FILE serves the browser's homeserver: same Matrix IDs, rooms, history, keys, media", async () => {
    const dataDir = join(work, "node");
    const served = await spawnServe(["--port", "0", "--data", dataDir, "--import", browserFile, "--passphrase-file", passphraseFile], "npm");
    running.push(served);
    expect(served.output()).toContain(`Hyphae imported ${SERVER_NAME} from ${browserFile} into ${dataDir}`);
    expect(served.output()).toContain(`(server name ${SERVER_NAME})`);
    await verify(client((r) => fetch(r), served.url), populated);
    expect((await served.stop("SIGTERM")).code).toBe(0);
    // The seed is in its file (mode 0600), not in the database.
    const seedFile = join(dataDir, "identity.seed");
    expect(new Uint8Array(await readFile(seedFile))).toEqual(SEED);
    expect((await stat(seedFile)).mode & 0o777).toBe(0o600);
    const store = await openNodeStore(dataDir);
    expect(await store.read((tx) => tx.get("settings", "identity_seed"))).toBeUndefined();
    await store.close();
  }, 180_000);

  it("refuses a second --import into that data directory, starts from it without, and refuses --export while it runs", async () => {
    const dataDir = join(work, "node");
    const again = await runServe(["--port", "0", "--data", dataDir, "--import", browserFile], "npm", envWith({ HYPHAE_IMPORT_PASSPHRASE: PASSPHRASE }));
    expect(again.code).toBe(1);
    expect(again.stderr.trim()).toBe(`hyphae: the data directory ${dataDir} already holds a homeserver (identity.seed); --import needs a new or empty data directory`);

    const served = await spawnServe(["--port", "0", "--data", dataDir], "npm");
    running.push(served);
    const c = client((r) => fetch(r), served.url);
    expect((await c.call("GET", "/_matrix/client/v3/account/whoami", undefined, populated.aliceToken)).body.user_id).toBe(populated.alice);
    const busy = await runServe(["--data", dataDir, "--export", join(work, "busy.hyphae")], "npm", envWith({ HYPHAE_EXPORT_PASSPHRASE: PASSPHRASE }));
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(/is in use by a running server \(process \d+\); stop it first/);
    expect(await exists(join(work, "busy.hyphae"))).toBe(false);
    expect((await served.stop("SIGTERM")).code).toBe(0);
  }, 180_000);

  it("--export FILE writes the same rows, and the file imports back into a browser's IndexedDB", async () => {
    const dataDir = join(work, "node");
    const file = join(work, "node.hyphae");
    const out = await runServe(["--data", dataDir, "--export", file], "npm", envWith({ HYPHAE_EXPORT_PASSPHRASE: PASSPHRASE }));
    expect(out.code, out.output).toBe(0);
    expect(out.output).toContain(`Hyphae exported ${SERVER_NAME} to ${file}`);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    // Never over an existing file.
    const twice = await runServe(["--data", dataDir, "--export", file], "npm", envWith({ HYPHAE_EXPORT_PASSPHRASE: PASSPHRASE }));
    expect(twice.code).toBe(1);
    expect(twice.stderr).toContain("already exists");

    const verified = await readExport(await openAsBlob(file), PASSPHRASE);
    expect(verified.manifest.serverName).toBe(SERVER_NAME);
    // The CLI writes new files with the full work factor.
    const header = JSON.parse(new TextDecoder().decode((await readFile(file)).subarray(12, 12 + (await readFile(file)).readUInt32BE(8)))) as { kdf: { iterations: number } };
    expect(header.kdf.iterations).toBe(600_000);

    const store = await createIndexedDbStore({ name: "hyphae", indexedDB: new IDBFactory() });
    await importHomeserver(store, verified, PASSPHRASE);
    const node = await openNodeStore(dataDir);
    const nodeRows = await dump(node);
    await node.close();
    expect(await dump(store)).toEqual(nodeRows);
    // What the browser had is all still there (the Node server added its own logins since).
    for (const t of ["events", "timeline", "state_groups", "media", "media_content", "device_keys", "one_time_keys", "account_data"]) {
      expect(nodeRows[t]).toEqual(browserRows[t]);
    }
    const hs = await homeserverOn(store);
    await verify(client((r) => hs.handle(r)), populated);
    await hs.close();
  }, 180_000);

  it("a wrong passphrase, a damaged file or no passphrase: exit 1, one line, no data directory created", async () => {
    const dataDir = join(work, "never");
    const wrong = await runServe(["--port", "0", "--data", dataDir, "--import", browserFile], "npm", envWith({ HYPHAE_IMPORT_PASSPHRASE: "not the passphrase" }));
    expect(wrong.code).toBe(1);
    expect(wrong.stderr.trim()).toBe(`hyphae: cannot import ${browserFile}: wrong passphrase for this export file`);
    expect(await exists(dataDir)).toBe(false);

    const bytes = new Uint8Array(await readFile(browserFile));
    bytes[bytes.length - 1000] ^= 0x10;
    const damaged = join(work, "damaged.hyphae");
    await writeFile(damaged, bytes);
    const bad = await runServe(["--port", "0", "--data", dataDir, "--import", damaged], "npm", envWith({ HYPHAE_IMPORT_PASSPHRASE: PASSPHRASE }));
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toMatch(/^hyphae: cannot import .*damaged\.hyphae: the export file is damaged \(chunk \d+ fails its integrity check\)$/);
    expect(await exists(dataDir)).toBe(false);

    const none = await runServe(["--port", "0", "--data", dataDir, "--import", browserFile], "npm", envWith({}));
    expect(none.code).toBe(1);
    expect(none.stderr.trim()).toBe("hyphae: --import needs the passphrase: put it in HYPHAE_IMPORT_PASSPHRASE or in a file given with --passphrase-file FILE");
    expect(await exists(dataDir)).toBe(false);
  }, 180_000);
});
