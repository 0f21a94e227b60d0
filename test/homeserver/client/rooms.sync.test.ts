/** /messages tokens and /sync tokens are the same coordinate (messages.ts header). */
import { describe, it, expect, beforeEach, afterEach } from "vitest";
import { TestServer, bodies, room } from "../roomserver/harness.ts";
import type { TestUser } from "../roomserver/harness.ts";

let t: TestServer;
let alice: TestUser;
beforeEach(async () => {
  t = await TestServer.start();
  alice = await t.user("alice");
});
afterEach(async () => t.close());

describe("sync tokens in /messages", () => {
  it("paginates back from a limited sync timeline's prev_batch and forward from next_batch", async () => {
    const roomId = await t.createRoom(alice);
    for (let i = 1; i <= 6; i++) await t.send(alice, roomId, `m${i}`);
    const filter = encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 2 } } }));
    const s = await t.ok("GET", `/sync?filter=${filter}`, alice);
    const joined = s.rooms.join[roomId];
    expect(bodies(joined.timeline.events)).toEqual(["m5", "m6"]);
    expect(joined.timeline.limited).toBe(true);
    const back = await t.ok("GET", room(roomId, `/messages?dir=b&limit=2&from=${joined.timeline.prev_batch}`), alice);
    expect(bodies(back.chunk)).toEqual(["m4", "m3"]);
    await t.send(alice, roomId, "m7");
    const fwd = await t.ok("GET", room(roomId, `/messages?dir=f&from=${s.next_batch}`), alice);
    expect(bodies(fwd.chunk)).toEqual(["m7"]);
    // and a /messages end token works as a sync since
    const s2 = await t.ok("GET", `/sync?since=${fwd.end}&timeout=0`, alice);
    expect(s2.rooms?.join?.[roomId]).toBeUndefined();
  });
});
