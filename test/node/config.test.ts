import { describe, it, expect } from "vitest";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ConfigError, DEFAULTS, isLoopback, parseArgs, resolveConfig } from "../../src/node/config.ts";
import { DEFAULT_RATE_LIMITS } from "../../src/homeserver/auth/rateLimit.ts";
import { loadOrCreateSeed, serverNameFromSeed } from "../../src/node/identity.ts";

describe("command line", () => {
  it("reads the documented flags, in both --flag value and --flag=value forms", () => {
    const a = parseArgs(["--port", "9000", "--data=/tmp/x", "--host", "0.0.0.0", "--rendezvous", "/ip4/1.2.3.4/tcp/1/ws", "--config", "c.json"]);
    expect(a.overrides).toEqual({ httpPort: 9000, dataDir: "/tmp/x", bindHost: "0.0.0.0", rendezvous: ["/ip4/1.2.3.4/tcp/1/ws"] });
    expect(a.configFile).toBe("c.json");
  });

  it.each([[["--port", "x"]], [["--port", "70000"]], [["--port"]], [["--frobnicate"]]])("refuses %j", (argv) => {
    expect(() => parseArgs(argv)).toThrow(ConfigError);
  });
});

describe("config file", () => {
  it("flags override the file, the file overrides defaults; unknown keys warn", async () => {
    const dir = await mkdtemp(join(tmpdir(), "hyphae-config-"));
    try {
      const file = join(dir, "hs.json");
      await writeFile(file, JSON.stringify({ http_port: 1234, bind_host: "::1", data_dir: "d", tls_cert: "c.pem", tls_key: "k.pem", https_port: 8448, log_level: "warn", other_tool: true }));
      const warnings: string[] = [];
      const c = await resolveConfig({ configFile: file, overrides: { httpPort: 5678 }, help: false }, (w) => warnings.push(w));
      expect(c).toMatchObject({ httpPort: 5678, bindHost: "::1", dataDir: join(dir, "d"), tlsCert: join(dir, "c.pem"), httpsPort: 8448, logLevel: "warn", enableRegistration: true });
      expect(warnings).toEqual(['config: ignoring unknown key "other_tool"']);

      await writeFile(file, JSON.stringify({ http_port: "80" }));
      await expect(resolveConfig({ configFile: file, overrides: {}, help: false }, () => {})).resolves.toMatchObject({ httpPort: 80 });
      await writeFile(file, JSON.stringify({ allow_guest_access: true }));
      await expect(resolveConfig({ configFile: file, overrides: {}, help: false }, () => {})).resolves.toMatchObject({ allowGuestAccess: true });
      await writeFile(file, JSON.stringify({ allow_guest_access: "yes" }));
      await expect(resolveConfig({ configFile: file, overrides: {}, help: false }, () => {})).rejects.toThrow(/allow_guest_access/);
      await writeFile(file, JSON.stringify({ enable_registration: "yes" }));
      await expect(resolveConfig({ configFile: file, overrides: {}, help: false }, () => {})).rejects.toThrow(/enable_registration/);
      await writeFile(file, "{ nope");
      await expect(resolveConfig({ configFile: file, overrides: {}, help: false }, () => {})).rejects.toThrow(/not valid JSON/);
      await writeFile(file, JSON.stringify({ server_name: "bad name!" }));
      await expect(resolveConfig({ configFile: file, overrides: {}, help: false }, () => {})).rejects.toThrow(/not a valid server name/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("defaults to loopback on 8008", async () => {
    const c = await resolveConfig({ overrides: {}, help: false }, () => {});
    expect(c).toMatchObject({ bindHost: "127.0.0.1", httpPort: 8008, dataDir: resolve(DEFAULTS.dataDir) });
  });
});

describe("identity seed", () => {
  it("is created once, 32 bytes, and names the server by its public key", async () => {
    const dir = await mkdtemp(join(tmpdir(), "hyphae-seed-"));
    try {
      const first = await loadOrCreateSeed(join(dir, "data"));
      const second = await loadOrCreateSeed(join(dir, "data"));
      expect(first.created).toBe(true);
      expect(second.created).toBe(false);
      expect(second.seed).toEqual(first.seed);
      expect(first.seed).toHaveLength(32);
      expect(serverNameFromSeed(first.seed)).toMatch(/^[0-9a-f]{64}$/);
      // appendices "Cryptographic Test Vectors": seed → public key.
      const { decodeBase64 } = await import("../../src/homeserver/crypto/base64.ts");
      const seed = decodeBase64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1");
      expect(serverNameFromSeed(seed)).toBe(Buffer.from(decodeBase64("XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI")).toString("hex"));

      await writeFile(join(dir, "data", "identity.seed"), new Uint8Array(5));
      await expect(loadOrCreateSeed(join(dir, "data"))).rejects.toThrow(/exactly 32 bytes/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("rate limit and registration keys", () => {
  const resolveWith = async (json: unknown, overrides: Record<string, unknown> = {}) => {
    const dir = await mkdtemp(join(tmpdir(), "hyphae-config-"));
    try {
      const file = join(dir, "hs.json");
      await writeFile(file, JSON.stringify(json));
      const warnings: string[] = [];
      const config = await resolveConfig({ configFile: file, overrides, help: false }, (w) => warnings.push(w));
      return { config, warnings };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };

  it("reads rc_* with Synapse's shapes; a field left out keeps Synapse's default for it", async () => {
    const { config, warnings } = await resolveWith({
      rc_message: { per_second: 5, burst_count: 50 },
      rc_login: { address: { burst_count: 20 }, failed_attempts: { per_second: 1 }, typo: {} },
      rc_joins: { remote: { per_second: 0.5, burst_count: 2 } },
      rc_federation: { window_size: 2000, concurrent: 5 },
      rc_admin_redaction: { per_second: 1 },
      x_forwarded: true,
      default_room_version: "11",
    });
    expect(config.rateLimits.rc_message).toEqual({ perSecond: 5, burstCount: 50 });
    expect(config.rateLimits["rc_login.address"]).toEqual({ perSecond: 0.003, burstCount: 20 });
    expect(config.rateLimits["rc_login.failed_attempts"]).toEqual({ perSecond: 1, burstCount: 3 });
    expect(config.rateLimits["rc_login.account"]).toEqual(DEFAULT_RATE_LIMITS["rc_login.account"]);
    expect(config.rateLimits["rc_joins.remote"]).toEqual({ perSecond: 0.5, burstCount: 2 });
    expect(config.rateLimits.rc_registration).toEqual({ perSecond: 0.17, burstCount: 30 });
    expect(config.federationRateLimit).toEqual({ windowSize: 2000, sleepLimit: 10, sleepDelay: 500, rejectLimit: 50, concurrent: 5 });
    expect(config.xForwarded).toBe(true);
    expect(config.defaultRoomVersion).toBe("11");
    expect(warnings).toEqual(['config: ignoring unknown key "rc_login.typo"', 'config: ignoring unknown key "rc_admin_redaction"']);
  });

  it.each([
    [{ rc_message: { per_second: 0 } }, /rc_message\.per_second must be a positive number/],
    [{ rc_message: { burst_count: 1.5 } }, /rc_message\.burst_count must be a positive integer/],
    [{ rc_message: 3 }, /rc_message must be an object/],
    [{ rc_invites: { per_room: "fast" } }, /rc_invites\.per_room must be an object/],
    [{ rc_federation: { sleep_delay: -1 } }, /rc_federation\.sleep_delay must be an integer ≥ 0/],
    [{ x_forwarded: "yes" }, /x_forwarded must be true or false/],
    [{ default_room_version: "0" }, /default_room_version "0" is not a room version/],
    [{ federation_custom_ca_list: "ca.pem" }, /federation_custom_ca_list must be a list of PEM file names/],
    [{ federation_verify_certificates: "no" }, /federation_verify_certificates must be true or false/],
    [{ federation_domain_whitelist: ["ok.example", "not ok"] }, /federation_domain_whitelist\[1\] "not ok" is not a server name/],
    [{ trusted_key_servers: "matrix.org" }, /trusted_key_servers must be a list/],
    [{ trusted_key_servers: [{ verify_keys: {} }] }, /trusted_key_servers\[0\]\.server_name must be a non-empty string/],
    [{ directory_peer_ttl_ms: 0 }, /directory_peer_ttl_ms must be a positive integer/],
    [{ directory_refresh_interval_ms: "5m" }, /directory_refresh_interval_ms must be a positive integer/],
  ])("refuses %j", async (json, message) => {
    await expect(resolveWith(json)).rejects.toThrow(message);
  });

  it("reads the federation keys (paths relative to the config file; Synapse's trusted_key_servers objects)", async () => {
    const { config, warnings } = await resolveWith({
      federation_custom_ca_list: ["ca/one.pem", "/abs/two.pem"],
      federation_verify_certificates: false,
      federation_domain_whitelist: ["a.example", "127.0.0.1:8448", "[::1]:8448"],
      trusted_key_servers: ["notary.example", { server_name: "matrix.org", verify_keys: { "ed25519:auto": "x" } }],
    });
    expect(config.federationCustomCaList).toEqual([expect.stringMatching(/hyphae-config-[^/]+\/ca\/one\.pem$/), "/abs/two.pem"]);
    expect(config.federationVerifyCertificates).toBe(false);
    expect(config.federationDomainWhitelist).toEqual(["a.example", "127.0.0.1:8448", "[::1]:8448"]);
    expect(config.trustedKeyServers).toEqual(["notary.example", "matrix.org"]);
    expect(warnings).toEqual(['config: ignoring "trusted_key_servers[1].verify_keys"']);
  });

  it("reads the global room directory's keys", async () => {
    const { config } = await resolveWith({ directory_peer_ttl_ms: 600_000, directory_refresh_interval_ms: 30_000 });
    expect(config.directoryPeerTtlMs).toBe(600_000);
    expect(config.directoryRefreshIntervalMs).toBe(30_000);
  });

  it("enable_registration defaults to true only on a loopback bind; open registration elsewhere needs a verification setting", async () => {
    expect((await resolveWith({})).config.enableRegistration).toBe(true);
    expect((await resolveWith({ bind_host: "127.0.0.2" })).config.enableRegistration).toBe(true);
    expect((await resolveWith({ bind_host: "0.0.0.0" })).config.enableRegistration).toBe(false);
    expect((await resolveWith({}, { bindHost: "::" })).config.enableRegistration).toBe(false);
    await expect(resolveWith({ bind_host: "0.0.0.0", enable_registration: true })).rejects.toThrow(ConfigError);
    await expect(resolveWith({ bind_host: "192.0.2.7", enable_registration: true })).rejects.toThrow(/no verification step/);
    expect((await resolveWith({ bind_host: "0.0.0.0", enable_registration: true, registration_requires_token: true })).config).toMatchObject({ enableRegistration: true, registrationRequiresToken: true });
    expect((await resolveWith({ bind_host: "0.0.0.0", enable_registration: true, enable_registration_without_verification: true })).config.enableRegistration).toBe(true);
  });

  it.each([["127.0.0.1", true], ["127.1.2.3", true], ["::1", true], ["[::1]", true], ["localhost", true], ["::ffff:127.0.0.1", true], ["0.0.0.0", false], ["::", false], ["10.0.0.1", false], ["example.org", false], ["127.0.0.1.example.org", false]])(
    "isLoopback(%s) = %s",
    (host, expected) => {
      expect(isLoopback(host)).toBe(expected);
    },
  );
});
