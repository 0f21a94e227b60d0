import { describe, it, expect } from "vitest";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ConfigError, DEFAULTS, parseArgs, resolveConfig } from "../../src/node/config.ts";
import { loadOrCreateSeed, serverNameFromSeed } from "../../src/node/identity.ts";

describe("command line", () => {
  it("reads the documented flags, in both --flag value and --flag=value forms", () => {
    const a = parseArgs(["--port", "9000", "--data=/tmp/x", "--host", "0.0.0.0", "--rendezvous", "/ip4/1.2.3.4/tcp/1/ws", "--config", "c.json"]);
    expect(a.overrides).toEqual({ httpPort: 9000, dataDir: "/tmp/x", bindHost: "0.0.0.0", rendezvous: "/ip4/1.2.3.4/tcp/1/ws" });
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
