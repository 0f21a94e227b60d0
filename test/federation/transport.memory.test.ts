/** The in-memory network of the multi-server harness passes the transport compliance suite. */
import { MemoryNetwork } from "../../src/homeserver/federation/transport.ts";
import { transportCompliance } from "./transportCompliance.ts";

transportCompliance("MemoryNetwork", async () => {
  const network = new MemoryNetwork();
  let n = 0;
  return {
    transport: network.transportFor("origin.test"),
    serve: async (handler) => {
      const name = `server${++n}.test`;
      network.attach(name, handler);
      return name;
    },
    unreachable: async () => "nobody.test",
    close: async () => {},
  };
});
