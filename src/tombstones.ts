import type { VolumeRef } from '../drivers/types.js';
import { describeError } from './errors.js';
import type { Logger } from './log.js';
import type { Tombstone, VolumeStore } from './persistence/store.js';
import type { VolumeRecord } from './volume.js';

/**
 * Deleting a volume whose create never confirmed (the server died mid-create, or the array timed
 * out) cannot trust "not there": the array may still be working on that create and finish it
 * later. So the record leaves a tombstone, and the array object's deterministic name is deleted
 * again on this schedule, counted from the delete, before it is forgotten. The schedule outlasts
 * every driver's request time-out with room to spare.
 */
export const RECHECK_AFTER_MS: readonly number[] = [5_000, 30_000, 120_000, 600_000];

export class TombstoneKeeper {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly store: VolumeStore,
    private readonly backend: string,
    private readonly log: Logger,
    private readonly deleteAgain: (volume: VolumeRef) => Promise<void>,
  ) {}

  /** Forgets the record and leaves its tombstone, in one store transaction. */
  async bury(record: VolumeRecord): Promise<boolean> {
    const tombstone: Tombstone = {
      volume_id: record.id,
      backend: record.backend,
      pool_name: record.pool_name,
      size: record.size,
      provider_location: record.provider_location,
      checks_done: 0,
      next_check_at: new Date(Date.now() + RECHECK_AFTER_MS[0]!).toISOString(),
    };
    const removed = await this.store.removeLeavingTombstone(record.id, tombstone);
    if (removed) this.schedule(tombstone);
    return removed;
  }

  /** Schedules every tombstone of the backend (after a restart, overdue ones run at once). */
  async resume(): Promise<void> {
    for (const tombstone of await this.store.tombstones(this.backend)) this.schedule(tombstone);
  }

  close(): void {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }

  private schedule(tombstone: Tombstone): void {
    clearTimeout(this.timers.get(tombstone.volume_id));
    const wait = Math.max(0, Date.parse(tombstone.next_check_at) - Date.now());
    const timer = setTimeout(() => void this.check(tombstone), wait);
    timer.unref(); // a pending re-check never keeps a stopping server alive; the store remembers it
    this.timers.set(tombstone.volume_id, timer);
  }

  private async check(tombstone: Tombstone): Promise<void> {
    this.timers.delete(tombstone.volume_id);
    const ref = { id: tombstone.volume_id, size: tombstone.size, pool_name: tombstone.pool_name, provider_location: tombstone.provider_location };
    const checksDone = tombstone.checks_done + 1;
    try {
      await this.deleteAgain(ref);
    } catch (error) {
      // Not forgotten: the next check (or the next start) tries again.
      this.log.warn(`re-deleting volume-${tombstone.volume_id} (a create that never confirmed) failed: ${describeError(error)}`);
    }
    const last = checksDone >= RECHECK_AFTER_MS.length;
    const elapsedTarget = RECHECK_AFTER_MS[Math.min(checksDone, RECHECK_AFTER_MS.length - 1)]! - RECHECK_AFTER_MS[checksDone - 1]!;
    const next = last ? null : { checks_done: checksDone, next_check_at: new Date(Date.now() + elapsedTarget).toISOString() };
    try {
      await this.store.rescheduleTombstone(tombstone.volume_id, next);
    } catch (error) {
      this.log.warn(`cannot record the re-check of volume-${tombstone.volume_id}: ${describeError(error)}`);
    }
    if (next) this.schedule({ ...tombstone, ...next });
  }
}
