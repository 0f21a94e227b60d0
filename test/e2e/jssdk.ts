/** matrix-js-sdk helpers the real-client tests share: starting a client, waiting for a message. */
import { ClientEvent, MatrixEventEvent, RoomEvent } from "matrix-js-sdk";
import type { IStartClientOpts, MatrixClient, MatrixEvent } from "matrix-js-sdk";
import { within } from "./http.ts";

/** Starts `client` (by default with initial sync limit 20) and resolves once its first sync is done (PREPARED), failing after 60 s. */
export async function startClientSynced(client: MatrixClient, what: string, opts: IStartClientOpts = { initialSyncLimit: 20 }): Promise<void> {
  const ready = new Promise<void>((resolve) => {
    client.on(ClientEvent.Sync, (state) => {
      if (state === "PREPARED") resolve();
    });
  });
  await client.startClient(opts);
  await within(ready, 60_000, what);
}

/**
 * Resolves with the first m.room.message in `roomId` whose body is `body`, as a js-sdk client sees
 * it; in an encrypted room the event arrives as m.room.encrypted and is checked again once decrypted
 * (decryption is asynchronous; Decrypted fires on the client too).
 */
export function waitForMessage(client: MatrixClient, roomId: string, body: string): Promise<MatrixEvent> {
  return new Promise((resolve) => {
    const check = (event: MatrixEvent): void => {
      if (event.getRoomId() !== roomId || event.getType() !== "m.room.message") return;
      if (event.getContent()["body"] !== body) return;
      client.off(RoomEvent.Timeline, onTimeline);
      client.off(MatrixEventEvent.Decrypted, check);
      resolve(event);
    };
    const onTimeline = (event: MatrixEvent): void => check(event);
    client.on(RoomEvent.Timeline, onTimeline);
    client.on(MatrixEventEvent.Decrypted, check);
  });
}
