/**
 * The entry of `hyphae-p2p.js`: the libp2p side of the worker as a script of its own, about 60 % of
 * the worker's code. The core script imports it only when the node starts (src/sw/p2pLoader.ts), so
 * a worker the browser restarts for a fetch compiles less than half the code before it answers.
 */
import { startWorkerP2P } from "./p2p.ts";
import { P2P_GLOBAL } from "./p2pCore.ts";
import type { P2PScript } from "./p2pLoader.ts";

(globalThis as Record<string, unknown>)[P2P_GLOBAL] = { startWorkerP2P } satisfies P2PScript;
