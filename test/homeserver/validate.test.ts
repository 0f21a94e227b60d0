/** validate.ts: the shared readers for untrusted input, and the request-body nesting limit over HTTP. */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { MAX_JSON_DEPTH, dict, jsonNestingDepth, requireCanonicalJson } from "../../src/homeserver/validate.ts";
import { MatrixError } from "../../src/homeserver/errors.ts";
import { testServer } from "./client/accountHarness.ts";
import type { TestServer } from "./client/accountHarness.ts";

describe("jsonNestingDepth", () => {
  it.each([
    ["1", 0],
    ['"[[[{{{"', 0],
    ["{}", 1],
    ["[[], [[]]]", 3],
    ['{"a":{"b":["]]]\\"[[[["]}}', 3],
    ['["\\\\", [1]]', 2],
    ["[".repeat(5000) + "]".repeat(5000), 5000],
  ])("%j → %i", (text, depth) => {
    expect(jsonNestingDepth(text)).toBe(depth);
  });
});

describe("requireCanonicalJson", () => {
  it("passes canonical values and names the offending path otherwise", () => {
    expect(() => requireCanonicalJson({ a: [1, "x", null, true] })).not.toThrow();
    for (const bad of [{ a: 1.5 }, { a: [2 ** 60] }, { a: { b: -0.25 } }]) {
      const err = (() => {
        try {
          requireCanonicalJson(bad, "device_keys");
        } catch (e) {
          return e;
        }
      })();
      expect(err).toBeInstanceOf(MatrixError);
      expect([(err as MatrixError).status, (err as MatrixError).errcode]).toEqual([400, "M_BAD_JSON"]);
      expect((err as MatrixError).message).toMatch(/^device_keys is not canonical JSON: \$\.a/);
    }
  });
});

describe("dict", () => {
  it("keys __proto__ and constructor like any other and serialises as a plain object", () => {
    const d = dict<number>();
    d["__proto__"] = 1;
    d.constructor = 2 as never;
    d.x = 3;
    expect(JSON.parse(JSON.stringify(d))).toEqual(JSON.parse('{"__proto__":1,"constructor":2,"x":3}'));
    expect(Object.keys(d)).toEqual(["__proto__", "constructor", "x"]);
  });
});

describe("request bodies nested deeper than MAX_JSON_DEPTH", () => {
  // Found while extending the robustness fuzzer: 20,000 nested arrays overflowed the stack in
  // canonical JSON and structured clone, answering 500 on every JSON endpoint.
  let s: TestServer;
  let token: string;
  let userId: string;
  let roomId: string;
  beforeAll(async () => {
    s = await testServer();
    ({ token, userId } = await s.register("alice"));
    roomId = (await s.call("POST", "/_matrix/client/v3/createRoom", {}, { token })).body.room_id as string;
  });
  afterAll(async () => s.hs.close());

  const nest = (depth: number): string => "[".repeat(depth) + "]".repeat(depth);
  const endpoints = (): [string, string, (inner: string) => string][] => [
    ["PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.x/`, (x) => `{"x":${x}}`],
    ["PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.x/`, (x) => `{"x":${x}}`],
    ["POST", "/_matrix/client/v3/createRoom", (x) => `{"creation_content":{"x":${x}}}`],
    ["PUT", `/_matrix/client/v3/user/${encodeURIComponent(userId)}/account_data/m.x`, (x) => `{"x":${x}}`],
    ["POST", "/_matrix/client/v3/keys/upload", (x) => `{"one_time_keys":{"signed_curve25519:A":{"key":${x}}}}`],
    ["PUT", "/_matrix/client/v3/sendToDevice/m.x/", (x) => `{"messages":{"${userId}":{"*":{"x":${x}}}}}`],
    ["POST", `/_matrix/client/v3/user/${encodeURIComponent(userId)}/filter`, (x) => `{"room":{"timeline":{"x":${x}}}}`],
    ["POST", "/_matrix/client/v3/pushers/set", (x) => `{"kind":"http","app_id":"a","pushkey":"k","app_display_name":"a","device_display_name":"d","lang":"en","data":{"url":"https://x.example/_matrix/push/v1/notify","x":${x}}}`],
  ];

  it.each([MAX_JSON_DEPTH, 20_000])("refuses a body %i levels deep with 400 M_BAD_JSON", async (depth) => {
    let n = 0;
    for (const [method, path, body] of endpoints()) {
      const r = await s.call(method, `${path}${path.endsWith("/") ? `d${depth}-${++n}` : ""}`, undefined, { token, rawBody: body(nest(depth)) });
      expect([path, r.status, r.body.errcode]).toEqual([path, 400, "M_BAD_JSON"]);
    }
  });

  it("accepts nesting within the limit", async () => {
    const r = await s.call("PUT", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.x/ok`, undefined, { token, rawBody: `{"x":${nest(MAX_JSON_DEPTH - 1)}}` });
    expect(r.status).toBe(200);
  });
});
