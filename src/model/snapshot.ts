import type { FailedOperation } from './volume.js';

/** Cinder's snapshot statuses, as the contract lists them. */
export const SNAPSHOT_STATUSES = ['creating', 'available', 'deleting', 'error'] as const;
export type SnapshotStatus = (typeof SNAPSHOT_STATUSES)[number];

/** A snapshot as the metadata store keeps it (cinderlib's Snapshot). */
export interface SnapshotRecord {
  id: string;
  volume_id: string;
  backend: string;
  name: string;
  description: string;
  /** GiB: the volume's size when the snapshot was taken. */
  volume_size: number;
  status: SnapshotStatus;
  created_at: string;
  updated_at: string;
  status_reason: string | null;
  provider_location: string | null;
  failed_operation?: FailedOperation | null;
  owner?: string | null;
  lease_expires_at?: string | null;
  /** Fields of a cinderlib dump this project does not model, kept as loaded and dumped back. */
  cinderlib_extra?: Record<string, unknown> | null;
}

/** The contract's Snapshot, plus `status_reason` when there is one to tell. */
export interface SnapshotView {
  id: string;
  volume_id: string;
  name: string;
  description: string;
  volume_size: number;
  status: SnapshotStatus;
  backend: string;
  created_at: string;
  status_reason?: string;
}

export function toSnapshotView(record: SnapshotRecord): SnapshotView {
  const view: SnapshotView = {
    id: record.id,
    volume_id: record.volume_id,
    name: record.name,
    description: record.description,
    volume_size: record.volume_size,
    status: record.status,
    backend: record.backend,
    created_at: record.created_at,
  };
  if (record.status_reason) view.status_reason = record.status_reason;
  return view;
}
