/**
 * `npm run serve -- --port P --data DIR [--rendezvous MULTIADDR] [--host H]` and
 * `npm run serve -- --config FILE`: the Node homeserver (docs/DESIGN.md "Contracts").
 */
import { hideSqliteExperimentalWarning } from "./warnings.ts";

hideSqliteExperimentalWarning();
// Loaded only now, so the filter above is in place when node:sqlite is.
const { runFromCommandLine } = await import("./cli.ts");
runFromCommandLine(process.argv.slice(2));
