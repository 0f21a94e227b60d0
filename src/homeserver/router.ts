/**
 * Matches a request against the route table and turns every outcome into a Response: the one
 * place where a MatrixError becomes an HTTP error, and anything else a hidden `500 M_UNKNOWN`.
 */
import { MatrixError, unrecognized, unknown } from "./errors.ts";
import { CORS_HEADERS, checkDeclaredLength, errorResponse, isMediaUpload, jsonBodyLimit, jsonResponse } from "./http.ts";
import type { Logger } from "./context.ts";

export type Method = "GET" | "POST" | "PUT" | "DELETE";

/** What a handler returns: a ready Response, or a JSON body (status 200). */
export type HandlerResult = Response | Record<string, unknown> | unknown[];

/** One entry of the route table. `path` uses `{name}` for a segment, `{name?}` for an optional last segment. */
export interface Route<C> {
  method: Method;
  path: string;
  handler: (ctx: C, params: Record<string, string>) => Promise<HandlerResult>;
}

interface CompiledRoute<C> extends Route<C> {
  segments: string[];
}

/** Thrown by the router for a malformed percent-encoding in the path. */
const badPath = (): MatrixError => new MatrixError(400, "M_UNRECOGNIZED", "Malformed path");

/** A compiled route table. */
export class Router<C> {
  private readonly routes: CompiledRoute<C>[];

  constructor(routes: readonly Route<C>[]) {
    this.routes = routes.map((r) => ({ ...r, segments: r.path.split("/").slice(1) }));
  }

  /** Every registered (method, path) pair, for the coverage script and the docs. */
  list(): { method: Method; path: string }[] {
    return this.routes.map(({ method, path }) => ({ method, path }));
  }

  /** Finds the route for a method and a raw (still percent-encoded) path. */
  match(method: string, rawPath: string): { route: Route<C>; params: Record<string, string> } | "wrong-method" | undefined {
    const segments = rawPath.split("/").slice(1);
    let pathMatched = false;
    for (const route of this.routes) {
      const params = matchSegments(route.segments, segments);
      if (!params) continue;
      if (route.method === method || (method === "HEAD" && route.method === "GET")) return { route, params };
      pathMatched = true;
    }
    return pathMatched ? "wrong-method" : undefined;
  }

  /**
   * Handles a request: OPTIONS, route lookup, and error mapping. `onRoute` learns the matched
   * route's path template (for logs and metrics labelled by endpoint, not by raw path).
   */
  async dispatch(request: Request, makeContext: (request: Request, url: URL) => C, logger: Logger, onRoute?: (path: string) => void): Promise<Response> {
    if (request.method === "OPTIONS") return new Response(null, { status: 204, headers: { ...CORS_HEADERS } });
    let url: URL;
    try {
      url = new URL(request.url);
    } catch {
      return errorResponse(unrecognized("Malformed URL", 400));
    }
    try {
      const found = this.match(request.method, url.pathname);
      if (found === undefined) throw unrecognized();
      if (found === "wrong-method") throw unrecognized("Method not allowed", 405);
      onRoute?.(found.route.path);
      // An oversized JSON body is refused before authentication or anything else looks at it.
      if (!isMediaUpload(url.pathname)) checkDeclaredLength(request, jsonBodyLimit(url.pathname));
      const result = await found.route.handler(makeContext(request, url), found.params);
      return result instanceof Response ? result : jsonResponse(result);
    } catch (err) {
      if (err instanceof MatrixError) return errorResponse(err);
      logger.error("unhandled error", request.method, url.pathname, err);
      return errorResponse(unknown());
    }
  }
}

function matchSegments(pattern: string[], actual: string[]): Record<string, string> | undefined {
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    const a = actual[i];
    if (p.startsWith("{")) {
      const optional = p.endsWith("?}");
      const name = p.slice(1, optional ? -2 : -1);
      if (a === undefined) {
        if (optional && i === pattern.length - 1) {
          params[name] = "";
          return params;
        }
        return undefined;
      }
      if (a === "" && !optional) return undefined;
      try {
        params[name] = decodeURIComponent(a);
      } catch {
        throw badPath();
      }
    } else if (p !== a) {
      return undefined;
    }
  }
  return actual.length === pattern.length ? params : undefined;
}
