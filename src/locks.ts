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
