/**
 * The landing page: *Sign in* (src/app/signIn.ts) and the status view (the worker's status, the
 * rendezvous addresses from config.json, storage). It keeps the worker alive while it is open.
 */
import { openClient, signIn, storedAccount } from "./signIn.ts";
import { keepWorkerAlive, registerWorker, workerStatus } from "./worker.ts";
import { loadConfig } from "./config.ts";

const $ = (id: string): HTMLElement => document.getElementById(id)!;

const bytes = (n: number | undefined): string => (n === undefined ? "?" : n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e3).toFixed(1)} kB`);

/** Fills the status view from the worker (and config.json); errors are shown, not thrown. */
async function refreshStatus(): Promise<void> {
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
    document.body.dataset["status"] = "ready";
  } catch (err) {
    $("status-server").textContent = `unavailable: ${err instanceof Error ? err.message : String(err)}`;
  }
}

function showSignedIn(userId: string): void {
  $("signed-in").hidden = false;
  $("user-id").textContent = userId;
}

async function main(): Promise<void> {
  await registerWorker();
  keepWorkerAlive();
  const account = storedAccount();
  if (account) showSignedIn(account.userId);
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
  await refreshStatus();
  setInterval(() => void refreshStatus(), 5_000);
  document.body.dataset["app"] = "ready";
}

main().catch((err: unknown) => {
  $("signin-message").textContent = `Hyphae cannot start here: ${err instanceof Error ? err.message : String(err)}`;
  document.body.dataset["app"] = "failed";
});
