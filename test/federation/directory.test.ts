/**
 * The global room directory (federation/directory.ts) on the in-memory network, with P2P server
 * names (the 64-hex public key, so a server's signatures are checked without reaching it): a
 * user's own `/publicRooms` lists every reachable server's rooms from a cache refreshed in the
 * background, entries of servers unreachable for longer than `directoryPeerTtlMs` drop out, and a
 * server with a local member in a published room lists it too, so it can still be found and joined
 * after its publisher went offline.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { Federation, FedServer, Reply } from "./harness.ts";
import { createFederation } from "./harness.ts";
import { eventually } from "./fedtools.ts";
import { serverNameFromSeed } from "../../src/homeserver/keys/server.ts";
import { authorizationHeader } from "../../src/homeserver/federation/xmatrix.ts";
import { MAX_ROOMS_PER_SERVER } from "../../src/homeserver/federation/directory.ts";

const TTL = 10 * 60_000;
const PUBLIC_ROOMS = "/_matrix/client/v3/publicRooms";
const enc = encodeURIComponent;

let fed: Federation | undefined;
afterEach(async () => {
  await fed?.close();
  fed = undefined;
});

/** The harness gives server i the seed filled with i + 1: its P2P name is that key's hex. */
const p2pName = (i: number): string => serverNameFromSeed(new Uint8Array(32).fill(i + 1));

/** Servers with P2P names; the periodic refresh is out of the way (tests refresh by hand or through `onReachable`). */
async function start(n = 3): Promise<FedServer[]> {
  fed = await createFederation(
    Array.from({ length: n }, (_, i) => p2pName(i)),
    { directoryPeerTtlMs: TTL, directoryRefreshIntervalMs: 3_600_000 },
  );
  await settle();
  return fed.servers;
}

/** Waits for every background refresh (those started at start-up or by `onReachable`). */
async function settle(): Promise<void> {
  await Promise.all(fed!.servers.map((s) => s.hs.services.directory!.settled()));
}

const refresh = (s: FedServer): Promise<void> => s.hs.services.directory!.refreshAll();

async function publish(server: FedServer, token: string, name: string, extra: Record<string, unknown> = {}): Promise<string> {
  const r = await server.call("POST", "/_matrix/client/v3/createRoom", { name, visibility: "public", preset: "public_chat", ...extra }, token);
  expect(r.status).toBe(200);
  return r.body.room_id;
}

const ids = (r: Reply): string[] => (r.body.chunk as { room_id: string }[]).map((x) => x.room_id).sort();

/** A server's own directory as other servers see it (its federation `/publicRooms`), asked by `from`. */
async function federationList(from: FedServer, to: FedServer): Promise<string[]> {
  const uri = "/_matrix/federation/v1/publicRooms";
  const res = await to.hs.handle(new Request(`https://${to.name}${uri}`, { headers: { Authorization: await authorizationHeader(from.hs.services.signingKey, to.name, "GET", uri) } }));
  expect(res.status).toBe(200);
  return ((await res.json()) as { chunk: { room_id: string }[] }).chunk.map((x) => x.room_id).sort();
}

/** Counts the requests (those whose path contains `path`, if given) that reach `server` from the network from now on. */
function countInbound(server: FedServer, path = ""): { count: () => number } {
  let n = 0;
  fed!.network.attach(server.name, (r) => {
    if (new URL(r.url).pathname.includes(path)) n++;
    return server.hs.handle(r);
  });
  return { count: () => n };
}

describe("the global room directory", () => {
  it("answers from the cache, with no request to other servers, and drops a server's rooms after the TTL", async () => {
    const [a, b] = await start(2);
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const rust = await publish(a, alice.token, "Rust lovers");
    // Joinable by link but not published: no directory lists it.
    await a.call("POST", "/_matrix/client/v3/createRoom", { name: "Hidden", preset: "public_chat" }, alice.token);
    const own = await publish(b, bob.token, "Bob's room");

    // B fetched A's directory at start-up, before the room existed: the list comes from the cache.
    expect(ids(await b.call("GET", PUBLIC_ROOMS, undefined, bob.token))).toEqual([own]);
    await refresh(b);

    const inbound = countInbound(a);
    const list = await b.call("GET", PUBLIC_ROOMS, undefined, bob.token);
    expect(list.status).toBe(200);
    expect(ids(list)).toEqual([own, rust].sort());
    expect(list.body.total_room_count_estimate).toBe(2);
    expect(list.body.chunk.find((r: any) => r.room_id === rust)).toMatchObject({ name: "Rust lovers", num_joined_members: 1, join_rule: "public", world_readable: false, guest_can_join: false });
    const posted = await b.call("POST", PUBLIC_ROOMS, {}, bob.token);
    expect(ids(posted)).toEqual([own, rust].sort());
    expect(inbound.count()).toBe(0);

    // A goes offline right after the refresh: B still answers at once, from the cache.
    fed!.network.setOnline(a.name, false);
    const started = Date.now();
    expect(ids(await b.call("GET", PUBLIC_ROOMS, undefined, bob.token))).toEqual([own, rust].sort());
    expect(Date.now() - started).toBeLessThan(1000);
    expect(inbound.count()).toBe(0);

    // Within the TTL the entry stays (a refresh while A is offline keeps it); past it, it is gone.
    fed!.advance(TTL);
    await refresh(b);
    expect(ids(await b.call("GET", PUBLIC_ROOMS, undefined, bob.token))).toEqual([own, rust].sort());
    fed!.advance(1);
    const after = await b.call("GET", PUBLIC_ROOMS, undefined, bob.token);
    expect(ids(after)).toEqual([own]);
    expect(after.body.total_room_count_estimate).toBe(1);

    // A comes back: B hears it is reachable and asks it again without waiting for the timer.
    fed!.network.setOnline(a.name, true);
    await settle();
    expect(ids(await b.call("GET", PUBLIC_ROOMS, undefined, bob.token))).toEqual([own, rust].sort());
    expect(inbound.count()).toBeGreaterThan(0);
  });

  it("a user's look at a stale cache starts a refresh in the background; a server fetched a moment ago is not fetched again when reported reachable", async () => {
    const [a, b] = await start(2);
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const fetches = countInbound(a, "/publicRooms");
    const rust = await publish(a, alice.token, "Rust lovers");
    // The cache is as fresh as the start-up refresh: a look does not refresh.
    expect(ids(await b.call("GET", PUBLIC_ROOMS, undefined, bob.token))).toEqual([]);
    await settle();
    expect(fetches.count()).toBe(0);
    expect(ids(await b.call("GET", PUBLIC_ROOMS, undefined, bob.token))).toEqual([]);

    // 30 s later a look starts a refresh (it does not wait for it); the next look has the room.
    fed!.advance(30_000);
    await b.call("POST", PUBLIC_ROOMS, {}, bob.token);
    await settle();
    expect(fetches.count()).toBe(1);
    expect(ids(await b.call("GET", PUBLIC_ROOMS, undefined, bob.token))).toEqual([rust]);

    // A drops off and comes back right away: B fetched it a moment ago and does not ask again.
    fed!.network.setOnline(a.name, false);
    fed!.network.setOnline(a.name, true);
    await settle();
    expect(fetches.count()).toBe(1);
    // Later on, coming back is worth a fetch.
    fed!.network.setOnline(a.name, false);
    fed!.advance(60_000);
    fed!.network.setOnline(a.name, true);
    await settle();
    expect(fetches.count()).toBe(2);
  });

  it("keeps the cache over a restart, and deletes an expired server's rows at the next refresh", async () => {
    const [a, b] = await start(2);
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const rust = await publish(a, alice.token, "Rust lovers");
    await refresh(b);
    const b2 = await fed!.restart(b);
    await settle();
    expect(ids(await b2.call("GET", PUBLIC_ROOMS, undefined, bob.token))).toEqual([rust]);

    fed!.network.setOnline(a.name, false);
    fed!.advance(TTL + 1);
    await refresh(b2);
    expect(await b2.store.read((tx) => tx.count("directory_rooms"))).toBe(0);
    expect(await b2.store.read((tx) => tx.get("directory_peers", a.name))).toBeUndefined();
  });

  it("asks a 64-hex server directly with ?server=, and ?server=<own name> is this server's own list", async () => {
    const [a, b] = await start(2);
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const rust = await publish(a, alice.token, "Rust lovers");
    const own = await publish(b, bob.token, "Bob's room");
    expect(a.name).toMatch(/^[0-9a-f]{64}$/);

    // Not in B's cache yet (A's directory was fetched before the room existed), but asked directly.
    const direct = await b.call("GET", `${PUBLIC_ROOMS}?server=${a.name}`, undefined, bob.token);
    expect(direct.status).toBe(200);
    expect(ids(direct)).toEqual([rust]);
    const filtered = await b.call("POST", `${PUBLIC_ROOMS}?server=${a.name}`, { filter: { generic_search_term: "RUST" } }, bob.token);
    expect(ids(filtered)).toEqual([rust]);
    await refresh(b);
    expect(ids(await b.call("GET", `${PUBLIC_ROOMS}?server=${b.name}`, undefined, bob.token))).toEqual([own]);
    expect(ids(await b.call("GET", PUBLIC_ROOMS, undefined, bob.token))).toEqual([own, rust].sort());

    fed!.network.setOnline(a.name, false);
    expect((await b.call("GET", `${PUBLIC_ROOMS}?server=${a.name}`, undefined, bob.token)).status).toBe(502);
  });

  it("a joiner lists the room too: after its publisher went offline it is still found and joined through the joiner", async () => {
    const [a, b, c] = await start(3);
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const carol = await c.register("carol");
    const rust = await publish(a, alice.token, "Rust lovers");
    await refresh(b);
    await refresh(c);
    expect(await federationList(c, b)).toEqual([]);

    // Bob picks the room from his own directory and joins it without `via`: B joins through the
    // server whose directory listed it.
    expect(ids(await b.call("GET", PUBLIC_ROOMS, undefined, bob.token))).toEqual([rust]);
    const joined = await b.call("POST", `/_matrix/client/v3/join/${enc(rust)}`, {}, bob.token);
    expect(joined.status).toBe(200);
    expect(await federationList(c, b)).toEqual([rust]);

    // A goes offline for longer than the TTL: C's cache no longer has A, but B lists the room.
    fed!.network.setOnline(a.name, false);
    fed!.advance(TTL + 1);
    await refresh(b);
    await refresh(c);
    expect(await federationList(c, b)).toEqual([rust]); // B's mark survives A's expiry
    const found = await c.call("GET", PUBLIC_ROOMS, undefined, carol.token);
    expect(ids(found)).toEqual([rust]);
    // Described from B's state: two members now.
    expect(found.body.chunk[0]).toMatchObject({ name: "Rust lovers", num_joined_members: 2 });

    // Carol joins the same way, through B, with A still offline.
    const r = await c.call("POST", `/_matrix/client/v3/join/${enc(rust)}`, {}, carol.token);
    expect(r.status).toBe(200);
    const members = await eventually(async () => {
      const m = await b.call("GET", `/_matrix/client/v3/rooms/${enc(rust)}/joined_members`, undefined, bob.token);
      return Object.keys(m.body.joined ?? {}).length === 3 && m.body.joined;
    }, "carol's join reaching B");
    expect(Object.keys(members)).toContain(carol.userId);
    // Now C lists it as well, and C's own users see it described from C's state.
    await refresh(c);
    expect(await federationList(b, c)).toEqual([rust]);
  });

  it("stops listing a relayed room when no local user is in it any more, or when it stops being public", async () => {
    const [a, b] = await start(2);
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const rust = await publish(a, alice.token, "Rust lovers");
    const garden = await publish(a, alice.token, "Gardening");
    const linkOnly = (await a.call("POST", "/_matrix/client/v3/createRoom", { name: "Link only", preset: "public_chat" }, alice.token)).body.room_id as string;
    await refresh(b);
    for (const room of [rust, garden]) expect((await b.call("POST", `/_matrix/client/v3/join/${enc(room)}`, {}, bob.token)).status).toBe(200);
    expect((await b.call("POST", `/_matrix/client/v3/join/${enc(linkOnly)}?via=${a.name}`, {}, bob.token)).status).toBe(200);
    await refresh(b);
    // A room nobody published is not listed by its joiner either.
    expect(await federationList(a, b)).toEqual([rust, garden].sort());

    // Bob leaves one: B no longer lists it (and forgets the mark at the next refresh).
    expect((await b.call("POST", `/_matrix/client/v3/rooms/${enc(garden)}/leave`, {}, bob.token)).status).toBe(200);
    expect(await federationList(a, b)).toEqual([rust]);
    await refresh(b);
    expect(await b.store.read((tx) => tx.get("directory_relays", garden))).toBeUndefined();

    // The other becomes invite-only: once B has the new join rules, it stops listing it.
    const rules = await a.call("PUT", `/_matrix/client/v3/rooms/${enc(rust)}/state/m.room.join_rules/`, { join_rule: "invite" }, alice.token);
    expect(rules.status).toBe(200);
    await eventually(async () => (await b.call("GET", `/_matrix/client/v3/rooms/${enc(rust)}/state/m.room.join_rules/`, undefined, bob.token)).body.join_rule === "invite", "the join rules reaching B");
    expect(await federationList(a, b)).toEqual([]);
    // Public again: listed again (the mark stayed while bob is in the room).
    expect((await a.call("PUT", `/_matrix/client/v3/rooms/${enc(rust)}/state/m.room.join_rules/`, { join_rule: "public" }, alice.token)).status).toBe(200);
    await eventually(async () => (await b.call("GET", `/_matrix/client/v3/rooms/${enc(rust)}/state/m.room.join_rules/`, undefined, bob.token)).body.join_rule === "public", "the join rules reaching B");
    expect(await federationList(a, b)).toEqual([rust]);

    // B's own directory setting wins: set to private there by an admin of B, B does not list it.
    await b.store.write(async (tx) => tx.put("accounts", bob.userId, { ...(await tx.get<Record<string, unknown>>("accounts", bob.userId)), admin: true }));
    expect((await b.call("PUT", `/_matrix/client/v3/directory/list/room/${enc(rust)}`, { visibility: "private" }, bob.token)).status).toBe(200);
    expect(await federationList(a, b)).toEqual([]);
  });

  it("filters, pages and counts over the merged list, one entry per room with the freshest data", async () => {
    const [a, b, c] = await start(3);
    const alice = await a.register("alice");
    const bob = await b.register("bob");
    const carol = await c.register("carol");
    const a1 = await publish(a, alice.token, "Rust lovers", { topic: "crabs" });
    const a2 = await publish(a, alice.token, "Gardening");
    const aSpace = await publish(a, alice.token, "Alice's space", { creation_content: { type: "m.space" } });
    const b1 = await publish(b, bob.token, "Rustaceans of B");
    const c1 = await publish(c, carol.token, "Carol's corner");
    await refresh(c);
    // Bob joins A's room after C fetched A: C's entry from A says 1 member, B's fresher one 2.
    await refresh(b);
    expect((await b.call("POST", `/_matrix/client/v3/join/${enc(a1)}`, {}, bob.token)).status).toBe(200);
    // A is offline (within the TTL): C keeps A's older entry and gets B's newer one.
    fed!.network.setOnline(a.name, false);
    fed!.advance(1000);
    await refresh(c);

    const all = await c.call("GET", PUBLIC_ROOMS, undefined, carol.token);
    expect(ids(all)).toEqual([a1, a2, aSpace, b1, c1].sort());
    expect(all.body.chunk.filter((r: any) => r.room_id === a1)).toEqual([expect.objectContaining({ num_joined_members: 2, topic: "crabs" })]);
    expect(all.body.total_room_count_estimate).toBe(5);
    // The largest room first.
    expect(all.body.chunk[0].room_id).toBe(a1);

    // Pages of two forwards, then back from the last page.
    const seen: string[] = [];
    const pages: Reply[] = [];
    let since: string | undefined;
    for (let i = 0; i < 5; i++) {
      const page = await c.call("GET", `${PUBLIC_ROOMS}?limit=2${since ? `&since=${enc(since)}` : ""}`, undefined, carol.token);
      expect(page.status).toBe(200);
      expect(page.body.total_room_count_estimate).toBe(5);
      pages.push(page);
      seen.push(...page.body.chunk.map((r: any) => r.room_id));
      since = page.body.next_batch;
      if (!since) break;
    }
    expect(pages.map((p) => p.body.chunk.length)).toEqual([2, 2, 1]);
    expect(seen).toEqual(all.body.chunk.map((r: any) => r.room_id));
    const back = await c.call("POST", PUBLIC_ROOMS, { limit: 2, since: pages[2]!.body.prev_batch }, carol.token);
    expect(back.body.chunk.map((r: any) => r.room_id)).toEqual(pages[1]!.body.chunk.map((r: any) => r.room_id));

    // Filters over rooms of every server.
    const rust = await c.call("POST", PUBLIC_ROOMS, { filter: { generic_search_term: "RUST" } }, carol.token);
    expect(ids(rust)).toEqual([a1, b1].sort());
    expect(rust.body.total_room_count_estimate).toBe(5);
    const topic = await c.call("POST", PUBLIC_ROOMS, { filter: { generic_search_term: "crab" } }, carol.token);
    expect(ids(topic)).toEqual([a1]);
    const spaces = await c.call("POST", PUBLIC_ROOMS, { filter: { room_types: ["m.space"] } }, carol.token);
    expect(ids(spaces)).toEqual([aSpace]);
    const plain = await c.call("POST", PUBLIC_ROOMS, { filter: { room_types: [null] }, limit: 1 }, carol.token);
    expect(plain.body.chunk).toHaveLength(1);
    expect(plain.body.next_batch).toEqual(expect.any(String));
    const rest = await c.call("POST", PUBLIC_ROOMS, { filter: { room_types: [null] }, since: plain.body.next_batch }, carol.token);
    expect([...ids(plain), ...ids(rest)].sort()).toEqual([a1, a2, b1, c1].sort());

    // Bridged networks: none here; all networks: the same list.
    expect((await c.call("POST", PUBLIC_ROOMS, { third_party_instance_id: "irc-libera" }, carol.token)).body.chunk).toEqual([]);
    expect(ids(await c.call("POST", PUBLIC_ROOMS, { include_all_networks: true, third_party_instance_id: "irc-libera" }, carol.token))).toEqual(ids(all));
  });

  it("refuses bad input with Matrix errors", async () => {
    const [a, b] = await start(2);
    const alice = await a.register("alice");
    await publish(b, (await b.register("bob")).token, "Bob's room");
    await refresh(a);
    const bad: [string, unknown, number, string][] = [
      [`${PUBLIC_ROOMS}?since=nonsense`, undefined, 400, "M_INVALID_PARAM"],
      [`${PUBLIC_ROOMS}?limit=-1`, undefined, 400, "M_INVALID_PARAM"],
      [`${PUBLIC_ROOMS}?limit=many`, undefined, 400, "M_INVALID_PARAM"],
      [PUBLIC_ROOMS, { since: 5 }, 400, "M_INVALID_PARAM"],
      [PUBLIC_ROOMS, { since: "x1_!a" }, 400, "M_INVALID_PARAM"],
      [PUBLIC_ROOMS, { limit: -3 }, 400, "M_INVALID_PARAM"],
      [PUBLIC_ROOMS, { limit: 1.5 }, 400, "M_INVALID_PARAM"],
      [PUBLIC_ROOMS, { limit: "10" }, 400, "M_INVALID_PARAM"],
      [PUBLIC_ROOMS, { filter: 3 }, 400, "M_BAD_JSON"],
      [PUBLIC_ROOMS, { filter: { generic_search_term: 7 } }, 400, "M_BAD_JSON"],
      [PUBLIC_ROOMS, { filter: { room_types: "m.space" } }, 400, "M_BAD_JSON"],
      [PUBLIC_ROOMS, { third_party_instance_id: 4 }, 400, "M_BAD_JSON"],
      [`${PUBLIC_ROOMS}?server=not%20a%20server`, undefined, 400, "M_INVALID_PARAM"],
    ];
    for (const [path, body, status, errcode] of bad) {
      const r = await a.call(body === undefined ? "GET" : "POST", path, body, alice.token);
      expect({ path, body, status: r.status, errcode: r.body.errcode }).toEqual({ path, body, status, errcode });
    }
    expect((await a.call("POST", PUBLIC_ROOMS, {})).status).toBe(401);
    // A limit of 0 is an empty page with no token that would repeat it.
    const zero = await a.call("GET", `${PUBLIC_ROOMS}?limit=0`, undefined, alice.token);
    expect(zero.body).toEqual({ chunk: [], total_room_count_estimate: 1 });
  });

  it("keeps only well-formed entries from a server's answer, a bounded number, and stops a paging loop", async () => {
    const [a] = await start(1);
    const alice = await a.register("alice");
    const good = (server: string, i: number) => ({ room_id: `!room${i}:${server}`, num_joined_members: i % 50, world_readable: false, guest_can_join: false });
    // Answers two good rooms, some bad entries, and always the same next_batch.
    let loopAsked = 0;
    fed!.network.attach("loop.test", async () => {
      loopAsked++;
      const chunk = [
        good("loop.test", 1),
        good("loop.test", 2),
        { room_id: "!sep\u001froom:loop.test", num_joined_members: 1, world_readable: false, guest_can_join: false },
        { room_id: "not a room", num_joined_members: 1, world_readable: false, guest_can_join: false },
        { room_id: "!nocount:loop.test", world_readable: false, guest_can_join: false },
        { room_id: "!fraction:loop.test", num_joined_members: 1.5, world_readable: false, guest_can_join: false },
        { room_id: "!huge:loop.test", num_joined_members: 1e12, world_readable: true, guest_can_join: false, name: 7, avatar_url: "https://x", canonical_alias: "#ok:loop.test", extra: "dropped" },
        "junk",
      ];
      return Response.json({ chunk, next_batch: "again" });
    });
    // Answers 300 rooms per page, forever.
    let bigAsked = 0;
    fed!.network.attach("big.test", async (req) => {
      bigAsked++;
      const since = Number(new URL(req.url).searchParams.get("since") ?? "0");
      return Response.json({ chunk: Array.from({ length: 300 }, (_, i) => good("big.test", since + i)), next_batch: String(since + 300) });
    });
    await refresh(a);
    const rowsOf = (server: string) => a.store.read((tx) => tx.range<{ chunk: Record<string, unknown> }>("directory_rooms", { prefix: `${server}\u001f` }));
    const loopRows = await rowsOf("loop.test");
    expect(loopRows.map((r) => r.value.chunk.room_id).sort()).toEqual(["!huge:loop.test", "!room1:loop.test", "!room2:loop.test"]);
    expect(loopAsked).toBe(2);
    expect(loopRows.find((r) => r.value.chunk.room_id === "!huge:loop.test")!.value.chunk).toEqual({
      room_id: "!huge:loop.test", num_joined_members: 999_999_999, world_readable: true, guest_can_join: false, canonical_alias: "#ok:loop.test", join_rule: "public",
    });
    expect(await rowsOf("big.test")).toHaveLength(MAX_ROOMS_PER_SERVER);
    expect(bigAsked).toBe(4);

    // The huge room comes first, and its cursor reads back.
    const first = await a.call("GET", `${PUBLIC_ROOMS}?limit=1`, undefined, alice.token);
    expect(first.body.chunk[0].room_id).toBe("!huge:loop.test");
    expect(first.body.total_room_count_estimate).toBe(MAX_ROOMS_PER_SERVER + 3);
    const second = await a.call("GET", `${PUBLIC_ROOMS}?limit=1&since=${enc(first.body.next_batch)}`, undefined, alice.token);
    expect(second.status).toBe(200);
    expect(second.body.chunk[0].room_id).not.toBe("!huge:loop.test");
  });
});
