/** One seed, three names: the Matrix key, the P2P server name and the libp2p peer ID map to each other locally. */
import { describe, expect, it } from "vitest";
import nacl from "tweetnacl";
import { peerIdFromString } from "@libp2p/peer-id";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { peerIdFromServerName, privateKeyFromSeed, serverNameFromPeerId } from "../../src/transport/identity.ts";
import { serverNameFromSeed } from "../../src/homeserver/keys/server.ts";

const seeds = [new Uint8Array(32), new Uint8Array(32).fill(0xff), Uint8Array.from({ length: 32 }, (_, i) => i * 7), crypto.getRandomValues(new Uint8Array(32))];

describe("P2P identity", () => {
  it("the libp2p key of a seed is the tweetnacl key: same public key, byte-identical signatures", async () => {
    for (const seed of seeds) {
      const key = await privateKeyFromSeed(seed);
      const pair = nacl.sign.keyPair.fromSeed(seed);
      expect(Buffer.from(key.publicKey.raw).toString("hex")).toBe(Buffer.from(pair.publicKey).toString("hex"));
      const message = new TextEncoder().encode("the same signature");
      expect(Buffer.from(await key.sign(message)).toString("hex")).toBe(Buffer.from(nacl.sign.detached(message, pair.secretKey)).toString("hex"));
    }
  });

  it("server name → peer ID → server name, and the peer ID is the seed's own", async () => {
    for (const seed of seeds) {
      const name = serverNameFromSeed(seed);
      const peerId = peerIdFromServerName(name);
      expect(peerId.equals(peerIdFromPrivateKey(await privateKeyFromSeed(seed)))).toBe(true);
      expect(serverNameFromPeerId(peerId)).toBe(name);
      // Through its string form too (what the rendezvous lists).
      expect(serverNameFromPeerId(peerId.toString())).toBe(name);
      expect(serverNameFromPeerId(peerIdFromString(peerId.toString()))).toBe(name);
    }
  });

  it("refuses what is not a P2P name or an ed25519 peer", async () => {
    for (const bad of ["example.org", "A".repeat(64), "ab".repeat(31), "ab".repeat(33), ""]) expect(() => peerIdFromServerName(bad)).toThrow(RangeError);
    const rsaLike = peerIdFromPrivateKey(await generateKeyPair("secp256k1"));
    expect(serverNameFromPeerId(rsaLike)).toBeUndefined();
    expect(serverNameFromPeerId("not a peer id")).toBeUndefined();
    await expect(privateKeyFromSeed(new Uint8Array(31))).rejects.toThrow(RangeError);
  });
});
