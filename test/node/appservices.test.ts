/** `app_service_config_files`: registration YAML files are read, checked, and refused with one clear line. */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadRegistrations } from "../../src/node/appservices.ts";
import { ConfigError, readConfigFile } from "../../src/node/config.ts";
import { runServe } from "./spawnServe.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "hyphae-asreg-"));
});
afterAll(async () => rm(dir, { recursive: true, force: true }));

const GOOD = `id: irc
url: "http://127.0.0.1:9999"
as_token: astoken
hs_token: hstoken
sender_localpart: _irc_bot
namespaces:
  users:
    - exclusive: true
      regex: "@_irc_.*"
  aliases: []
protocols: [irc]
rate_limited: false
`;

describe("registration files", () => {
  it("reads a registration in the spec's format", async () => {
    await writeFile(join(dir, "good.yaml"), GOOD);
    const [reg] = await loadRegistrations([join(dir, "good.yaml")]);
    expect(reg).toEqual({
      id: "irc", url: "http://127.0.0.1:9999", asToken: "astoken", hsToken: "hstoken", senderLocalpart: "_irc_bot",
      namespaces: { users: [{ exclusive: true, regex: "@_irc_.*" }], aliases: [], rooms: [] }, rateLimited: false, protocols: ["irc"],
    });
  });

  it("config paths are relative to the config file", async () => {
    await writeFile(join(dir, "hs.json"), JSON.stringify({ app_service_config_files: ["good.yaml"], use_appservice_legacy_authorization: true }));
    const cfg = await readConfigFile(join(dir, "hs.json"), () => {});
    expect(cfg.appServiceConfigFiles).toEqual([join(dir, "good.yaml")]);
    expect(cfg.appServiceLegacyAuth).toBe(true);
  });

  it.each([
    ["missing.yaml", undefined, /cannot read application service registration .*missing\.yaml/],
    ["broken.yaml", "id: [unclosed", /broken\.yaml is not valid YAML/],
    ["noid.yaml", GOOD.replace("id: irc\n", ""), /noid\.yaml: id must be a non-empty string/],
    ["badregex.yaml", GOOD.replace('"@_irc_.*"', '"@_irc_(("'), /badregex\.yaml: namespaces\.users\[0\]\.regex is not a valid regular expression/],
  ])("refuses %s with a line naming it", async (name, content, message) => {
    if (content !== undefined) await writeFile(join(dir, name), content);
    const err = await loadRegistrations([join(dir, name)]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(message);
  });

  it("refuses two files with the same id or as_token", async () => {
    await writeFile(join(dir, "twin.yaml"), GOOD.replace("hs_token: hstoken", "hs_token: other"));
    await expect(loadRegistrations([join(dir, "good.yaml"), join(dir, "twin.yaml")])).rejects.toThrow(/two application services have the id "irc"/);
    await writeFile(join(dir, "sametoken.yaml"), GOOD.replace("id: irc", "id: other"));
    await expect(loadRegistrations([join(dir, "good.yaml"), join(dir, "sametoken.yaml")])).rejects.toThrow(/share an as_token/);
  });

  it("the server refuses to start on a bad registration, with one line and nothing created", async () => {
    await writeFile(join(dir, "bad.json"), JSON.stringify({ http_port: 0, data_dir: "never", app_service_config_files: ["broken.yaml"] }));
    const res = await runServe(["--config", join(dir, "bad.json")]);
    expect(res.code).toBe(1);
    // One line about the file and no stack trace (Node's own runtime warnings aside).
    const lines = res.output.trim().split("\n").filter((l) => !/^\(node:\d+\)|^\(Use `node/.test(l));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/broken\.yaml is not valid YAML/);
    await expect(import("node:fs/promises").then((fs) => fs.stat(join(dir, "never")))).rejects.toThrow();
  });
});
