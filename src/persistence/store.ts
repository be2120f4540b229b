import type { VolumeRecord, VolumeStatus } from '../volume.js';

/**
 * Where volume metadata lives, behind one interface (cinderlib's persistence/base.py). The
 * objects never know which storage holds them. Calls are synchronous: both storages are
 * in-process, and better-sqlite3 is synchronous by design.
 */
export interface VolumeQuery {
  backend?: string;
  status?: VolumeStatus;
  /** Only records stored after this position (exclusive); positions come from `list`. */
  after?: number;
  limit: number;
}

export interface VolumePage {
  records: VolumeRecord[];
  /** Position of the last record returned, for the next page; absent when this page is the last. */
  nextAfter?: number;
}

export type VolumePatch = Partial<Pick<VolumeRecord, 'status' | 'size' | 'status_reason' | 'provider_location'>>;

export interface VolumeStore {
  /** Adds a record; returns false when the id is already taken. */
  insert(record: VolumeRecord): boolean;
  get(id: string): VolumeRecord | undefined;
  /**
   * Applies `patch` (and a fresh updated_at) when the record's status is one of `expected`;
   * returns the updated record, or undefined when the record is missing or in another status.
   */
  update(id: string, patch: VolumePatch, expected?: readonly VolumeStatus[]): VolumeRecord | undefined;
  remove(id: string): boolean;
  /** A page in storage order, which is stable and creation-ordered. */
  list(query: VolumeQuery): VolumePage;
  /** Records left in a transitional status by an earlier process; moved to `error` with `reason`. */
  surfaceInterrupted(reason: (record: VolumeRecord) => string): VolumeRecord[];
  close(): void;
}
