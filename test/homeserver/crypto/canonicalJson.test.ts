import { describe, it, expect } from "vitest";
import { spawnSync } from "node:child_process";
import fc from "fast-check";
import { canonicalJson, CanonicalJsonError, compareCodePoints, isCanonicalValue } from "../../../src/homeserver/crypto/canonicalJson.ts";
import { decodeBase64, encodeBase64, encodeBase64Url, Base64Error } from "../../../src/homeserver/crypto/base64.ts";

describe("canonical JSON: the examples of appendices.md", () => {
  // Each input is the JSON text the appendix gives; the expected output is its canonical form.
  it.each([
    ["{}", "{}"],
    ['{"one": 1, "two": "Two"}', '{"one":1,"two":"Two"}'],
    ['{"b": "2", "a": "1"}', '{"a":"1","b":"2"}'],
    ['{"b":"2","a":"1"}', '{"a":"1","b":"2"}'],
    [
      '{"auth":{"success":true,"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"medium":"email","address":"john.doe@example.org"},{"medium":"msisdn","address":"123456789"}]}}}',
      '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}',
    ],
    ['{"a": "日本語"}', '{"a":"日本語"}'],
    ['{"本": 2, "日": 1}', '{"日":1,"本":2}'],
    ['{"a": "\\u65E5"}', '{"a":"日"}'],
    ['{"a": null}', '{"a":null}'],
    ['{"a": -0, "b": 1e10}', '{"a":0,"b":10000000000}'],
  ])("%s → %s", (input, expected) => {
    expect(canonicalJson(JSON.parse(input))).toBe(expected);
  });
});

describe("canonical JSON: the grammar", () => {
  it("escapes exactly the characters the grammar requires, with lowercase hex", () => {
    for (let c = 0; c < 0x20; c++) {
      const short: Record<number, string> = { 8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r" };
      const expected = short[c] ?? "\\u00" + c.toString(16).padStart(2, "0");
      expect(canonicalJson(String.fromCharCode(c))).toBe(`"${expected}"`);
    }
    expect(canonicalJson('"\\')).toBe('"\\"\\\\"');
    // Everything else is written as itself: DEL, non-ASCII, line separators, astral characters.
    for (const s of ["\u007f", "/", "\u2028", "\u2029", "é", "😀", "\ud800"]) expect(canonicalJson(s)).toBe(`"${s}"`);
  });

  it("accepts integers in ±(2^53−1) and rejects everything the encoding does not allow", () => {
    expect(canonicalJson(2 ** 53 - 1)).toBe("9007199254740991");
    expect(canonicalJson(-(2 ** 53) + 1)).toBe("-9007199254740991");
    for (const bad of [2 ** 53, -(2 ** 53), 1.5, -0.1, NaN, Infinity, -Infinity, 1e300]) {
      expect(() => canonicalJson({ a: bad })).toThrow(CanonicalJsonError);
      expect(isCanonicalValue({ a: [bad] })).toBe(false);
    }
    expect(() => canonicalJson({ a: () => 1 })).toThrow(CanonicalJsonError);
    expect(() => canonicalJson(undefined)).toThrow(CanonicalJsonError);
    expect(() => canonicalJson([undefined])).toThrow(CanonicalJsonError);
    expect(() => canonicalJson(10n)).toThrow(CanonicalJsonError);
  });

  it("sorts keys by code point, not by UTF-16 code unit", () => {
    // U+FF61 is one code unit; U+1F600 is a surrogate pair starting 0xD83D, which sorts below 0xFF61
    // in UTF-16 order but above it by code point.
    expect(canonicalJson({ "\uff61": 1, "😀": 2 })).toBe('{"\uff61":1,"😀":2}');
    expect(compareCodePoints("😀", "\uff61")).toBeGreaterThan(0);
    expect(compareCodePoints("a", "ab")).toBeLessThan(0);
    expect(canonicalJson({ b: 1, a: { d: 1, c: [3, { f: 1, e: 2 }] } })).toBe('{"a":{"c":[3,{"e":2,"f":1}],"d":1},"b":1}');
  });

  it("round-trips through JSON.parse for any integer-only JSON value", () => {
    const value = fc.jsonValue().filter((v) => isCanonicalValue(v));
    fc.assert(fc.property(value, (v) => {
      expect(JSON.parse(canonicalJson(v))).toEqual(JSON.parse(JSON.stringify(v)));
    }), { seed: 42, numRuns: 300 });
  });

  // The appendix names Python's json.dumps(ensure_ascii=False, separators=(',',':'), sort_keys=True)
  // as the reference behaviour; compare byte for byte where python3 exists.
  const python = spawnSync("python3", ["--version"]).status === 0;
  it.skipIf(!python)("matches the spec's Python reference on random values", () => {
    const samples = fc.sample(
      fc.jsonValue({ maxDepth: 3 }).filter((v) => isCanonicalValue(v)).map((v) => ({ v, s: fc.sample(fc.string({ unit: "binary" }), 1)[0] })),
      { seed: 7, numRuns: 200 },
    ).map(({ v, s }) => ({ v, [s ?? ""]: s }));
    const script =
      "import json,sys\nfor line in sys.stdin:\n  v=json.loads(line)\n  sys.stdout.write(json.dumps(v,ensure_ascii=False,separators=(',',':'),sort_keys=True)+'\\n')\n";
    const input = samples.map((x) => JSON.stringify(x)).join("\n") + "\n";
    const out = spawnSync("python3", ["-c", script], { input, encoding: "utf8", env: { ...process.env, PYTHONIOENCODING: "utf-8:surrogatepass" } });
    expect(out.status, out.stderr).toBe(0);
    const lines = out.stdout.split("\n").slice(0, -1);
    expect(lines).toEqual(samples.map((x) => canonicalJson(x)));
  });
});

describe("unpadded base64 (appendices.md)", () => {
  const enc = new TextEncoder();
  it.each([["", ""], ["f", "Zg"], ["fo", "Zm8"], ["foo", "Zm9v"], ["foob", "Zm9vYg"], ["fooba", "Zm9vYmE"], ["foobar", "Zm9vYmFy"]])(
    "UNPADDED_BASE64(%j) = %j",
    (plain, encoded) => {
      expect(encodeBase64(enc.encode(plain))).toBe(encoded);
      expect(new TextDecoder().decode(decodeBase64(encoded))).toBe(plain);
    },
  );

  it("decodes padded input and both alphabets; URL-safe uses - and _", () => {
    expect(decodeBase64("Zm8=")).toEqual(enc.encode("fo"));
    const bytes = Uint8Array.from([0xfb, 0xff, 0xbf]);
    expect(encodeBase64(bytes)).toBe("+/+/");
    expect(encodeBase64Url(bytes)).toBe("-_-_");
    expect(decodeBase64("-_-_")).toEqual(bytes);
  });

  it("rejects what is not base64", () => {
    for (const bad of ["a", "Zm9v!", "Zm===", "é"]) expect(() => decodeBase64(bad)).toThrow(Base64Error);
  });

  it("round-trips random bytes", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 100 }), (b) => {
      expect(decodeBase64(encodeBase64(b))).toEqual(b);
      expect(decodeBase64(encodeBase64Url(b))).toEqual(b);
      expect(encodeBase64(b)).toBe(Buffer.from(b).toString("base64").replace(/=+$/, ""));
    }), { seed: 3 });
  });
});
