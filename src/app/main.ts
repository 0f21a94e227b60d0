/**
 * The landing page: *Sign in* (src/app/signIn.ts) and the status view (the worker's status, the
 * rendezvous addresses from config.json, storage). It keeps the worker alive while it is open.
 */
import { exportFile, importAndSignIn, openClient, signIn, storedAccount } from "./signIn.ts";
import { keepWorkerAlive, registerWorker, workerStatus } from "./worker.ts";
import { loadConfig } from "./config.ts";
import { progressView } from "./progress.ts";

const $ = (id: string): HTMLElement => document.getElementById(id)!;

const bytes = (n: number | undefined): string => (n === undefined ? "?" : n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(1)} kB`);

/** Shows the joins and backfills in progress (the bar and one line each), or hides them. */
function showProgress(activities: Parameters<typeof progressView>[0]): void {
  const view = progressView(activities, Date.now());
  const bar = $("status-progress") as HTMLProgressElement;
  bar.hidden = view.bar === undefined;
  if (view.bar?.max !== undefined) {
    bar.max = view.bar.max;
    bar.value = view.bar.value ?? 0;
  } else {
    bar.removeAttribute("value"); // indeterminate
  }
  $("status-activity").textContent = view.lines.length ? view.lines.join("\n") : "nothing";
}

/** Fills the status view from the worker (and config.json); errors are shown, not thrown. Returns whether work is in progress. */
async function refreshStatus(): Promise<boolean> {
  const account = storedAccount();
  $("status-user").textContent = account?.userId ?? "not signed in";
  try {
    const config = await loadConfig();
    const s = await workerStatus();
    $("status-server").textContent = s.serverName;
    $("status-peers").textContent = String(s.p2p.peers);
    $("status-rendezvous").textContent = `${config.rendezvous.length ? config.rendezvous.join(", ") : "none configured"} — ${s.p2p.running ? "connected" : s.p2p.rendezvous}`;
    const queues = Object.entries(s.outboundQueues);
    $("status-queues").textContent = queues.length ? queues.map(([d, n]) => `${d.slice(0, 12)}…: ${n}`).join(", ") : "empty";
    $("status-storage").textContent = `${bytes(s.storage.usage)} used of ${bytes(s.storage.quota)} granted${s.storage.persisted ? ", persistent" : ", not persistent (the browser may evict it under pressure)"}`;
    showProgress(s.activities);
    document.body.dataset["status"] = "ready";
    return s.activities.length > 0;
  } catch (err) {
    $("status-server").textContent = `unavailable: ${err instanceof Error ? err.message : String(err)}`;
    return false;
  }
}

/** Refreshes the status view every 5 s, every second while a join or backfill runs. */
function pollStatus(): void {
  void refreshStatus().then((busy) => setTimeout(pollStatus, busy ? 1_000 : 5_000));
}

function showSignedIn(userId: string): void {
  $("signed-in").hidden = false;
  $("import").hidden = true;
  $("user-id").textContent = userId;
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

function wireExportImport(): void {
  const exportButton = $("export-button") as HTMLButtonElement;
  exportButton.addEventListener("click", () => {
    exportButton.disabled = true;
    $("export-message").textContent = "Exporting…";
    exportFile(($("export-passphrase") as HTMLInputElement).value)
      .then((file) => {
        const link = $("export-link") as HTMLAnchorElement;
        link.href = URL.createObjectURL(file);
        link.hidden = false;
        $("export-message").textContent = `Export ready (${Math.ceil(file.size / 1024)} KB).`;
        link.click();
      })
      .catch((err: unknown) => void ($("export-message").textContent = `Export failed: ${message(err)}`))
      .finally(() => (exportButton.disabled = false));
  });
  const importButton = $("import-button") as HTMLButtonElement;
  importButton.addEventListener("click", () => {
    const file = ($("import-file") as HTMLInputElement).files?.[0];
    if (!file) return void ($("import-message").textContent = "Choose an export file first.");
    importButton.disabled = true;
    $("import-message").textContent = "Importing…";
    importAndSignIn(file, ($("import-passphrase") as HTMLInputElement).value)
      .then(({ loginToken }) => openClient(loginToken))
      .catch((err: unknown) => {
        importButton.disabled = false;
        $("import-message").textContent = `Import failed: ${message(err)}`;
      });
  });
}

async function main(): Promise<void> {
  await registerWorker();
  keepWorkerAlive();
  const account = storedAccount();
  if (account) showSignedIn(account.userId);
  wireExportImport();
  const button = $("signin-button") as HTMLButtonElement;
  button.addEventListener("click", () => {
    button.disabled = true;
    $("signin-message").textContent = "Creating your homeserver and account…";
    signIn(($("name") as HTMLInputElement).value)
      .then(({ loginToken }) => openClient(loginToken))
      .catch((err: unknown) => {
        button.disabled = false;
        $("signin-message").textContent = `Sign-in failed: ${err instanceof Error ? err.message : String(err)}`;
      });
  });
  const busy = await refreshStatus();
  setTimeout(pollStatus, busy ? 1_000 : 5_000);
  document.body.dataset["app"] = "ready";
}

main().catch((err: unknown) => {
  $("signin-message").textContent = `Hyphae cannot start here: ${err instanceof Error ? err.message : String(err)}`;
  document.body.dataset["app"] = "failed";
});
