import { createSqliteStore } from "../../src/storage/sqlite.ts";
import { storageConformance } from "./conformance.ts";

storageConformance("sqlite (in memory)", () => createSqliteStore());
