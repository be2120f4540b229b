/**
 * Adoption (Cinder's get_manageable_volumes, manage_existing and unmanage): the array volumes no
 * record of this backend knows, adopting one as a volume, and forgetting a volume without
 * touching the array.
 */

import { randomUUID } from 'node:crypto';
import type { ManageableVolume, ManageOperations, VolumeDriver } from '../../drivers/kit/types.js';
import { StorageError } from '../base/errors.js';
import { decodeCursor, encodeCursor } from '../model/cursor.js';
import type { VolumeRecord } from '../model/volume.js';
import type { DryRunAnswer } from './dry-run.js';
import { outcomeAudit } from './progress.js';
import { Replay, volumeKey, type LifecycleDependencies, type LifecycleHost, type Mutation, type VolumeLifecycle } from './lifecycle.js';

/** One entry of list_unmanaged, as Cinder's get_manageable_volumes gives it. */
export interface UnmanagedVolume {
  reference: { 'source-name': string };
  size: number;
  safe_to_manage: boolean;
  reason_not_safe: string | null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** How many per-volume safety checks (see ManageableVolume.unsafeBecause) run at once. */
const SAFETY_CHECKS_AT_ONCE = 8;

export class VolumeAdoption {
  constructor(
    private readonly host: Pick<LifecycleHost, 'id' | 'volumeDriver' | 'ready' | 'checkCapacity'>,
    private readonly volumes: VolumeLifecycle,
    private readonly deps: LifecycleDependencies,
  ) {}

  /** A page of the array's volumes that no record of this backend knows, by name. */
  async listUnmanaged(limit: number, cursor?: string): Promise<{ volumes: UnmanagedVolume[]; nextCursor?: string }> {
    const entries = await this.unknownVolumes(this.requireManage(await this.host.ready()));
    const filters = { backend: this.host.id };
    const start = cursor ? decodeCursor(cursor, 'list_unmanaged', filters) : 0;
    const page = entries.slice(start, start + limit);
    const volumes: UnmanagedVolume[] = [];
    // A check that costs a call per volume runs for this page only, a few at a time.
    for (let at = 0; at < page.length; at += SAFETY_CHECKS_AT_ONCE) {
      const checked = await Promise.all(page.slice(at, at + SAFETY_CHECKS_AT_ONCE).map(async ({ object, reason }) => ({ object, reason: reason ?? (await object.unsafeBecause?.()) })));
      for (const { object, reason } of checked)
        volumes.push({ reference: { 'source-name': object.name }, size: object.sizeGb, safe_to_manage: !reason, reason_not_safe: reason ?? null });
    }
    return { volumes, nextCursor: start + limit < entries.length ? encodeCursor('list_unmanaged', start + limit, filters) : undefined };
  }

  /** Cinder's manage_existing: a record for the array volume `name`, renamed to this driver's naming where Cinder's driver renames. */
  async manage(name: string, displayName: string | undefined, dryRun: boolean): Promise<VolumeRecord | DryRunAnswer> {
    const mutation = await this.adoption(name, displayName);
    if (dryRun) return this.volumes.dryRun(mutation);
    try {
      return await this.volumes.mutate(mutation);
    } catch (error) {
      if (error instanceof Replay) throw new StorageError('INTERNAL', 'manage_volume takes no request_id');
      throw error;
    }
  }

  /** Cinder's unmanage: the record goes, the array volume stays as it is. */
  async unmanage(volumeId: string, dryRun: boolean): Promise<{ volume_id: string; unmanaged: true } | DryRunAnswer> {
    let record!: VolumeRecord;
    const check = async () => {
      record = await this.volumes.requireVolume(volumeId);
      await this.volumes.requireVolumeDeletable(record, await this.deps.store.snapshots.all({ volume_id: volumeId }));
    };
    const mutation: Mutation<void, { volume_id: string; unmanaged: true }> = {
      what: `unmanage volume ${volumeId}`,
      locks: [volumeKey(volumeId)],
      begin: check,
      act: async () => undefined, // the array is not touched
      finish: async () => {
        await this.deps.store.volumes.remove(volumeId);
        return { volume_id: volumeId, unmanaged: true };
      },
      fail: async (failure) => failure,
      plan: async () => {
        await check();
        return { action: 'unmanage_volume', volume_id: volumeId, left_on_array: record.provider_location ?? record.id };
      },
    };
    return dryRun ? this.volumes.dryRun(mutation) : this.volumes.mutate(mutation);
  }

  private async adoption(name: string, displayName: string | undefined): Promise<Mutation<string | null, VolumeRecord>> {
    const manage = this.requireManage(await this.host.ready());
    let object!: ManageableVolume;
    const check = async () => {
      const listed = await manage.listManageable();
      const found = listed.find((candidate) => candidate.name === name);
      if (!found) throw new StorageError('NOT_FOUND', `backend "${this.host.id}" has no volume named "${name}" to manage; list_unmanaged lists the ones it has`);
      object = found;
      const known = await this.knownAs(found);
      if (known?.backend === this.host.id && known.kind === 'volume') throw new StorageError('ALREADY_EXISTS', `"${name}" is already managed as volume ${known.id}`);
      const reason = known ? known.text : (found.notSafe ?? (await found.unsafeBecause?.()));
      if (reason) throw new StorageError(known ? 'ALREADY_EXISTS' : 'IN_USE', `"${name}" cannot be managed: ${reason}`);
    };
    await check();
    // A name that already carries an id nobody knows (a store that was lost) keeps it: nothing is renamed.
    const id = object.carriedId && UUID.test(object.carriedId) ? object.carriedId.toLowerCase() : randomUUID();
    const now = new Date().toISOString();
    const record: VolumeRecord = {
      id,
      backend: this.host.id,
      name: displayName ?? name,
      description: '',
      size: Math.max(1, object.sizeGb),
      status: 'creating',
      pool_name: '',
      bootable: false,
      created_at: now,
      updated_at: now,
      status_reason: null,
      provider_location: null,
      snapshot_id: null,
      source_volume_id: null,
      // From the intent on: a crash before the record says "available" must never delete the user's volume.
      failed_operation: 'manage',
      ...this.volumes.claim(),
    };
    const pool = async () => (await this.host.checkCapacity(undefined, 0, () => '')).pool_name;
    return {
      what: `manage volume ${name} as ${id}`,
      locks: [volumeKey(id)],
      begin: async () => {
        await check();
        record.size = Math.max(1, object.sizeGb);
        record.pool_name = await pool();
        const outcome = await this.deps.store.volumes.insert(record);
        if (!outcome.inserted) throw new StorageError('ALREADY_EXISTS', `volume ${id} is already in the metadata store`);
      },
      act: async (driver) => (await this.requireManage(driver).manageExisting(this.volumes.volumeRef(record), name))?.provider_location ?? null,
      finish: async (location) => {
        const audit = outcomeAudit();
        const updated = await this.deps.store.volumes.update(
          id,
          { status: 'available', provider_location: location, failed_operation: null, owner: null, lease_expires_at: null },
          undefined,
          audit?.record,
        );
        if (!updated) throw new StorageError('INTERNAL', `volume ${id} vanished from the metadata store while it was being managed`);
        if (audit) audit.written = true;
        return updated;
      },
      fail: async (failure) => {
        // Nothing was adopted: the record goes, the array volume stays as it was (Cinder's error_managing, without the record).
        await this.deps.store.volumes.remove(id).catch(() => undefined);
        return failure;
      },
      plan: async () => {
        await check();
        return { action: 'manage_volume', reference: { 'source-name': name }, volume: { id, name: record.name, size: record.size, pool_name: await pool() } };
      },
    };
  }

  /** The array's volumes no volume record of this backend knows, by name, each with why it may not be adopted. */
  private async unknownVolumes(manage: ManageOperations): Promise<Array<{ object: ManageableVolume; reason?: string }>> {
    const listed = (await manage.listManageable()).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const entries: Array<{ object: ManageableVolume; reason?: string }> = [];
    for (const object of listed) {
      const known = await this.knownAs(object);
      if (known?.backend === this.host.id && known.kind === 'volume') continue;
      entries.push({ object, reason: known?.text ?? object.notSafe });
    }
    return entries;
  }

  /** The record that knows an array object by the id its name carries, if any. */
  private async knownAs(object: ManageableVolume): Promise<{ kind: 'volume' | 'snapshot'; id: string; backend: string; text: string } | undefined> {
    const id = object.carriedId;
    if (!id || !UUID.test(id)) return undefined;
    const volume = await this.deps.store.volumes.get(id.toLowerCase());
    if (volume) return { kind: 'volume', id: volume.id, backend: volume.backend, text: `already managed as volume ${volume.id} of backend "${volume.backend}"` };
    const snapshot = await this.deps.store.snapshots.get(id.toLowerCase());
    if (snapshot) return { kind: 'snapshot', id: snapshot.id, backend: snapshot.backend, text: `already managed as snapshot ${snapshot.id} of volume ${snapshot.volume_id}` };
    return undefined;
  }

  private requireManage(driver: VolumeDriver): ManageOperations {
    if (!driver.manage) throw this.volumes.unsupported('list or adopt volumes it did not create', 'create volumes through this server instead');
    return driver.manage;
  }
}
