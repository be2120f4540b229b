/**
 * cinderlib's JSON forms of its objects (cinderlib/serialization.py and objects.py): each object
 * is `{"class", "backend", "ovo"}` where `ovo` is the Cinder versioned object as
 * obj_to_primitive writes it, every field cinderlib's _create_ovo sets (defaults and nulls
 * included), datetimes with microseconds and "Z". Fields this project models come from the
 * record; the rest are cinderlib's defaults, or, for records loaded from a dump, what the dump
 * said (kept in `cinderlib_extra`). What this project keeps beyond Cinder's fields (why a record is
 * in error) rides in cinderlib's own piggyback key, "cinderlib.data".
 */

import type { ConnectionRecord, ConnectionStatus } from '../model/connection.js';
import { MASK } from '../base/secrets.js';
import type { SnapshotRecord, SnapshotStatus } from '../model/snapshot.js';
import type { FailedOperation, VolumeRecord, VolumeStatus } from '../model/volume.js';

export const OVO_NAME = 'versioned_object.name';
export const OVO_NAMESPACE = 'versioned_object.namespace';
export const OVO_VERSION = 'versioned_object.version';
export const OVO_DATA = 'versioned_object.data';
export const CINDERLIB_DATA = 'cinderlib.data';

/** The versions cinderlib's last release (2023.2) wrote. */
export const VERSIONS = { Volume: '1.9', Snapshot: '1.6', VolumeAttachment: '1.3', SnapshotList: '1.0', VolumeAttachmentList: '1.1' } as const;

/** cinderlib's DEFAULT_USER_ID and DEFAULT_PROJECT_ID. */
const CINDERLIB_ID = 'cinderlib';

export type Primitive = Record<string, unknown>;

export interface Ovo {
  [OVO_NAME]: string;
  [OVO_NAMESPACE]: 'cinder';
  [OVO_VERSION]: string;
  [OVO_DATA]: Primitive;
  [CINDERLIB_DATA]?: Primitive;
}

export interface ObjectDump {
  class: 'Volume' | 'Snapshot' | 'Connection';
  backend: Record<string, unknown>;
  ovo: Ovo;
}

export function ovo(name: keyof typeof VERSIONS, data: Primitive, cinderlibData?: Primitive): Ovo {
  const object: Ovo = { [OVO_NAME]: name, [OVO_NAMESPACE]: 'cinder', [OVO_VERSION]: VERSIONS[name], [OVO_DATA]: data };
  if (cinderlibData && Object.keys(cinderlibData).length > 0) object[CINDERLIB_DATA] = cinderlibData;
  return object;
}

/** cinderlib's datetime_to_primitive: `YYYY-MM-DDTHH:MM:SS.ffffffZ`. */
export function formatDatetime(value: string | null | undefined): string | null {
  if (!value) return null;
  const match = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?Z$/.exec(value);
  if (match) return `${match[1]}.${(match[2] ?? '').padEnd(6, '0')}Z`;
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return null;
  return formatDatetime(date.toISOString());
}

/** A dump's datetime as this project stores it (UTC, microseconds kept). */
export function parseDatetime(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const utc = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?(?:Z|\+00:00|\+0000|UTC)?$/.exec(value.trim());
  if (utc) return `${utc[1]}.${(utc[2] ?? '').padEnd(6, '0')}Z`;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : formatDatetime(date.toISOString())!;
}

/** What a dump says about the server and backend a volume lives on (cinderlib's `host` field). */
export interface DumpContext {
  /** cinderlib's cfg.CONF.host: this server's host name. */
  host: string;
}

/** Modeled string fields a dump may have held as null: dumped as null again while they keep their stand-in. */
function restoreNulls(data: Primitive, extra: Record<string, unknown> | null | undefined, standIns: Record<string, unknown>): void {
  for (const [field, standIn] of Object.entries(standIns)) {
    if (extra && field in extra && extra[field] === null && data[field] === standIn) data[field] = null;
  }
}

function cinderlibData(record: { status_reason: string | null; failed_operation?: FailedOperation | null }): Primitive {
  const data: Primitive = {};
  if (record.status_reason) data.status_reason = record.status_reason;
  if (record.failed_operation) data.failed_operation = record.failed_operation;
  return data;
}

export function snapshotOvo(record: SnapshotRecord): Ovo {
  const name = record.name;
  const description = record.description;
  const data: Primitive = {
    user_id: CINDERLIB_ID,
    project_id: CINDERLIB_ID,
    use_quota: true,
    cgsnapshot_id: null,
    group_snapshot_id: null,
    encryption_key_id: null,
    volume_type_id: null,
    provider_id: null,
    provider_auth: null,
    metadata: {},
    cgsnapshot: null,
    group_snapshot: null,
    deleted: false,
    deleted_at: null,
    ...(record.cinderlib_extra ?? {}),
    id: record.id,
    volume_id: record.volume_id,
    status: record.status,
    // cinderlib keeps a snapshot's backend name in `progress` (BACKEND_NAME_SNAPSHOT_FIELD).
    progress: record.backend,
    volume_size: record.volume_size,
    display_name: name,
    display_description: description,
    provider_location: record.provider_location,
    created_at: formatDatetime(record.created_at),
    updated_at: formatDatetime(record.updated_at),
  };
  restoreNulls(data, record.cinderlib_extra, { display_name: '', display_description: '', updated_at: formatDatetime(record.created_at) });
  return ovo('Snapshot', data, cinderlibData(record));
}

/** cinderlib's VolumeAttachment statuses for ours (Cinder's VolumeAttachStatus). */
const ATTACH_STATUS: Record<ConnectionStatus, string> = { attached: 'attached', detached: 'detached', error: 'error_attaching' };

export function connectionOvo(record: ConnectionRecord): Ovo {
  const info = record.connection_info as { driver_volume_type?: unknown; data?: Record<string, unknown> };
  // cinderlib's Connection keeps {conn, connector, device} in connection_info, and the access mode in the data.
  const conn = { ...info, data: { ...(info.data ?? {}), access_mode: info.data?.access_mode ?? record.attach_mode } };
  const connectionInfo: Primitive = { conn, connector: record.connector };
  if (record.device) connectionInfo.device = record.device;
  const data: Primitive = {
    instance_uuid: null,
    attached_host: null,
    mountpoint: null,
    attach_time: null,
    detach_time: null,
    deleted: false,
    deleted_at: null,
    ...(record.cinderlib_extra ?? {}),
    id: record.id,
    volume_id: record.volume_id,
    attach_status: ATTACH_STATUS[record.status],
    attach_mode: record.attach_mode,
    connection_info: connectionInfo,
    connector: record.connector,
    created_at: formatDatetime(record.created_at),
    updated_at: formatDatetime(record.updated_at),
  };
  restoreNulls(data, record.cinderlib_extra, { updated_at: formatDatetime(record.created_at) });
  return ovo('VolumeAttachment', data, cinderlibData(record));
}

export function volumeOvo(record: VolumeRecord, snapshots: SnapshotRecord[], connections: ConnectionRecord[], context: DumpContext): Ovo {
  const data: Primitive = {
    _name_id: null,
    ec2_id: null,
    user_id: CINDERLIB_ID,
    project_id: CINDERLIB_ID,
    use_quota: true,
    cluster_name: null,
    cluster: null,
    host: `${context.host}@${record.backend}#${record.pool_name}`,
    availability_zone: null,
    migration_status: null,
    scheduled_at: null,
    launched_at: null,
    terminated_at: null,
    provider_id: null,
    provider_geometry: null,
    volume_type_id: null,
    encryption_key_id: null,
    consistencygroup_id: null,
    group_id: null,
    deleted: false,
    deleted_at: null,
    multiattach: false,
    replication_status: null,
    replication_extended_status: null,
    replication_driver_data: null,
    previous_status: null,
    metadata: {},
    admin_metadata: {},
    glance_metadata: {},
    volume_type: null,
    consistencygroup: null,
    group: null,
    service_uuid: null,
    shared_targets: true,
    ...(record.cinderlib_extra ?? {}),
    id: record.id,
    size: record.size,
    status: record.status,
    attach_status: connections.length > 0 ? 'attached' : 'detached',
    display_name: record.name,
    display_description: record.description,
    bootable: record.bootable,
    provider_location: record.provider_location,
    // A secret (contract section 6): never in a dump; a loaded mask is dumped as it came.
    provider_auth: record.provider_auth ? MASK : (record.cinderlib_extra?.provider_auth ?? null),
    snapshot_id: record.snapshot_id ?? null,
    source_volid: record.source_volume_id ?? null,
    snapshots: ovo('SnapshotList', { objects: snapshots.map(snapshotOvo) }),
    volume_attachment: ovo('VolumeAttachmentList', { objects: connections.map(connectionOvo) }),
    created_at: formatDatetime(record.created_at),
    updated_at: formatDatetime(record.updated_at),
  };
  restoreNulls(data, record.cinderlib_extra, { display_name: '', display_description: '', updated_at: formatDatetime(record.created_at) });
  return ovo('Volume', data, cinderlibData(record));
}

/** Fields of each OVO this project models: everything else a dump holds is kept as loaded. */
export const MODELED_FIELDS = {
  Volume: new Set([
    'id',
    'size',
    'status',
    'attach_status',
    'display_name',
    'display_description',
    'bootable',
    'provider_location',
    'snapshot_id',
    'source_volid',
    'snapshots',
    'volume_attachment',
    'created_at',
    'updated_at',
  ]),
  Snapshot: new Set(['id', 'volume_id', 'status', 'progress', 'volume_size', 'display_name', 'display_description', 'provider_location', 'created_at', 'updated_at', 'volume']),
  VolumeAttachment: new Set(['id', 'volume_id', 'attach_status', 'attach_mode', 'connection_info', 'connector', 'created_at', 'updated_at', 'volume']),
};

/** Cinder volume statuses beyond ours, as this project holds them. */
export function volumeStatusOf(status: unknown, connected: boolean): { status: VolumeStatus; failed?: FailedOperation; reason?: string } {
  const settled: VolumeStatus = connected ? 'in-use' : 'available';
  switch (status) {
    case 'available':
    case 'in-use':
      return { status: settled };
    case 'creating':
    case 'extending':
    case 'deleting':
      return { status };
    case 'error':
      return { status: 'error' };
    case 'error_extending':
      return { status: 'error', failed: 'extend', reason: 'loaded from a dump in Cinder status error_extending' };
    case 'error_deleting':
      return { status: 'error', failed: 'delete', reason: 'loaded from a dump in Cinder status error_deleting' };
    default:
      if (typeof status === 'string' && status.startsWith('error')) return { status: 'error', reason: `loaded from a dump in Cinder status ${status}` };
      // attaching, detaching, reserved, maintenance...: what the connections say.
      return { status: settled };
  }
}

export function snapshotStatusOf(status: unknown): { status: SnapshotStatus; reason?: string } {
  if (status === 'creating' || status === 'available' || status === 'deleting' || status === 'error') return { status };
  if (typeof status === 'string' && status.startsWith('error')) return { status: 'error', reason: `loaded from a dump in Cinder status ${status}` };
  return { status: 'available' };
}

export function connectionStatusOf(attachStatus: unknown): ConnectionStatus {
  if (attachStatus === 'detached') return 'detached';
  if (typeof attachStatus === 'string' && attachStatus.startsWith('error')) return 'error';
  // cinderlib's Connection never set attach_status (null): a stored connection is a made one.
  return 'attached';
}
