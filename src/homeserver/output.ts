/**
 * The post-commit output stream: what the core tells the rest of the world after a write is
 * durable (Dendrite's roomserver output, Conduit's `sending`). Producers publish typed items only
 * after their transaction committed; consumers — `/sync` waiters (the notifier), and later the
 * per-destination federation outbox and pushers — subscribe. A consumer that throws is logged and
 * does not stop the others.
 */
import type { StoredEvent } from "./events/types.ts";
import type { Logger } from "./context.ts";

/** An event committed to a room's timeline. */
export interface RoomEventItem {
  kind: "room_event";
  streamPos: number;
  roomId: string;
  event: StoredEvent;
  /** Built here (`local`) or received from another server (`new`). */
  origin: "local" | "new";
  /** Users whose membership the event changed (a member event's state key), besides the room's members. */
  users: string[];
}

/** Anything else on the stream that wakes clients: account data, to-device, receipts, device lists… */
export interface UserDataItem {
  kind: "user_data";
  streamPos: number;
  /** The users it concerns; absent: possibly anyone (e.g. a presence or device-list change). */
  users?: string[];
  /** Rooms it concerns (e.g. a receipt), whose members it also concerns. */
  rooms?: string[];
}

export type OutputItem = RoomEventItem | UserDataItem;

/** Receives committed items, in commit order within one producer. */
export type OutputConsumer = (item: OutputItem) => void;

/** The stream: `publish` after a commit, `subscribe` to consume. */
export class OutputStream {
  private readonly consumers = new Set<OutputConsumer>();
  private readonly logger: Logger;
  constructor(logger: Logger) {
    this.logger = logger;
  }

  /** Adds a consumer; returns its unsubscribe function. */
  subscribe(consumer: OutputConsumer): () => void {
    this.consumers.add(consumer);
    return () => this.consumers.delete(consumer);
  }

  /** Hands an item to every consumer. Call only after the item's transaction committed. */
  publish(item: OutputItem): void {
    for (const c of this.consumers) {
      try {
        c(item);
      } catch (err) {
        this.logger.error("output consumer failed on", item.kind, err);
      }
    }
  }
}
