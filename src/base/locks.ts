/**
 * In-process coordination: a mutex per key (operations on one volume run one at a time) and
 * single-flight (concurrent callers of one expensive call share its answer).
 */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const current = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => current);
    this.tails.set(key, tail);
    await previous;
    try {
      return await task();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

/** Holds every key of `keys` (in a fixed order, so two callers never wait on each other crosswise), then runs `task`. */
export function runHoldingAll<T>(mutex: KeyedMutex, keys: readonly string[], task: () => Promise<T>): Promise<T> {
  const ordered = [...new Set(keys)].sort();
  const hold = (index: number): Promise<T> => (index === ordered.length ? task() : mutex.run(ordered[index], () => hold(index + 1)));
  return hold(0);
}

export class SingleFlight<T> {
  private inFlight?: Promise<T>;

  run(task: () => Promise<T>): Promise<T> {
    if (!this.inFlight) {
      this.inFlight = task().finally(() => {
        this.inFlight = undefined;
      });
    }
    return this.inFlight;
  }
}
