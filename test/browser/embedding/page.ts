/**
 * A third-party web client built on matrix-js-sdk that embeds Hyphae: it registers its own worker
 * (client-sw.js, which imports Hyphae's) and points its homeserver URL at its own origin. The test
 * calls `thirdParty.run()` through page.evaluate.
 */
import { createClient, ClientEvent, RoomEvent } from "matrix-js-sdk";
import type { MatrixEvent } from "matrix-js-sdk";

const log = (line: string): void => void (document.getElementById("log")!.textContent += line + "\n");

async function register(client: ReturnType<typeof createClient>, username: string, password: string): Promise<{ user_id: string; access_token: string; device_id: string }> {
  try {
    return (await client.registerRequest({ username, password })) as { user_id: string; access_token: string; device_id: string };
  } catch (err) {
    // User-Interactive Authentication: the first answer is a 401 with the session and the flows.
    const session = (err as { data?: { session?: string } }).data?.session;
    if (!session) throw err;
    return (await client.registerRequest({ username, password, auth: { type: "m.login.dummy", session } })) as { user_id: string; access_token: string; device_id: string };
  }
}

async function run(): Promise<Record<string, unknown>> {
  await navigator.serviceWorker.register("/client-sw.js");
  await navigator.serviceWorker.ready;
  if (!navigator.serviceWorker.controller) await new Promise((r) => navigator.serviceWorker.addEventListener("controllerchange", r, { once: true }));
  const ownRoute = await (await fetch("/client-own-route")).text();
  const baseUrl = location.origin;
  const anon = createClient({ baseUrl });
  const versions = await anon.getVersions();
  const session = await register(anon, "carol", "carol's long password");
  log(`registered ${session.user_id}`);
  const client = createClient({ baseUrl, userId: session.user_id, accessToken: session.access_token, deviceId: session.device_id });
  const { room_id: roomId } = await client.createRoom({ name: "Embedded room", preset: "public_chat" as never });
  log(`created ${roomId}`);
  const synced = new Promise<void>((resolve) => client.on(ClientEvent.Sync, (state: string) => state === "PREPARED" && resolve()));
  await client.startClient({ initialSyncLimit: 10 });
  await synced;
  const { event_id: eventId } = await client.sendTextMessage(roomId, "hello from an embedding client");
  // The remote echo: the event as /sync delivered it from the homeserver (not the local echo).
  const body = await new Promise<string>((resolve) => {
    const check = (event: MatrixEvent): void => {
      if (event.getId() === eventId && event.status === null) resolve(event.getContent()["body"] as string);
    };
    client.getRoom(roomId)?.getLiveTimeline().getEvents().forEach(check);
    client.on(RoomEvent.Timeline, check);
    client.on(RoomEvent.LocalEchoUpdated, check);
  });
  log(`timeline: ${body}`);
  client.stopClient();
  return { ownRoute, versions: versions.versions, userId: session.user_id, roomId, body, room: client.getRoom(roomId)?.name ?? null };
}

(globalThis as unknown as { thirdParty: unknown }).thirdParty = { run };
document.body.dataset["ready"] = "yes";
