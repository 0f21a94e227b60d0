/** The command-line entry shared by `npm run serve` and `npm start`: parse, start, report, exit. */
import { ConfigError, StartupError, USAGE, parseArgs, resolveConfig } from "./config.ts";
import type { NodeConfig } from "./config.ts";
import { consoleLogger } from "./logger.ts";
import { exitOnSignals, startNode } from "./runner.ts";
import { exportDataDir, importIntoDataDir, readPassphrase } from "./exportImport.ts";
import type { RunningNode } from "./runner.ts";

/**
 * Starts the Node homeserver from command-line arguments and prints the "listening" line that
 * tests and scripts wait for; `announce` may print more once it is up. Exits 1 on failure:
 * expected failures (bad config, port in use, unreadable files) get one line, bugs a stack.
 */
export function runFromCommandLine(argv: string[], announce?: (node: RunningNode, config: NodeConfig) => void): void {
  let logger = consoleLogger("info");
  const run = async (): Promise<RunningNode | undefined> => {
    const args = parseArgs(argv);
    if (args.help) {
      process.stdout.write(USAGE + "\n");
      return undefined;
    }
    // Everything the server creates (database, media, seed, lock) is its owner's alone: 0600 files, 0700 directories.
    process.umask(0o077);
    const config = await resolveConfig(args, (msg) => logger.warn(msg));
    logger = consoleLogger(config.logLevel);
    if (args.exportFile !== undefined) {
      const passphrase = await readPassphrase("export", args.passphraseFile);
      const { serverName } = await exportDataDir(config, args.exportFile, passphrase, logger);
      process.stdout.write(`Hyphae exported ${serverName} to ${args.exportFile}\n`);
      return undefined;
    }
    if (args.importFile !== undefined) {
      const passphrase = await readPassphrase("import", args.passphraseFile);
      const { serverName } = await importIntoDataDir(config, args.importFile, passphrase, logger);
      process.stdout.write(`Hyphae imported ${serverName} from ${args.importFile} into ${config.dataDir}\n`);
    }
    const node = await startNode(config, { logger });
    // Before the line scripts wait for, so whoever saw it has the P2P addresses too.
    for (const addr of node.p2pAddresses?.() ?? []) process.stdout.write(`Hyphae P2P listening on ${addr}\n`);
    process.stdout.write(`Hyphae listening on ${node.httpUrl} (server name ${node.serverName})\n`);
    if (node.httpsUrl) process.stdout.write(`Hyphae listening on ${node.httpsUrl} (TLS)\n`);
    if (node.metricsUrl) process.stdout.write(`Hyphae metrics on ${node.metricsUrl}\n`);
    announce?.(node, config);
    return node;
  };
  const running = run();
  // From the start: a SIGTERM while the server opens its database waits for it, then stops it cleanly.
  exitOnSignals(running, (msg) => logger.info(msg));
  running.catch((err: unknown) => {
    const expected = err instanceof ConfigError || err instanceof StartupError || (err instanceof Error && typeof (err as NodeJS.ErrnoException).code === "string");
    // An expected failure is one line, whatever the message it wraps contains.
    const line = (m: string): string => m.replace(/\s*\n\s*/g, " ");
    process.stderr.write(`hyphae: ${err instanceof Error ? (expected ? line(err.message) : (err.stack ?? err.message)) : String(err)}\n`);
    process.exit(1);
  });
}
