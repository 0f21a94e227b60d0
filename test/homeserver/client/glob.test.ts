/**
 * The push-rule glob matcher against the obvious RegExp translation it replaced (which backtracks
 * exponentially on patterns like `*a*a*a*b`): the same answers on random patterns and values.
 */
import { describe, it, expect } from "vitest";
import fc from "fast-check";
import { globMatch } from "../../../src/homeserver/services/pushRules.ts";

/** "Glob-style matching" as a RegExp: whole value, or word-bounded for `content.body`. */
function globRegExp(pattern: string, wordBoundary: boolean): RegExp {
  let body = "";
  for (const c of pattern) body += c === "*" ? "[\\s\\S]*" : c === "?" ? "[\\s\\S]" : c.replace(/[.+^${}()|[\]\\/-]/g, "\\$&");
  return wordBoundary ? new RegExp(`(?:^|[^A-Za-z0-9_])${body}(?:$|[^A-Za-z0-9_])`, "i") : new RegExp(`^${body}$`, "i");
}

describe("globMatch", () => {
  it("agrees with the RegExp translation on random patterns and values", () => {
    const valueChar = fc.constantFrom("a", "b", "A", "B", " ", "_", "-", "c", ".");
    const patternChar = fc.constantFrom("a", "b", "A", "*", "?", " ", "_", "c", ".");
    fc.assert(
      fc.property(fc.array(patternChar, { maxLength: 8 }), fc.array(valueChar, { maxLength: 14 }), fc.boolean(), (p, v, wb) => {
        const pattern = p.join("");
        const value = v.join("");
        expect(globMatch(pattern, value, wb)).toBe(globRegExp(pattern, wb).test(value));
      }),
      { numRuns: 20_000 },
    );
  });

  it.each([
    ["?", "é", false, true],
    ["?", "😀", false, true], // one character, two UTF-16 units
    ["a?b", "a😀b", false, true],
    ["ÉTÉ", "été", false, true],
    ["*a*a*a*b", "a".repeat(10_000), false, false],
    ["*a*a*a*b", "a".repeat(10_000), true, false],
    ["*a*a*a*b", "a".repeat(10_000) + "b", true, true],
  ])("glob %s vs %s (body=%s) → %s", (pattern, value, body, expected) => {
    expect(globMatch(pattern, value, body)).toBe(expected);
  });
});
