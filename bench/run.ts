/** `npm run bench`: runs every benchmark, prints a table and writes bench/results.json. */
import { writeFileSync } from "node:fs";
import type { Bench, Figure } from "./harness.ts";
import { cryptoBench } from "./crypto.ts";
import { roomsBench } from "./rooms.ts";
import { storageBench } from "./storage.ts";
import { syncBench } from "./sync.ts";
import { e2eeBench } from "./e2ee.ts";
import { sendBench } from "./send.ts";
import { accountsBench } from "./accounts.ts";
import { pushBench } from "./push.ts";
import { durableBench } from "./durable.ts";
import { pipelineBench } from "./pipeline.ts";
import { fedjoinBench } from "./fedjoin.ts";
import { fedsendBench } from "./fedsend.ts";
import { fedpduBench } from "./fedpdu.ts";
import { rendezvousBench } from "./rendezvous.ts";
import { fairnessBench } from "./fairness.ts";
import { browserBench } from "./browser.ts";
import { catchupBench } from "./catchup.ts";
import { exportBench } from "./export.ts";
import { p2pBench } from "./p2p.ts";
import { swmemoryBench } from "./swmemory.ts";
import { swp2pBench } from "./swp2p.ts";
import { swcoreBench } from "./swcore.ts";

// Each area adds its benchmark here.
const BENCHES: [string, Bench][] = [
  ["crypto", cryptoBench],
  ["storage", storageBench],
  ["sync", syncBench],
  ["rooms", roomsBench],
  ["e2ee", e2eeBench],
  ["send", sendBench],
  ["accounts", accountsBench],
  ["push", pushBench],
  ["durable", durableBench],
  ["pipeline", pipelineBench],
  ["fedjoin", fedjoinBench],
  ["fedsend", fedsendBench],
  ["fedpdu", fedpduBench],
  ["rendezvous", rendezvousBench],
  ["fairness", fairnessBench],
  ["browser", browserBench],
  ["catchup", catchupBench],
  ["export", exportBench],
  ["p2p", p2pBench],
  ["swmemory", swmemoryBench],
  ["swp2p", swp2pBench],
  ["swcore", swcoreBench],
];

const fmt = (n: number): string => (n >= 100 ? Math.round(n).toLocaleString("en-US") : n.toPrecision(3));

const only = process.argv.slice(2);
const all: (Figure & { group: string })[] = [];
for (const [group, bench] of BENCHES) {
  if (only.length && !only.includes(group)) continue;
  process.stdout.write(`running ${group}…\n`);
  for (const f of await bench()) all.push({ group, ...f });
}
console.log("\n| figure | value | compared to | baseline | ratio |\n|---|---|---|---|---|");
for (const f of all) {
  console.log(
    `| ${f.name} | ${fmt(f.value)} ${f.unit} | ${f.baseline?.name ?? ""} | ${f.baseline ? `${fmt(f.baseline.value)} ${f.baseline.unit}` : ""} | ${f.ratio !== undefined ? f.ratio.toFixed(3) : ""} |`,
  );
}
writeFileSync(new URL("./results.json", import.meta.url), JSON.stringify({ date: new Date().toISOString(), node: process.version, figures: all }, null, 2) + "\n");
console.log("\nwritten to bench/results.json");
