/** The parts of state resolution v2/v2.1 on small hand-made DAGs (no signing needed). */
import { describe, expect, it } from "vitest";
import type { Pdu } from "../../../src/homeserver/events/types.ts";
import type { ResolvableEvent } from "../../../src/homeserver/rooms/authChain.ts";
import { EventCache, authChain } from "../../../src/homeserver/rooms/authChain.ts";
import { conflictedSubgraph, mainlineOrder, reverseTopologicalPowerOrder } from "../../../src/homeserver/rooms/stateRes.ts";
import { roomVersion } from "../../../src/homeserver/rooms/versions.ts";

type Opts = { type?: string; stateKey?: string; sender?: string; auth?: string[]; ts?: number; content?: Record<string, unknown> };
function dag(specs: Record<string, Opts>): { cache: EventCache; ev: (id: string) => ResolvableEvent } {
  const events = new Map<string, ResolvableEvent>();
  for (const [id, o] of Object.entries(specs)) {
    const pdu: Pdu = {
      room_id: "!r:x", type: o.type ?? "m.room.member", state_key: o.stateKey ?? id, sender: o.sender ?? "@low:x",
      content: o.content ?? { membership: "join" }, prev_events: [], auth_events: o.auth ?? [], depth: 1,
      origin_server_ts: o.ts ?? 0, hashes: { sha256: "" }, signatures: {},
    };
    events.set(id, { eventId: id, pdu });
  }
  const cache = new EventCache((id) => events.get(id));
  return { cache, ev: (id) => events.get(id)! };
}

describe("conflicted state subgraph (v2.1)", () => {
  it("is every auth path between conflicted events, endpoints included, and nothing else", async () => {
    // Auth edges: C → B → A, C → D → Z, E → A. Conflicted: A, C, E.
    const { cache } = dag({ A: {}, B: { auth: ["A"] }, C: { auth: ["B", "D"] }, D: { auth: ["Z"] }, Z: {}, E: { auth: ["A"] } });
    const sub = await conflictedSubgraph(new Set(["A", "C", "E"]), cache);
    // B lies on C → B → A; D and Z lead to no conflicted event.
    expect([...sub].sort()).toEqual(["A", "B", "C", "E"]);
  });
  it("authChain excludes the start events but includes everything reachable", async () => {
    const { cache } = dag({ A: {}, B: { auth: ["A"] }, C: { auth: ["B"] } });
    expect([...(await authChain(["C"], cache))].sort()).toEqual(["A", "B"]);
  });
});

describe("reverse topological power ordering", () => {
  it("orders by auth DAG, then higher sender power, then earlier timestamp, then event ID", async () => {
    const pl = { type: "m.room.power_levels", stateKey: "", content: { users: { "@hi:x": 100, "@mid:x": 50 } } };
    const { cache, ev } = dag({
      create: { type: "m.room.create", stateKey: "", sender: "@hi:x", content: { creator: "@hi:x" } },
      P: { ...pl, auth: ["create"] },
      x1: { sender: "@mid:x", ts: 1, auth: ["create", "P"] },
      x2: { sender: "@hi:x", ts: 5, auth: ["create", "P"] },
      x0: { sender: "@hi:x", ts: 5, auth: ["create", "P"] },
      x3: { sender: "@low:x", ts: 0, auth: ["create", "P"] },
      x5: { sender: "@hi:x", ts: 0, auth: ["create", "P", "x3"] },
    });
    await authChain(["x1", "x2", "x0", "x3", "x5"], cache);
    const order = await reverseTopologicalPowerOrder(["x5", "x3", "x2", "x1", "x0"].map(ev), roomVersion("10")!, ev("create"), cache);
    // hi (100): x0 and x2 tie on power and ts → by ID; then mid x1; then low x3; x5 waits for x3.
    expect(order.map((e) => e.eventId)).toEqual(["x0", "x2", "x1", "x3", "x5"]);
  });
  it("v12: the create event's sender sorts first without being listed", async () => {
    const { cache, ev } = dag({
      create: { type: "m.room.create", stateKey: "", sender: "@c:x", content: {} },
      P: { type: "m.room.power_levels", stateKey: "", content: { users: { "@hi:x": 100 } } },
      a: { sender: "@hi:x", ts: 0, auth: ["P"] },
      b: { sender: "@c:x", ts: 9, auth: ["P"] },
    });
    await authChain(["a", "b"], cache);
    const order = await reverseTopologicalPowerOrder([ev("a"), ev("b")], roomVersion("12")!, ev("create"), cache);
    expect(order.map((e) => e.eventId)).toEqual(["b", "a"]);
  });
});

describe("mainline ordering", () => {
  it("sorts by mainline position (∞ first, then deeper), then timestamp, then ID", async () => {
    const pl = (auth: string[]) => ({ type: "m.room.power_levels", stateKey: "", auth });
    const { cache, ev } = dag({
      P2: pl([]), P1: pl(["P2"]), P0: pl(["P1"]), Q: pl(["P1"]),
      e1: { type: "m.room.topic", stateKey: "", ts: 7, auth: ["P1"] },
      e2: { type: "m.room.topic", stateKey: "", ts: 9, auth: ["P2"] },
      e3: { type: "m.room.topic", stateKey: "", ts: 3, auth: ["Q"] },
      e4: { type: "m.room.topic", stateKey: "", ts: 99, auth: [] },
      e5: { type: "m.room.topic", stateKey: "", ts: 1, auth: ["P0"] },
      e6: { type: "m.room.topic", stateKey: "", ts: 3, auth: ["Q"] },
    });
    // Mainline of P0: [P0 (0), P1 (1), P2 (2)]. Positions: e4 ∞ (no power levels), e2 2, e1 1,
    // e3/e6 1 (via Q → P1: Q is not on the mainline, so j = 2 gives P1), e5 0.
    const order = await mainlineOrder(["e1", "e2", "e3", "e4", "e5", "e6"].map(ev), "P0", cache);
    expect(order.map((e) => e.eventId)).toEqual(["e4", "e2", "e3", "e6", "e1", "e5"]);
  });
});
