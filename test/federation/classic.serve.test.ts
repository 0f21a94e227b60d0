/**
 * Classic mode end to end: `npm run serve` processes named `127.0.0.1:{port}`, each with its own
 * certificate from a test CA, reaching each other over real HTTPS. Keys travel through the keyring
 * and the notary API; a server that does not trust the CA (no `federation_custom_ca_list`) cannot
 * reach the others, and `NODE_EXTRA_CA_CERTS` is honoured in its place.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verifyJsonSignature } from "../../src/homeserver/crypto/signing.ts";
import type { JsonObject } from "../../src/homeserver/crypto/signing.ts";
import { decodeBase64 } from "../../src/homeserver/crypto/base64.ts";
import { createVerifier } from "../../src/homeserver/crypto/ed25519.ts";
import type { ClassicFederation, ClassicNode } from "./classic.ts";
import { startClassicFederation } from "./classic.ts";

let fed: ClassicFederation;
let a: ClassicNode;
let b: ClassicNode;
let noCa: ClassicNode;
let extraCa: ClassicNode;

beforeAll(async () => {
  fed = await startClassicFederation(4, {
    // Server 2 trusts only the system's CAs; server 3 gets the test CA from NODE_EXTRA_CA_CERTS.
    config: (i) => (i >= 2 ? { federation_custom_ca_list: [] } : {}),
    env: (i, caFile): Record<string, string> => (i === 3 ? { NODE_EXTRA_CA_CERTS: caFile } : {}),
  });
  [a, b, noCa, extraCa] = fed.nodes as [ClassicNode, ClassicNode, ClassicNode, ClassicNode];
}, 240_000);
afterAll(async () => {
  await fed?.close();
}, 60_000);

/** Checks `server`'s signature on `json` with the keys in `keys` (a /key/v2/server answer). */
async function signedBy(json: JsonObject, server: string, keys: JsonObject): Promise<boolean> {
  const verifyKeys = keys.verify_keys as Record<string, { key: string }>;
  return verifyJsonSignature(json, server, (_s, keyId) => (verifyKeys[keyId] ? decodeBase64(verifyKeys[keyId].key) : undefined), await createVerifier());
}

describe("classic mode over HTTPS between npm run serve processes", () => {
  it("serves /_matrix/key/v2/server over HTTPS under its 127.0.0.1:port name, self-signed", async () => {
    for (const node of fed.nodes) {
      const keys = await node.https("/_matrix/key/v2/server");
      expect(keys.status, node.output()).toBe(200);
      expect(keys.body.server_name).toBe(node.name);
      expect(await signedBy(keys.body as JsonObject, node.name, keys.body as JsonObject)).toBe(true);
    }
  });

  it("B fetches A's keys over HTTPS through its keyring and vouches for them as a notary", async () => {
    const own = await a.https("/_matrix/key/v2/server");
    const bKeys = await b.https("/_matrix/key/v2/server");
    const viaB = await b.https(`/_matrix/key/v2/query/${encodeURIComponent(a.name)}`);
    expect(viaB.status, b.output()).toBe(200);
    const answers = viaB.body.server_keys as JsonObject[];
    expect(answers, b.output()).toHaveLength(1);
    const answer = answers[0]!;
    expect(answer.server_name).toBe(a.name);
    expect(answer.verify_keys).toEqual(own.body.verify_keys);
    // A's own signature, and B's as the notary.
    expect(await signedBy(answer, a.name, own.body as JsonObject)).toBe(true);
    expect(await signedBy(answer, b.name, bKeys.body as JsonObject)).toBe(true);
    // The POST form gives the same keys (from B's cache now).
    const posted = await b.https("/_matrix/key/v2/query", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ server_keys: { [a.name]: {} } }) });
    expect((posted.body.server_keys as JsonObject[])[0]!.verify_keys).toEqual(own.body.verify_keys);
  });

  it("a server that does not trust the CA cannot fetch the keys; NODE_EXTRA_CA_CERTS makes it trust it", async () => {
    const refused = await noCa.https(`/_matrix/key/v2/query/${encodeURIComponent(a.name)}`);
    expect(refused.status).toBe(200);
    expect(refused.body.server_keys).toEqual([]);
    const own = await a.https("/_matrix/key/v2/server");
    const trusted = await extraCa.https(`/_matrix/key/v2/query/${encodeURIComponent(a.name)}`);
    expect((trusted.body.server_keys as JsonObject[])[0]?.verify_keys, extraCa.output()).toEqual(own.body.verify_keys);
  });

  it("a request B signs reaches A over HTTPS and is accepted: a remote profile", async () => {
    const alice = await a.register("alice");
    expect((await a.call("PUT", `/_matrix/client/v3/profile/${encodeURIComponent(alice.userId)}/displayname`, { displayname: "Alice on A" }, alice.token)).status).toBe(200);
    const bob = await b.register("bob");
    const profile = await b.call("GET", `/_matrix/client/v3/profile/${encodeURIComponent(alice.userId)}`, undefined, bob.token);
    expect(profile, b.output()).toEqual({ status: 200, body: { displayname: "Alice on A" } });
    // A verified B's X-Matrix signature (with B's key, fetched over HTTPS) and says so in its log.
    expect(a.output()).toMatch(new RegExp(`route=/_matrix/federation/v1/query/profile status=200 .*user=${b.name.replace(/\./g, "\\.")}`));
  });

  it("A refuses federation requests without or with a forged X-Matrix signature (401)", async () => {
    const path = `/_matrix/federation/v1/query/profile?user_id=${encodeURIComponent(`@alice:${a.name}`)}`;
    const unsigned = await a.https(path);
    expect(unsigned.status).toBe(401);
    expect(unsigned.body.errcode).toBe("M_UNAUTHORIZED");
    const forged = await a.https(path, { headers: { Authorization: `X-Matrix origin="${b.name}",destination="${a.name}",key="ed25519:auto",sig="${"A".repeat(86)}"` } });
    expect(forged.status).toBe(401);
    expect(forged.body.errcode).toBe("M_UNAUTHORIZED");
  });

  it("answers the Client-Server API on both listeners", async () => {
    const overHttp = await a.call("GET", "/_matrix/client/versions");
    const overHttps = await a.https("/_matrix/client/versions");
    expect(overHttp.status).toBe(200);
    expect(overHttps.body).toEqual(overHttp.body);
    expect((await a.https("/_matrix/federation/v1/version")).body.server?.name).toBe("Hyphae");
  });
});
