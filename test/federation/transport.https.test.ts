/**
 * The classic-mode HTTPS transport passes the transport compliance suite: real TLS on loopback with
 * a certificate from a test CA, the Node runner's own request listener on the other end.
 */
import { createServer } from "node:https";
import type { Server } from "node:https";
import type { AddressInfo } from "node:net";
import { HttpsFederationTransport } from "../../src/node/federationHttps.ts";
import { createRequestListener } from "../../src/node/listener.ts";
import { silentLogger } from "../../src/homeserver/context.ts";
import { createTestCa } from "../node/testCa.ts";
import { freePort } from "../e2e/serve.ts";
import { transportCompliance } from "./transportCompliance.ts";

transportCompliance("HTTPS", async () => {
  const ca = createTestCa();
  const tlsFiles = ca.issue({ ips: ["127.0.0.1"] });
  const servers: Server[] = [];
  const transport = new HttpsFederationTransport({ extraCa: [ca.cert] });
  return {
    transport,
    serve: async (handler) => {
      const listener = createRequestListener(handler, { scheme: "https", fallbackHost: "127.0.0.1", maxBodyBytes: 16 * 1024 * 1024, logger: silentLogger });
      const server = createServer(tlsFiles, listener);
      servers.push(server);
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
      return `127.0.0.1:${(server.address() as AddressInfo).port}`;
    },
    unreachable: async () => `127.0.0.1:${await freePort()}`,
    close: async () => {
      transport.close();
      for (const s of servers) s.closeAllConnections();
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    },
  };
});
