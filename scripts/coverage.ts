/**
 * Client-Server API coverage: lists every operation of the spec's OpenAPI files (the copy in
 * vendor/matrix-spec/data/api/client-server/*.yaml, or `--spec DIR`) and says whether the
 * homeserver's route table serves it.
 *
 *   npm run coverage             # print the markdown table and "N of M implemented"
 *   npm run coverage -- --write  # also rewrite the marked section of docs/STATUS.md
 */
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";

/** The spec's Client-Server OpenAPI files, vendored in this repository (vendor/matrix-spec/README.md). */
export const DEFAULT_SPEC_DIR = fileURLToPath(new URL("../vendor/matrix-spec/data/api/client-server", import.meta.url));

/** The markers around the generated section of docs/STATUS.md. */
export const START_MARKER = "<!-- coverage:start -->";
/** End marker of the generated section. */
export const END_MARKER = "<!-- coverage:end -->";

const HTTP_METHODS = ["get", "put", "post", "delete", "patch", "head", "options"] as const;

/** One operation of the spec. */
export interface SpecOperation {
  operationId: string;
  method: string;
  /** Full path, servers' basePath included, e.g. `/_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}`. */
  path: string;
  /** The yaml file it comes from (base name). */
  file: string;
  deprecated: boolean;
}

/** An operation with its coverage verdict. */
export interface CoverageRow extends SpecOperation {
  implemented: boolean;
  /** Not implemented, but routes serve some values of a path parameter (e.g. only `displayname` of `{keyName}`). */
  partial: boolean;
}

interface OpenApiDoc {
  servers?: { url?: string; variables?: Record<string, { default?: string }> }[];
  paths?: Record<string, Record<string, { operationId?: string; deprecated?: boolean } | undefined>>;
}

/**
 * The base path of an OpenAPI document: the first `servers` entry's URL with its variables filled
 * in by their defaults, minus scheme and host (the spec's files use
 * `{protocol}://{hostname}{basePath}` with basePath e.g. `/_matrix/client/v3`).
 */
export function basePathOf(doc: OpenApiDoc): string {
  const server = doc.servers?.[0];
  if (!server?.url) return "";
  const vars = server.variables ?? {};
  const url = server.url.replace(/\{(\w+)\}/g, (_, name: string) => vars[name]?.default ?? "");
  // Drop "scheme://host" if present; what remains is the path.
  const m = /^[a-z]*:?\/\/[^/]*(\/.*)?$/i.exec(url);
  const path = m ? (m[1] ?? "") : url;
  return path.replace(/\/$/, "");
}

/** Every operation in one parsed OpenAPI document. */
export function operationsOf(doc: OpenApiDoc, file: string): SpecOperation[] {
  const base = basePathOf(doc);
  const ops: SpecOperation[] = [];
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const method of HTTP_METHODS) {
      const op = item[method];
      if (!op) continue;
      ops.push({
        operationId: op.operationId ?? `${method} ${path}`,
        method: method.toUpperCase(),
        // The spec writes a second operation on an already used path+method with a trailing space
        // (e.g. "/rooms/{roomId}/invite " for the third-party invite): the real path has none.
        path: base + path.trim(),
        file,
        deprecated: op.deprecated === true,
      });
    }
  }
  return ops;
}

/** Parses every `*.yaml` in the spec's client-server directory (not `definitions/`). */
export async function loadSpecOperations(dir: string = DEFAULT_SPEC_DIR): Promise<SpecOperation[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith(".yaml")).sort();
  const ops: SpecOperation[] = [];
  for (const file of files) {
    const doc = parse(await readFile(join(dir, file), "utf8")) as OpenApiDoc;
    ops.push(...operationsOf(doc, file));
  }
  return ops.sort((a, b) => a.path.localeCompare(b.path) || a.method.localeCompare(b.method));
}

const isParam = (segment: string): boolean => segment.startsWith("{") && segment.endsWith("}");

/**
 * Whether a route path serves a spec path. A spec `{param}` segment needs a route parameter there
 * (a literal route segment covers only one value of it — accepted only with `literalForParam`);
 * a spec literal segment is served by the same literal or by a route parameter (the router would
 * dispatch it there). A route's optional last segment `{name?}` may be absent, as in the router.
 */
export function routeServes(routePath: string, specPath: string, { literalForParam = false } = {}): boolean {
  const r = routePath.split("/").slice(1);
  const s = specPath.split("/").slice(1);
  if (s.length === r.length - 1 && r[r.length - 1]!.endsWith("?}")) r.pop();
  if (r.length !== s.length) return false;
  return r.every((rs, i) => {
    const ss = s[i]!;
    if (isParam(rs)) return ss !== "" || rs.endsWith("?}");
    if (isParam(ss)) return literalForParam;
    return rs === ss;
  });
}

/** Marks each operation implemented when some route with its method serves its path. */
export function computeCoverage(ops: SpecOperation[], routes: { method: string; path: string }[]): CoverageRow[] {
  return ops.map((op) => {
    const same = routes.filter((r) => r.method === op.method);
    const implemented = same.some((r) => routeServes(r.path, op.path));
    const partial = !implemented && same.some((r) => routeServes(r.path, op.path, { literalForParam: true }));
    return { ...op, implemented, partial };
  });
}

/** The markdown table plus the "N of M implemented" line. */
export function renderMarkdown(rows: CoverageRow[]): string {
  const done = rows.filter((r) => r.implemented).length;
  const lines = [
    `**${done} of ${rows.length} implemented** (Client-Server API v1.19 operations, generated by \`npm run coverage -- --write\`).`,
    "",
    "| Operation | Method | Path | Implemented |",
    "| --- | --- | --- | --- |",
    ...rows.map(
      (r) =>
        `| ${r.operationId}${r.deprecated ? " (deprecated)" : ""} | ${r.method} | \`${r.path}\` | ${r.implemented ? "yes" : r.partial ? "partly (some parameter values)" : "no"} |`,
    ),
  ];
  return lines.join("\n");
}

/** Replaces the text between the coverage markers; throws if they are missing. */
export function replaceSection(document: string, section: string): string {
  const start = document.indexOf(START_MARKER);
  const end = document.indexOf(END_MARKER);
  if (start < 0 || end < start) throw new Error(`markers ${START_MARKER} … ${END_MARKER} not found`);
  return document.slice(0, start + START_MARKER.length) + "\n" + section + "\n" + document.slice(end);
}

/** The homeserver's route table, from a throwaway in-memory homeserver. */
export async function homeserverRoutes(): Promise<{ method: string; path: string }[]> {
  const { createHomeserver } = await import("../src/homeserver/homeserver.ts");
  const { createMemoryStore } = await import("../src/storage/memory.ts");
  const hs = await createHomeserver({ store: createMemoryStore(), seed: new Uint8Array(32), serverName: "coverage.invalid" });
  try {
    return hs.routes();
  } finally {
    await hs.close();
  }
}

async function main(argv: string[]): Promise<void> {
  const write = argv.includes("--write");
  const specIdx = argv.indexOf("--spec");
  const dir = specIdx >= 0 && argv[specIdx + 1] ? argv[specIdx + 1]! : DEFAULT_SPEC_DIR;
  const rows = computeCoverage(await loadSpecOperations(dir), await homeserverRoutes());
  const markdown = renderMarkdown(rows);
  process.stdout.write(markdown + "\n");
  if (write) {
    const statusPath = resolve(fileURLToPath(new URL("..", import.meta.url)), "docs/STATUS.md");
    await writeFile(statusPath, replaceSection(await readFile(statusPath, "utf8"), markdown));
    process.stderr.write(`updated ${statusPath}\n`);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
