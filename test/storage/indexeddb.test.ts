import "fake-indexeddb/auto";
import { IDBFactory } from "fake-indexeddb";
import { createIndexedDbStore } from "../../src/storage/indexeddb.ts";
import { storageConformance } from "./conformance.ts";

storageConformance("indexeddb (fake-indexeddb)", () => createIndexedDbStore({ name: "hyphae-test", indexedDB: new IDBFactory() }));
