/**
 * The federation base: the X-Matrix header both ways, the keyring (direct, cached, notary, P2P
 * names), the notary endpoints and the in-memory network the other federation tests run on.
 */
import { afterEach, describe, expect, it } from "vitest";
import { RequestContext } from "../../src/homeserver/context.ts";
import { MatrixError } from "../../src/homeserver/errors.ts";
import { authorizationHeader, parseXMatrix } from "../../src/homeserver/federation/xmatrix.ts";
import { serverNameFromSeed } from "../../src/homeserver/keys/server.ts";
import { naclVerifier } from "../../src/homeserver/crypto/ed25519.ts";
import { verifyJsonSignature } from "../../src/homeserver/crypto/signing.ts";
import { decodeBase64 } from "../../src/homeserver/crypto/base64.ts";
import type { Federation, FedServer } from "./harness.ts";
import { createFederation } from "./harness.ts";

let fed: Federation | undefined;
afterEach(async () => {
  await fed?.close();
  fed = undefined;
});

/** Runs B's request authentication on a request A signed (or a tampered copy). */
async function authenticate(receiver: FedServer, request: Request): Promise<string | MatrixError> {
  const ctx = new RequestContext(receiver.hs.services, request, new URL(request.url));
  try {
    return await ctx.requireServer();
  } catch (err) {
    if (err instanceof MatrixError) return err;
    throw err;
  }
}

async function signed(from: FedServer, to: string, method: string, uri: string, content?: unknown, bodyOverride?: string): Promise<Request> {
  const auth = await authorizationHeader(from.hs.services.signingKey, to, method, uri, content);
  const body = bodyOverride ?? (content !== undefined ? JSON.stringify(content) : undefined);
  return new Request(`https://${to}${uri}`, { method, headers: { Authorization: auth, "Content-Type": "application/json" }, ...(body !== undefined ? { body } : {}) });
}

describe("X-Matrix header parsing (RFC 9110 §11.4)", () => {
  it("reads the spec's spelling and the variations it allows", () => {
    const want = { origin: "a.example", destination: "b.example:8448", key: "ed25519:k1", sig: "c2ln" };
    expect(parseXMatrix('X-Matrix origin="a.example",destination="b.example:8448",key="ed25519:k1",sig="c2ln"')).toEqual(want);
    // Names in any case and order, spaces and tabs around commas, unquoted tokens, colons unquoted.
    expect(parseXMatrix('X-Matrix  SIG=c2ln ,\tKey=ed25519:k1, destination=b.example:8448 ,origin=a.example')).toEqual(want);
    // Backslash escapes inside quotes are undone.
    expect(parseXMatrix('X-Matrix origin="a\\.example",destination="b.example:8448",key="ed25519:k1",sig="c2ln"')).toEqual(want);
    // Unknown parameters are ignored; destination may be missing (servers before v1.3).
    expect(parseXMatrix('X-Matrix origin=a.example,key="ed25519:k1",sig="c2ln",extra="x"')).toEqual({ origin: "a.example", key: "ed25519:k1", sig: "c2ln" });
  });

  it("refuses what is not an X-Matrix header", () => {
    for (const bad of [
      "Bearer abc",
      "X-Matrix",
      'X-Matrix origin="a.example",key="ed25519:k1"',
      'X-Matrix origin="a.example,key="ed25519:k1",sig="x"',
      'X-Matrix origin="a.example" key="ed25519:k1",sig="x"',
      "X-Matrix =x,origin=a,key=ed25519:k,sig=s",
    ]) {
      expect(parseXMatrix(bad), bad).toBeUndefined();
    }
  });
});

describe("inbound request authentication", () => {
  it("accepts a request signed by its origin over method, URI with query and body; refuses every tampered copy with 401", async () => {
    fed = await createFederation(["a.test", "b.test"]);
    const [a, b] = fed.servers as [FedServer, FedServer];
    const uri = "/_matrix/federation/v1/send/txn1?x=1";
    const content = { pdus: [], edus: [], origin: "a.test" };
    expect(await authenticate(b, await signed(a, "b.test", "PUT", uri, content))).toBe("a.test");

    const refused = async (request: Request, why: string) => {
      const r = await authenticate(b, request);
      expect(r, why).toBeInstanceOf(MatrixError);
      expect((r as MatrixError).status, why).toBe(401);
      expect((r as MatrixError).errcode, why).toBe("M_UNAUTHORIZED");
    };
    await refused(new Request(`https://b.test${uri}`, { method: "PUT", body: JSON.stringify(content) }), "no header");
    await refused(await signed(a, "c.test", "PUT", uri, content), "signed for another destination");
    await refused(await signed(a, "b.test", "PUT", uri, content, JSON.stringify({ ...content, pdus: [{}] })), "body changed");
    const good = await signed(a, "b.test", "PUT", uri, content);
    const otherQuery = new Request(`https://b.test/_matrix/federation/v1/send/txn1?x=2`, { method: "PUT", headers: good.headers, body: JSON.stringify(content) });
    await refused(otherQuery, "query changed");
    const otherMethod = new Request(`https://b.test${uri}`, { method: "POST", headers: good.headers, body: JSON.stringify(content) });
    await refused(otherMethod, "method changed");
    const forgedOrigin = good.headers.get("Authorization")!.replace('origin="a.test"', 'origin="c.test"');
    await refused(new Request(`https://b.test${uri}`, { method: "PUT", headers: { Authorization: forgedOrigin }, body: JSON.stringify(content) }), "origin claims another server");
    const unknownKey = good.headers.get("Authorization")!.replace("ed25519:auto", "ed25519:other");
    await refused(new Request(`https://b.test${uri}`, { method: "PUT", headers: { Authorization: unknownKey }, body: JSON.stringify(content) }), "unknown key");
  });

  it("needs the origin's key: fetched once, then served from the cache while the origin is offline", async () => {
    fed = await createFederation(["a.test", "b.test"]);
    const [a, b] = fed.servers as [FedServer, FedServer];
    fed.network.setOnline("a.test", false);
    // A cannot be asked for its key, so B cannot verify A's request.
    const uri = "/_matrix/federation/v1/query/profile?user_id=%40x%3Aa.test";
    expect(await authenticate(b, await signed(a, "b.test", "GET", uri))).toBeInstanceOf(MatrixError);
    fed.network.setOnline("a.test", true);
    fed.advance(60_000); // past the keyring's back-off after a failed fetch
    expect(await authenticate(b, await signed(a, "b.test", "GET", uri))).toBe("a.test");
    fed.network.setOnline("a.test", false);
    expect(await authenticate(b, await signed(a, "b.test", "GET", uri))).toBe("a.test");
    // A week later the cached key is no longer valid for a new request and A cannot be asked.
    fed.advance(8 * 24 * 3600 * 1000);
    expect(await authenticate(b, await signed(a, "b.test", "GET", uri))).toBeInstanceOf(MatrixError);
  });

  it("takes a P2P server's key from its name, with no round trip", async () => {
    const seed = new Uint8Array(32).fill(1);
    const p2pName = serverNameFromSeed(seed);
    fed = await createFederation([p2pName, "b.test"]);
    const [p, b] = fed.servers as [FedServer, FedServer];
    fed.network.setOnline(p2pName, false);
    expect(await authenticate(b, await signed(p, "b.test", "GET", "/_matrix/federation/v1/version"))).toBe(p2pName);
  });

  it("refuses servers outside federation_domain_whitelist with 403", async () => {
    fed = await createFederation(["a.test", "b.test"], { federationDomainWhitelist: ["c.test"] });
    const [a, b] = fed.servers as [FedServer, FedServer];
    // B may not even fetch A's key, so the request cannot be authenticated at all.
    const r = await authenticate(b, await signed(a, "b.test", "GET", "/_matrix/federation/v1/version"));
    expect(r).toBeInstanceOf(MatrixError);
  });
});

describe("the notary API (/_matrix/key/v2/query)", () => {
  it("serves another server's keys countersigned, and a third server trusts them when the origin is offline", async () => {
    fed = await createFederation(["a.test", "notary.test", "c.test"], { trustedKeyServers: ["notary.test"] });
    const [a, notary, c] = fed.servers as [FedServer, FedServer, FedServer];
    const r = await notary.call("GET", "/_matrix/key/v2/query/a.test");
    expect(r.status).toBe(200);
    expect(r.body.server_keys).toHaveLength(1);
    const answer = r.body.server_keys[0];
    expect(answer.server_name).toBe("a.test");
    const aKey = decodeBase64(answer.verify_keys["ed25519:auto"].key);
    expect(await verifyJsonSignature(answer, "a.test", () => aKey, naclVerifier)).toBe(true);
    const notaryKey = notary.hs.services.signingKey.signer.publicKey;
    expect(await verifyJsonSignature(answer, "notary.test", () => notaryKey, naclVerifier)).toBe(true);

    const post = await notary.call("POST", "/_matrix/key/v2/query", { server_keys: { "a.test": { "ed25519:auto": {} }, "notary.test": {} } });
    expect(post.status).toBe(200);
    expect(post.body.server_keys.map((k: { server_name: string }) => k.server_name).sort()).toEqual(["a.test", "notary.test"]);

    // C learns A's key through the notary while A is offline.
    fed.network.setOnline("a.test", false);
    expect(await authenticate(c, await signed(a, "c.test", "GET", "/_matrix/federation/v1/version"))).toBe("a.test");
  });

  it("answers bad queries with 400 and unknown servers with an empty list", async () => {
    fed = await createFederation(["a.test"]);
    const [a] = fed.servers as [FedServer];
    expect((await a.call("POST", "/_matrix/key/v2/query", { server_keys: [] })).status).toBe(400);
    expect((await a.call("POST", "/_matrix/key/v2/query", { server_keys: { "a.test": { k: { minimum_valid_until_ts: "soon" } } } })).status).toBe(400);
    expect((await a.call("GET", "/_matrix/key/v2/query/bad%20name")).status).toBe(400);
    const none = await a.call("GET", "/_matrix/key/v2/query/nowhere.test");
    expect(none).toEqual({ status: 200, body: { server_keys: [] } });
  });
});

describe("GET /_matrix/federation/v1/version", () => {
  it("names the implementation", async () => {
    fed = await createFederation(["a.test"]);
    const r = await fed.servers[0]!.call("GET", "/_matrix/federation/v1/version");
    expect(r).toEqual({ status: 200, body: { server: { name: "Hyphae", version: expect.any(String) } } });
  });
});
