/**
 * cinderlib's JSON forms of its objects (cinderlib/serialization.py and objects.py): each object
 * is `{"class", "backend", "ovo"}` where `ovo` is the Cinder versioned object as
 * obj_to_primitive writes it, every field cinderlib's _create_ovo sets (defaults and nulls
 * included), datetimes with microseconds and "Z". New objects are written as cinderlib writes
 * them, in Cinder's field order; objects loaded from a dump are written back as loaded, with the
 * fields changed here since overlaid (LoadedForm, kept in `cinderlib_extra`). A failed operation
 * is told by Cinder's own statuses; "cinderlib.data", which older dumps of this project carried,
 * is still read on load and no longer written.
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

export function ovo(name: keyof typeof VERSIONS, data: Primitive): Ovo {
  return { [OVO_NAME]: name, [OVO_NAMESPACE]: 'cinder', [OVO_VERSION]: VERSIONS[name], [OVO_DATA]: data };
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
  /** The secret masking every dump goes through (SecretRegistry.maskOptions): fields are compared masked. */
  mask: <T>(value: T) => T;
}

/** Cinder 21's field order of each object (its `fields`, base classes' last), which obj_to_primitive writes. */
export const FIELD_ORDER = {
  Volume: [
    'id',
    '_name_id',
    'ec2_id',
    'user_id',
    'project_id',
    'use_quota',
    'snapshot_id',
    'cluster_name',
    'cluster',
    'host',
    'size',
    'availability_zone',
    'status',
    'attach_status',
    'migration_status',
    'scheduled_at',
    'launched_at',
    'terminated_at',
    'display_name',
    'display_description',
    'provider_id',
    'provider_location',
    'provider_auth',
    'provider_geometry',
    'volume_type_id',
    'source_volid',
    'encryption_key_id',
    'consistencygroup_id',
    'group_id',
    'deleted',
    'bootable',
    'multiattach',
    'replication_status',
    'replication_extended_status',
    'replication_driver_data',
    'previous_status',
    'metadata',
    'admin_metadata',
    'glance_metadata',
    'volume_type',
    'volume_attachment',
    'consistencygroup',
    'snapshots',
    'group',
    'service_uuid',
    'shared_targets',
    'created_at',
    'updated_at',
    'deleted_at',
  ],
  Snapshot: [
    'id',
    'user_id',
    'project_id',
    'use_quota',
    'volume_id',
    'cgsnapshot_id',
    'group_snapshot_id',
    'status',
    'progress',
    'volume_size',
    'display_name',
    'display_description',
    'encryption_key_id',
    'volume_type_id',
    'provider_location',
    'provider_id',
    'metadata',
    'provider_auth',
    'volume',
    'cgsnapshot',
    'group_snapshot',
    'created_at',
    'updated_at',
    'deleted_at',
    'deleted',
  ],
  VolumeAttachment: [
    'id',
    'volume_id',
    'instance_uuid',
    'attached_host',
    'mountpoint',
    'attach_time',
    'detach_time',
    'attach_status',
    'attach_mode',
    'volume',
    'connection_info',
    'connector',
    'created_at',
    'updated_at',
    'deleted_at',
    'deleted',
  ],
} as const;

type Kind = keyof typeof FIELD_ORDER;

/** `fields` in the kind's field order; keys Cinder does not have (an older or newer dump's) follow. */
function inFieldOrder(kind: Kind, fields: Primitive): Primitive {
  const out: Primitive = {};
  for (const key of FIELD_ORDER[kind]) if (key in fields) out[key] = fields[key];
  for (const [key, value] of Object.entries(fields)) if (!(key in out)) out[key] = value;
  return out;
}

/**
 * What a record loaded from a dump keeps of it (in `cinderlib_extra`): the object as loaded (its
 * secrets masked, its nested lists emptied: they are records of their own) and what this project's
 * fields said right after the load. A dump writes the loaded object again, byte for byte, but for
 * the fields whose value has changed since (a status, a size), which take the record's value in
 * place: key order, unmodeled fields, datetime texts and Cinder statuses this project folds into
 * its own all survive a load.
 */
export type LoadedForm = {
  loaded_ovo: Ovo;
  as_loaded: Primitive;
};

export function isLoadedForm(extra: unknown): extra is LoadedForm {
  const form = extra as LoadedForm | null | undefined;
  return typeof form?.loaded_ovo === 'object' && form.loaded_ovo !== null && typeof form.as_loaded === 'object' && form.as_loaded !== null;
}

/** Before this project kept loaded objects whole, it kept only the fields it did not model. */
function legacyExtras(extra: Record<string, unknown> | null | undefined): Primitive {
  return extra && !isLoadedForm(extra) ? extra : {};
}

function sameValue(a: unknown, b: unknown): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

/** The loaded data with each modeled field that changed since the load written anew. */
function overlay(loaded: Primitive, modeled: Primitive, asLoaded: Primitive, lists: Primitive): Primitive {
  const out: Primitive = {};
  for (const [key, value] of Object.entries(loaded)) {
    if (key in lists) out[key] = lists[key];
    else out[key] = key in modeled && !sameValue(modeled[key], asLoaded[key]) ? modeled[key] : value;
  }
  for (const [key, value] of Object.entries(modeled)) if (!(key in out) && !sameValue(value, asLoaded[key])) out[key] = value;
  return out;
}

/** A nested list (SnapshotList, VolumeAttachmentList) in the loaded wrapper when there was one. */
function listIn(loaded: unknown, name: 'SnapshotList' | 'VolumeAttachmentList', objects: Ovo[]): Ovo {
  const wrapper = loaded as Ovo | null | undefined;
  if (!wrapper || typeof wrapper !== 'object' || wrapper[OVO_NAME] !== name) return ovo(name, { objects });
  return { ...wrapper, [OVO_DATA]: { ...wrapper[OVO_DATA], objects } };
}

/** The object as it goes into a dump: new ones in Cinder's field order, loaded ones as loaded (see LoadedForm). */
function finish(kind: Kind, extra: Record<string, unknown> | null | undefined, defaults: Primitive, modeled: Primitive, lists: Record<string, Ovo>, context: DumpContext): Ovo {
  if (isLoadedForm(extra)) {
    modeled = context.mask(modeled);
    const loaded = extra.loaded_ovo;
    const loadedLists: Primitive = {};
    for (const [key, list] of Object.entries(lists)) {
      const objects = list[OVO_DATA].objects as Ovo[];
      // A list the dump did not carry stays out while it is empty.
      if (key in loaded[OVO_DATA] || objects.length > 0) loadedLists[key] = listIn(loaded[OVO_DATA][key], list[OVO_NAME] as 'SnapshotList', objects);
    }
    return { ...loaded, [OVO_DATA]: overlay(loaded[OVO_DATA], modeled, extra.as_loaded, loadedLists) };
  }
  return ovo(kind, inFieldOrder(kind, { ...defaults, ...legacyExtras(extra), ...modeled, ...lists }));
}

/** Cinder's statuses for a failed operation: the record's own, as Cinder's manager names them. */
function failedStatus(status: string, failed: FailedOperation | null | undefined): string {
  if (status === 'creating' && failed === 'manage') return 'managing';
  if (status !== 'error') return status;
  if (failed === 'manage') return 'error_managing';
  if (failed === 'extend') return 'error_extending';
  if (failed === 'delete') return 'error_deleting';
  return 'error';
}

/** The fields of a snapshot this project models, as a dump writes them. */
export function snapshotFields(record: SnapshotRecord): Primitive {
  return {
    id: record.id,
    volume_id: record.volume_id,
    status: failedStatus(record.status, record.failed_operation),
    // cinderlib keeps a snapshot's backend name in `progress` (BACKEND_NAME_SNAPSHOT_FIELD).
    progress: record.backend,
    volume_size: record.volume_size,
    display_name: record.name,
    display_description: record.description,
    provider_location: record.provider_location,
    created_at: formatDatetime(record.created_at),
  };
}

const SNAPSHOT_DEFAULTS: Primitive = {
  // cinderlib's objects carry updated_at null: its persistence never writes it back into them.
  updated_at: null,
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
  deleted_at: null,
  deleted: false,
};

export function snapshotOvo(record: SnapshotRecord, context: DumpContext): Ovo {
  return finish('Snapshot', record.cinderlib_extra, SNAPSHOT_DEFAULTS, snapshotFields(record), {}, context);
}

/**
 * A connection's attach_status as cinderlib leaves it: Connection.connect never sets one (null),
 * so a made connection is null; a failed one is Cinder's error_attaching.
 */
const ATTACH_STATUS: Record<ConnectionStatus, string | null> = { attached: null, detached: 'detached', error: 'error_attaching' };

/** The fields of a connection this project models, as a dump writes them. */
export function connectionFields(record: ConnectionRecord): Primitive {
  const info = record.connection_info as { driver_volume_type?: unknown; data?: Record<string, unknown> };
  // cinderlib's Connection keeps {conn, connector, device} in connection_info, and sets the data's access_mode to its attach_mode.
  const conn = info.data ? { ...info, data: { ...info.data, access_mode: record.attach_mode } } : info;
  const connectionInfo: Primitive = { conn, connector: record.connector };
  if (record.device) connectionInfo.device = record.device;
  return {
    id: record.id,
    volume_id: record.volume_id,
    attach_status: ATTACH_STATUS[record.status],
    attach_mode: record.attach_mode,
    connection_info: connectionInfo,
    connector: record.connector,
    created_at: formatDatetime(record.created_at),
  };
}

const CONNECTION_DEFAULTS: Primitive = {
  // cinderlib's objects carry updated_at null: its persistence never writes it back into them.
  updated_at: null,
  instance_uuid: null,
  attached_host: null,
  mountpoint: null,
  attach_time: null,
  detach_time: null,
  deleted_at: null,
  deleted: false,
};

export function connectionOvo(record: ConnectionRecord, context: DumpContext): Ovo {
  return finish('VolumeAttachment', record.cinderlib_extra, CONNECTION_DEFAULTS, connectionFields(record), {}, context);
}

/**
 * The fields of a volume this project models, as a dump writes them. attach_status stays
 * "detached": cinderlib's connect() and attach() never change it, and its loads read a volume's
 * connections from volume_attachment, not from this field.
 */
export function volumeFields(record: VolumeRecord): Primitive {
  return {
    id: record.id,
    snapshot_id: record.snapshot_id ?? null,
    size: record.size,
    status: failedStatus(record.status, record.failed_operation),
    attach_status: 'detached',
    display_name: record.name,
    display_description: record.description,
    provider_location: record.provider_location,
    // A secret (contract section 6): never in a dump.
    provider_auth: record.provider_auth ? MASK : null,
    source_volid: record.source_volume_id ?? null,
    bootable: record.bootable,
    created_at: formatDatetime(record.created_at),
  };
}

const VOLUME_DEFAULTS: Primitive = {
  // cinderlib's objects carry updated_at null: its persistence never writes it back into them.
  updated_at: null,
  _name_id: null,
  ec2_id: null,
  user_id: CINDERLIB_ID,
  project_id: CINDERLIB_ID,
  use_quota: true,
  cluster_name: null,
  cluster: null,
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
  deleted_at: null,
};

export function volumeOvo(record: VolumeRecord, snapshots: SnapshotRecord[], connections: ConnectionRecord[], context: DumpContext): Ovo {
  const defaults = { ...VOLUME_DEFAULTS, host: `${context.host}@${record.backend}#${record.pool_name}` };
  const lists = {
    volume_attachment: ovo('VolumeAttachmentList', { objects: connections.map((connection) => connectionOvo(connection, context)) }),
    snapshots: ovo('SnapshotList', { objects: snapshots.map((snapshot) => snapshotOvo(snapshot, context)) }),
  };
  return finish('Volume', record.cinderlib_extra, defaults, volumeFields(record), lists, context);
}

/** Cinder volume statuses beyond ours, as this project holds them. */
export function volumeStatusOf(status: unknown, connected: boolean): { status: VolumeStatus; failed?: FailedOperation; reason?: string } {
  const settled: VolumeStatus = connected ? 'in-use' : 'available';
  switch (status) {
    case 'available':
    case 'in-use':
      return { status: settled };
    case 'creating':
    case 'extending':
    case 'reverting':
    case 'deleting':
      return { status };
    case 'error':
      return { status: 'error' };
    case 'error_extending':
      return { status: 'error', failed: 'extend', reason: 'loaded from a dump in Cinder status error_extending' };
    case 'error_deleting':
      return { status: 'error', failed: 'delete', reason: 'loaded from a dump in Cinder status error_deleting' };
    case 'managing':
    case 'error_managing':
      // An adoption never confirmed: its array volume is someone's data, which delete_volume leaves.
      return {
        status: 'error',
        failed: 'manage',
        reason: `loaded from a dump in Cinder status ${status}: an adoption never confirmed; delete_volume forgets the record and leaves the array volume`,
      };
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
