/**
 * `cinderlib-mcp load`: a cinderlib dump (a list of backends, as cl.dumps() writes it, or one
 * backend, as backend.dumps does) into the metadata store, all of it in one transaction or none
 * of it. Every object is checked first: an unknown backend, a repeated id, a malformed object is
 * a clear error naming where it is, and nothing is written. Fields this project does not model are
 * kept as loaded and dumped back unchanged.
 */

import { z } from 'zod';
import type { ConnectionRecord } from '../model/connection.js';
import { StorageError, describeError } from '../base/errors.js';
import type { ImportBatch, VolumeStore } from '../store/store.js';
import { MASK, type SecretRegistry } from '../base/secrets.js';
import type { SnapshotRecord } from '../model/snapshot.js';
import type { FailedOperation, VolumeRecord } from '../model/volume.js';
import {
  CINDERLIB_DATA,
  OVO_DATA,
  OVO_NAME,
  OVO_NAMESPACE,
  OVO_VERSION,
  connectionFields,
  connectionStatusOf,
  parseDatetime,
  snapshotFields,
  snapshotStatusOf,
  volumeFields,
  volumeStatusOf,
  type LoadedForm,
  type Ovo,
  type Primitive,
} from './ovo.js';
import { connectorProblem, devicePathProblem, iscsiDataProblem, providerAuthProblem, providerLocationProblem } from '../model/untrusted.js';

export const MAX_DUMP_DEPTH = 64;
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface LoadSummary {
  volumes: number;
  snapshots: number;
  connections: number;
  backends: string[];
}

class DumpError extends StorageError {
  constructor(where: string, problem: string) {
    super('INVALID_ARGUMENT', `${where}: ${problem}; nothing was loaded`);
  }
}

/**
 * Walks the parsed JSON without recursion: nesting deeper than MAX_DUMP_DEPTH, or a key that could
 * reach an object's prototype, is refused before anything reads the data.
 */
function checkShape(root: unknown): void {
  const stack: Array<{ value: unknown; depth: number; path: string }> = [{ value: root, depth: 0, path: '$' }];
  while (stack.length > 0) {
    const { value, depth, path } = stack.pop()!;
    if (value === null || typeof value !== 'object') continue;
    if (depth > MAX_DUMP_DEPTH) throw new DumpError(path, `nested deeper than ${MAX_DUMP_DEPTH} levels, which no cinderlib dump is`);
    if (Array.isArray(value)) {
      value.forEach((item, index) => stack.push({ value: item, depth: depth + 1, path: `${path}[${index}]` }));
      continue;
    }
    for (const key of Object.keys(value)) {
      if (FORBIDDEN_KEYS.has(key)) throw new DumpError(`${path}.${key}`, `the key "${key}" is not a field of any cinderlib object`);
      stack.push({ value: (value as Record<string, unknown>)[key], depth: depth + 1, path: `${path}.${key}` });
    }
  }
}

const uuid = (what: string) => z.string({ error: `${what} must be a UUID string` }).regex(UUID, { error: `${what} must be a UUID (this server addresses objects by UUID)` });
const nullableText = (max: number) =>
  z
    .string()
    .max(max, { error: `at most ${max} characters` })
    .nullable()
    .optional();
const backendRef = z.object({ volume_backend_name: z.string({ error: 'backend.volume_backend_name must be a string' }).min(1) }).loose();

function ovoSchema(name: string) {
  return z
    .object({
      [OVO_NAME]: z.literal(name, { error: `versioned_object.name must be "${name}"` }),
      [OVO_NAMESPACE]: z.literal('cinder', { error: 'versioned_object.namespace must be "cinder"' }),
      [OVO_VERSION]: z.string().regex(/^1\.\d+$/, { error: 'versioned_object.version must be a 1.x version' }),
      [OVO_DATA]: z.record(z.string(), z.unknown(), { error: 'versioned_object.data must be an object' }),
      [CINDERLIB_DATA]: z.record(z.string(), z.unknown()).nullable().optional(),
    })
    .loose();
}

const listSchema = (name: string) => ovoSchema(name).nullable().optional();

const volumeData = z
  .object({
    id: uuid('id'),
    size: z
      .number({ error: 'size must be a whole number of GiB' })
      .int()
      .min(1)
      .max(1024 * 1024),
    status: z.string({ error: 'status must be a string' }),
    display_name: nullableText(255),
    display_description: nullableText(4096),
    bootable: z.boolean().nullable().optional(),
    host: z.string().nullable().optional(),
    provider_location: z.string().nullable().optional(),
    provider_auth: z.string().nullable().optional(),
    snapshot_id: uuid('snapshot_id').nullable().optional(),
    source_volid: uuid('source_volid').nullable().optional(),
    created_at: z.string().nullable().optional(),
    updated_at: z.string().nullable().optional(),
    snapshots: listSchema('SnapshotList'),
    volume_attachment: listSchema('VolumeAttachmentList'),
  })
  .loose();

const snapshotData = z
  .object({
    id: uuid('id'),
    volume_id: uuid('volume_id'),
    status: z.string({ error: 'status must be a string' }),
    volume_size: z
      .number()
      .int()
      .min(1)
      .max(1024 * 1024)
      .nullable()
      .optional(),
    display_name: nullableText(255),
    display_description: nullableText(4096),
    provider_location: z.string().nullable().optional(),
    created_at: z.string().nullable().optional(),
    updated_at: z.string().nullable().optional(),
  })
  .loose();

const connectionData = z
  .object({
    id: uuid('id'),
    volume_id: uuid('volume_id'),
    attach_status: z.string().nullable().optional(),
    attach_mode: z.string().nullable().optional(),
    connection_info: z
      .object(
        {
          conn: z
            .object({ driver_volume_type: z.string(), data: z.record(z.string(), z.unknown()).optional() }, { error: 'connection_info.conn must be {driver_volume_type, data}' })
            .loose(),
          connector: z.record(z.string(), z.unknown()).nullable().optional(),
          device: z.record(z.string(), z.unknown()).nullable().optional(),
        },
        { error: "connection_info must be cinderlib's {conn, connector, device?}" },
      )
      .loose(),
    connector: z.record(z.string(), z.unknown()).nullable().optional(),
    created_at: z.string().nullable().optional(),
    updated_at: z.string().nullable().optional(),
  })
  .loose();

const volumeEntry = z.object({ class: z.literal('Volume', { error: 'class must be "Volume"' }), backend: backendRef, ovo: ovoSchema('Volume') }).loose();
const backendEntry = z.object({ class: z.literal('Backend', { error: 'class must be "Backend"' }), backend: backendRef, volumes: z.array(z.unknown()).nullable().optional() }).loose();

/** Section 11: a field this server would never have written (a CHAP string with a newline, a connector with a quote) refuses the whole dump. */
function refuseField(where: string, what: string, problem: string | undefined): void {
  if (problem) throw new DumpError(where, `${what}: ${problem}`);
}

function parse<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const at = issue.path.length ? `${where}.${issue.path.join('.')}` : where;
  throw new DumpError(at, issue.message);
}

/**
 * What a loaded record keeps of its object (ovo.ts, LoadedForm): the object with its secrets masked
 * and its nested lists emptied, and this project's fields as they read right after the load.
 */
function loadedForm(object: Primitive, fields: Primitive, secrets: SecretRegistry): LoadedForm {
  const loaded = secrets.maskOptions(object) as unknown as Ovo;
  const data = { ...loaded[OVO_DATA] };
  for (const list of ['snapshots', 'volume_attachment']) {
    const wrapper = data[list] as Ovo | null | undefined;
    if (wrapper && typeof wrapper === 'object' && wrapper[OVO_DATA]) data[list] = { ...wrapper, [OVO_DATA]: { ...wrapper[OVO_DATA], objects: [] } };
  }
  return { loaded_ovo: { ...loaded, [OVO_DATA]: data }, as_loaded: secrets.maskOptions(fields) };
}

function piggyback(ovo: { [CINDERLIB_DATA]?: Record<string, unknown> | null }): { status_reason?: string; failed_operation?: FailedOperation } {
  const data = ovo[CINDERLIB_DATA] ?? {};
  const reason = typeof data.status_reason === 'string' ? data.status_reason : undefined;
  const failed =
    data.failed_operation === 'create' || data.failed_operation === 'extend' || data.failed_operation === 'delete' || data.failed_operation === 'manage'
      ? data.failed_operation
      : undefined;
  return { status_reason: reason, failed_operation: failed };
}

function datetime(value: unknown, where: string, fallback?: string): string {
  if (value === null || value === undefined) {
    if (fallback) return fallback;
    return new Date().toISOString();
  }
  const parsed = parseDatetime(value);
  if (!parsed) throw new DumpError(where, `${JSON.stringify(value)} is not a date and time`);
  return parsed;
}

/** Reads a dump into records, checking everything; writes nothing. */
export function readDump(text: string, knownBackends: ReadonlySet<string>, secrets: SecretRegistry): ImportBatch & { backends: string[] } {
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch (error) {
    throw new DumpError('the dump', `is not JSON (${describeError(error)})`);
  }
  checkShape(root);
  const backendObjects = Array.isArray(root) ? root : [root];
  const batch: ImportBatch & { backends: string[] } = { volumes: [], snapshots: [], connections: [], backends: [] };
  const seen = new Map<string, string>();
  const claim = (kind: string, id: string, where: string) => {
    const key = `${kind}:${id.toLowerCase()}`;
    const first = seen.get(key);
    if (first) throw new StorageError('ALREADY_EXISTS', `${where}: ${kind} ${id} appears twice in the dump (first at ${first}); nothing was loaded`);
    seen.set(key, where);
  };
  const requireBackend = (name: string, where: string) => {
    if (!knownBackends.has(name)) {
      throw new DumpError(where, `backend "${name}" is not in this server's config (its backends: ${[...knownBackends].join(', ') || 'none'}); add it to the config, then load`);
    }
  };

  backendObjects.forEach((raw: unknown, backendIndex) => {
    const backendWhere = Array.isArray(root) ? `[${backendIndex}]` : '$';
    const entry = (raw as { class?: unknown })?.class === 'Volume' ? { class: 'Backend', backend: (raw as { backend?: unknown }).backend, volumes: [raw] } : raw;
    const backend = parse(backendEntry, entry, backendWhere);
    const backendName = backend.backend.volume_backend_name;
    requireBackend(backendName, `${backendWhere}.backend`);
    if (!batch.backends.includes(backendName)) batch.backends.push(backendName);
    (backend.volumes ?? []).forEach((rawVolume, volumeIndex) => {
      const where = entry === raw ? `${backendWhere}.volumes[${volumeIndex}]` : backendWhere;
      const volumeObject = parse(volumeEntry, rawVolume, where);
      const volumeBackend = volumeObject.backend.volume_backend_name;
      requireBackend(volumeBackend, `${where}.backend`);
      const dataWhere = `${where}.ovo.versioned_object.data`;
      const data = parse(volumeData, volumeObject.ovo[OVO_DATA], dataWhere);
      claim('volume', data.id, where);
      if (data.provider_auth !== MASK) refuseField(dataWhere, `volume ${data.id}`, providerAuthProblem(data.provider_auth));
      refuseField(dataWhere, `volume ${data.id}`, providerLocationProblem(data.provider_location));
      const snapshotOvos = (data.snapshots?.[OVO_DATA]?.objects ?? []) as unknown[];
      const attachmentOvos = (data.volume_attachment?.[OVO_DATA]?.objects ?? []) as unknown[];
      if (!Array.isArray(snapshotOvos) || !Array.isArray(attachmentOvos)) throw new DumpError(dataWhere, 'snapshots and volume_attachment must hold lists of objects');
      const status = volumeStatusOf(data.status, attachmentOvos.length > 0);
      const mine = piggyback(volumeObject.ovo);
      const created = datetime(data.created_at, `${dataWhere}.created_at`);
      const providerAuth = data.provider_auth && data.provider_auth !== MASK ? data.provider_auth : null;
      if (providerAuth) secrets.register(providerAuth.split(' ')[2]);
      const host = typeof data.host === 'string' ? data.host : '';
      const volume: VolumeRecord = {
        id: data.id,
        backend: volumeBackend,
        name: data.display_name ?? '',
        description: data.display_description ?? '',
        size: data.size,
        status: status.status,
        pool_name: host.includes('#') ? host.slice(host.lastIndexOf('#') + 1) : volumeBackend,
        bootable: data.bootable ?? false,
        created_at: created,
        updated_at: datetime(data.updated_at, `${dataWhere}.updated_at`, created),
        status_reason: mine.status_reason ?? status.reason ?? null,
        provider_location: data.provider_location ?? null,
        provider_auth: providerAuth,
        failed_operation: mine.failed_operation ?? status.failed ?? (status.status === 'error' ? 'create' : null),
        owner: null,
        lease_expires_at: null,
        snapshot_id: data.snapshot_id ?? null,
        source_volume_id: data.source_volid ?? null,
      };
      volume.cinderlib_extra = loadedForm(volumeObject.ovo, volumeFields(volume), secrets);
      batch.volumes.push(volume);

      snapshotOvos.forEach((rawSnapshot, snapshotIndex) => {
        const snapWhere = `${dataWhere}.snapshots.objects[${snapshotIndex}]`;
        const snapshotOvo = parse(ovoSchema('Snapshot'), rawSnapshot, snapWhere);
        const snap = parse(snapshotData, snapshotOvo[OVO_DATA], `${snapWhere}.versioned_object.data`);
        claim('snapshot', snap.id, snapWhere);
        refuseField(`${snapWhere}.versioned_object.data`, `snapshot ${snap.id}`, providerLocationProblem(snap.provider_location));
        if (snap.volume_id.toLowerCase() !== volume.id.toLowerCase())
          throw new DumpError(snapWhere, `snapshot ${snap.id} is of volume ${snap.volume_id}, not of the volume it is nested in (${volume.id})`);
        const snapStatus = snapshotStatusOf(snap.status);
        const snapMine = piggyback(snapshotOvo);
        const snapCreated = datetime(snap.created_at, `${snapWhere}.created_at`);
        const record: SnapshotRecord = {
          id: snap.id,
          volume_id: volume.id,
          backend: volumeBackend,
          name: snap.display_name ?? '',
          description: snap.display_description ?? '',
          volume_size: snap.volume_size ?? volume.size,
          status: snapStatus.status,
          created_at: snapCreated,
          updated_at: datetime(snap.updated_at, `${snapWhere}.updated_at`, snapCreated),
          status_reason: snapMine.status_reason ?? snapStatus.reason ?? null,
          provider_location: snap.provider_location ?? null,
          failed_operation: snapMine.failed_operation ?? (snapStatus.status === 'error' ? 'create' : null),
          owner: null,
          lease_expires_at: null,
        };
        record.cinderlib_extra = loadedForm(snapshotOvo, snapshotFields(record), secrets);
        batch.snapshots.push(record);
      });

      attachmentOvos.forEach((rawAttachment, attachmentIndex) => {
        const connWhere = `${dataWhere}.volume_attachment.objects[${attachmentIndex}]`;
        const attachmentOvo = parse(ovoSchema('VolumeAttachment'), rawAttachment, connWhere);
        const conn = parse(connectionData, attachmentOvo[OVO_DATA], `${connWhere}.versioned_object.data`);
        claim('connection', conn.id, connWhere);
        if (conn.volume_id.toLowerCase() !== volume.id.toLowerCase())
          throw new DumpError(connWhere, `connection ${conn.id} is of volume ${conn.volume_id}, not of the volume it is nested in (${volume.id})`);
        const info = conn.connection_info.conn;
        const connDataWhere = `${connWhere}.versioned_object.data`;
        for (const connector of [conn.connection_info.connector, conn.connector]) {
          if (connector) refuseField(connDataWhere, `connection ${conn.id}`, connectorProblem(connector));
        }
        if (info.driver_volume_type === 'iscsi') refuseField(`${connDataWhere}.connection_info.conn`, `connection ${conn.id}`, iscsiDataProblem(info.data ?? {}));
        const device = conn.connection_info.device;
        if (device && device.path != null) refuseField(`${connDataWhere}.connection_info`, `connection ${conn.id}`, devicePathProblem(device.path));
        for (const [key, value] of Object.entries(info.data ?? {})) if (/password/i.test(key) && value !== MASK) secrets.register(value);
        const connMine = piggyback(attachmentOvo);
        const connCreated = datetime(conn.created_at, `${connWhere}.created_at`);
        const record: ConnectionRecord = {
          id: conn.id,
          volume_id: volume.id,
          backend: volumeBackend,
          status: connectionStatusOf(conn.attach_status),
          attach_mode: conn.attach_mode ?? 'rw',
          connector: conn.connection_info.connector ?? conn.connector ?? {},
          connection_info: { ...info, data: info.data ?? {} },
          device: conn.connection_info.device ?? null,
          created_at: connCreated,
          updated_at: datetime(conn.updated_at, `${connWhere}.updated_at`, connCreated),
          status_reason: connMine.status_reason ?? null,
          owner: null,
          lease_expires_at: null,
        };
        record.cinderlib_extra = loadedForm(attachmentOvo, connectionFields(record), secrets);
        batch.connections.push(record);
      });
    });
  });
  return batch;
}

/** Checks the whole dump, then writes it in one transaction. */
export async function loadDump(store: VolumeStore, text: string, knownBackends: ReadonlySet<string>, secrets: SecretRegistry): Promise<LoadSummary> {
  const batch = readDump(text, knownBackends, secrets);
  await store.importRecords(batch);
  return { volumes: batch.volumes.length, snapshots: batch.snapshots.length, connections: batch.connections.length, backends: batch.backends };
}
