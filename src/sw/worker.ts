/**
 * The Service Worker script (bundled as `sw.js`): Hyphae's homeserver on this origin's Matrix
 * paths, everything else to the network. See serviceWorker.ts.
 */
import { installHyphae } from "./serviceWorker.ts";

installHyphae(globalThis as unknown as ServiceWorkerGlobalScope);
