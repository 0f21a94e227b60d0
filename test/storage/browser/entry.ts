/**
 * The page script of the real-browser IndexedDB test: registers the conformance suite against
 * Chromium's own IndexedDB and exposes the results as `window.hyphaeResults` (a promise).
 */
import { run } from "./vitestShim.ts";
import { storageConformance } from "../conformance.ts";
import { createIndexedDbStore } from "../../../src/storage/indexeddb.ts";

let n = 0;
storageConformance("indexeddb (Chromium)", () => createIndexedDbStore({ name: `conformance-${n++}` }));

(globalThis as unknown as { hyphaeResults: ReturnType<typeof run> }).hyphaeResults = run();
