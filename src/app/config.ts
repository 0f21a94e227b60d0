/**
 * `config.json`, served with the bundle (public/config.json; `npm start` writes the local
 * rendezvous address into dist/config.json). Read by the pages; the worker's libp2p node will read
 * the same file.
 */

/** The bundle's configuration. */
export interface AppConfig {
  /** Rendezvous multiaddrs (e.g. `/dns4/rendezvous.example.org/tcp/443/wss/p2p/12D3…`). */
  rendezvous: string[];
}

/** Parses config.json's content; unknown keys are ignored, wrong types refused. */
export function parseConfig(json: unknown): AppConfig {
  if (!json || typeof json !== "object" || Array.isArray(json)) throw new Error("config.json must hold a JSON object");
  const { rendezvous = [] } = json as { rendezvous?: unknown };
  if (!Array.isArray(rendezvous) || !rendezvous.every((a) => typeof a === "string")) throw new Error("config.json: rendezvous must be a list of multiaddr strings");
  return { rendezvous };
}

/** Fetches and parses `/config.json` (not cached by the HTTP cache: an operator may change it). */
export async function loadConfig(url = "/config.json"): Promise<AppConfig> {
  const res = await fetch(url, { cache: "no-cache" });
  if (!res.ok) throw new Error(`config.json: HTTP ${res.status}`);
  return parseConfig(await res.json());
}
