/**
 * The classic-mode HTTPS transport beyond the compliance suite: certificate checks, server discovery
 * ("Resolving server names") against real HTTPS servers on loopback with an injected DNS, the
 * well-known cache, and the answer size cap.
 */
import { createServer } from "node:https";
import type { Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { TLSSocket } from "node:tls";
import type { AddressInfo } from "node:net";
import type { SrvRecord } from "node:dns";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { HttpsFederationTransport, ResponseTooLargeError, splitPem } from "../../src/node/federationHttps.ts";
import { ServerDiscovery, cacheLifetimeMs, orderSrv, parseServerName, parseWellKnown } from "../../src/node/serverDiscovery.ts";
import type { WellKnownResult } from "../../src/node/serverDiscovery.ts";
import { UnreachableError, federationUrl } from "../../src/homeserver/federation/transport.ts";
import { createTestCa } from "./testCa.ts";
import type { IssuedCertificate, TestCa } from "./testCa.ts";

/** What one test server saw of a request. */
interface Hit {
  server: string;
  host: string | undefined;
  /** The SNI the client sent (false: none). */
  sni: string | false;
  path: string;
}

let ca: TestCa;
let otherCa: TestCa;
let good: IssuedCertificate;
const hits: Hit[] = [];
const servers: Server[] = [];
const transports: HttpsFederationTransport[] = [];

/** An HTTPS server on 127.0.0.1 answering with `answer` and recording every request as `label`. */
async function start(label: string, cert: IssuedCertificate, answer: (req: IncomingMessage, res: ServerResponse) => void = (_q, s) => s.end('{"ok":true}')): Promise<number> {
  const server = createServer(cert, (req, res) => {
    hits.push({ server: label, host: req.headers.host, sni: (req.socket as TLSSocket).servername ?? false, path: req.url ?? "" });
    answer(req, res);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return (server.address() as AddressInfo).port;
}

function transport(options: ConstructorParameters<typeof HttpsFederationTransport>[0] = {}): HttpsFederationTransport {
  const t = new HttpsFederationTransport({ extraCa: [ca.cert], ...options });
  transports.push(t);
  return t;
}

async function get(t: HttpsFederationTransport, server: string, path = "/_matrix/federation/v1/version"): Promise<Response> {
  return t.request(server, new Request(federationUrl(server, path)));
}

beforeAll(() => {
  ca = createTestCa();
  otherCa = createTestCa("Some Other CA");
  good = ca.issue({ ips: ["127.0.0.1"], dns: ["localhost"] });
});
afterEach(() => {
  hits.length = 0;
  for (const t of transports.splice(0)) t.close();
});
afterAll(async () => {
  for (const s of servers) s.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

describe("certificates", () => {
  it("accepts a certificate from a CA in the custom list, refuses one from an unknown CA", async () => {
    const trusted = await start("trusted", good);
    const stranger = await start("stranger", otherCa.issue({ ips: ["127.0.0.1"] }));
    expect((await get(transport(), `127.0.0.1:${trusted}`)).status).toBe(200);
    await expect(get(transport(), `127.0.0.1:${stranger}`)).rejects.toBeInstanceOf(UnreachableError);
    // The system's CAs alone do not know the test CA either.
    await expect(get(new HttpsFederationTransport(), `127.0.0.1:${trusted}`)).rejects.toBeInstanceOf(UnreachableError);
    expect(hits.map((h) => h.server)).toEqual(["trusted"]);
  });

  it("refuses a certificate issued for another name", async () => {
    const port = await start("wrong-name", ca.issue({ ips: ["127.0.0.2"], dns: ["elsewhere.test"] }));
    await expect(get(transport(), `127.0.0.1:${port}`)).rejects.toThrow(/altnames/);
    await expect(get(transport(), `localhost:${port}`)).rejects.toBeInstanceOf(UnreachableError);
    expect(hits).toEqual([]);
  });

  it("accepts any certificate with federation_verify_certificates false", async () => {
    const port = await start("self-signed", otherCa.issue({ ips: ["127.0.0.9"] }));
    const response = await get(new HttpsFederationTransport({ verifyCertificates: false }), `127.0.0.1:${port}`);
    expect(response.status).toBe(200);
  });

  it("sends SNI for a hostname and none for an IP literal; Host is the server name", async () => {
    const port = await start("direct", good);
    const t = transport();
    await (await get(t, `127.0.0.1:${port}`)).arrayBuffer();
    await (await get(t, `localhost:${port}`)).arrayBuffer();
    expect(hits).toEqual([
      { server: "direct", host: `127.0.0.1:${port}`, sni: false, path: "/_matrix/federation/v1/version" },
      { server: "direct", host: `localhost:${port}`, sni: "localhost", path: "/_matrix/federation/v1/version" },
    ]);
  });

  it("splits a PEM bundle into its certificates", () => {
    expect(splitPem(`junk\n${ca.cert}\n${otherCa.cert}`)).toHaveLength(2);
    expect(splitPem("no certificate here")).toEqual([]);
  });
});

describe("server discovery over HTTPS", () => {
  /** A transport whose well-known fetches go to `wellKnownPort` and whose default port is `defaultPort`. */
  function discovering(wellKnownPort: number, srv: Record<string, SrvRecord[]> = {}, defaultPort = 1): { t: HttpsFederationTransport; srvAsked: string[] } {
    const srvAsked: string[] = [];
    const t = transport({
      discovery: {
        wellKnownPort,
        defaultPort,
        resolveSrv: async (name) => {
          srvAsked.push(name);
          return srv[name] ?? [];
        },
      },
    });
    return { t, srvAsked };
  }
  const wellKnownAnswer = (status: number, body: string, headers: Record<string, string> = {}) => (_q: IncomingMessage, s: ServerResponse) => {
    s.writeHead(status, { "Content-Type": "application/json", ...headers });
    s.end(body);
  };

  it("an explicit port goes straight there: no well-known, no SRV", async () => {
    const port = await start("direct", good);
    const { t, srvAsked } = discovering(1);
    expect((await get(t, `localhost:${port}`)).status).toBe(200);
    expect(srvAsked).toEqual([]);
    expect(hits.map((h) => h.server)).toEqual(["direct"]);
  });

  it("follows /.well-known/matrix/server to a delegated host and port, and caches it", async () => {
    const target = await start("delegated", good);
    const wk = await start("well-known", good, wellKnownAnswer(200, JSON.stringify({ "m.server": `localhost:${target}` })));
    const { t, srvAsked } = discovering(wk);
    await (await get(t, "localhost")).arrayBuffer();
    await (await get(t, "localhost", "/_matrix/key/v2/server")).arrayBuffer();
    expect(hits).toEqual([
      { server: "well-known", host: `localhost:${wk}`, sni: "localhost", path: "/.well-known/matrix/server" },
      // "Requests must be made with a Host header of <delegated_hostname>:<delegated_port>."
      { server: "delegated", host: `localhost:${target}`, sni: "localhost", path: "/_matrix/federation/v1/version" },
      { server: "delegated", host: `localhost:${target}`, sni: "localhost", path: "/_matrix/key/v2/server" },
    ]);
    expect(srvAsked).toEqual([]);
  });

  it("a delegated IP literal: Host is the IP with its port, no SNI", async () => {
    const target = await start("delegated-ip", good);
    const wk = await start("well-known", good, wellKnownAnswer(200, JSON.stringify({ "m.server": `127.0.0.1:${target}` })));
    const { t } = discovering(wk);
    expect((await get(t, "localhost")).status).toBe(200);
    expect(hits[1]).toEqual({ server: "delegated-ip", host: `127.0.0.1:${target}`, sni: false, path: "/_matrix/federation/v1/version" });
  });

  it("a delegated hostname without a port: its SRV record, Host the delegated name", async () => {
    const target = await start("srv-target", good);
    const wk = await start("well-known", good, wellKnownAnswer(200, JSON.stringify({ "m.server": "localhost" })));
    const { t, srvAsked } = discovering(wk, { "_matrix-fed._tcp.localhost": [{ name: "127.0.0.1", port: target, priority: 10, weight: 5 }] });
    expect((await get(t, "localhost")).status).toBe(200);
    expect(srvAsked).toEqual(["_matrix-fed._tcp.localhost"]);
    expect(hits[1]).toEqual({ server: "srv-target", host: "localhost", sni: "localhost", path: "/_matrix/federation/v1/version" });
  });

  it("without a valid well-known: SRV _matrix-fed._tcp, then the deprecated _matrix._tcp, then port 8448", async () => {
    const fed = await start("matrix-fed", good);
    const old = await start("matrix-legacy", good);
    const fallback = await start("default-port", good);
    for (const [answer, srv, expected] of [
      [wellKnownAnswer(404, '{"errcode":"M_NOT_FOUND"}'), { "_matrix-fed._tcp.localhost": [{ name: "localhost.", port: fed, priority: 0, weight: 0 }], "_matrix._tcp.localhost": [{ name: "localhost", port: old, priority: 0, weight: 0 }] }, "matrix-fed"],
      [wellKnownAnswer(200, "not json"), { "_matrix._tcp.localhost": [{ name: "localhost", port: old, priority: 0, weight: 0 }] }, "matrix-legacy"],
      [wellKnownAnswer(200, JSON.stringify({ "m.server": "bad name!" })), {}, "default-port"],
      [wellKnownAnswer(200, JSON.stringify({ other: 1 })), {}, "default-port"],
    ] as const) {
      hits.length = 0;
      const wk = await start("well-known", good, answer);
      const { t } = discovering(wk, srv as Record<string, SrvRecord[]>, fallback);
      expect((await get(t, "localhost")).status).toBe(200);
      // "Requests are made to the resolved IP address and port, with a Host header of <hostname>."
      expect(hits[1], expected).toEqual({ server: expected, host: "localhost", sni: "localhost", path: "/_matrix/federation/v1/version" });
    }
  });

  it("follows well-known redirects, and gives up on a redirect loop", async () => {
    const target = await start("delegated", good);
    const wk = await start("well-known", good, (req, res) => {
      if (req.url === "/.well-known/matrix/server") res.writeHead(302, { Location: "/moved" }).end();
      else if (req.url === "/moved") wellKnownAnswer(200, JSON.stringify({ "m.server": `localhost:${target}` }))(req, res);
      else res.writeHead(301, { Location: req.url === "/loop-a" ? "/loop-b" : "/loop-a" }).end();
    });
    const { t } = discovering(wk);
    expect((await get(t, "localhost")).status).toBe(200);
    expect(hits.map((h) => h.path)).toEqual(["/.well-known/matrix/server", "/moved", "/_matrix/federation/v1/version"]);

    const loop = await start("loop", good, (req, res) => res.writeHead(302, { Location: req.url === "/loop-a" ? "/loop-b" : "/loop-a" }).end());
    const fallback = await start("default-port", good);
    hits.length = 0;
    const looping = discovering(loop, {}, fallback);
    expect((await get(looping.t, "localhost")).status).toBe(200);
    expect(hits.map((h) => h.server)).toEqual(["loop", "loop", "loop", "default-port"]);
  });

  it("tries the next SRV target when one cannot be connected to", async () => {
    const alive = await start("alive", good);
    const { t } = discovering(1, {
      "_matrix-fed._tcp.localhost": [
        { name: "127.0.0.1", port: 1, priority: 0, weight: 0 },
        { name: "127.0.0.1", port: alive, priority: 5, weight: 0 },
      ],
    });
    expect((await get(t, "localhost")).status).toBe(200);
    expect(hits.map((h) => h.server)).toEqual(["alive"]);
  });

  it("rejects when nothing answers", async () => {
    const { t } = discovering(1);
    await expect(get(t, "localhost")).rejects.toBeInstanceOf(UnreachableError);
    await expect(get(t, "under_score.example")).rejects.toThrow(/not a server name/);
  });
});

describe("answer size cap", () => {
  it("refuses an answer whose Content-Length is over the cap, and fails a streamed one past it", async () => {
    const big = "x".repeat(5000);
    const declared = await start("declared", good, (_q, s) => s.writeHead(200, { "Content-Length": String(big.length) }).end(big));
    const streamed = await start("streamed", good, (_q, s) => {
      s.writeHead(200);
      s.write(big.slice(0, 2500));
      setTimeout(() => s.end(big.slice(2500)), 10);
    });
    const t = transport({ maxResponseBytes: 4096 });
    await expect(get(t, `127.0.0.1:${declared}`)).rejects.toBeInstanceOf(ResponseTooLargeError);
    const response = await get(t, `127.0.0.1:${streamed}`);
    await expect(response.text()).rejects.toBeInstanceOf(ResponseTooLargeError);
    expect((await (await get(transport({ maxResponseBytes: 5000 }), `127.0.0.1:${streamed}`)).text()).length).toBe(5000);
  });
});

describe("discovery rules", () => {
  it("parses server names", () => {
    expect(parseServerName("example.org")).toEqual({ host: "example.org", isIpLiteral: false });
    expect(parseServerName("example.org:8448")).toEqual({ host: "example.org", port: 8448, isIpLiteral: false });
    expect(parseServerName("1.2.3.4:5")).toEqual({ host: "1.2.3.4", port: 5, isIpLiteral: true });
    expect(parseServerName("[::1]:8448")).toEqual({ host: "::1", port: 8448, isIpLiteral: true });
    expect(parseServerName("[::1]")).toEqual({ host: "::1", isIpLiteral: true });
    for (const bad of ["", "a b", "host:", "host:99999", "host:0", "[nothex]", "[::1", "::1"]) expect(parseServerName(bad), bad).toBeUndefined();
  });

  it("reads well-known bodies and cache lifetimes", () => {
    expect(parseWellKnown('{"m.server":"a.example:443"}')).toBe("a.example:443");
    for (const bad of ["", "[]", "null", '{"m.server":5}', '{"m.server":"a b"}', "{"]) expect(parseWellKnown(bad), bad).toBeUndefined();
    expect(cacheLifetimeMs("public, max-age=3600", null, 0)).toBe(3_600_000);
    expect(cacheLifetimeMs("no-store", null, 0)).toBe(0);
    expect(cacheLifetimeMs(null, new Date(10_000).toUTCString(), 4_000)).toBe(6_000);
    expect(cacheLifetimeMs(null, null, 0)).toBeUndefined();
  });

  it("orders SRV records by priority, then by weight", () => {
    const records: SrvRecord[] = [
      { name: "c", port: 3, priority: 20, weight: 0 },
      { name: "a", port: 1, priority: 10, weight: 0 },
      { name: "b", port: 2, priority: 10, weight: 100 },
    ];
    // A pick at the start of the weight range falls on the only weighted record of priority 10.
    expect(orderSrv(records, () => 0).map((r) => r.name)).toEqual(["b", "a", "c"]);
    expect(orderSrv([{ name: ".", port: 0, priority: 0, weight: 0 }], Math.random)).toHaveLength(1);
  });

  it("caches well-known answers for their lifetime (clamped), errors for an hour, and backs off when unreachable", async () => {
    let now = 0;
    const answers: WellKnownResult[] = [];
    let fetches = 0;
    const discovery = new ServerDiscovery({
      clock: () => now,
      resolveSrv: async () => [],
      fetchWellKnown: async () => {
        fetches++;
        return answers.shift() ?? { kind: "unreachable" };
      },
    });
    const resolveHost = async () => (await discovery.resolve("example.org"))[0]!;
    answers.push({ kind: "answer", status: 200, body: '{"m.server":"delegate.example:1234"}', maxAgeMs: 0 });
    expect(await resolveHost()).toEqual({ connectHost: "delegate.example", port: 1234, hostHeader: "delegate.example:1234", tlsName: "delegate.example" });
    // max-age=0 is raised to five minutes.
    now += 4 * 60_000;
    await resolveHost();
    expect(fetches).toBe(1);
    now += 2 * 60_000;
    answers.push({ kind: "answer", status: 200, body: '{"m.server":"delegate.example:1234"}', maxAgeMs: 100 * 3_600_000 });
    await resolveHost();
    expect(fetches).toBe(2);
    // …and 100 hours lowered to 48.
    now += 47 * 3_600_000;
    await resolveHost();
    expect(fetches).toBe(2);
    now += 2 * 3_600_000;
    answers.push({ kind: "answer", status: 404, body: "" });
    expect(await resolveHost()).toEqual({ connectHost: "example.org", port: 8448, hostHeader: "example.org", tlsName: "example.org" });
    expect(fetches).toBe(3);
    now += 59 * 60_000;
    await resolveHost();
    expect(fetches).toBe(3);
    // Unreachable: 2 minutes, then 4, then 8…
    now += 2 * 60_000;
    await resolveHost();
    expect(fetches).toBe(4);
    now += 2 * 60_000 + 1;
    await resolveHost();
    expect(fetches).toBe(5);
    now += 3 * 60_000;
    await resolveHost();
    expect(fetches).toBe(5);
    now += 60_000 + 1;
    await resolveHost();
    expect(fetches).toBe(6);
  });
});
