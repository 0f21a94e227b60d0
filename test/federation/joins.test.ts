/**
 * Joining, leaving, inviting and knocking across servers (server-server API "Joining Rooms",
 * "Leaving Rooms (Rejecting Invites)", "Inviting to a room", "Knocking upon a room"), and
 * `/query/directory`: both sides, through the harness's real homeservers and real signatures.
 */
import { afterEach, describe, expect, it } from "vitest";
import { FederationError } from "../../src/homeserver/federation/client.ts";
import type { Federation, FedServer, Reply } from "./harness.ts";
import { createFederation } from "./harness.ts";
import { eventually, membershipOn } from "./fedtools.ts";

let fed: Federation | undefined;
afterEach(async () => {
  await fed?.close();
  fed = undefined;
});

const enc = encodeURIComponent;

/** A signed federation request from `from` to `to`: the answer's status and body. */
async function fedCall(from: FedServer, to: string, method: string, path: string, body?: unknown, query?: [string, string][]): Promise<Reply> {
  try {
    const r = await from.hs.services.federation!.json(to, method, path, { ...(body !== undefined ? { body } : {}), ...(query ? { query } : {}) });
    return { status: 200, body: r };
  } catch (err) {
    if (err instanceof FederationError) return { status: err.status, body: (err.body ?? {}) as Record<string, any> };
    throw err;
  }
}

async function stateOn(s: FedServer, roomId: string, token: string): Promise<Reply> {
  return s.call("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/state`, undefined, token);
}

async function setup(names = ["a.test", "b.test"]) {
  fed = await createFederation(names);
  const servers = fed.servers;
  const alice = await servers[0]!.register("alice");
  return { fed, servers, alice };
}

describe("joining a remote room", () => {
  it("by alias (/query/directory) and by ID with via: both servers hold the same state, the joiner verified it", async () => {
    const { servers, alice } = await setup();
    const [a, b] = servers as [FedServer, FedServer];
    const created = await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat", room_alias_name: "lobby", name: "Lobby" }, alice.token);
    expect(created.status).toBe(200);
    const roomId = created.body.room_id as string;
    const bob = await b.register("bob");

    // The alias resolves on B through A.
    const alias = await b.call("GET", `/_matrix/client/v3/directory/room/${enc("#lobby:a.test")}`);
    expect(alias).toEqual({ status: 200, body: { room_id: roomId, servers: ["a.test"] } });

    const joined = await b.call("POST", `/_matrix/client/v3/join/${enc("#lobby:a.test")}`, {}, bob.token);
    expect(joined).toEqual({ status: 200, body: { room_id: roomId } });
    // A accepted the join; B holds the room's state as A does.
    expect(await membershipOn(a, roomId, bob.userId, alice.token)).toBe("join");
    const onA = (await stateOn(a, roomId, alice.token)).body as { event_id: string }[];
    const onB = (await stateOn(b, roomId, bob.token)).body as { event_id: string }[];
    expect(onB.map((e) => e.event_id).sort()).toEqual(onA.map((e) => e.event_id).sort());
    const name = await b.call("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.name`, undefined, bob.token);
    expect(name.body).toEqual({ name: "Lobby" });
    expect((await b.call("GET", "/_matrix/client/v3/joined_rooms", undefined, bob.token)).body.joined_rooms).toEqual([roomId]);
    const members = await b.call("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/joined_members`, undefined, bob.token);
    expect(Object.keys(members.body.joined).sort()).toEqual([alice.userId, bob.userId].sort());
    // The room reaches B's /sync with its state.
    const sync = await b.call("GET", "/_matrix/client/v3/sync", undefined, bob.token);
    const room = sync.body.rooms.join[roomId];
    expect(room).toBeDefined();
    const seen = [...(room.state?.events ?? []), ...(room.timeline?.events ?? [])].map((e: { type: string }) => e.type);
    expect(seen).toContain("m.room.create");
    expect(seen).toContain("m.room.name");

    // By ID, with via (and the deprecated server_name spelling).
    const other = (await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, alice.token)).body.room_id as string;
    const carol = await b.register("carol");
    const noVia = await b.call("POST", `/_matrix/client/v3/join/${enc(other)}`, {}, carol.token);
    expect(noVia.status).toBe(404); // a v12 room ID names no server, and none was given
    expect((await b.call("POST", `/_matrix/client/v3/join/${enc(other)}?via=a.test`, {}, carol.token)).status).toBe(200);
    expect(await membershipOn(a, other, carol.userId, alice.token)).toBe("join");
    const dan = await b.register("dan");
    expect((await b.call("POST", `/_matrix/client/v3/join/${enc(other)}?server_name=a.test`, {}, dan.token)).status).toBe(200);
    expect(await membershipOn(b, other, dan.userId, dan.token)).toBe("join");

    // Before v12 a room ID names its server, which is enough to join through (and v1 uses
    // [id, hash] references and event IDs of the origin's domain).
    for (const version of ["10", "1"]) {
      const old = (await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat", room_version: version }, alice.token)).body.room_id as string;
      expect(old.endsWith(":a.test")).toBe(true);
      expect((await b.call("POST", `/_matrix/client/v3/join/${enc(old)}`, {}, dan.token)).status, version).toBe(200);
      expect(await membershipOn(a, old, dan.userId, alice.token)).toBe("join");
    }
  });

  it("fails, storing nothing, when the send_join answer holds a forged state event", async () => {
    const { fed, servers, alice } = await setup();
    const [a, b] = servers as [FedServer, FedServer];
    const roomId = (await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat", name: "Real" }, alice.token)).body.room_id as string;
    const bob = await b.register("bob");
    // A man in the middle changes the room's name in A's answer: the name event's content hash
    // then fails (it would be redacted, which is allowed) — so also change the power levels'
    // signed part, which no redaction can excuse.
    fed.network.attach("a.test", async (request) => {
      const response = await a.hs.handle(request);
      if (!new URL(request.url).pathname.includes("/send_join/")) return response;
      const body = (await response.json()) as { state: { type: string; content: Record<string, unknown> }[] };
      for (const e of body.state) if (e.type === "m.room.power_levels") e.content.users = { ...(e.content.users as object), [bob.userId]: 100 };
      return new Response(JSON.stringify(body), { status: response.status, headers: { "Content-Type": "application/json" } });
    });
    const r = await b.call("POST", `/_matrix/client/v3/join/${enc(roomId)}?via=a.test`, {}, bob.token);
    expect(r.status).toBe(502);
    expect(r.body.errcode).toBe("M_UNKNOWN");
    expect(await b.store.read((tx) => tx.get("rooms", roomId))).toBeUndefined();
    expect((await b.call("GET", "/_matrix/client/v3/joined_rooms", undefined, bob.token)).body.joined_rooms).toEqual([]);
    expect((await stateOn(b, roomId, bob.token)).status).toBe(404);

    // Without the man in the middle the same join works.
    fed.network.attach("a.test", (request) => a.hs.handle(request));
    expect((await b.call("POST", `/_matrix/client/v3/join/${enc(roomId)}?via=a.test`, {}, bob.token)).status).toBe(200);
    expect(await membershipOn(b, roomId, bob.userId, bob.token)).toBe("join");
  });

  it("is refused with the resident's 403 for an invite-only room, and answers 502 when no server can be reached", async () => {
    const { fed, servers, alice } = await setup();
    const [a, b] = servers as [FedServer, FedServer];
    const roomId = (await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "private_chat" }, alice.token)).body.room_id as string;
    const bob = await b.register("bob");
    const r = await b.call("POST", `/_matrix/client/v3/join/${enc(roomId)}?via=a.test`, {}, bob.token);
    expect(r.status).toBe(403);
    expect(r.body.errcode).toBe("M_FORBIDDEN");
    fed.network.setOnline("a.test", false);
    const down = await b.call("POST", `/_matrix/client/v3/join/${enc(roomId)}?via=a.test`, {}, bob.token);
    expect(down.status).toBe(502);
    expect((await b.call("POST", `/_matrix/client/v3/join/${enc(roomId)}?via=not%20a%20server`, {}, bob.token)).body.errcode).toBe("M_INVALID_PARAM");
  });
});

describe("inviting, rejecting, leaving, knocking", () => {
  it("a remote invite reaches the invitee's /sync with stripped state, and the invitee joins through the inviter", async () => {
    const { servers, alice } = await setup(["a.test", "b.test", "c.test"]);
    const [a, , c] = servers as [FedServer, FedServer, FedServer];
    const roomId = (await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "private_chat", name: "Secret" }, alice.token)).body.room_id as string;
    const cleo = await c.register("cleo");
    const inv = await a.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, { user_id: cleo.userId }, alice.token);
    expect(inv).toEqual({ status: 200, body: {} });
    // The invite A stored carries C's signature.
    const state = (await stateOn(a, roomId, alice.token)).body as { type: string; state_key: string; event_id: string }[];
    const inviteId = state.find((e) => e.type === "m.room.member" && e.state_key === cleo.userId)!.event_id;
    const stored = await a.store.read((tx) => tx.get<{ pdu: { signatures: Record<string, unknown> } }>("events", inviteId));
    expect(Object.keys(stored!.pdu.signatures).sort()).toEqual(["a.test", "c.test"]);

    const sync = await c.call("GET", "/_matrix/client/v3/sync", undefined, cleo.token);
    const invite = sync.body.rooms.invite[roomId];
    expect(invite).toBeDefined();
    const events = invite.invite_state.events as { type: string; state_key: string; content: Record<string, unknown> }[];
    expect(events.find((e) => e.type === "m.room.create")).toBeDefined();
    expect(events.find((e) => e.type === "m.room.name")?.content).toEqual({ name: "Secret" });
    expect(events.find((e) => e.type === "m.room.member" && e.state_key === cleo.userId)?.content.membership).toBe("invite");

    // The invited room ID names no server (v12): C joins through the inviter's server.
    expect((await c.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/join`, {}, cleo.token)).status).toBe(200);
    expect(await membershipOn(a, roomId, cleo.userId, alice.token)).toBe("join");
    const after = await c.call("GET", `/_matrix/client/v3/sync?since=${sync.body.next_batch}`, undefined, cleo.token);
    expect(after.body.rooms.join[roomId]).toBeDefined();

    // createRoom's invite list and the state API invite remote users the same way.
    const dm = (await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "trusted_private_chat", invite: [cleo.userId], is_direct: true }, alice.token)).body.room_id as string;
    const viaState = (await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "private_chat" }, alice.token)).body.room_id as string;
    expect((await a.call("PUT", `/_matrix/client/v3/rooms/${enc(viaState)}/state/m.room.member/${enc(cleo.userId)}`, { membership: "invite" }, alice.token)).status).toBe(200);
    const later = await c.call("GET", `/_matrix/client/v3/sync?since=${after.body.next_batch}`, undefined, cleo.token);
    expect(Object.keys(later.body.rooms.invite).sort()).toEqual([dm, viaState].sort());
    const own = (later.body.rooms.invite[dm].invite_state.events as { type: string; state_key: string; content: Record<string, unknown> }[])
      .find((e) => e.type === "m.room.member" && e.state_key === cleo.userId);
    expect(own?.content).toEqual({ membership: "invite", is_direct: true });
  });

  it("rejects a remote invite through make_leave/send_leave, and locally while the inviter is offline", async () => {
    const { fed, servers, alice } = await setup();
    const [a, b] = servers as [FedServer, FedServer];
    const roomId = (await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "private_chat" }, alice.token)).body.room_id as string;
    const bob = await b.register("bob");
    const bea = await b.register("bea");
    for (const u of [bob, bea]) expect((await a.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, { user_id: u.userId }, alice.token)).status).toBe(200);

    // Online: A learns of the rejection.
    expect((await b.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {}, bob.token)).status).toBe(200);
    expect(await membershipOn(a, roomId, bob.userId, alice.token)).toBe("leave");
    const bobSync = await b.call("GET", "/_matrix/client/v3/sync", undefined, bob.token);
    expect(bobSync.body.rooms.invite[roomId]).toBeUndefined();

    // Offline: the rejection still takes effect on B.
    const before = await b.call("GET", "/_matrix/client/v3/sync", undefined, bea.token);
    expect(before.body.rooms.invite[roomId]).toBeDefined();
    fed.network.setOnline("a.test", false);
    expect((await b.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {}, bea.token)).status).toBe(200);
    const after = await b.call("GET", `/_matrix/client/v3/sync?since=${before.body.next_batch}`, undefined, bea.token);
    expect(after.body.rooms.invite[roomId]).toBeUndefined();
    expect(after.body.rooms.leave[roomId]).toBeDefined();
    const initial = await b.call("GET", "/_matrix/client/v3/sync", undefined, bea.token);
    expect(initial.body.rooms.invite[roomId]).toBeUndefined();
    // A, unreachable then, still has her invited.
    fed.network.setOnline("a.test", true);
    expect(await membershipOn(a, roomId, bea.userId, alice.token)).toBe("invite");
  });

  it("knocks through a resident, shows knock_state, and retracts the knock with make_leave", async () => {
    const { servers, alice } = await setup();
    const [a, b] = servers as [FedServer, FedServer];
    const roomId = (await a.call("POST", "/_matrix/client/v3/createRoom", {
      preset: "private_chat", name: "Door", initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } }],
    }, alice.token)).body.room_id as string;
    const bob = await b.register("bob");
    const k = await b.call("POST", `/_matrix/client/v3/knock/${enc(roomId)}?via=a.test`, { reason: "let me in" }, bob.token);
    expect(k).toEqual({ status: 200, body: { room_id: roomId } });
    expect(await membershipOn(a, roomId, bob.userId, alice.token)).toBe("knock");
    const sync = await b.call("GET", "/_matrix/client/v3/sync", undefined, bob.token);
    const knock = sync.body.rooms.knock[roomId];
    const events = knock.knock_state.events as { type: string; content: Record<string, unknown> }[];
    expect(events.find((e) => e.type === "m.room.name")?.content).toEqual({ name: "Door" });
    expect(events.find((e) => e.type === "m.room.join_rules")?.content).toEqual({ join_rule: "knock" });

    expect((await b.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {}, bob.token)).status).toBe(200);
    expect(await membershipOn(a, roomId, bob.userId, alice.token)).toBe("leave");

    // A room that does not allow knocking answers 403.
    const closed = (await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "private_chat" }, alice.token)).body.room_id as string;
    expect((await b.call("POST", `/_matrix/client/v3/knock/${enc(closed)}?via=a.test`, {}, bob.token)).status).toBe(403);
  });

  it("a user of B leaves a room that only A hosts, and joins it again through A", async () => {
    const { fed, servers, alice } = await setup();
    const [a, b] = servers as [FedServer, FedServer];
    const roomId = (await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, alice.token)).body.room_id as string;
    const bob = await b.register("bob");
    expect((await b.call("POST", `/_matrix/client/v3/join/${enc(roomId)}?via=a.test`, {}, bob.token)).status).toBe(200);
    fed.advance(1000);
    expect((await b.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {}, bob.token)).status).toBe(200);
    expect(await membershipOn(b, roomId, bob.userId, bob.token)).toBe("leave");
    // Time passes between leaving and joining again, as it does for people. (With one frozen clock the
    // leave, which B's queue may still be delivering, and the new join can be concurrent branches
    // with equal origin_server_ts, and state resolution then orders them by event ID.)
    fed.advance(1000);
    // And joins again: B is no longer resident, so the join goes through A once more.
    expect((await b.call("POST", `/_matrix/client/v3/join/${enc(roomId)}?via=a.test`, {}, bob.token)).status).toBe(200);
    expect(await membershipOn(a, roomId, bob.userId, alice.token)).toBe("join");
    expect(await membershipOn(b, roomId, bob.userId, bob.token)).toBe("join");
  });
});

describe("what the handshakes send on", () => {
  it("the resident passes a join it accepted to the room's other servers; a leaving server sends its leave to the resident", async () => {
    const { fed, servers, alice } = await setup(["a.test", "b.test", "c.test"]);
    const [a, b, c] = servers as [FedServer, FedServer, FedServer];
    const roomId = (await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, alice.token)).body.room_id as string;
    const bob = await b.register("bob");
    expect((await b.call("POST", `/_matrix/client/v3/join/${enc(roomId)}?via=a.test`, {}, bob.token)).status).toBe(200);
    // Record the PDUs each server is sent in transactions, and pass the requests on.
    const received = new Map<string, { origin: string; type: string; state_key?: string; content: Record<string, unknown> }[]>();
    for (const s of [a, b]) {
      received.set(s.name, []);
      fed.network.attach(s.name, async (request) => {
        const url = new URL(request.url);
        if (request.method === "PUT" && url.pathname.startsWith("/_matrix/federation/v1/send/")) {
          const body = (await request.clone().json()) as { origin: string; pdus: { type: string; state_key?: string; content: Record<string, unknown> }[] };
          for (const pdu of body.pdus) received.get(s.name)!.push({ origin: body.origin, ...pdu });
        }
        return s.hs.handle(request);
      });
    }
    const cleo = await c.register("cleo");
    expect((await c.call("POST", `/_matrix/client/v3/join/${enc(roomId)}?via=a.test`, {}, cleo.token)).status).toBe(200);
    await eventually(
      async () => received.get("b.test")!.some((p) => p.origin === "a.test" && p.type === "m.room.member" && p.state_key === cleo.userId && p.content.membership === "join"),
      "A to send C's join to B",
      10_000,
    );
    expect((await b.call("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {}, bob.token)).status).toBe(200);
    await eventually(
      async () => received.get("a.test")!.some((p) => p.origin === "b.test" && p.type === "m.room.member" && p.state_key === bob.userId && p.content.membership === "leave"),
      "B to send its leave to A",
      10_000,
    );
  });
});

describe("the resident's endpoints refuse what they must", () => {
  it("a server the room's ACL denies cannot make_join, send_join, make_leave, make_knock or invite", async () => {
    const { servers, alice } = await setup();
    const [a, b] = servers as [FedServer, FedServer];
    const roomId = (await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, alice.token)).body.room_id as string;
    const acl = await a.call("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.server_acl/`, { allow: ["*"], deny: ["b.test"] }, alice.token);
    expect(acl.status).toBe(200);
    const denied = async (method: string, path: string, body?: unknown, query?: [string, string][]): Promise<void> => {
      const r = await fedCall(b, "a.test", method, path, body, query);
      expect({ path, status: r.status, errcode: r.body.errcode }).toEqual({ path, status: 403, errcode: "M_FORBIDDEN" });
    };
    await denied("GET", `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc("@bob:b.test")}`, undefined, [["ver", "12"]]);
    await denied("GET", `/_matrix/federation/v1/make_leave/${enc(roomId)}/${enc("@bob:b.test")}`);
    await denied("GET", `/_matrix/federation/v1/make_knock/${enc(roomId)}/${enc("@bob:b.test")}`, undefined, [["ver", "12"]]);
    await denied("PUT", `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc("$x")}`, { type: "m.room.member" });
    await denied("PUT", `/_matrix/federation/v2/invite/${enc(roomId)}/${enc("$x")}`, { room_version: "12", event: { type: "m.room.member" } });
    // The client side sees the refusal too, and B's user is not in the room.
    const bob = await b.register("bob");
    const join = await b.call("POST", `/_matrix/client/v3/join/${enc(roomId)}?server_name=a.test`, {}, bob.token);
    expect(join.status).toBe(403);
  });

  it("make_join, send_join, invite and query/directory error paths", async () => {
    const { servers, alice } = await setup();
    const [a, b] = servers as [FedServer, FedServer];
    const roomId = (await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat", room_alias_name: "hall" }, alice.token)).body.room_id as string;
    const mj = (room: string, user: string, ver: string[] = ["12"]) =>
      fedCall(b, "a.test", "GET", `/_matrix/federation/v1/make_join/${enc(room)}/${enc(user)}`, undefined, ver.map((v): [string, string] => ["ver", v]));

    const ok = await mj(roomId, "@bob:b.test");
    expect(ok.status).toBe(200);
    expect(ok.body.room_version).toBe("12");
    expect(ok.body.event).toMatchObject({ type: "m.room.member", state_key: "@bob:b.test", sender: "@bob:b.test", room_id: roomId, content: { membership: "join" } });
    expect((await mj("!nope", "@bob:b.test")).body.errcode).toBe("M_NOT_FOUND");
    const incompatible = await mj(roomId, "@bob:b.test", ["1", "2"]);
    expect(incompatible).toEqual({ status: 400, body: expect.objectContaining({ errcode: "M_INCOMPATIBLE_ROOM_VERSION", room_version: "12" }) });
    expect((await mj(roomId, "@mallory:c.test")).status).toBe(403);
    expect((await fedCall(b, "a.test", "GET", `/_matrix/federation/v1/make_knock/${enc(roomId)}/${enc("@bob:b.test")}`)).body.errcode).toBe("M_MISSING_PARAM");
    // Unsigned requests are refused.
    const unsigned = await a.hs.handle(new Request(`https://a.test/_matrix/federation/v1/make_join/${enc(roomId)}/${enc("@bob:b.test")}?ver=12`));
    expect(unsigned.status).toBe(401);

    // send_join of an event B did not sign (tampered after signing) is a 400.
    const template = ok.body.event as Record<string, unknown>;
    const { buildEvent } = await import("../../src/homeserver/rooms/build.ts");
    const { roomVersion } = await import("../../src/homeserver/rooms/versions.ts");
    const rules = roomVersion("12")!;
    const built = await buildEvent({
      roomId, sender: "@bob:b.test", type: "m.room.member", stateKey: "@bob:b.test", content: { membership: "join" },
      prevEvents: (template.prev_events as string[]).map((id) => ({ eventId: id, sha256: "" })),
      authEvents: (template.auth_events as string[]).map((id) => ({ eventId: id, sha256: "" })),
      depth: template.depth as number, originServerTs: fed!.now(), origin: "b.test",
    }, rules, b.hs.services.signingKey);
    const forged = { ...built.pdu, signatures: { "b.test": { "ed25519:auto": "AAAA" } } };
    const sj = (pdu: unknown, id = built.eventId) => fedCall(b, "a.test", "PUT", `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc(id)}`, pdu);
    expect((await sj(forged)).body.errcode).toBe("M_INVALID_PARAM");
    expect((await sj(built.pdu, "$other")).body.errcode).toBe("M_INVALID_PARAM");
    expect((await sj({ ...built.pdu, content: { membership: "leave" } })).body.errcode).toBe("M_INVALID_PARAM");
    // The genuine event: the state before it and the auth chain.
    const answer = await sj(built.pdu);
    expect(answer.status).toBe(200);
    expect(answer.body.state.map((e: { type: string }) => e.type)).toEqual(expect.arrayContaining(["m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.member"]));
    expect(answer.body.auth_chain.length).toBeGreaterThan(0);
    expect(answer.body.servers_in_room).toEqual(["a.test"]);
    // Idempotent.
    expect((await sj(built.pdu)).status).toBe(200);
    // The deprecated v1 form answers [200, body] with the v1 fields only.
    const v1 = await fedCall(b, "a.test", "PUT", `/_matrix/federation/v1/send_join/${enc(roomId)}/${enc(built.eventId)}`, built.pdu);
    expect(v1.status).toBe(200);
    const [code, v1body] = v1.body as unknown as [number, Record<string, any>];
    expect(code).toBe(200);
    expect(v1body.origin).toBe("a.test");
    expect(v1body.state.length).toBe(answer.body.state.length);
    expect(v1body.auth_chain.length).toBe(answer.body.auth_chain.length);
    expect(v1body).not.toHaveProperty("servers_in_room");

    // invite v2: an unknown room version, an event that is not an invite.
    const inv = (body: unknown) => fedCall(b, "a.test", "PUT", `/_matrix/federation/v2/invite/${enc(roomId)}/${enc("$x")}`, body);
    expect((await inv({ room_version: "999", event: built.pdu })).body.errcode).toBe("M_INCOMPATIBLE_ROOM_VERSION");
    expect((await inv({ room_version: "12", event: built.pdu })).body.errcode).toBe("M_INVALID_PARAM");

    const dir = (alias: string) => fedCall(b, "a.test", "GET", "/_matrix/federation/v1/query/directory", undefined, [["room_alias", alias]]);
    expect(await dir("#hall:a.test")).toEqual({ status: 200, body: { room_id: roomId, servers: ["a.test", "b.test"] } });
    expect((await dir("#nope:a.test")).status).toBe(404);
    expect((await dir("#hall:b.test")).status).toBe(404);
    expect((await b.call("GET", `/_matrix/client/v3/directory/room/${enc("#nope:a.test")}`)).status).toBe(404);
  });
});

describe("joining while a member's server is offline", () => {
  it("the joiner gets the offline server's keys from the resident server it joins through (no trusted_key_servers)", async () => {
    const { servers, alice } = await setup(["a.test", "b.test", "c.test"]);
    const [a, b, c] = servers as [FedServer, FedServer, FedServer];
    const created = await a.call("POST", "/_matrix/client/v3/createRoom", { preset: "public_chat" }, alice.token);
    const roomId = created.body.room_id as string;
    const bob = await b.register("bob");
    expect((await b.call("POST", `/_matrix/client/v3/join/${enc(roomId)}?server_name=a.test`, {}, bob.token)).status).toBe(200);
    await eventually(async () => (await membershipOn(a, roomId, bob.userId, alice.token)) === "join", "A sees bob", 10_000);
    // B goes away; C has never seen B's key, but Bob's join (signed by B) is in the room's state.
    fed!.network.setOnline("b.test", false);
    const carol = await c.register("carol");
    const joined = await c.call("POST", `/_matrix/client/v3/join/${enc(roomId)}?server_name=a.test`, {}, carol.token);
    expect(joined).toEqual({ status: 200, body: { room_id: roomId } });
    expect(await membershipOn(c, roomId, bob.userId, carol.token)).toBe("join");
  });
});
