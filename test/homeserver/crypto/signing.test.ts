import { describe, it, expect } from "vitest";
import { decodeBase64, encodeBase64, tryDecodeBase64 } from "../../../src/homeserver/crypto/base64.ts";
import { naclSigner, webCryptoSigner } from "../../../src/homeserver/crypto/ed25519.ts";
import { signJson } from "../../../src/homeserver/crypto/signing.ts";
import { hashAndSignEvent } from "../../../src/homeserver/events/hashes.ts";
import { roomVersion } from "../../../src/homeserver/rooms/versions.ts";

// appendices.md, "Cryptographic Test Vectors".
const SEED = decodeBase64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1");

describe.each([
  ["tweetnacl", async () => naclSigner(SEED)],
  ["WebCrypto", async () => webCryptoSigner(SEED)],
])("spec signing test vectors (%s)", (_name, makeSigner) => {
  const key = async () => ({ entity: "domain", keyId: "ed25519:1", signer: await makeSigner() });

  it("signs an empty object", async () => {
    expect(await signJson({}, await key())).toEqual({
      signatures: { domain: { "ed25519:1": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ" } },
    });
  });

  it("signs an object with data", async () => {
    expect(await signJson({ one: 1, two: "Two" }, await key())).toEqual({
      one: 1,
      signatures: { domain: { "ed25519:1": "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw" } },
      two: "Two",
    });
  });

  it("signs a minimal event", async () => {
    const event = {
      room_id: "!x:domain", sender: "@a:domain", origin: "domain", origin_server_ts: 1000000, signatures: {}, hashes: {},
      type: "X", content: {}, prev_events: [], auth_events: [], depth: 3, unsigned: { age_ts: 1000000 },
    };
    expect(await hashAndSignEvent(event, roomVersion("1")!, await key())).toEqual({
      auth_events: [], content: {}, depth: 3,
      hashes: { sha256: "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos" },
      origin: "domain", origin_server_ts: 1000000, prev_events: [], room_id: "!x:domain", sender: "@a:domain",
      signatures: { domain: { "ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg" } },
      type: "X", unsigned: { age_ts: 1000000 },
    });
  });

  it("signs an event with redactable content", async () => {
    const event = {
      content: { body: "Here is the message content" }, event_id: "$0:domain", origin: "domain", origin_server_ts: 1000000,
      type: "m.room.message", room_id: "!r:domain", sender: "@u:domain", signatures: {}, unsigned: { age_ts: 1000000 },
    };
    expect(await hashAndSignEvent(event, roomVersion("1")!, await key())).toEqual({
      content: { body: "Here is the message content" }, event_id: "$0:domain",
      hashes: { sha256: "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g" },
      origin: "domain", origin_server_ts: 1000000, type: "m.room.message", room_id: "!r:domain", sender: "@u:domain",
      signatures: { domain: { "ed25519:1": "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA" } },
      unsigned: { age_ts: 1000000 },
    });
  });
});

describe("tryDecodeBase64", () => {
  it.each([
    ["AQID", [1, 2, 3]],
    ["AQI", [1, 2]],
    ["AQI=", [1, 2]],
    ["-_8", [251, 255]],
    ["", []],
  ])("decodes %j", (text, bytes) => {
    expect([...tryDecodeBase64(text)!]).toEqual(bytes);
  });

  it.each(["A", "AQI===", "AQ!D", "é", "AQID\n"])("gives undefined for %j", (text) => {
    expect(tryDecodeBase64(text)).toBeUndefined();
  });

  it("round-trips with encodeBase64", () => {
    const bytes = new Uint8Array([0, 1, 254, 255, 128]);
    expect(tryDecodeBase64(encodeBase64(bytes))).toEqual(bytes);
  });
});
