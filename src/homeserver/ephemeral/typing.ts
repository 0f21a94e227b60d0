/**
 * Typing notifications live only in memory ("Typing Notifications" module: they are ephemeral and
 * expire), one table per homeserver instance. Changes bump a serial that `/sync` tokens carry, and
 * wake long-polls through the notifier (typing is not in the global stream).
 */
import type { Services } from "../context.ts";

interface RoomTyping {
  /** userId → generation of the typing notification that is running. */
  users: Map<string, number>;
  /** The serial of the last change in this room. */
  changedAt: number;
}

/**
 * The typing table of one homeserver. Expiry is driven by timers alone (not by comparing clock
 * readings), so it behaves the same under an injected test clock.
 */
export class TypingState {
  private serialValue = 0;
  private generation = 0;
  private readonly rooms = new Map<string, RoomTyping>();
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();

  private readonly onChange: () => void;

  constructor(onChange: () => void) {
    this.onChange = onChange;
  }

  /** The current serial; a `/sync` token records it. */
  get serial(): number {
    return this.serialValue;
  }

  /** Marks `userId` typing in `roomId` for `timeoutMs`, or stops it. */
  set(roomId: string, userId: string, typing: boolean, timeoutMs = 30_000): void {
    let room = this.rooms.get(roomId);
    if (!room) this.rooms.set(roomId, (room = { users: new Map(), changedAt: 0 }));
    const was = room.users.has(userId);
    if (typing) {
      const gen = ++this.generation;
      room.users.set(userId, gen);
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        // Only the latest notification's timer ends it; a refresh restarted the clock.
        if (room.users.get(userId) !== gen) return;
        room.users.delete(userId);
        room.changedAt = ++this.serialValue;
        this.onChange();
      }, timeoutMs);
      (timer as { unref?: () => void }).unref?.();
      this.timers.add(timer);
      // A refresh of an ongoing notification does not change what clients see.
      if (was) return;
    } else {
      if (!was) return;
      room.users.delete(userId);
    }
    room.changedAt = ++this.serialValue;
    this.onChange();
  }

  /** Users typing in `roomId` now. */
  typingIn(roomId: string): string[] {
    return [...(this.rooms.get(roomId)?.users.keys() ?? [])].sort();
  }

  /** Whether the room's typing set changed after `sinceSerial`. */
  changedSince(roomId: string, sinceSerial: number): boolean {
    // A token from before a restart (serial ahead of ours) cannot be compared: resend.
    if (sinceSerial > this.serialValue) return true;
    const room = this.rooms.get(roomId);
    return room !== undefined && room.changedAt > sinceSerial;
  }

  /** Stops expiry timers. */
  close(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}

const states = new WeakMap<Services, TypingState>();

/** The typing table of a homeserver instance (created on first use). */
export function typingState(hs: Services): TypingState {
  let s = states.get(hs);
  if (!s) {
    s = new TypingState(() => hs.notifier.wakeAll());
    states.set(hs, s);
  }
  return s;
}
