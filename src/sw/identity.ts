/**
 * The Service Worker's identity: one 32-byte ed25519 seed kept in the IndexedDB `settings` table,
 * the browser's counterpart of the seed file the Node runner keeps (src/node/identity.ts; docs/DESIGN.md
 * "Identity and naming"). Created on first start, never rewritten.
 */
import { serverNameFromSeed } from "../homeserver/keys/server.ts";
import type { Store } from "../storage/store.ts";

/** key settings|identity_seed → Uint8Array(32) */
export const SEED_SETTING = "identity_seed";
/** key settings|server_name → string (the name every stored ID was made with; the runner uses the same key) */
export const SERVER_NAME_SETTING = "server_name";

/** The P2P server name of a seed (one definition for Node and the Service Worker). */
export { serverNameFromSeed };

/** The seed and server name of the homeserver in `store`, creating them on first start. */
export async function loadOrCreateIdentity(
  store: Store,
  random: (n: number) => Uint8Array = (n) => crypto.getRandomValues(new Uint8Array(n)),
): Promise<{ seed: Uint8Array; serverName: string; created: boolean }> {
  // Drawn before the transaction: inside one only store reads may be awaited (IndexedDB would commit).
  const fresh = random(32);
  const freshName = serverNameFromSeed(fresh);
  // Read and create in one write transaction, so two worker instances starting at once (an old
  // and a new one during an update) cannot both create a seed.
  const { seed, created, knownName } = await store.write(async (tx) => {
    const stored = await tx.get<Uint8Array>("settings", SEED_SETTING);
    const knownName = await tx.get<string>("settings", SERVER_NAME_SETTING);
    if (stored !== undefined) {
      // Synchronous (tweetnacl), so allowed inside the transaction.
      if (knownName === undefined && stored instanceof Uint8Array && stored.length === 32) {
        tx.put("settings", SERVER_NAME_SETTING, serverNameFromSeed(stored));
      }
      return { seed: stored, created: false, knownName };
    }
    if (knownName !== undefined) return { seed: undefined, created: false, knownName };
    tx.put("settings", SEED_SETTING, fresh);
    tx.put("settings", SERVER_NAME_SETTING, freshName);
    return { seed: fresh, created: true, knownName: freshName };
  });
  if (!(seed instanceof Uint8Array) || seed.length !== 32) {
    throw new Error(`the database holds data of server "${knownName ?? "?"}" but no valid 32-byte identity seed; refusing to start`);
  }
  const serverName = serverNameFromSeed(seed);
  // A database belongs to one server name: every stored ID contains it.
  if (knownName !== undefined && knownName !== serverName) {
    throw new Error(`the database belongs to server "${knownName}", not "${serverName}"; refusing to start`);
  }
  return { seed: new Uint8Array(seed), serverName, created };
}
