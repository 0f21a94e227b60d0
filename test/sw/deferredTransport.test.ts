/**
 * The worker's federation transport while its libp2p node starts (src/sw/federation.ts): the homeserver
 * is built on it before the node exists, so nothing may be lost or refused early.
 */
import { describe, expect, it } from "vitest";
import { DeferredTransport } from "../../src/sw/federation.ts";
import type { FederationTransport } from "../../src/homeserver/federation/transport.ts";
import { UnreachableError } from "../../src/homeserver/federation/transport.ts";

/** A transport that answers every request with its destination, and lets the test announce reachability. */
function fakeTransport(): FederationTransport & { reach(server: string): void; listeners: Set<(s: string) => void> } {
  const listeners = new Set<(s: string) => void>();
  return {
    listeners,
    request: async (destination) => new Response(destination),
    onlineServers: async () => ["b.example"],
    onReachable(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    reach: (server) => listeners.forEach((l) => l(server)),
  };
}

describe("DeferredTransport", () => {
  it("holds requests until the node is attached, then sends them through it", async () => {
    const deferred = new DeferredTransport();
    let answered = false;
    const pending = deferred.request("a.example", new Request("matrix-federation://a.example/x")).then(async (r) => {
      answered = true;
      return r.text();
    });
    const online = deferred.onlineServers();
    await new Promise((r) => setTimeout(r, 20));
    expect(answered).toBe(false);
    deferred.attach(fakeTransport());
    expect(await pending).toBe("a.example");
    expect(await online).toEqual(["b.example"]);
    expect(await (await deferred.request("c.example", new Request("matrix-federation://c.example/x"))).text()).toBe("c.example");
  });

  it("fails requests as unreachable when no node will run", async () => {
    const deferred = new DeferredTransport();
    const pending = deferred.request("a.example", new Request("matrix-federation://a.example/x"));
    deferred.fail("no rendezvous configured");
    await expect(pending).rejects.toBeInstanceOf(UnreachableError);
    await expect(pending).rejects.toThrow(/no rendezvous configured/);
    expect(await deferred.onlineServers()).toEqual([]);
  });

  it("passes reachability listeners registered before the node to it, and unsubscribes them", async () => {
    const deferred = new DeferredTransport();
    const heard: string[] = [];
    const off = deferred.onReachable((s) => heard.push(s));
    const node = fakeTransport();
    deferred.attach(node);
    node.reach("b.example");
    expect(heard).toEqual(["b.example"]);
    off();
    expect(node.listeners.size).toBe(0);
    node.reach("c.example");
    expect(heard).toEqual(["b.example"]);
  });
});
