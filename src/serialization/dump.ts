/**
 * cinderlib's dumps from the metadata store alone (never an array): a backend is
 * `{"class": "Backend", "backend": config, "volumes": [...]}` and the whole is a list of them
 * (cl.dumps()). Snapshots and connections nest in their volume, as cinderlib nests them. Every
 * object goes out through the masking: no secret is ever in a dump.
 */

import type { ConnectionRecord } from '../model/connection.js';
import type { VolumeStore } from '../store/store.js';
import type { SecretRegistry } from '../base/secrets.js';
import type { SnapshotRecord } from '../model/snapshot.js';
import type { VolumeRecord } from '../model/volume.js';
import { pythonJson, pythonJsonSpaced } from './python-json.js';
import { connectionOvo, snapshotOvo, volumeOvo, type DumpContext, type ObjectDump } from './ovo.js';

export interface DumpedBackend {
  id: string;
  /** As list_backends shows it: {volume_backend_name} unless output_all_backend_info, secrets masked. */
  config: Record<string, unknown>;
}

export interface Dumper {
  store: VolumeStore;
  secrets: SecretRegistry;
  context: Omit<DumpContext, 'mask'>;
}

/** Everything cinderlib's JSON of the served objects is made from: the store, the backends' configs, and how to write them. */
export interface SerializationSource {
  store: VolumeStore;
  secrets: SecretRegistry;
  backends: () => DumpedBackend[];
  dumper: Dumper;
}

const PAGE = 1000;

/** Every record `list` pages through, in creation order. */
async function all<R>(list: (after: number | undefined) => Promise<{ records: R[]; nextAfter?: number }>): Promise<R[]> {
  const records: R[] = [];
  let after: number | undefined;
  do {
    const page = await list(after);
    records.push(...page.records);
    after = page.nextAfter;
  } while (after !== undefined);
  return records;
}

function groupByVolume<R extends { volume_id: string }>(records: R[]): Map<string, R[]> {
  const groups = new Map<string, R[]>();
  for (const record of records) {
    const group = groups.get(record.volume_id);
    if (group) group.push(record);
    else groups.set(record.volume_id, [record]);
  }
  return groups;
}

function ovoContext(dumper: Dumper): DumpContext {
  return { ...dumper.context, mask: (value) => dumper.secrets.maskOptions(value) };
}

function objectDump(dumper: Dumper, kind: ObjectDump['class'], backend: string, ovo: ObjectDump['ovo']): ObjectDump {
  return { class: kind, backend: { volume_backend_name: backend }, ovo: dumper.secrets.maskOptions(ovo) };
}

export function volumeDump(dumper: Dumper, volume: VolumeRecord, snapshots: SnapshotRecord[], connections: ConnectionRecord[]): ObjectDump {
  return objectDump(dumper, 'Volume', volume.backend, volumeOvo(volume, snapshots, connections, ovoContext(dumper)));
}

export function snapshotDump(dumper: Dumper, snapshot: SnapshotRecord): ObjectDump {
  return objectDump(dumper, 'Snapshot', snapshot.backend, snapshotOvo(snapshot, ovoContext(dumper)));
}

export function connectionDump(dumper: Dumper, connection: ConnectionRecord): ObjectDump {
  return objectDump(dumper, 'Connection', connection.backend, connectionOvo(connection, ovoContext(dumper)));
}

/** A volume's dump with its snapshots and connections, read from the store. */
export async function dumpVolume(dumper: Dumper, volume: VolumeRecord): Promise<ObjectDump> {
  return volumeDump(dumper, volume, await dumper.store.snapshots.all({ volume_id: volume.id }), await dumper.store.connections.all({ volume_id: volume.id }));
}

export interface BackendDumpForm {
  /** Caps the volumes (resources show 100). */
  limit?: number;
  /**
   * cinderlib's Backend.dumps writes Python's default separators (`', '`, `': '`); cl.dumps() and
   * the objects' own dumps are compact.
   */
  spaced?: boolean;
}

/**
 * One backend's dump as JSON text, written piece by piece (`write`), so that a store of a hundred
 * thousand volumes is never held as one string.
 */
export async function writeBackendDump(dumper: Dumper, backend: DumpedBackend, write: (text: string) => void | Promise<void>, form: BackendDumpForm = {}): Promise<void> {
  const { store } = dumper;
  const limit = form.limit ?? Infinity;
  const json = form.spaced ? pythonJsonSpaced : pythonJson;
  const [comma, colon] = form.spaced ? [', ', ': '] : [',', ':'];
  const snapshots = groupByVolume(await all((after) => store.snapshots.list({ backend: backend.id, after, limit: PAGE })));
  const connections = groupByVolume(await all((after) => store.connections.list({ backend: backend.id, after, limit: PAGE })));
  await write(`{"class"${colon}"Backend"${comma}"backend"${colon}${json(dumper.secrets.maskOptions(backend.config))}${comma}"volumes"${colon}[`);
  let written = 0;
  let after: number | undefined;
  do {
    const page = await store.volumes.list({ backend: backend.id, after, limit: Math.min(PAGE, limit - written) });
    for (const volume of page.records) {
      await write(`${written > 0 ? comma : ''}${json(volumeDump(dumper, volume, snapshots.get(volume.id) ?? [], connections.get(volume.id) ?? []))}`);
      written++;
    }
    after = written < limit ? page.nextAfter : undefined;
  } while (after !== undefined);
  await write(']}');
}

/** cinderlib's cl.dumps(): every backend's dump, as a list. */
export async function writeDump(dumper: Dumper, backends: DumpedBackend[], write: (text: string) => void | Promise<void>): Promise<void> {
  await write('[');
  for (const [index, backend] of backends.entries()) {
    if (index > 0) await write(',');
    await writeBackendDump(dumper, backend, write);
  }
  await write(']');
}
