/**
 * `npm start`. docs/DESIGN.md's full `npm start` builds the browser app and starts a rendezvous node and
 * a static server; those arrive with later issues. Until then it starts what exists: the Node
 * homeserver with its data in ./data/homeserver (the same flags as `npm run serve`), and says so.
 */
import { hideSqliteExperimentalWarning } from "./warnings.ts";

hideSqliteExperimentalWarning();
const { runFromCommandLine } = await import("./cli.ts");

runFromCommandLine(process.argv.slice(2), (node, config) => {
  process.stdout.write(`Data directory: ${config.dataDir}\n`);
  process.stdout.write(
    "The browser app, the rendezvous node and the static server are not built yet (they arrive with a later issue);\n" +
      `for now point any Matrix client (e.g. matrix-js-sdk, Hydrogen) at ${node.httpUrl}. Ctrl-C stops the server.\n`,
  );
});
