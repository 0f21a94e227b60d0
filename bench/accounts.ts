/**
 * Accounts and the Node listener: password login against the raw PBKDF2 it is built on, token
 * authentication against an unauthenticated request, and the HTTP listener against calling
 * `handle` directly.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { Bench, Figure } from "./harness.ts";
import { rate, versus } from "./harness.ts";
import { createHomeserver } from "../src/homeserver/homeserver.ts";
import { DEFAULT_CONFIG, silentLogger } from "../src/homeserver/context.ts";
import { hashPassword, verifyPassword } from "../src/homeserver/auth/password.ts";
import { createMemoryStore } from "../src/storage/memory.ts";
import { startNode } from "../src/node/runner.ts";
import { DEFAULTS } from "../src/node/config.ts";

const random = (n: number): Uint8Array => crypto.getRandomValues(new Uint8Array(n));

export const accountsBench: Bench = async () => {
  const figures: Figure[] = [];
  const iterations = DEFAULT_CONFIG.passwordIterations;
  const hs = await createHomeserver({ store: createMemoryStore(), seed: random(32), serverName: "bench.test" });
  const reg = await hs.handle(
    new Request("http://b/_matrix/client/v3/register", { method: "POST", body: JSON.stringify({ username: "u", password: "pw", auth: { type: "m.login.dummy" } }) }),
  );
  const { access_token: token } = (await reg.json()) as { access_token: string };

  const hash = await hashPassword("pw", iterations, random);
  const pbkdf2 = await rate(() => verifyPassword("pw", hash), 1500);
  const login = await rate(async () => {
    const r = await hs.handle(new Request("http://b/_matrix/client/v3/login", { method: "POST", body: JSON.stringify({ type: "m.login.password", user: "u", password: "pw" }) }));
    if (r.status !== 200) throw new Error(`login ${r.status}`);
  }, 1500);
  figures.push(versus(`POST /login (m.login.password, ${iterations} PBKDF2-SHA512 iterations)`, login, "logins/s", "raw PBKDF2 verify", pbkdf2, "verifies/s"));

  const versions = await rate(() => hs.handle(new Request("http://b/_matrix/client/versions")));
  const whoami = await rate(() => hs.handle(new Request("http://b/_matrix/client/v3/account/whoami", { headers: { Authorization: `Bearer ${token}` } })));
  figures.push(versus("GET /account/whoami via handle (token lookup)", whoami, "req/s", "GET /versions via handle (no auth)", versions));

  // The listener against a bare node:http server answering a constant, both driven by fetch.
  const bare = createServer((_req, res) => {
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end("{}");
  });
  await new Promise<void>((r) => bare.listen(0, "127.0.0.1", () => r()));
  const dataDir = await mkdtemp(join(tmpdir(), "hyphae-bench-"));
  const node = await startNode({ ...DEFAULTS, httpPort: 0, dataDir }, { logger: silentLogger, openStore: async () => createMemoryStore() });
  try {
    const bareUrl = `http://127.0.0.1:${(bare.address() as AddressInfo).port}/`;
    const raw = await rate(async () => {
      await (await fetch(bareUrl)).arrayBuffer();
    });
    const overHttp = await rate(async () => {
      await (await fetch(`${node.httpUrl}/_matrix/client/versions`)).arrayBuffer();
    });
    figures.push(versus("GET /versions over the Node HTTP listener (fetch, keep-alive)", overHttp, "req/s", "bare node:http answering {} (same client)", raw));
  } finally {
    await node.close();
    await new Promise<void>((r) => bare.close(() => r()));
    await rm(dataDir, { recursive: true, force: true });
  }
  return figures;
};
