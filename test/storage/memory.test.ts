import { createMemoryStore } from "../../src/storage/memory.ts";
import { storageConformance } from "./conformance.ts";

storageConformance("memory", async () => createMemoryStore());
