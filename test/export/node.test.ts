/**
 * The Node runner's side of import (src/node/exportImport.ts), in process: what it leaves behind
 * when an import fails half way, the server-name rules of classic mode, and the runner refusing to
 * serve a data directory whose import never finished.
 */
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createMemoryStore } from "../../src/storage/memory.ts";
import type { Store } from "../../src/storage/store.ts";
import { exportHomeserver } from "../../src/export/homeserver.ts";
import { importIntoDataDir, readPassphrase } from "../../src/node/exportImport.ts";
import { DEFAULTS, StartupError } from "../../src/node/config.ts";
import type { NodeConfig } from "../../src/node/config.ts";
import { openNodeStore } from "../../src/node/storage.ts";
import { startNode } from "../../src/node/runner.ts";
import { silentLogger } from "../../src/homeserver/context.ts";
import { SEED, SERVER_NAME, client, homeserverOn, populate } from "./fixture.ts";

const PASSPHRASE = "correct horse battery staple";
const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});
const tempDir = async (): Promise<string> => {
  const d = await mkdtemp(join(tmpdir(), "hyphae-export-node-"));
  dirs.push(d);
  return d;
};
const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false);

/** A populated homeserver exported to a file in a new temp dir, under `serverName`. */
async function exportFile(serverName = SERVER_NAME): Promise<string> {
  const store = createMemoryStore();
  await store.write(async (tx) => tx.put("settings", "server_name", serverName));
  const hs = await homeserverOn(store, serverName);
  await populate(client((r) => hs.handle(r)));
  const path = join(await tempDir(), "export.hyphae");
  await writeFile(path, new Uint8Array(await new Response(exportHomeserver(store, { seed: SEED, serverName }, PASSPHRASE, { iterations: 1000 })).arrayBuffer()));
  await hs.close();
  return path;
}

/** Opens the data dir's real store with every write after the `okWrites`-th failing (clean-up included). */
const dyingAfter =
  (okWrites: number) =>
  async (dataDir: string): Promise<Store> => {
    const inner = await openNodeStore(dataDir);
    let n = 0;
    return { ...inner, read: (fn) => inner.read(fn), write: (fn) => (++n > okWrites ? Promise.reject(new Error("disk gone")) : inner.write(fn)), close: () => inner.close() };
  };

describe("--import in the Node runner", () => {
  it("a failure half way leaves no data directory when there was none", async () => {
    const file = await exportFile();
    const dataDir = join(await tempDir(), "data");
    const config: NodeConfig = { ...DEFAULTS, dataDir };
    await expect(importIntoDataDir(config, file, PASSPHRASE, silentLogger, { openStore: dyingAfter(2) })).rejects.toThrow("disk gone");
    expect(await exists(dataDir)).toBe(false);
  }, 60_000);

  it("a failure half way in an existing directory removes only what it created; an import cut short for good is not served", async () => {
    const file = await exportFile();
    const dataDir = join(await tempDir(), "data");
    const config: NodeConfig = { ...DEFAULTS, dataDir, httpPort: 0 };
    // An empty database already there (a first start that stopped before creating the seed).
    await (await openNodeStore(dataDir)).close();
    await writeFile(join(dataDir, "notes.txt"), "mine");
    await expect(importIntoDataDir(config, file, PASSPHRASE, silentLogger, { openStore: dyingAfter(2) })).rejects.toThrow("disk gone");
    expect((await readdir(dataDir)).sort()).toEqual(["homeserver.sqlite", "homeserver.sqlite.blobs", "notes.txt"]);
    // Its clean-up failed too, so the database holds part of the import and says so.
    const err = await startNode(config, { logger: silentLogger }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StartupError);
    expect((err as Error).message).toBe(`the data directory ${dataDir} holds an unfinished import; delete it and run --import again`);
    await expect(importIntoDataDir(config, file, PASSPHRASE, silentLogger)).rejects.toThrow(/unfinished import/);
  }, 60_000);

  it("a classic-mode server imports only where server_name says its name", async () => {
    const file = await exportFile("chat.example.org");
    const dataDir = join(await tempDir(), "data");
    await expect(importIntoDataDir({ ...DEFAULTS, dataDir }, file, PASSPHRASE, silentLogger)).rejects.toThrow(
      `cannot import ${file}: it holds server "chat.example.org"; set "server_name": "chat.example.org" in the config file to import it`,
    );
    expect(await exists(dataDir)).toBe(false);
    await expect(importIntoDataDir({ ...DEFAULTS, dataDir, serverName: "other.example.org" }, file, PASSPHRASE, silentLogger)).rejects.toThrow(
      `it holds server "chat.example.org", but server_name is "other.example.org"`,
    );
    const result = await importIntoDataDir({ ...DEFAULTS, dataDir, serverName: "chat.example.org" }, file, PASSPHRASE, silentLogger);
    expect(result.serverName).toBe("chat.example.org");
    const node = await startNode({ ...DEFAULTS, dataDir, serverName: "chat.example.org", httpPort: 0 }, { logger: silentLogger });
    try {
      expect(node.serverName).toBe("chat.example.org");
      const who = await client((r) => fetch(r), node.httpUrl).call("POST", "/_matrix/client/v3/login", { type: "m.login.password", identifier: { type: "m.id.user", user: "alice" }, password: "alice-correct-horse" });
      expect(who.body.user_id).toBe("@alice:chat.example.org");
    } finally {
      await node.close();
    }
  }, 60_000);

  it("reads the passphrase from --passphrase-file (first line) or the environment, never empty or short for an export", async () => {
    const dir = await tempDir();
    await writeFile(join(dir, "p"), "line one\r\nline two\n");
    expect(await readPassphrase("import", join(dir, "p"), {})).toBe("line one");
    expect(await readPassphrase("import", undefined, { HYPHAE_IMPORT_PASSPHRASE: "from env" })).toBe("from env");
    await expect(readPassphrase("import", undefined, { HYPHAE_EXPORT_PASSPHRASE: "wrong variable" })).rejects.toThrow(/HYPHAE_IMPORT_PASSPHRASE/);
    await expect(readPassphrase("export", undefined, { HYPHAE_EXPORT_PASSPHRASE: "short" })).rejects.toThrow("at least 8 characters");
    await expect(readPassphrase("export", join(dir, "missing"), {})).rejects.toThrow(/cannot read --passphrase-file/);
  });
});
