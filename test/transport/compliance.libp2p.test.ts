/**
 * The libp2p transport passes the federation transport compliance suite: real libp2p nodes on
 * loopback websockets, each server reached through a test rendezvous (a relayed connection).
 */
import { Libp2pFederationTransport, serveHttp } from "../../src/transport/http.ts";
import { serverNameFromSeed } from "../../src/homeserver/keys/server.ts";
import { transportCompliance } from "../federation/transportCompliance.ts";
import { closeAll, startPeer, startRendezvous } from "./p2pHarness.ts";

transportCompliance("libp2p", async () => {
  const rendezvous = await startRendezvous();
  const origin = await startPeer({ rendezvous: [rendezvous.addr] });
  return {
    transport: new Libp2pFederationTransport(origin.node),
    serve: async (handler) => {
      const server = await startPeer({ rendezvous: [rendezvous.addr] });
      await serveHttp(server.node, (request) => handler(request), { serverName: server.serverName, maxBodyBytes: () => 16 * 1024 * 1024 });
      return server.serverName;
    },
    unreachable: async () => serverNameFromSeed(crypto.getRandomValues(new Uint8Array(32))),
    close: closeAll,
  };
});
