/**
 * Spaces across servers: the federation `/hierarchy` endpoint (what another server may see of a
 * space), and a client's `/hierarchy` on a server that is in the space but not in its children,
 * which asks the children's `via` servers.
 */
import { afterEach, describe, expect, it } from "vitest";
import { FederationError } from "../../src/homeserver/federation/client.ts";
import type { Federation, FedServer, Reply } from "./harness.ts";
import { createFederation } from "./harness.ts";

let fed: Federation | undefined;
afterEach(async () => {
  await fed?.close();
  fed = undefined;
});

const enc = encodeURIComponent;

async function fedCall(from: FedServer, to: string, path: string): Promise<Reply> {
  try {
    return { status: 200, body: await from.hs.services.federation!.json(to, "GET", path) };
  } catch (err) {
    if (err instanceof FederationError) return { status: err.status, body: (err.body ?? {}) as Record<string, any> };
    throw err;
  }
}

/** A public space on A with a public child room, an invite-only child room and a suggested public child. */
async function spaceOnA(a: FedServer, token: string) {
  const create = async (body: Record<string, unknown>): Promise<string> => {
    const r = await a.call("POST", "/_matrix/client/v3/createRoom", body, token);
    expect(r.status).toBe(200);
    return r.body.room_id as string;
  };
  const space = await create({ preset: "public_chat", name: "Space", creation_content: { type: "m.space" } });
  const open = await create({ preset: "public_chat", name: "Open room", topic: "everyone welcome" });
  const secret = await create({ preset: "private_chat", name: "Secret room" });
  const suggested = await create({ preset: "public_chat", name: "Suggested room" });
  const child = async (roomId: string, content: Record<string, unknown>): Promise<void> => {
    const r = await a.call("PUT", `/_matrix/client/v3/rooms/${enc(space)}/state/m.space.child/${enc(roomId)}`, { via: ["a.test"], ...content }, token);
    expect(r.status).toBe(200);
  };
  await child(open, { order: "b" });
  await child(secret, { order: "c" });
  await child(suggested, { order: "a", suggested: true });
  return { space, open, secret, suggested };
}

describe("spaces over federation", () => {
  it("GET /federation/v1/hierarchy gives the space, the children B may reach, and the others as inaccessible", async () => {
    fed = await createFederation(["a.test", "b.test"]);
    const [a, b] = fed.servers as [FedServer, FedServer];
    const alice = await a.register("alice");
    const { space, open, secret, suggested } = await spaceOnA(a, alice.token);

    const r = await fedCall(b, "a.test", `/_matrix/federation/v1/hierarchy/${enc(space)}`);
    expect(r.status).toBe(200);
    expect(r.body.room).toMatchObject({ room_id: space, name: "Space", room_type: "m.space", join_rule: "public", num_joined_members: 1, room_version: "12" });
    expect(r.body.room.children_state.map((c: { state_key: string }) => c.state_key)).toEqual([suggested, open, secret]);
    expect(r.body.room.children_state[0]).toMatchObject({ type: "m.space.child", sender: alice.userId, content: { via: ["a.test"], suggested: true } });
    expect(typeof r.body.room.children_state[0].origin_server_ts).toBe("number");
    expect(r.body.children.map((c: { room_id: string }) => c.room_id).sort()).toEqual([open, suggested].sort());
    expect(r.body.children.find((c: { room_id: string }) => c.room_id === open)).toMatchObject({ name: "Open room", topic: "everyone welcome", join_rule: "public", children_state: [] });
    expect(r.body.inaccessible_children).toEqual([secret]);

    const onlySuggested = await fedCall(b, "a.test", `/_matrix/federation/v1/hierarchy/${enc(space)}?suggested_only=true`);
    expect(onlySuggested.body.room.children_state.map((c: { state_key: string }) => c.state_key)).toEqual([suggested]);
    expect(onlySuggested.body.children.map((c: { room_id: string }) => c.room_id)).toEqual([suggested]);

    // An invite-only room B has nobody in, and an unknown room: 404.
    expect(await fedCall(b, "a.test", `/_matrix/federation/v1/hierarchy/${enc(secret)}`)).toMatchObject({ status: 404, body: { errcode: "M_NOT_FOUND" } });
    expect(await fedCall(b, "a.test", `/_matrix/federation/v1/hierarchy/${enc("!nope")}`)).toMatchObject({ status: 404, body: { errcode: "M_NOT_FOUND" } });
    // Unsigned: 401.
    const unsigned = await a.hs.handle(new Request(`https://a.test/_matrix/federation/v1/hierarchy/${enc(space)}`));
    expect(unsigned.status).toBe(401);
    // A server the space's ACL denies learns nothing.
    const acl = await a.call("PUT", `/_matrix/client/v3/rooms/${enc(space)}/state/m.room.server_acl/`, { allow: ["*"], deny: ["b.test"] }, alice.token);
    expect(acl.status).toBe(200);
    expect((await fedCall(b, "a.test", `/_matrix/federation/v1/hierarchy/${enc(space)}`)).status).toBe(404);
  });

  it("a client on B walks into children only A hosts: public ones listed with their summary, the invite-only one left out", async () => {
    fed = await createFederation(["a.test", "b.test"]);
    const [a, b] = fed.servers as [FedServer, FedServer];
    const alice = await a.register("alice");
    const { space, open, secret, suggested } = await spaceOnA(a, alice.token);
    const bob = await b.register("bob");
    expect((await b.call("POST", `/_matrix/client/v3/join/${enc(space)}?server_name=a.test`, {}, bob.token)).status).toBe(200);

    const h = await b.call("GET", `/_matrix/client/v1/rooms/${enc(space)}/hierarchy`, undefined, bob.token);
    expect(h.status).toBe(200);
    expect(h.body.rooms.map((r: { room_id: string }) => r.room_id)).toEqual([space, suggested, open]);
    expect(h.body.rooms[0]).toMatchObject({ room_id: space, num_joined_members: 2, room_type: "m.space" });
    expect(h.body.rooms[0].children_state.map((c: { state_key: string }) => c.state_key)).toEqual([suggested, open, secret]);
    expect(h.body.rooms[2]).toMatchObject({ room_id: open, name: "Open room", join_rule: "public", children_state: [] });
    expect(h.body.rooms.some((r: { room_id: string }) => r.room_id === secret)).toBe(false);

    const onlySuggested = await b.call("GET", `/_matrix/client/v1/rooms/${enc(space)}/hierarchy?suggested_only=true`, undefined, bob.token);
    expect(onlySuggested.body.rooms.map((r: { room_id: string }) => r.room_id)).toEqual([space, suggested]);
    // Pagination continues over remote rooms.
    const page1 = await b.call("GET", `/_matrix/client/v1/rooms/${enc(space)}/hierarchy?limit=2`, undefined, bob.token);
    expect(page1.body.rooms.map((r: { room_id: string }) => r.room_id)).toEqual([space, suggested]);
    const page2 = await b.call("GET", `/_matrix/client/v1/rooms/${enc(space)}/hierarchy?limit=2&from=${enc(page1.body.next_batch)}`, undefined, bob.token);
    expect(page2.body.rooms.map((r: { room_id: string }) => r.room_id)).toEqual([open]);
    expect(page2.body.next_batch).toBeUndefined();

    // Bob may join the child he found, through A.
    expect((await b.call("POST", `/_matrix/client/v3/join/${enc(open)}?server_name=a.test`, {}, bob.token)).status).toBe(200);
  });

  it("with A unreachable, B still lists the space it is in, without the children it cannot ask about", async () => {
    fed = await createFederation(["a.test", "b.test"]);
    const [a, b] = fed.servers as [FedServer, FedServer];
    const alice = await a.register("alice");
    const { space } = await spaceOnA(a, alice.token);
    const bob = await b.register("bob");
    expect((await b.call("POST", `/_matrix/client/v3/join/${enc(space)}?server_name=a.test`, {}, bob.token)).status).toBe(200);
    fed.network.setOnline("a.test", false);
    const h = await b.call("GET", `/_matrix/client/v1/rooms/${enc(space)}/hierarchy`, undefined, bob.token);
    expect(h.status).toBe(200);
    expect(h.body.rooms.map((r: { room_id: string }) => r.room_id)).toEqual([space]);
  });
});
