/**
 * Updates a store could not write when they happened (disk full between a create's two writes),
 * kept in memory so the running server still tells the truth about those records, and written by
 * the store before its next successful write.
 */
export class OutcomeBuffer<Patch extends object> {
  private readonly patches = new Map<string, Patch>();

  defer(id: string, patch: Patch): void {
    this.patches.set(id, { ...this.patches.get(id), ...patch });
  }

  /** The record as it really is now. */
  apply<T extends { id: string } | undefined>(record: T): T {
    if (!record) return record;
    const patch = this.patches.get(record.id);
    return patch ? { ...record, ...patch } : record;
  }

  forget(id: string): void {
    this.patches.delete(id);
  }

  /** Writes what it can with `write`; keeps the rest (and rethrows nothing: the caller's own write reports the store's state). */
  flush(write: (id: string, patch: Patch) => void): void {
    for (const [id, patch] of this.patches) {
      try {
        write(id, patch);
        this.patches.delete(id);
      } catch {
        return;
      }
    }
  }
}
