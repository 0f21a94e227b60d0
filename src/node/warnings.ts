/**
 * Node prints an `ExperimentalWarning` the first time `node:sqlite` loads (the runner's database,
 * see sqliteFile.ts). That is a fact about Node, not about this server, and it would turn every
 * one-line start-up failure into three lines: the runner drops that warning and prints others as
 * Node would. Call it before anything imports `node:sqlite`.
 */
export function hideSqliteExperimentalWarning(): void {
  process.removeAllListeners("warning");
  process.on("warning", (warning) => {
    if (warning.name === "ExperimentalWarning" && /SQLite/i.test(warning.message)) return;
    process.stderr.write(`(node:${process.pid}) ${warning.name}: ${warning.message}\n`);
  });
}
