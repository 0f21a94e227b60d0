/**
 * The repository stands alone: no tracked file points at documents outside it (a sibling `shared/`
 * folder of one machine) or at an absolute path of one machine, and it carries its licence.
 */
import { describe, expect, it } from "vitest";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO } from "./node/spawnServe.ts";

/** What a pointer out of the repository looks like. */
const OUTSIDE = [/\.\.\/shared\b/, /(^|[^\w/.-])shared\/(notes|spec)\b/, /\/work\//, /\/home\/[a-z]/, /\/root\//];

describe("the repository", () => {
  it("has no file that points outside it", () => {
    const files = execFileSync("git", ["ls-files", "-z"], { cwd: REPO, encoding: "utf8" }).split("\0").filter(Boolean);
    expect(files.length).toBeGreaterThan(100);
    const hits: string[] = [];
    for (const file of files) {
      if (file === "package-lock.json") continue;
      let text: string;
      try {
        text = readFileSync(join(REPO, file), "utf8");
      } catch {
        continue; // listed but deleted in the working tree
      }
      text.split("\n").forEach((line, i) => {
        if (OUTSIDE.some((re) => re.test(line))) hits.push(`${file}:${i + 1}: ${line.trim()}`);
      });
    }
    expect(hits).toEqual([]);
  });

  it("is licensed Apache-2.0, and so are the spec files it vendors", () => {
    const license = readFileSync(join(REPO, "LICENSE"), "utf8");
    expect(license).toMatch(/Apache License\s+Version 2\.0, January 2004/);
    expect(readFileSync(join(REPO, "vendor/matrix-spec/LICENSE"), "utf8")).toBe(license);
    expect((JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { license: string }).license).toBe("Apache-2.0");
  });
});
