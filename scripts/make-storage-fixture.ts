/**
 * Writes `test/fixtures/schema0.sqlite`: a SQLite database at schema version 1 (migration 0 only)
 * holding `SCHEMA0_ROWS`, for the upgrade test (docs/STYLE.md §11). Run once when the fixture is made:
 * `npx node scripts/make-storage-fixture.ts`. Do not regenerate it with newer code, since the point
 * is a file written by the old schema.
 */
import { writeFileSync } from "node:fs";
import { createSqliteStore } from "../src/storage/sqlite.ts";
import { MIGRATIONS } from "../src/storage/schema.ts";
import { SCHEMA0_ROWS } from "../test/fixtures/schema0Data.ts";

let bytes: Uint8Array | undefined;
const store = await createSqliteStore({
  migrations: MIGRATIONS.slice(0, 1),
  persist: async (b) => {
    bytes = b;
  },
});
await store.write(async (tx) => {
  for (const [table, k, v] of SCHEMA0_ROWS) tx.put(table, k, v);
});
await store.close();
if (!bytes) throw new Error("nothing persisted");
const out = new URL("../test/fixtures/schema0.sqlite", import.meta.url);
writeFileSync(out, bytes);
console.log(`wrote ${out.pathname} (${bytes.length} bytes)`);
