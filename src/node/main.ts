/**
 * `npm run serve -- --port P --data DIR [--rendezvous MULTIADDR] [--host H]` and
 * `npm run serve -- --config FILE`: the Node homeserver (DESIGN.md "Contracts").
 */
import { runFromCommandLine } from "./cli.ts";

runFromCommandLine(process.argv.slice(2));
