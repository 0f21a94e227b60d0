/** Signing, verifying, canonical JSON and hashing rates. */
import nacl from "tweetnacl";
import { naclSigner, naclVerifier, webCryptoSigner, webCryptoVerifier } from "../src/homeserver/crypto/ed25519.ts";
import { canonicalJsonBytes } from "../src/homeserver/crypto/canonicalJson.ts";
import { contentHash, sha256 } from "../src/homeserver/events/hashes.ts";
import type { Bench, Figure } from "./harness.ts";
import { rate, versus } from "./harness.ts";

const seed = new Uint8Array(32).fill(7);
const message = new Uint8Array(300).fill(1);

/** A typical message event, for JSON and hashing rates. */
export const sampleEvent = {
  type: "m.room.message", room_id: "!abcdefghijklmnop:example.org", sender: "@alice:example.org",
  content: { msgtype: "m.text", body: "Hello, world! ".repeat(8) }, depth: 42, origin_server_ts: 1_700_000_000_000,
  prev_events: ["$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"], auth_events: ["$b", "$c", "$d"], hashes: { sha256: "x" },
  signatures: {}, unsigned: { age: 5 },
};

export const cryptoBench: Bench = async () => {
  const naclKp = nacl.sign.keyPair.fromSeed(seed);
  const rawNaclSign = await rate(() => nacl.sign.detached(message, naclKp.secretKey));
  const ns = naclSigner(seed);
  const ws = await webCryptoSigner(seed);
  const naclSign = await rate(() => ns.sign(message));
  const webSign = await rate(() => ws.sign(message));
  const sig = await ws.sign(message);
  const wv = webCryptoVerifier();
  const naclVerify = await rate(() => naclVerifier.verify(naclKp.publicKey, message, sig));
  const webVerify = await rate(() => wv.verify(naclKp.publicKey, message, sig));
  const json = await rate(() => canonicalJsonBytes(sampleEvent));
  const rawStringify = await rate(() => JSON.stringify(sampleEvent));
  const bytes = canonicalJsonBytes(sampleEvent);
  const rawSha = await rate(() => sha256(bytes));
  const hash = await rate(() => contentHash(sampleEvent));
  const figures: Figure[] = [
    versus("ed25519 sign, tweetnacl (ours)", naclSign, "ops/s", "raw tweetnacl sign", rawNaclSign),
    versus("ed25519 sign, WebCrypto (ours, default)", webSign, "ops/s", "raw tweetnacl sign", rawNaclSign),
    versus("ed25519 verify, WebCrypto (default)", webVerify, "ops/s", "ed25519 verify, tweetnacl", naclVerify),
    versus("canonical JSON of an event", json, "ops/s", "raw JSON.stringify", rawStringify),
    versus("content hash (canonical JSON + SHA-256)", hash, "ops/s", "raw SHA-256 of the same bytes", rawSha),
  ];
  return figures;
};
