/**
 * One ed25519 seed, three names (docs/DESIGN.md "Identity and naming"): the Matrix signing key, the
 * P2P server name (the lowercase hex of the public key) and the libp2p peer ID. A server name and
 * a peer ID map to each other locally, with no lookup: an ed25519 peer ID embeds its public key.
 */
import { generateKeyPairFromSeed, publicKeyFromRaw } from "@libp2p/crypto/keys";
import { peerIdFromPublicKey, peerIdFromString } from "@libp2p/peer-id";
import type { Ed25519PeerId, Ed25519PrivateKey, PeerId } from "@libp2p/interface";
import { isKeyServerName, keyOfServerName } from "../homeserver/federation/keyring.ts";

/** The libp2p private key of a 32-byte seed: the same ed25519 key tweetnacl's `fromSeed` gives the Matrix signer. */
export async function privateKeyFromSeed(seed: Uint8Array): Promise<Ed25519PrivateKey> {
  if (seed.length !== 32) throw new RangeError(`an ed25519 seed is 32 bytes, not ${seed.length}`);
  return generateKeyPairFromSeed("Ed25519", seed);
}

/** The peer ID of a P2P server name (64 lowercase hex characters); throws for any other name. */
export function peerIdFromServerName(serverName: string): Ed25519PeerId {
  if (!isKeyServerName(serverName)) throw new RangeError(`not a P2P server name: ${serverName}`);
  return peerIdFromPublicKey(publicKeyFromRaw(keyOfServerName(serverName))) as Ed25519PeerId;
}

/** The P2P server name of a peer ID, or undefined when the peer is not named by an ed25519 key (no Hyphae server). */
export function serverNameFromPeerId(peerId: PeerId | string): string | undefined {
  let id: PeerId;
  try {
    id = typeof peerId === "string" ? peerIdFromString(peerId) : peerId;
  } catch {
    return undefined;
  }
  if (id.type !== "Ed25519") return undefined;
  return Array.from(id.publicKey.raw, (b) => b.toString(16).padStart(2, "0")).join("");
}
