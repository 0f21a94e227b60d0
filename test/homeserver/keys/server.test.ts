import { describe, it, expect } from "vitest";
import { createHomeserver } from "../../../src/homeserver/homeserver.ts";
import { createMemoryStore } from "../../../src/storage/memory.ts";
import { decodeBase64 } from "../../../src/homeserver/crypto/base64.ts";
import { naclVerifier, publicKeyFromSeed } from "../../../src/homeserver/crypto/ed25519.ts";
import { verifyJsonSignature } from "../../../src/homeserver/crypto/signing.ts";

describe("GET /_matrix/key/v2/server", () => {
  it("publishes the signing key, valid for 7 days, signed by itself", async () => {
    const seed = new Uint8Array(32).fill(3);
    const now = 1_800_000_000_000;
    const hs = await createHomeserver({ store: createMemoryStore(), seed, serverName: "keys.test", clock: () => now });
    const res = await hs.handle(new Request("http://localhost/_matrix/key/v2/server"));
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, any>;
    expect(body.server_name).toBe("keys.test");
    expect(body.old_verify_keys).toEqual({});
    expect(body.valid_until_ts).toBe(now + 7 * 24 * 3600 * 1000);
    expect(Object.keys(body.verify_keys)).toEqual(["ed25519:auto"]);
    const publicKey = decodeBase64(body.verify_keys["ed25519:auto"].key);
    expect(publicKey).toEqual(publicKeyFromSeed(seed));

    // Verified with the published key, through the independent tweetnacl implementation.
    const lookup = (_s: string, keyId: string) => (body.verify_keys[keyId] ? decodeBase64(body.verify_keys[keyId].key) : undefined);
    expect(await verifyJsonSignature(body, "keys.test", lookup, naclVerifier)).toBe(true);
    expect(await verifyJsonSignature({ ...body, valid_until_ts: body.valid_until_ts + 1 }, "keys.test", lookup, naclVerifier)).toBe(false);

    const byId = await hs.handle(new Request("http://localhost/_matrix/key/v2/server/ed25519:auto"));
    expect(((await byId.json()) as Record<string, unknown>).server_name).toBe("keys.test");
    expect((await hs.handle(new Request("http://localhost/_matrix/key/v2/server/ed25519:other"))).status).toBe(404);
  });
});
