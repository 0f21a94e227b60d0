/**
 * Long work a user waits on, for a status view's progress indicator (issue 13: "a progress
 * indicator while a large room is joined or backfilled"): joining a room over federation (the
 * resident's answer checked event by event, then stored) and fetching a room's history from other
 * servers. The code doing the work reports its phase and how far it got; the Service Worker's
 * status (src/sw/serviceWorker.ts) lists what runs now.
 *
 * Kept per homeserver store, like the backfills in flight (federation/backfill.ts): the work is
 * found from `Services.store`, so no interface changes shape for it.
 */

/** One piece of work in progress. */
export interface Activity {
  /** `join`: a room joined over federation; `backfill`: history fetched from other servers. */
  kind: "join" | "backfill";
  roomId: string;
  /** What it does now, in a few words (`asking <server>`, `checking events`, `storing 3000 events`). */
  phase: string;
  /** Items done of `total` in this phase; no `total` while it is unknown. */
  done: number;
  total?: number;
  /** When the work started (ms since the epoch). */
  startedAt: number;
}

/** The handle the working code holds. */
export interface ActivityHandle {
  /** A new phase, or progress in the current one. */
  update(phase: string, done?: number, total?: number): void;
  /** The work is over (done or failed); safe to call twice. */
  end(): void;
}

/** The work in progress of one homeserver. */
export class Activities {
  private next = 0;
  private readonly running = new Map<number, Activity>();

  start(kind: Activity["kind"], roomId: string, phase: string): ActivityHandle {
    const id = ++this.next;
    const activity: Activity = { kind, roomId, phase, done: 0, startedAt: Date.now() };
    this.running.set(id, activity);
    return {
      update: (newPhase, done = 0, total) => {
        activity.phase = newPhase;
        activity.done = done;
        if (total === undefined) delete activity.total;
        else activity.total = total;
      },
      end: () => void this.running.delete(id),
    };
  }

  /** Copies of the work running now, oldest first. */
  list(): Activity[] {
    return [...this.running.values()].map((a) => ({ ...a }));
  }
}

const perStore = new WeakMap<object, Activities>();

/** The work in progress of the homeserver on `store` (`Services.store`). */
export function activitiesOf(store: object): Activities {
  let activities = perStore.get(store);
  if (!activities) perStore.set(store, (activities = new Activities()));
  return activities;
}
