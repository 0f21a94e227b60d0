/** The room version table against the spec's per-version changes, and its use instead of ID checks. */
import { readFileSync, readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { DEFAULT_ROOM_VERSION, ROOM_VERSIONS, roomVersion } from "../../../src/homeserver/rooms/versions.ts";

const from = (first: number) => (v: number): boolean => v >= first;
const until = (last: number) => (v: number): boolean => v <= last;

// Each property with the versions it holds for, from the room version texts.
const EXPECT: Record<string, (v: number) => boolean> = {
  referencePairs: until(2), eventIdDomainSigned: until(2), redactionAuthRule: until(2),
  enforceKeyValidity: from(5), specialCaseAliases: until(5), strictCanonicalJson: from(6),
  limitNotificationsPowerLevels: from(6), knocking: from(7), restrictedJoins: from(8), knockRestricted: from(10),
  integerPowerLevels: from(10), stringyPowerLevels: until(9), originField: until(10), redactsInContent: from(11),
  creatorInContent: until(10), createRoomIdDomainCheck: until(11), createInAuthEvents: until(11),
  privilegedCreators: from(12), roomIdFromCreate: from(12),
};

describe("room versions", () => {
  it("knows 1–12 and defaults to 12", () => {
    expect([...ROOM_VERSIONS.keys()]).toEqual(["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"]);
    expect(DEFAULT_ROOM_VERSION).toBe("12");
    expect(roomVersion("13")).toBeUndefined();
  });
  it.each(Object.entries(EXPECT))("%s holds for the right versions", (prop, holds) => {
    for (const [id, rules] of ROOM_VERSIONS) expect((rules as unknown as Record<string, unknown>)[prop], `v${id}`).toBe(holds(Number(id)));
  });
  it("maps event IDs, redaction, auth rules and state resolution per version", () => {
    const row = (id: string) => { const r = roomVersion(id)!; return [r.eventIdFormat, r.redaction, r.authRules, r.stateRes].join(" "); };
    expect(row("1")).toBe("v1 v1 v1 v1");
    expect(row("2")).toBe("v1 v1 v1 v2");
    expect(row("3")).toBe("v3 v1 v3 v2");
    expect(row("4")).toBe("v4 v1 v3 v2");
    expect(row("6")).toBe("v4 v6 v6 v2");
    expect(row("9")).toBe("v4 v9 v8 v2");
    expect(row("11")).toBe("v4 v11 v11 v2");
    expect(row("12")).toBe("v4 v11 v12 v2.1");
    expect(roomVersion("2")!.maxDepth).toBeGreaterThan(2 ** 53);
    expect(roomVersion("6")!.maxDepth).toBe(2 ** 53 - 1);
  });
  it("no room code compares version IDs (docs/STYLE.md §7)", () => {
    const dir = new URL("../../../src/homeserver/rooms/", import.meta.url);
    for (const f of readdirSync(dir)) {
      if (f === "versions.ts") continue;
      expect(readFileSync(new URL(f, dir), "utf8"), f).not.toMatch(/\.id\s*[=!]==|version\s*===\s*"/);
    }
  });
});
