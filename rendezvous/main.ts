/**
 * `npm run rendezvous -- [--host H] [--port P] [--key FILE] [--peer MULTIADDR]... [--health-port P]
 * [--config FILE]`: a rendezvous node of the Hyphae P2P network (README "Running a rendezvous node").
 *
 * Prints, in this order, once everything listens:
 *   rendezvous peer id <peer id>
 *   rendezvous health on http://<host>:<port>/health        (only with a health port)
 *   rendezvous listening on <multiaddr>/p2p/<peer id>       (one line per address)
 * then `rendezvous status …` every status interval. Exit codes: 0 after SIGINT/SIGTERM, 1 when it
 * cannot start (port in use, bad key file), 2 on bad flags or a bad config file.
 */
import { USAGE, UsageError, parseArgs, resolveConfig } from "./config.ts";
import type { RendezvousConfig } from "./config.ts";
import { startHealthServer } from "./health.ts";
import type { HealthServer } from "./health.ts";
import { KeyFileError, ephemeralKey, loadOrCreateKey } from "./key.ts";
import { startRendezvous } from "./node.ts";
import type { Rendezvous } from "./node.ts";

const out = (line: string): void => void process.stdout.write(line + "\n");
const err = (line: string): void => void process.stderr.write(line + "\n");

interface Running {
  node: Rendezvous;
  health?: HealthServer;
  status: ReturnType<typeof setInterval>;
}

async function start(config: RendezvousConfig): Promise<Running> {
  const privateKey = config.keyFile ? (await loadOrCreateKey(config.keyFile)).key : await ephemeralKey();
  const node = await startRendezvous(config, { privateKey, log: out });
  let health: HealthServer | undefined;
  try {
    if (config.healthPort !== undefined) health = await startHealthServer(config.healthHost ?? config.host, config.healthPort, () => node.health());
  } catch (e) {
    await node.stop();
    throw e;
  }
  const status = setInterval(() => {
    node.health().then(
      (h) =>
        out(
          `rendezvous status peers=${h.onlinePeers} reservations=${h.reservations} circuits=${h.relay.activeCircuits} relayed_bytes=${h.relay.relayedBytes} ` +
            `connections=${h.connections} rendezvous=${h.rendezvous.length} refused_reservations=${h.relay.refusedReservations} refused_circuits=${h.relay.refusedCircuits}`,
        ),
      (e: unknown) => err(`rendezvous status failed: ${(e as Error).message}`),
    );
  }, config.statusIntervalSeconds * 1000);
  out(`rendezvous peer id ${node.peerId.toString()}`);
  if (health) out(`rendezvous health on ${health.url}`);
  for (const addr of node.multiaddrs()) out(`rendezvous listening on ${addr}`);
  return { node, health, status };
}

async function main(argv: string[]): Promise<void> {
  let config: RendezvousConfig;
  try {
    const args = parseArgs(argv);
    if (args.help) {
      out(USAGE);
      return;
    }
    config = await resolveConfig(args);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    err(`rendezvous: ${e.message}\n\n${USAGE}`);
    process.exit(2);
  }
  const running = start(config);
  let stopping = false;
  const shutdown = (signal: NodeJS.Signals): void => {
    if (stopping) {
      err(`rendezvous: ${signal} again, exiting without a clean stop`);
      process.exit(1);
    }
    stopping = true;
    // A signal during start-up waits for the start, then stops what started.
    running
      .then(async ({ node, health, status }) => {
        clearInterval(status);
        await health?.close();
        await node.stop();
        out(`rendezvous stopped (${signal})`);
        process.exit(0);
      })
      .catch(() => process.exit(1));
  };
  process.on("SIGINT", shutdown);
  process.on("SIGTERM", shutdown);
  try {
    await running;
  } catch (e) {
    err(`rendezvous: cannot start: ${startError(e)}`);
    process.exit(1);
  }
}

/** One line for the failures an operator causes (a busy port, a bad key file), a stack for bugs. */
function startError(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  if (e.name === "UnsupportedListenAddressesError") {
    // libp2p lists each address that failed as "  <multiaddr>: Error: <why>".
    const failures = [...e.message.matchAll(/^\s*(\/\S+): (?:\w*Error: )?(.*)$/gm)].map((m) => `cannot listen on ${m[1]}: ${m[2]}`);
    if (failures.length) return failures.join("; ");
  }
  const expected = e instanceof KeyFileError || typeof (e as NodeJS.ErrnoException).code === "string";
  return expected ? e.message.replace(/\s*\n\s*/g, " ") : (e.stack ?? e.message);
}

await main(process.argv.slice(2));
