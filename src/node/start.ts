/**
 * `npm start [-- --port P] [--host H] [--rendezvous-port R] [--no-build]`: builds the browser app
 * (`vite build` → dist/), starts a local rendezvous node (`rendezvous/main.ts`, when present) and
 * writes its address into dist/config.json, serves dist/ on http://H:P (default 127.0.0.1:8080)
 * and prints the URL. Open it in two browsers (or two profiles) and two people can chat.
 * Ctrl-C / SIGTERM stop everything. The Node homeserver alone is `npm run serve`.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { serveStatic } from "./staticServer.ts";
import type { StaticServer } from "./staticServer.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
/** Where `npm run build` puts the bundle (vite.config.ts: `HYPHAE_DIST`, default dist/). */
const DIST = process.env["HYPHAE_DIST"] ? join(resolve(process.env["HYPHAE_DIST"]), "/") : fileURLToPath(new URL("../../dist/", import.meta.url));
const RENDEZVOUS_MAIN = fileURLToPath(new URL("../../rendezvous/main.ts", import.meta.url));

const USAGE = `usage: npm start [-- --port P] [--host H] [--rendezvous-port R] [--no-build]
  --port P             the static server's port (default 8080; 0 = any free port)
  --host H             the address it listens on (default 127.0.0.1)
  --rendezvous-port R  the local rendezvous node's port (default 0 = any free port)
  --no-build           serve the existing dist/ without building`;

interface StartArgs {
  port: number;
  host: string;
  rendezvousPort: number;
  build: boolean;
}

function parse(argv: string[]): StartArgs | undefined {
  const args: StartArgs = { port: 8080, host: "127.0.0.1", rendezvousPort: 0, build: true };
  const port = (flag: string, v: string | undefined): number => {
    const n = Number(v);
    if (v === undefined || !/^\d+$/.test(v) || n > 65535) throw new Error(`${flag} needs a port number (0-65535), got ${v ?? "nothing"}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--help" || a === "-h") return undefined;
    else if (a === "--port") args.port = port(a, argv[++i]);
    else if (a === "--rendezvous-port") args.rendezvousPort = port(a, argv[++i]);
    else if (a === "--host") {
      const v = argv[++i];
      if (!v) throw new Error("--host needs an address");
      args.host = v;
    } else if (a === "--no-build") args.build = false;
    else throw new Error(`unknown argument ${a}\n${USAGE}`);
  }
  return args;
}

/** Starts the rendezvous node and resolves with the multiaddr it prints. */
function startRendezvous(port: number): Promise<{ child: ChildProcess; addr: string }> {
  const child = spawn(process.execPath, [RENDEZVOUS_MAIN, "--port", String(port)], { cwd: REPO, stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => {
      child.kill("SIGTERM");
      reject(new Error("the rendezvous node printed no multiaddr within 30 s"));
    }, 30_000);
    child.stdout!.on("data", (chunk: Buffer) => {
      process.stdout.write(chunk);
      out += chunk.toString("utf8");
      const m = /(\/ip[46]\/\S+\/ws\S*)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, addr: m[1]! });
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the rendezvous node exited (${code ?? "signal"}) before it was ready`));
    });
  });
}

async function main(): Promise<void> {
  const args = parse(process.argv.slice(2));
  if (!args) {
    process.stdout.write(USAGE + "\n");
    return;
  }
  if (args.build) {
    process.stdout.write("Building the app (vite build → dist/) …\n");
    const { build } = await import("vite");
    await build({ configFile: fileURLToPath(new URL("../../vite.config.ts", import.meta.url)), logLevel: "warn" });
  } else if (!existsSync(DIST)) {
    throw new Error("dist/ does not exist: run without --no-build (or `npm run build`) first");
  }
  let rendezvous: { child: ChildProcess; addr: string } | undefined;
  const rendezvousAddrs: string[] = [];
  if (existsSync(RENDEZVOUS_MAIN)) {
    rendezvous = await startRendezvous(args.rendezvousPort);
    rendezvousAddrs.push(rendezvous.addr);
    process.stdout.write(`Rendezvous node at ${rendezvous.addr}\n`);
  } else {
    process.stdout.write("No rendezvous node: rendezvous/main.ts is not built yet, so browsers will not find each other (config.json lists none).\n");
  }
  await writeFile(`${DIST}config.json`, JSON.stringify({ rendezvous: rendezvousAddrs }, null, 2) + "\n");
  let server: StaticServer;
  try {
    server = await serveStatic(DIST, args.port, args.host);
  } catch (err) {
    rendezvous?.child.kill("SIGTERM");
    throw err;
  }
  process.stdout.write(`Hyphae app at ${server.url}/ (open it in two browsers to chat). Ctrl-C stops it.\n`);
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`${signal}: stopping\n`);
    rendezvous?.child.kill("SIGTERM");
    void server.close().then(() => process.exit(0));
    setTimeout(() => process.exit(0), 5_000).unref();
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`hyphae: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
