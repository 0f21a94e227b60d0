/**
 * `npm run serve -- --port P --data DIR [--rendezvous MULTIADDR] [--host H]` and
 * `npm run serve -- --config FILE`: the Node homeserver (DESIGN.md "Contracts").
 */
import { ConfigError, USAGE, parseArgs, resolveConfig } from "./config.ts";
import { consoleLogger } from "./logger.ts";
import { exitOnSignals, startNode } from "./runner.ts";

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.help) {
    process.stdout.write(USAGE + "\n");
    return;
  }
  const early = consoleLogger("info");
  const config = await resolveConfig(args, (msg) => early.warn(msg));
  const logger = consoleLogger(config.logLevel);
  const node = await startNode(config, { logger });
  exitOnSignals(node, (msg) => logger.info(msg));
  process.stdout.write(`Hyphae listening on ${node.httpUrl} (server name ${node.serverName})\n`);
  if (node.httpsUrl) process.stdout.write(`Hyphae listening on ${node.httpsUrl} (TLS)\n`);
}

main().catch((err: unknown) => {
  // Expected failures (bad config, port in use, unreadable files) get one line; bugs get a stack.
  const expected = err instanceof ConfigError || (err instanceof Error && typeof (err as NodeJS.ErrnoException).code === "string");
  process.stderr.write(`hyphae: ${err instanceof Error ? (expected ? err.message : (err.stack ?? err.message)) : String(err)}\n`);
  process.exit(1);
});
