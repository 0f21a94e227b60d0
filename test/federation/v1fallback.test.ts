/**
 * Servers without the v2 membership API (server-server API "Unsupported endpoints"; joins-v2,
 * leaving-v2, invites-v2: retry with v1): an "old" server on the harness network answers every
 * `/_matrix/federation/v2/` request `404 M_UNRECOGNIZED`, and the new server joins its rooms through
 * v1 `send_join`, rejects its invites through v1 `send_leave`, and invites its users through v1
 * `invite` (room versions 1 and 2 only). The old server's v1 handlers are this codebase's own,
 * including the v1 `invite` it serves.
 */
import { afterEach, describe, expect, it } from "vitest";
import { FederationError } from "../../src/homeserver/federation/client.ts";
import { endpointUnsupported } from "../../src/homeserver/federation/remoteMembership.ts";
import type { Federation, FedServer, Reply } from "./harness.ts";
import { createFederation } from "./harness.ts";
import { eventually, membershipOn } from "./fedtools.ts";

let fed: Federation | undefined;
afterEach(async () => {
  await fed?.close();
  fed = undefined;
});

const enc = encodeURIComponent;

/** Starts a.test (current) and b.test, which lacks the v2 API; returns B's log of inbound federation requests. */
async function setup(): Promise<{ a: FedServer; b: FedServer; seenByB: string[] }> {
  fed = await createFederation(["a.test", "b.test"]);
  const [a, b] = fed.servers as [FedServer, FedServer];
  const seenByB: string[] = [];
  fed.network.attach(b.name, async (request) => {
    const path = new URL(request.url).pathname;
    seenByB.push(`${request.method} ${path.replace(/\/[^/]*$/, "/…").replace(/![^/]*/, "!room")}`);
    if (path.startsWith("/_matrix/federation/v2/")) {
      return new Response(JSON.stringify({ errcode: "M_UNRECOGNIZED", error: "Unrecognized request" }), { status: 404, headers: { "Content-Type": "application/json" } });
    }
    return b.hs.handle(request);
  });
  return { a, b, seenByB };
}

/** A signed federation request from `from` to `to`: the answer's status and body. */
async function fedCall(from: FedServer, to: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  try {
    return { status: 200, body: await from.hs.services.federation!.json<unknown>(to, method, path, body !== undefined ? { body } : {}) };
  } catch (err) {
    if (err instanceof FederationError) return { status: err.status, body: err.body ?? {} };
    throw err;
  }
}

function stateIds(r: Reply): string[] {
  return (r.body as unknown as { event_id: string }[]).map((e) => e.event_id).sort();
}

describe("a server without the v2 membership API", () => {
  it("is joined through v1 send_join after its 404 M_UNRECOGNIZED, and the joiner holds the verified state", async () => {
    const { a, b, seenByB } = await setup();
    const bob = await b.register("bob");
    const alice = await a.register("alice");
    const created = await b.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat", name: "Old" }, bob.token);
    const roomId = created.body.room_id as string;

    const joined = await a.call("POST", `/_matrix/client/v3/join/${enc(roomId)}?server_name=b.test`, {}, alice.token);
    expect(joined).toEqual({ status: 200, body: { room_id: roomId } });
    expect(seenByB).toContain("PUT /_matrix/federation/v2/send_join/!room/…");
    expect(seenByB).toContain("PUT /_matrix/federation/v1/send_join/!room/…");
    expect(await membershipOn(b, roomId, alice.userId, bob.token)).toBe("join");
    const onA = await a.call("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/state`, undefined, alice.token);
    expect(stateIds(onA)).toEqual(stateIds(await b.call("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/state`, undefined, bob.token)));
    expect((await a.call("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.name`, undefined, alice.token)).body).toEqual({ name: "Old" });
  });

  it("has its invite rejected through v1 send_leave", async () => {
    const { a, b, seenByB } = await setup();
    const bob = await b.register("bob");
    const alice = await a.register("alice");
    const roomId = (await b.call("POST", "/_matrix/client/v3/createRoom", { preset: "private_chat", invite: [alice.userId] }, bob.token)).body.room_id as string;
    expect(await membershipOn(b, roomId, alice.userId, bob.token)).toBe("invite");

    expect((await a.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {}, alice.token)).status).toBe(200);
    expect(seenByB).toContain("PUT /_matrix/federation/v2/send_leave/!room/…");
    expect(seenByB).toContain("PUT /_matrix/federation/v1/send_leave/!room/…");
    // B learned of the rejection through the handshake (not only A's local leave).
    expect(await membershipOn(b, roomId, alice.userId, bob.token)).toBe("leave");
  });

  it("gets v1 invites for rooms of version 1 and 2, whose invitee then joins; later versions are refused with 400 M_INCOMPATIBLE_ROOM_VERSION", async () => {
    const { a, b, seenByB } = await setup();
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    for (const version of ["1", "2"]) {
      const roomId = (await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "private_chat", room_version: version, name: `v${version}` }, alice.token)).body.room_id as string;
      seenByB.length = 0;
      const invited = await a.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, { user_id: bob.userId }, alice.token);
      expect(invited, JSON.stringify(invited.body)).toEqual({ status: 200, body: {} });
      expect(seenByB).toEqual(["PUT /_matrix/federation/v2/invite/!room/…", "PUT /_matrix/federation/v1/invite/!room/…"]);
      // The invite A stored carries B's signature; B's user sees it with its stripped state and joins.
      const state = (await a.call("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/state`, undefined, alice.token)).body as unknown as { type: string; state_key: string; event_id: string }[];
      const inviteId = state.find((e) => e.type === "m.room.member" && e.state_key === bob.userId)!.event_id;
      const stored = await a.store.read((tx) => tx.get<{ pdu: { signatures: Record<string, unknown> } }>("events", inviteId));
      expect(Object.keys(stored!.pdu.signatures).sort()).toEqual(["a.test", "b.test"]);
      await eventually(
        async () => {
          const sync = await b.call("GET", "/_matrix/client/v3/sync", undefined, bob.token);
          const events = sync.body.rooms?.invite?.[roomId]?.invite_state?.events as { type: string; content: Record<string, unknown> }[] | undefined;
          return events?.some((e) => e.type === "m.room.name" && e.content.name === `v${version}`) === true;
        },
        `bob sees the v${version} invite`,
        10_000,
      );
      expect((await b.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/join`, {}, bob.token)).status).toBe(200);
      expect(await membershipOn(a, roomId, bob.userId, alice.token)).toBe("join");
    }

    const modern = (await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "private_chat", room_version: "10" }, alice.token)).body.room_id as string;
    seenByB.length = 0;
    const refused = await a.call("POST", `/_matrix/client/v3/rooms/${enc(modern)}/invite`, { user_id: bob.userId }, alice.token);
    expect(refused.status).toBe(400);
    expect(refused.body.errcode).toBe("M_INCOMPATIBLE_ROOM_VERSION");
    expect(seenByB).toEqual(["PUT /_matrix/federation/v2/invite/!room/…"]);
    expect(await membershipOn(a, modern, bob.userId, alice.token)).toBeUndefined();
  });

  it("is not asked v1 when the v2 answer is the endpoint's own error (404 M_NOT_FOUND)", () => {
    expect(endpointUnsupported(new FederationError("x", 404, "", "M_UNRECOGNIZED"))).toBe(true);
    expect(endpointUnsupported(new FederationError("x", 405, "", "M_UNRECOGNIZED"))).toBe(true);
    expect(endpointUnsupported(new FederationError("x", 400, "", "M_UNRECOGNIZED"))).toBe(true);
    expect(endpointUnsupported(new FederationError("x", 404, "404 page not found"))).toBe(true);
    expect(endpointUnsupported(new FederationError("x", 404, "", "M_NOT_FOUND"))).toBe(false);
    expect(endpointUnsupported(new FederationError("x", 400, "", "M_INVALID_PARAM"))).toBe(false);
    expect(endpointUnsupported(new FederationError("x", 403, "", "M_FORBIDDEN"))).toBe(false);
    expect(endpointUnsupported(new FederationError("x", 0, "unreachable"))).toBe(false);
  });
});

describe("the v1 invite endpoint, served", () => {
  it("signs an invite of a version 1 room ([200, {event}], unsigned kept) and refuses what is not an invite of its user", async () => {
    fed = await createFederation(["a.test", "b.test"]);
    const [a, b] = fed.servers as [FedServer, FedServer];
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const roomId = (await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "private_chat", room_version: "1", name: "One" }, alice.token)).body.room_id as string;
    // An invite event as A builds it: A's own invite of bob, through the v2 path, gives us a signed v1-format event to replay.
    expect((await a.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, { user_id: bob.userId }, alice.token)).status).toBe(200);
    const state = (await a.call("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/state`, undefined, alice.token)).body as unknown as { type: string; state_key: string; event_id: string }[];
    const inviteId = state.find((e) => e.type === "m.room.member" && e.state_key === bob.userId)!.event_id;
    const stored = await a.store.read((tx) => tx.get<{ pdu: Record<string, any> }>("events", inviteId));
    const { unsigned: _u, signatures, ...rest } = stored!.pdu;
    const ours = { ...rest, signatures: { "a.test": signatures["a.test"] } };
    const create = state.find((e) => e.type === "m.room.create")!.event_id;
    const createPdu = (await a.store.read((tx) => tx.get<{ pdu: Record<string, any> }>("events", create)))!.pdu;
    const { unsigned: _cu, ...createFed } = createPdu;
    const unsigned = { invite_room_state: [createFed] };

    const answer = await fedCall(a, "b.test", "PUT", `/_matrix/federation/v1/invite/${enc(roomId)}/${enc(inviteId)}`, { ...ours, unsigned });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(Array.isArray(answer.body) && answer.body[0]).toBe(200);
    const event = answer.body[1].event as Record<string, any>;
    expect(event.unsigned).toEqual(unsigned);
    expect(Object.keys(event.signatures).sort()).toEqual(["a.test", "b.test"]);
    const { signatures: _s1, unsigned: _u1, ...sentRest } = { ...ours, unsigned };
    const { signatures: _s2, unsigned: _u2, ...gotRest } = event;
    expect(gotRest).toEqual(sentRest);

    // Not an invite (a join), and an invite of someone else's user: 400 M_INVALID_PARAM.
    const notInvite = await fedCall(a, "b.test", "PUT", `/_matrix/federation/v1/invite/${enc(roomId)}/${enc(inviteId)}`, { ...ours, content: { membership: "join" }, unsigned });
    expect(notInvite.status).toBe(400);
    expect(notInvite.body.errcode).toBe("M_INVALID_PARAM");
    const foreign = await fedCall(a, "b.test", "PUT", `/_matrix/federation/v1/invite/${enc(roomId)}/${enc(inviteId)}`, { ...ours, state_key: "@carol:c.test", unsigned });
    expect(foreign.status).toBe(400);
    expect(foreign.body.errcode).toBe("M_INVALID_PARAM");
  });
});
