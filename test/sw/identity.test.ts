/** The Service Worker's identity in the store (src/sw/identity.ts) and its path filter. */
import { describe, expect, it } from "vitest";
import { createMemoryStore } from "../../src/storage/memory.ts";
import { loadOrCreateIdentity, serverNameFromSeed, SEED_SETTING, SERVER_NAME_SETTING } from "../../src/sw/identity.ts";
import { isHomeserverPath } from "../../src/sw/serviceWorker.ts";
import { serverNameFromSeed as nodeServerName } from "../../src/node/identity.ts";

describe("loadOrCreateIdentity", () => {
  it("creates a seed once and returns the same one afterwards", async () => {
    const store = createMemoryStore();
    const first = await loadOrCreateIdentity(store);
    expect(first.created).toBe(true);
    expect(first.seed).toHaveLength(32);
    expect(first.serverName).toMatch(/^[0-9a-f]{64}$/);
    expect(first.serverName).toBe(nodeServerName(first.seed));
    const again = await loadOrCreateIdentity(store, () => new Uint8Array(32).fill(9));
    expect(again.created).toBe(false);
    expect(again.seed).toEqual(first.seed);
    expect(again.serverName).toBe(first.serverName);
    expect(await store.read((tx) => tx.get("settings", SERVER_NAME_SETTING))).toBe(first.serverName);
  });

  it("uses the given randomness", async () => {
    const seed = new Uint8Array(32).fill(7);
    const id = await loadOrCreateIdentity(createMemoryStore(), () => seed.slice());
    expect(id.seed).toEqual(seed);
    expect(id.serverName).toBe(serverNameFromSeed(seed));
  });

  it("refuses a database of another server, or one whose seed is lost", async () => {
    const store = createMemoryStore();
    await store.write(async (tx) => tx.put("settings", SERVER_NAME_SETTING, "other.example"));
    await expect(loadOrCreateIdentity(store)).rejects.toThrow(/no valid 32-byte identity seed/);
    await store.write(async (tx) => tx.put("settings", SEED_SETTING, new Uint8Array(32).fill(1)));
    await expect(loadOrCreateIdentity(store)).rejects.toThrow(/belongs to server "other.example"/);
  });
});

describe("isHomeserverPath", () => {
  it("takes the Matrix APIs and client discovery, nothing else", () => {
    for (const p of ["/_matrix/client/versions", "/_matrix/media/v3/upload", "/_matrix/key/v2/server", "/.well-known/matrix/client", "/.well-known/matrix/support"]) expect(isHomeserverPath(p), p).toBe(true);
    for (const p of ["/", "/index.html", "/_matrix", "/_matrixx/a", "/.well-known/matrix/server", "/sw.js", "/_synapse/admin/v1/register"]) expect(isHomeserverPath(p), p).toBe(false);
  });
});
