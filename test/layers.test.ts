/**
 * The layer rule of docs/ARCHITECTURE.md ("Who may import what"), as eslint.config.js enforces it:
 * only routes.ts imports client/ handlers, handlers never import each other, services never import
 * handlers. Each case lints a probe file placed (by name only) in the layer it tests, with the
 * repository's own configuration and only the import rule, so a rule that stopped matching fails here.
 */
import { describe, expect, it } from "vitest";
import { ESLint } from "eslint";
import { REPO } from "./node/spawnServe.ts";

const eslint = new ESLint({
  cwd: REPO,
  // The probes exist only in memory, so no TypeScript project can type them: parse them plainly
  // and run the one rule under test.
  overrideConfig: { languageOptions: { parserOptions: { projectService: false, project: null } } },
  ruleFilter: ({ ruleId }) => ruleId === "no-restricted-imports",
});

/** The `no-restricted-imports` messages for `source` at `path` (relative to the repository). */
async function importErrors(path: string, source: string): Promise<string[]> {
  const [result] = await eslint.lintText(source, { filePath: `${REPO}/${path}` });
  return result!.messages.filter((m) => m.ruleId === "no-restricted-imports").map((m) => m.message);
}

describe("the layer rule", () => {
  it("refuses a client/ handler importing another", async () => {
    const errors = await importErrors("src/homeserver/client/probe.ts", 'import { getCapabilities } from "./capabilities.ts";\nexport const x = getCapabilities;\n');
    expect(errors).toEqual([expect.stringContaining("client/ handlers never import each other")]);
  });

  it("refuses federation/ importing client/", async () => {
    const errors = await importErrors("src/homeserver/federation/probe.ts", 'import { getSync } from "../client/sync.ts";\nexport const x = getSync;\n');
    expect(errors).toEqual([expect.stringContaining("Only routes.ts imports client/ handlers")]);
  });

  it("refuses a service importing a client/ or a federation handler", async () => {
    const errors = await importErrors(
      "src/homeserver/services/probe.ts",
      'import { getWhoami } from "../client/account.ts";\nimport { getQueryProfile } from "../federation/queries.ts";\nexport const x = [getWhoami, getQueryProfile];\n',
    );
    expect(errors).toEqual([expect.stringContaining("Only routes.ts imports client/ handlers"), expect.stringContaining("Services never import handlers")]);
  });

  it("lets handlers use services, federation its own client, and routes.ts the handlers", async () => {
    expect(await importErrors("src/homeserver/client/probe.ts", 'import { sync } from "../services/sync.ts";\nexport const x = sync;\n')).toEqual([]);
    expect(await importErrors("src/homeserver/federation/probe.ts", 'import { FederationError } from "./client.ts";\nimport { localProfile } from "../services/profiles.ts";\nexport const x = [FederationError, localProfile];\n')).toEqual([]);
    expect(await importErrors("src/homeserver/routes.ts", 'import * as sync from "./client/sync.ts";\nexport const x = sync;\n')).toEqual([]);
  });
});
