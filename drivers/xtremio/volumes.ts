import type { StorageError } from '../kit/base.js';
import type { RestResponse } from '../kit/rest/client.js';
import { z } from 'zod';
import type { ManageableVolume, VolumeRef } from '../kit/types.js';
import { KIB_PER_GIB } from '../kit/units.js';
import { arrayMessage, contentOf, count, isNotFound, listSchema, type XmsClient } from './client.js';

const manageableSchema = z.object({ 'vol-size': count, 'num-of-lun-mappings': count.optional(), 'snapshot-type': z.string().nullish() }).loose();

/** Cinder's XtremIOSnapshotsLimitExceeded. */
const SNAPSHOT_LIMITS = new Set(['too_many_objs', 'too_many_snapshots_per_vol']);

/** Volumes named after the volume id, sizes sent as "<n>g", as Cinder's XtremIO driver makes them. */
export class XtremioVolumes {
  constructor(private readonly xms: XmsClient) {}

  async createVolume(volume: VolumeRef): Promise<void> {
    const operation = `create volume ${volume.id}`;
    const response = await this.xms.request('POST', 'volumes', {
      operation,
      body: this.xms.withClusterId({ 'vol-name': volume.id, 'vol-size': `${volume.size}g` }),
    });
    if (response.status >= 300) throw creationFailure(this.xms, operation, response, { name: volume.id });
  }

  async extendVolume(volume: VolumeRef, newSizeGb: number): Promise<void> {
    const operation = `extend volume ${volume.id} to ${newSizeGb} GiB`;
    const response = await this.xms.request('PUT', 'volumes', {
      operation,
      query: { name: volume.id },
      body: this.xms.withClusterId({ 'vol-size': `${newSizeGb}g` }),
    });
    if (response.status >= 300) {
      if (isNotFound(response)) throw this.xms.error('NOT_FOUND', `${operation}: can't find the volume to extend on the array`);
      throw this.xms.fail(operation, response);
    }
  }

  /**
   * Every XMS volume with its size and mappings (snapshots are volumes on the XMS: a read-only one
   * is not offered as safe). Cinder's XtremIO driver lists none; this follows its LVM driver's rules.
   */
  async listManageable(): Promise<ManageableVolume[]> {
    const listed = this.xms.parse(listSchema('volumes'), await this.xms.request('GET', 'volumes', { operation: 'list volumes' }), 'list volumes');
    const found: ManageableVolume[] = [];
    for (const { name } of listed.volumes as Array<{ name?: string }>) {
      if (!name) continue;
      const operation = `read volume ${name}`;
      const response = await this.xms.request('GET', 'volumes', { operation, query: this.xms.withClusterName({ name }) });
      if (isNotFound(response)) continue; // deleted meanwhile
      const volume = this.xms.parse(contentOf(manageableSchema), response, operation).content;
      const mappings = volume['num-of-lun-mappings'] ?? 0;
      const notSafe = mappings > 0 ? `volume in use: mapped to ${mappings} initiator group(s)` : volume['snapshot-type'] === 'readonly' ? 'a read-only snapshot' : undefined;
      found.push({ name, sizeGb: Math.ceil(volume['vol-size'] / KIB_PER_GIB), carriedId: name, ...(notSafe ? { notSafe } : {}) });
    }
    return found;
  }

  /** Cinder's manage_existing: the volume renamed to the volume id. */
  async manageExisting(volume: VolumeRef, name: string): Promise<void> {
    if (name === volume.id) return;
    const operation = `rename volume ${name} to ${volume.id}`;
    const response = await this.xms.request('PUT', 'volumes', { operation, query: this.xms.withClusterName({ name }), body: this.xms.withClusterId({ 'vol-name': volume.id }) });
    if (response.status >= 300) throw creationFailure(this.xms, operation, response, { name: volume.id, source: name });
  }

  async deleteVolume(volume: VolumeRef): Promise<void> {
    await this.deleteNamed(volume.id, `delete volume ${volume.id}`);
  }

  /**
   * Cinder's delete_volume and delete_snapshot: DELETE by name, a missing object counting as
   * deleted. On XMS 4, a create interrupted before its rename leaves a snapshot named
   * "<source>.<id>" in the snapshot set named after the id: deleting that set removes it.
   */
  async deleteNamed(name: string, operation: string): Promise<void> {
    const response = await this.xms.request('DELETE', 'volumes', { operation, query: this.xms.withClusterName({ name }) });
    if (response.status < 300) return;
    if (!isNotFound(response)) throw this.xms.fail(operation, response);
    if (this.xms.api !== 'v2') return;
    const leftover = `${operation}: remove snapshot set ${name}`;
    const set = await this.xms.request('DELETE', 'snapshot-sets', { operation: leftover, query: this.xms.withClusterName({ name }) });
    if (set.status >= 300 && !isNotFound(set)) throw this.xms.fail(leftover, set);
  }
}

/** What a refused create means, as Cinder's handle_errors reads the XMS message. */
export function creationFailure(xms: XmsClient, operation: string, response: RestResponse, subjects: { name: string; source?: string }): StorageError {
  const message = arrayMessage(response) ?? '';
  if (isNotFound(response)) {
    return xms.error('NOT_FOUND', `${operation}: the array has no volume named ${subjects.source ?? subjects.name} (${message})`);
  }
  // vol_obj_name_not_unique, or a snapshot set of that name (XMS names are unique per type).
  if (response.status === 400 && message.endsWith('_not_unique')) {
    return xms.error('ALREADY_EXISTS', `${operation}: the array already has an object named ${subjects.name} (${message})`);
  }
  if (response.status === 400 && SNAPSHOT_LIMITS.has(message)) {
    return xms.error('OUT_OF_CAPACITY', `${operation}: the array's snapshot limit is reached (${message}); delete snapshots of ${subjects.source ?? subjects.name} first`);
  }
  return xms.fail(operation, response);
}
