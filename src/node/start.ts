/**
 * `npm start`. DESIGN.md's full `npm start` builds the browser app and starts a rendezvous node and
 * a static server; those arrive with later issues. Until then it starts what exists: the Node
 * homeserver with its data in ./data/homeserver, and says so.
 */
import { ConfigError, USAGE, parseArgs, resolveConfig } from "./config.ts";
import { consoleLogger } from "./logger.ts";
import { exitOnSignals, startNode } from "./runner.ts";

async function start(): Promise<void> {
  // The same flags as `npm run serve` (e.g. `npm start -- --port 9000`); the data dir defaults to ./data.
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
  process.stdout.write(`Data directory: ${config.dataDir}\n`);
  process.stdout.write(
    "The browser app, the rendezvous node and the static server are not built yet (they arrive with a later issue);\n" +
      `for now point any Matrix client (e.g. matrix-js-sdk, Hydrogen) at ${node.httpUrl}. Ctrl-C stops the server.\n`,
  );
}

start().catch((err: unknown) => {
  // Expected failures (bad config, port in use, unreadable files) get one line; bugs get a stack.
  const expected = err instanceof ConfigError || (err instanceof Error && typeof (err as NodeJS.ErrnoException).code === "string");
  process.stderr.write(`hyphae: ${err instanceof Error ? (expected ? err.message : (err.stack ?? err.message)) : String(err)}\n`);
  process.exit(1);
});
