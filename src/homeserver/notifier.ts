/**
 * Wakes `/sync` (and `/events`) long-polls when the stream moves. Each waiter says what it is
 * interested in (its user and the rooms it is in); a notification with a scope wakes only the
 * waiters it concerns, one without wakes every waiter behind it. Call `notify` only after the
 * commit.
 */
import type { OutputItem } from "./output.ts";

/** What a notification concerns: users and/or rooms; absent means everyone. */
export interface NotifyScope {
  users?: Iterable<string>;
  rooms?: Iterable<string>;
}

/** What a waiter wants to hear about. */
export interface Interest {
  userId: string;
  rooms: ReadonlySet<string>;
}

interface Waiter {
  since: number;
  interest: Interest | undefined;
  resolve: () => void;
}

export class Notifier {
  private latest = 0;
  private waiters = new Set<Waiter>();
  private closedFlag = false;
  /** Told of every notification (the federation sender scans device-list changes on it). */
  private readonly observers = new Set<(pos: number) => void>();

  /** Calls `observer` with the position of every later notification. */
  observe(observer: (pos: number) => void): void {
    this.observers.add(observer);
  }

  /** Set once the server stops: long-polls answer with what they have instead of waiting again. */
  get closed(): boolean {
    return this.closedFlag;
  }

  /** Ends every wait, now and later (shutdown: in-flight `/sync` requests finish at once). */
  close(): void {
    this.closedFlag = true;
    this.wakeAll();
  }

  /** Records that the stream reached `pos` and wakes the waiters behind it that `scope` concerns. */
  notify(pos: number, scope?: NotifyScope): void {
    if (pos > this.latest) this.latest = pos;
    for (const o of this.observers) o(pos);
    if (this.waiters.size === 0) return;
    const users = scope?.users ? new Set(scope.users) : undefined;
    const rooms = scope?.rooms ? [...scope.rooms] : undefined;
    for (const w of this.waiters) {
      if (this.latest <= w.since) continue;
      if (scope && w.interest) {
        const i = w.interest;
        const concerned = (users?.has(i.userId) ?? false) || (rooms?.some((r) => i.rooms.has(r)) ?? false);
        if (!concerned) continue;
      }
      this.waiters.delete(w);
      w.resolve();
    }
  }

  /** How many long-polls are waiting (metrics). */
  waiting(): number {
    return this.waiters.size;
  }

  /** The notifier as a consumer of the output stream. */
  readonly consume = (item: OutputItem): void => {
    if (item.kind === "room_event") this.notify(item.streamPos, { rooms: [item.roomId], users: item.users });
    else this.notify(item.streamPos, item.users || item.rooms ? { ...(item.users ? { users: item.users } : {}), ...(item.rooms ? { rooms: item.rooms } : {}) } : undefined);
  };

  /** Wakes waiters regardless of position (e.g. typing, which is not in the stream). */
  wakeAll(): void {
    for (const w of this.waiters) w.resolve();
    this.waiters.clear();
  }

  /**
   * Resolves when the stream passes `since` with something `interest` cares about (anything, without
   * an interest), after `timeoutMs`, or when `signal` aborts.
   */
  wait(since: number, timeoutMs: number, signal?: AbortSignal, interest?: Interest): Promise<void> {
    if (this.latest > since || timeoutMs <= 0 || this.closedFlag) return Promise.resolve();
    return new Promise((resolve) => {
      const waiter: Waiter = {
        since,
        interest,
        resolve: () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", waiter.resolve);
          this.waiters.delete(waiter);
          resolve();
        },
      };
      const timer = setTimeout(waiter.resolve, timeoutMs);
      signal?.addEventListener("abort", waiter.resolve);
      this.waiters.add(waiter);
    });
  }
}
