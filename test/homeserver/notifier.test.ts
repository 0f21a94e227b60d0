/** The notifier: scoped notifications wake exactly the waiters they concern. */
import { describe, expect, it } from "vitest";
import { Notifier } from "../../src/homeserver/notifier.ts";

const settled = async (p: Promise<void>): Promise<boolean> => {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((r) => setTimeout(r, 5));
  return done;
};

describe("Notifier", () => {
  it("wakes a waiter for its rooms, its user and unscoped news; not for other rooms or users", async () => {
    const n = new Notifier();
    n.notify(10);
    const interest = { userId: "@a:x", rooms: new Set(["!r1:x"]) };
    const w = n.wait(10, 5_000, undefined, interest);
    n.notify(11, { rooms: ["!r2:x"], users: ["@b:x"] });
    expect(await settled(w)).toBe(false);
    n.notify(12, { rooms: ["!r1:x"] });
    expect(await settled(w)).toBe(true);

    const byUser = n.wait(12, 5_000, undefined, interest);
    n.notify(13, { users: ["@a:x"] });
    expect(await settled(byUser)).toBe(true);

    const global = n.wait(13, 5_000, undefined, interest);
    n.notify(14);
    expect(await settled(global)).toBe(true);
    expect(n.waiting()).toBe(0);
  });

  it("answers at once when the stream already passed `since`, and never for a stale position", async () => {
    const n = new Notifier();
    n.notify(5, { rooms: ["!other:x"] });
    expect(await settled(n.wait(4, 5_000, undefined, { userId: "@a:x", rooms: new Set() }))).toBe(true);
    const w = n.wait(5, 5_000);
    n.notify(5);
    expect(await settled(w)).toBe(false);
    n.wakeAll();
    expect(await settled(w)).toBe(true);
  });
});
