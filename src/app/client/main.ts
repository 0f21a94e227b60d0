/// <reference types="vite/client" />
/**
 * The bundled client: the Hydrogen web client from npm (hydrogen-view-sdk), unmodified, assembled
 * the way Hydrogen's own `platform/web/main.js` does it. Its homeserver is this origin (the
 * worker answers the Matrix paths); the landing page logs it in with a login token
 * (`?loginToken=…`, Hydrogen's SSO completion path). Its Service Worker is the app's one worker
 * (`/sw.js`), which also carries Hydrogen's own worker code (see vite.config.ts).
 */
import { Platform, RootViewModel, createNavigation, createRouter, FeatureSet } from "hydrogen-view-sdk";
import downloadSandboxPath from "hydrogen-view-sdk/download-sandbox.html?url";
import workerPath from "hydrogen-view-sdk/main.js?url";
import olmWasmPath from "@matrix-org/olm/olm.wasm?url";
import olmJsPath from "@matrix-org/olm/olm.js?url";
import olmLegacyJsPath from "@matrix-org/olm/olm_legacy.js?url";
import "hydrogen-view-sdk/theme-element-light.css";
import { keepWorkerAlive, registerWorker } from "../worker.ts";

const assetPaths = {
  downloadSandbox: downloadSandboxPath,
  worker: workerPath,
  olm: { wasm: olmWasmPath, legacyBundle: olmLegacyJsPath, wasmBundle: olmJsPath },
  serviceWorker: "/sw.js",
};

async function main(): Promise<void> {
  // The homeserver must be answering before Hydrogen's first request.
  await registerWorker();
  keepWorkerAlive();
  const container = document.getElementById("app")!;
  const platform = new Platform({ container, assetPaths, config: { defaultHomeServer: location.origin }, options: { development: false } });
  const navigation = createNavigation();
  platform.setNavigation(navigation);
  await platform.init();
  const urlRouter = createRouter({ navigation, history: platform.history });
  urlRouter.attach();
  const features = await FeatureSet.load(platform.settingsStorage);
  const vm = new RootViewModel({ platform, urlRouter, navigation, features });
  await vm.load();
  platform.createAndMountRootView(vm);
  document.body.dataset["hydrogen"] = "mounted";
}

main().catch((err: unknown) => {
  console.error("the client failed to start", err);
  document.body.dataset["hydrogen"] = "failed";
});
