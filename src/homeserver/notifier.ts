/** Wakes `/sync` long-polls when the stream moves. Call `notify` only after the commit. */
export class Notifier {
  private latest = 0;
  private waiters = new Set<{ since: number; resolve: () => void }>();

  /** Records that the stream reached `pos` and wakes every waiter behind it. */
  notify(pos: number): void {
    if (pos > this.latest) this.latest = pos;
    for (const w of this.waiters) {
      if (this.latest > w.since) {
        this.waiters.delete(w);
        w.resolve();
      }
    }
  }

  /** How many long-polls are waiting (metrics). */
  waiting(): number {
    return this.waiters.size;
  }

  /** Wakes waiters regardless of position (e.g. typing, which is not in the stream). */
  wakeAll(): void {
    for (const w of this.waiters) w.resolve();
    this.waiters.clear();
  }

  /** Resolves when the stream passes `since`, after `timeoutMs`, or when `signal` aborts. */
  wait(since: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if (this.latest > since || timeoutMs <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const waiter = {
        since,
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
