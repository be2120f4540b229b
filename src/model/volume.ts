/** Cinder's volume statuses, as the contract lists them. */
export const VOLUME_STATUSES = ['creating', 'available', 'in-use', 'extending', 'reverting', 'deleting', 'error'] as const;
export type VolumeStatus = (typeof VOLUME_STATUSES)[number];

/** Statuses a crash can leave behind: an array call was under way. */
export const TRANSITIONAL_STATUSES: readonly VolumeStatus[] = ['creating', 'extending', 'reverting', 'deleting'];

/** The operation a volume in `error` failed in; a failed or interrupted create may still finish on the array. */
/**
 * The operation a record in `error` failed in, which says what its delete must do. `manage` is set
 * from an adoption's intent on: an adoption never confirmed leaves an array volume that holds the
 * user's data, which a delete forgets but never deletes (Cinder's error_managing).
 */
export type FailedOperation = 'create' | 'extend' | 'revert' | 'delete' | 'manage';

export const OPERATION_OF_STATUS: Partial<Record<VolumeStatus, FailedOperation>> = { creating: 'create', extending: 'extend', reverting: 'revert', deleting: 'delete' };

/** A volume as the metadata store keeps it. */
export interface VolumeRecord {
  id: string;
  backend: string;
  name: string;
  description: string;
  size: number;
  status: VolumeStatus;
  pool_name: string;
  bootable: boolean;
  created_at: string;
  updated_at: string;
  /** Why the volume is in `error` (or what the last failure was); null otherwise. */
  status_reason: string | null;
  provider_location: string | null;
  /** Cinder's provider_auth ("CHAP <user> <password>") of the volume's export: a secret, never in an answer. */
  provider_auth?: string | null;
  /** Set with status `error`: the operation that failed or was interrupted. */
  failed_operation?: FailedOperation | null;
  /** While an operation is under way: the server running it, and until when that server's claim holds unless renewed. */
  owner?: string | null;
  lease_expires_at?: string | null;
  /** The snapshot or volume this volume was made from (Cinder's snapshot_id and source_volid). */
  snapshot_id?: string | null;
  source_volume_id?: string | null;
  /** Fields of a cinderlib dump this project does not model (host, user_id, metadata, ...), kept as loaded and dumped back. */
  cinderlib_extra?: Record<string, unknown> | null;
}

/** The contract's Volume, plus `status_reason` when there is one to tell. */
export interface VolumeView {
  id: string;
  name: string;
  description: string;
  size: number;
  status: VolumeStatus;
  backend: string;
  pool_name: string;
  bootable: boolean;
  created_at: string;
  snapshot_id: string | null;
  source_volume_id: string | null;
  status_reason?: string;
}

export function toVolumeView(record: VolumeRecord): VolumeView {
  const view: VolumeView = {
    id: record.id,
    name: record.name,
    description: record.description,
    size: record.size,
    status: record.status,
    backend: record.backend,
    pool_name: record.pool_name,
    bootable: record.bootable,
    created_at: record.created_at,
    snapshot_id: record.snapshot_id ?? null,
    source_volume_id: record.source_volume_id ?? null,
  };
  if (record.status_reason) view.status_reason = record.status_reason;
  return view;
}
