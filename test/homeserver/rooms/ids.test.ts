/** Identifier grammar (appendices "Identifier Grammar"). */
import { describe, expect, it } from "vitest";
import { domainOf, isCompliantLocalpart, isValidEventId, isValidRoomId, isValidServerName, isValidUserId } from "../../../src/homeserver/rooms/ids.ts";

describe("identifier grammar", () => {
  it("server names: the spec's examples and some non-examples", () => {
    for (const ok of ["matrix.org", "matrix.org:8888", "1.2.3.4", "1.2.3.4:1234", "[1234:5678::abcd]", "[1234:5678::abcd]:5678", "localhost"]) {
      expect(isValidServerName(ok), ok).toBe(true);
    }
    for (const bad of ["", "matrix.org:", "matrix.org:123456", "1.2.3.256", "[1234:5678::abcd", "[xyz]", "ex ample.org", "a_b.org", "[::1]x"]) {
      expect(isValidServerName(bad), bad).toBe(false);
    }
  });
  it("user IDs accept historical localparts but not ':' or NUL, and at most 255 bytes", () => {
    expect(isValidUserId("@alice:example.org")).toBe(true);
    expect(isValidUserId("@Ålice!:example.org")).toBe(true); // historical
    expect(isValidUserId("@:example.org")).toBe(true); // historical: empty localpart
    expect(isValidUserId("alice:example.org")).toBe(false);
    expect(isValidUserId("@alice")).toBe(false);
    expect(isValidUserId("@a\u0000b:example.org")).toBe(false);
    expect(isValidUserId("@alice:bad host")).toBe(false);
    expect(isValidUserId("@" + "a".repeat(242) + ":example.org")).toBe(true); // 255 bytes
    expect(isValidUserId("@" + "a".repeat(243) + ":example.org")).toBe(false);
    expect(isCompliantLocalpart("alice.b_c=d-e/f+g")).toBe(true);
    expect(isCompliantLocalpart("Alice")).toBe(false);
    expect(isCompliantLocalpart("")).toBe(false);
  });
  it("room IDs with a domain (v1–v11) and as a create event hash (v12); event IDs; domains", () => {
    expect(isValidRoomId("!abc:example.org", true)).toBe(true);
    expect(isValidRoomId("!abc", true)).toBe(false);
    expect(isValidRoomId("!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ", false)).toBe(true);
    expect(isValidRoomId("!Nhcu5BS+UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ", false)).toBe(false);
    expect(isValidRoomId("!abc:example.org", false)).toBe(false);
    expect(isValidEventId("$abc")).toBe(true);
    expect(isValidEventId("abc")).toBe(false);
    expect(isValidEventId("$")).toBe(false);
    expect(domainOf("@a:b.c:8448")).toBe("b.c:8448");
    expect(domainOf("$opaque")).toBeUndefined();
  });
});
