/**
 * The page script of the real-browser storage test: registers the conformance suite against
 * Chromium's own IndexedDB and against sql.js's browser build (wasm served at /sqljs/), plus the
 * IndexedDB upgrade cases, and exposes the results as `window.hyphaeResults` (a promise).
 */
import { run } from "./vitestShim.ts";
import { storageConformance } from "../conformance.ts";
import { indexedDbUpgradeSuite } from "../upgradeCases.ts";
import { createIndexedDbStore } from "../../../src/storage/indexeddb.ts";
import { createSqliteStore } from "../../../src/storage/sqlite.ts";

let n = 0;
storageConformance("indexeddb (Chromium)", () => createIndexedDbStore({ name: `conformance-${n++}` }));
indexedDbUpgradeSuite("Chromium", () => ({ factory: indexedDB, name: `upgrade-${n++}` }));
storageConformance("sqlite (Chromium, sql.js browser build)", () => createSqliteStore({ locateWasm: (file) => `/sqljs/${file}` }));

(globalThis as unknown as { hyphaeResults: ReturnType<typeof run> }).hyphaeResults = run();
