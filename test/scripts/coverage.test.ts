import { describe, expect, it } from "vitest";
import {
  basePathOf,
  computeCoverage,
  END_MARKER,
  homeserverRoutes,
  loadSpecOperations,
  renderMarkdown,
  replaceSection,
  routeServes,
  START_MARKER,
} from "../../scripts/coverage.ts";

describe("coverage script", () => {
  it("finds all 166 Client-Server operations of v1.19 with their base paths", async () => {
    const ops = await loadSpecOperations();
    expect(ops).toHaveLength(166);
    expect(new Set(ops.map((o) => o.operationId)).size).toBe(166);
    const byId = new Map(ops.map((o) => [o.operationId, o]));
    expect(byId.get("getVersions")).toMatchObject({ method: "GET", path: "/_matrix/client/versions" });
    expect(byId.get("sendMessage")).toMatchObject({
      method: "PUT",
      path: "/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}",
    });
    expect(byId.get("getWellknown")?.path).toBe("/.well-known/matrix/client");
    // A second operation on the same path+method is written with a trailing space in the yaml.
    expect(byId.get("peekEvents")?.path).toBe("/_matrix/client/v3/events");
    expect(ops.every((o) => o.path === o.path.trim())).toBe(true);
    expect(byId.get("generateLoginToken")?.path).toBe("/_matrix/client/v1/login/get_token");
    // The old unauthenticated media API lives under /_matrix (basePath) + /media/v3/….
    expect(byId.get("uploadContent")).toMatchObject({ method: "POST", path: "/_matrix/media/v3/upload", deprecated: false });
    expect(byId.get("getContent")).toMatchObject({ method: "GET", deprecated: true });
  });

  it("derives the base path from the servers entry", () => {
    expect(
      basePathOf({ servers: [{ url: "{protocol}://{hostname}{basePath}", variables: { protocol: { default: "https" }, hostname: { default: "localhost:8008" }, basePath: { default: "/_matrix/client/v1" } } }] }),
    ).toBe("/_matrix/client/v1");
    expect(basePathOf({})).toBe("");
  });

  it("matches route paths with parameters as wildcards", () => {
    const spec = "/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}";
    expect(routeServes("/_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}", spec)).toBe(true);
    expect(routeServes("/_matrix/client/v3/rooms/{id}/state/{type}/{key?}", spec)).toBe(true);
    expect(routeServes("/_matrix/client/v3/rooms/{id}/state/{type}/{key?}", "/_matrix/client/v3/rooms/{roomId}/state/{eventType}")).toBe(true);
    expect(routeServes("/_matrix/client/v3/rooms/{id}/state/{type}", spec)).toBe(false);
    // A literal route segment covers only one value of a spec parameter.
    expect(routeServes("/_matrix/client/v3/profile/{userId}/displayname", "/_matrix/client/v3/profile/{userId}/{keyName}")).toBe(false);
    expect(routeServes("/_matrix/client/v3/profile/{userId}/displayname", "/_matrix/client/v3/profile/{userId}/{keyName}", { literalForParam: true })).toBe(true);
    expect(routeServes("/_matrix/client/r0/rooms/{roomId}/joined_members", "/_matrix/client/v3/rooms/{roomId}/joined_members")).toBe(false);
  });

  it("marks GET /versions implemented against the real route table and an unserved operation not", async () => {
    const rows = computeCoverage(await loadSpecOperations(), await homeserverRoutes());
    const byId = new Map(rows.map((r) => [r.operationId, r]));
    expect(byId.get("getVersions")?.implemented).toBe(true);
    expect(byId.get("getWellknown")?.implemented).toBe(true);
    expect(byId.get("pingAppservice")?.implemented).toBe(true);
    // The application service room directory is not served (yet).
    expect(byId.get("updateAppserviceRoomDirectoryVisibility")?.implemented).toBe(false);
    // Method matters: a GET route does not serve a PUT operation.
    const put = computeCoverage(
      [{ operationId: "x", method: "PUT", path: "/_matrix/client/versions", file: "t.yaml", deprecated: false }],
      await homeserverRoutes(),
    );
    expect(put[0]!.implemented).toBe(false);
    // A route for one value of a path parameter is "partly", not implemented.
    const [profile] = computeCoverage(
      [{ operationId: "p", method: "GET", path: "/_matrix/client/v3/profile/{userId}/{keyName}", file: "t.yaml", deprecated: false }],
      [{ method: "GET", path: "/_matrix/client/v3/profile/{userId}/displayname" }],
    );
    expect(profile).toMatchObject({ implemented: false, partial: true });
    expect(renderMarkdown([profile!])).toContain("| partly (some parameter values) |");
  });

  it("renders the count and rewrites only the marked section", () => {
    const rows = computeCoverage(
      [
        { operationId: "a", method: "GET", path: "/x", file: "t.yaml", deprecated: false },
        { operationId: "b", method: "GET", path: "/y", file: "t.yaml", deprecated: true },
      ],
      [{ method: "GET", path: "/x" }],
    );
    const md = renderMarkdown(rows);
    expect(md).toContain("1 of 2 implemented");
    expect(md).toContain("| a | GET | `/x` | yes |");
    expect(md).toContain("| b (deprecated) | GET | `/y` | no |");
    expect(rows.map((r) => r.partial)).toEqual([false, false]);
    const doc = `head\n${START_MARKER}\nold\n${END_MARKER}\ntail\n`;
    expect(replaceSection(doc, "new")).toBe(`head\n${START_MARKER}\nnew\n${END_MARKER}\ntail\n`);
    expect(() => replaceSection("no markers", "x")).toThrow();
  });
});
