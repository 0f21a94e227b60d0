/**
 * Per-room serialization of local sends: building an event reads the forward extremities and the
 * current state, and storing it changes them, so two sends to one room must not interleave.
 */

const chains = new WeakMap<object, Map<string, Promise<unknown>>>();

/** Runs `fn` after every earlier `withRoomLock(owner, roomId, …)` call has finished. */
export async function withRoomLock<T>(owner: object, roomId: string, fn: () => Promise<T>): Promise<T> {
  let rooms = chains.get(owner);
  if (!rooms) chains.set(owner, (rooms = new Map()));
  const previous = rooms.get(roomId) ?? Promise.resolve();
  const run = previous.then(fn, fn);
  const settled = run.then(() => undefined, () => undefined);
  rooms.set(roomId, settled);
  try {
    return await run;
  } finally {
    // Drop the entry once the chain is idle, so the map does not grow with every room ever used.
    if (rooms.get(roomId) === settled) rooms.delete(roomId);
  }
}
