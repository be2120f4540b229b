/**
 * Deleting a volume or snapshot whose create never confirmed (the server died mid-create, or the
 * array timed out) cannot trust "not there": the array may still be working on that create and
 * finish it later. So the record leaves a tombstone, and the array object is deleted again by its
 * deterministic name on this schedule, counted from the delete, before it is forgotten. The
 * schedule outlasts every driver's request time-out with room to spare.
 */

import type { SnapshotRef, VolumeRef } from '../../drivers/kit/types.js';
import { describeError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import type { Tombstone, VolumeStore } from '../store/store.js';
import type { SnapshotRecord } from '../model/snapshot.js';
import type { VolumeRecord } from '../model/volume.js';

export interface DeleteAgain {
  volume(volume: VolumeRef): Promise<void>;
  snapshot(snapshot: SnapshotRef, volume: VolumeRef): Promise<void>;
}

export const RECHECK_AFTER_MS: readonly number[] = [5_000, 30_000, 120_000, 600_000];

export class TombstoneKeeper {
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly store: VolumeStore,
    private readonly backend: string,
    private readonly log: Logger,
    private readonly deleteAgain: DeleteAgain,
  ) {}

  /** Forgets the volume record and leaves its tombstone, in one store transaction. */
  bury(record: VolumeRecord): Promise<boolean> {
    return this.leave({
      object_id: record.id,
      kind: 'volume',
      parent_volume_id: null,
      backend: record.backend,
      pool_name: record.pool_name,
      size: record.size,
      provider_location: record.provider_location,
    });
  }

  /** Forgets the snapshot record and leaves its tombstone, in one store transaction. */
  burySnapshot(record: SnapshotRecord, volume: VolumeRef): Promise<boolean> {
    return this.leave({
      object_id: record.id,
      kind: 'snapshot',
      parent_volume_id: record.volume_id,
      backend: record.backend,
      pool_name: volume.pool_name,
      size: record.volume_size,
      provider_location: record.provider_location,
    });
  }

  /** Schedules every tombstone of the backend (after a restart, overdue ones run at once). */
  async resume(): Promise<void> {
    for (const tombstone of await this.store.tombstones(this.backend)) this.schedule(tombstone);
  }

  private async leave(grave: Omit<Tombstone, 'checks_done' | 'next_check_at'>): Promise<boolean> {
    const tombstone: Tombstone = { ...grave, checks_done: 0, next_check_at: new Date(Date.now() + RECHECK_AFTER_MS[0]).toISOString() };
    const removed = await this.store.removeLeavingTombstone(grave.object_id, tombstone);
    if (removed) this.schedule(tombstone);
    return removed;
  }

  close(): void {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }

  private schedule(tombstone: Tombstone): void {
    clearTimeout(this.timers.get(tombstone.object_id));
    const wait = Math.max(0, Date.parse(tombstone.next_check_at) - Date.now());
    const timer = setTimeout(() => void this.check(tombstone), wait);
    timer.unref(); // a pending re-check never keeps a stopping server alive; the store remembers it
    this.timers.set(tombstone.object_id, timer);
  }

  private async check(tombstone: Tombstone): Promise<void> {
    this.timers.delete(tombstone.object_id);
    const checksDone = tombstone.checks_done + 1;
    try {
      if (tombstone.kind === 'snapshot') {
        const volume = { id: tombstone.parent_volume_id ?? '', size: tombstone.size, pool_name: tombstone.pool_name, provider_location: null };
        await this.deleteAgain.snapshot({ id: tombstone.object_id, volume_id: volume.id, volume_size: tombstone.size, provider_location: tombstone.provider_location }, volume);
      } else {
        await this.deleteAgain.volume({ id: tombstone.object_id, size: tombstone.size, pool_name: tombstone.pool_name, provider_location: tombstone.provider_location });
      }
    } catch (error) {
      // Not forgotten: the next check (or the next start) tries again.
      this.log.warn(`re-deleting ${tombstone.kind} ${tombstone.object_id} (a create that never confirmed) failed: ${describeError(error)}`);
    }
    const last = checksDone >= RECHECK_AFTER_MS.length;
    const elapsedTarget = RECHECK_AFTER_MS[Math.min(checksDone, RECHECK_AFTER_MS.length - 1)] - RECHECK_AFTER_MS[checksDone - 1];
    const next = last ? null : { checks_done: checksDone, next_check_at: new Date(Date.now() + elapsedTarget).toISOString() };
    try {
      await this.store.rescheduleTombstone(tombstone.object_id, next);
    } catch (error) {
      this.log.warn(`cannot record the re-check of ${tombstone.kind} ${tombstone.object_id}: ${describeError(error)}`);
    }
    if (next) this.schedule({ ...tombstone, ...next });
  }
}
