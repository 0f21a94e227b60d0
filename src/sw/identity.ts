/**
 * The Service Worker's identity: one 32-byte ed25519 seed kept in the IndexedDB `settings` table,
 * the browser's counterpart of the seed file the Node runner keeps (src/node/identity.ts; docs/DESIGN.md
 * "Identity and naming"). Created on first start, never rewritten.
 */
import { serverNameFromSeed, serverNameFromSeedAsync } from "../homeserver/keys/server.ts";
import type { Store } from "../storage/store.ts";

/** key settings|identity_seed → Uint8Array(32) */
export const SEED_SETTING = "identity_seed";
/** key settings|server_name → string (the name every stored ID was made with; the runner uses the same key) */
export const SERVER_NAME_SETTING = "server_name";

/** The P2P server name of a seed (one definition for Node and the Service Worker). */
export { serverNameFromSeed };

/**
 * The seed and server name of the homeserver in `store`, creating them on first start. A restart
 * (the common case: the browser stops idle workers) reads the seed and derives the name once,
 * through WebCrypto; only a first start draws a seed.
 */
export async function loadOrCreateIdentity(
  store: Store,
  random: (n: number) => Uint8Array = (n) => crypto.getRandomValues(new Uint8Array(n)),
): Promise<{ seed: Uint8Array; serverName: string; created: boolean }> {
  const stored = await store.read(async (tx) => ({ seed: await tx.get<Uint8Array>("settings", SEED_SETTING), knownName: await tx.get<string>("settings", SERVER_NAME_SETTING) }));
  if (stored.seed !== undefined && stored.knownName !== undefined) return checked(stored.seed, stored.knownName, false);
  // Drawn and named before the transaction: inside one only store reads may be awaited (IndexedDB would commit).
  const fresh = random(32);
  const freshName = await serverNameFromSeedAsync(fresh);
  const storedName = stored.seed instanceof Uint8Array && stored.seed.length === 32 ? await serverNameFromSeedAsync(stored.seed) : undefined;
  // Read again and create in one write transaction, so two worker instances starting at once (an
  // old and a new one during an update) cannot both create a seed.
  const { seed, created, knownName } = await store.write(async (tx) => {
    const seed = await tx.get<Uint8Array>("settings", SEED_SETTING);
    const knownName = await tx.get<string>("settings", SERVER_NAME_SETTING);
    if (seed !== undefined) {
      // A database of an early version kept the seed without the name.
      if (knownName === undefined && storedName !== undefined) tx.put("settings", SERVER_NAME_SETTING, storedName);
      return { seed, created: false, knownName };
    }
    if (knownName !== undefined) return { seed: undefined, created: false, knownName };
    tx.put("settings", SEED_SETTING, fresh);
    tx.put("settings", SERVER_NAME_SETTING, freshName);
    return { seed: fresh, created: true, knownName: freshName };
  });
  return checked(seed, knownName, created);
}

/** The identity of a stored seed, refusing a database whose stored name another seed made. */
async function checked(seed: unknown, knownName: string | undefined, created: boolean): Promise<{ seed: Uint8Array; serverName: string; created: boolean }> {
  if (!(seed instanceof Uint8Array) || seed.length !== 32) {
    throw new Error(`the database holds data of server "${knownName ?? "?"}" but no valid 32-byte identity seed; refusing to start`);
  }
  const serverName = await serverNameFromSeedAsync(seed);
  // A database belongs to one server name: every stored ID contains it.
  if (knownName !== undefined && knownName !== serverName) {
    throw new Error(`the database belongs to server "${knownName}", not "${serverName}"; refusing to start`);
  }
  return { seed: new Uint8Array(seed), serverName, created };
}
