/** Where the Node runner keeps its database: DATA_DIR/homeserver.sqlite (node:sqlite, WAL; see sqliteFile.ts). */
import { join } from "node:path";
import type { Store } from "../storage/store.ts";
import { openSqliteFileStore } from "./sqliteFile.ts";

/** The database file's name inside the data directory. */
export const DATABASE_FILE = "homeserver.sqlite";

/** Opens the runner's store in `dataDir`. */
export function openNodeStore(dataDir: string): Promise<Store> {
  return openSqliteFileStore(join(dataDir, DATABASE_FILE));
}
