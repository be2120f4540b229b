import { OPERATION_OF_STATUS, TRANSITIONAL_STATUSES, type VolumeRecord, type VolumeStatus } from '../volume.js';
import type { RecoveryClaim, Tombstone, VolumePage, VolumePatch, VolumeQuery, VolumeStore } from './store.js';
import { isRecoverable } from './recovery.js';

/** cinderlib's `memory` storage: everything is gone when the process ends. */
export class MemoryVolumeStore implements VolumeStore {
  private readonly byId = new Map<string, { seq: number; record: VolumeRecord }>();
  /** Insertion order; Map iteration order is insertion order, which gives stable pages. */
  private nextSeq = 1;
  private readonly graves = new Map<string, Tombstone>();

  async insert(record: VolumeRecord): Promise<boolean> {
    if (this.byId.has(record.id)) return false;
    this.byId.set(record.id, { seq: this.nextSeq++, record: { ...record } });
    return true;
  }

  async get(id: string): Promise<VolumeRecord | undefined> {
    const entry = this.byId.get(id);
    return entry ? { ...entry.record } : undefined;
  }

  async update(id: string, patch: VolumePatch, expected?: readonly VolumeStatus[]): Promise<VolumeRecord | undefined> {
    const entry = this.byId.get(id);
    if (!entry || (expected && !expected.includes(entry.record.status))) return undefined;
    const defined = Object.fromEntries(Object.entries(patch).filter(([, value]) => value !== undefined));
    entry.record = { ...entry.record, ...defined, updated_at: new Date().toISOString() };
    return { ...entry.record };
  }

  async remove(id: string): Promise<boolean> {
    return this.byId.delete(id);
  }

  async list(query: VolumeQuery): Promise<VolumePage> {
    const after = query.after ?? 0;
    const records: VolumeRecord[] = [];
    let lastSeq = 0;
    let more = false;
    for (const { seq, record } of this.byId.values()) {
      if (seq <= after) continue;
      if (query.backend !== undefined && record.backend !== query.backend) continue;
      if (query.status !== undefined && record.status !== query.status) continue;
      if (records.length === query.limit) {
        more = true;
        break;
      }
      records.push({ ...record });
      lastSeq = seq;
    }
    return { records, nextAfter: more ? lastSeq : undefined };
  }

  async surfaceInterrupted(claim: RecoveryClaim, reason: (record: VolumeRecord) => string): Promise<VolumeRecord[]> {
    const surfaced: VolumeRecord[] = [];
    for (const entry of this.byId.values()) {
      if (TRANSITIONAL_STATUSES.includes(entry.record.status) && isRecoverable(entry.record, claim)) {
        entry.record = {
          ...entry.record,
          status: 'error',
          status_reason: reason(entry.record),
          failed_operation: OPERATION_OF_STATUS[entry.record.status] ?? null,
          owner: null,
          lease_expires_at: null,
        };
        surfaced.push({ ...entry.record });
      }
    }
    return surfaced;
  }

  async renewLeases(owner: string, until: string): Promise<void> {
    for (const entry of this.byId.values()) {
      if (entry.record.owner === owner && TRANSITIONAL_STATUSES.includes(entry.record.status)) entry.record.lease_expires_at = until;
    }
  }

  /** Memory cannot fill up the way a disk does: the update is applied at once. */
  deferUpdate(id: string, patch: VolumePatch): void {
    void this.update(id, patch);
  }

  async removeLeavingTombstone(id: string, tombstone: Tombstone): Promise<boolean> {
    if (!this.byId.delete(id)) return false;
    this.graves.set(id, { ...tombstone });
    return true;
  }

  async tombstones(backend: string): Promise<Tombstone[]> {
    return [...this.graves.values()].filter((grave) => grave.backend === backend).map((grave) => ({ ...grave }));
  }

  async rescheduleTombstone(volumeId: string, next: { checks_done: number; next_check_at: string } | null): Promise<void> {
    const grave = this.graves.get(volumeId);
    if (!grave) return;
    if (next) Object.assign(grave, next);
    else this.graves.delete(volumeId);
  }

  async close(): Promise<void> {
    this.byId.clear();
  }
}
