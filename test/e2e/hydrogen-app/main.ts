/// <reference types="vite/client" />
/**
 * The whole Hydrogen web client, assembled from hydrogen-view-sdk the way Hydrogen's own
 * `platform/web/main.js` does it: Platform + navigation + URL router + RootViewModel, mounted by
 * `platform.createAndMountRootView`. Nothing about the homeserver is configured: the e2e test types
 * it into Hydrogen's login screen like a user would.
 */
import { Platform, RootViewModel, createNavigation, createRouter, FeatureSet } from "hydrogen-view-sdk";
import downloadSandboxPath from "hydrogen-view-sdk/download-sandbox.html?url";
import workerPath from "hydrogen-view-sdk/main.js?url";
import olmWasmPath from "@matrix-org/olm/olm.wasm?url";
import olmJsPath from "@matrix-org/olm/olm.js?url";
import olmLegacyJsPath from "@matrix-org/olm/olm_legacy.js?url";
import "hydrogen-view-sdk/theme-element-light.css";

const assetPaths = {
  downloadSandbox: downloadSandboxPath,
  worker: workerPath,
  olm: { wasm: olmWasmPath, legacyBundle: olmLegacyJsPath, wasmBundle: olmJsPath },
  // Hydrogen's own worker (copied next to index.html by the test's build step); Hydrogen will not
  // start without one.
  serviceWorker: "sw.js",
};

async function main(): Promise<void> {
  const container = document.getElementById("app")!;
  const platform = new Platform({ container, assetPaths, config: { defaultHomeServer: "" }, options: { development: false } });
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
  console.error("hydrogen-app failed to start", err);
  document.body.dataset["hydrogen"] = "failed";
});
