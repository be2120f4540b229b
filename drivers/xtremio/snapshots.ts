import { z } from 'zod';
import type { CloneOperations, CreateVolumeRequest, SnapshotOperations } from '../kit/types.js';
import { XmsClient, isNotFound } from './client.js';
import { creationFailure, type XtremioVolumes } from './volumes.js';

/**
 * Snapshots, clones and volumes from snapshots are all XMS snapshots (volumes sharing blocks with
 * their ancestor), named after the Cinder object id, as Cinder's create_snapshot,
 * create_cloned_volume and create_volume_from_snapshot make them.
 */

/** POST snapshots links to the new snapshots, "…/types/snapshots/<index>" (Cinder's unit-test fakes answer volumes/<index> too). */
const createdSnapshotSchema = z
  .object({
    links: z.array(z.object({ href: z.string().regex(/\/(snapshots|volumes)\/\d+\/?$/, 'a link to snapshots/<index>') }).loose()).min(1),
  })
  .loose();

export class XtremioSnapshots {
  /**
   * Cinder: snapshots are read-only XMS snapshots of the volume, deleted by name. XMS snapshots do
   * not depend on their ancestor nor it on them, so neither delete is ever refused here (the core
   * refuses deleting a volume that has snapshot records, as Cinder's manager does).
   */
  readonly snapshots: SnapshotOperations = {
    createSnapshot: async (snapshot, volume) => {
      await this.createArraySnapshot(volume.id, snapshot.id, 'readonly', `create snapshot ${snapshot.id} of volume ${volume.id}`);
    },
    deleteSnapshot: (snapshot) => this.volumes.deleteNamed(snapshot.id, `delete snapshot ${snapshot.id}`),
    createVolumeFromSnapshot: (volume, snapshot) => this.createWritableSnapshot(snapshot.id, snapshot.volume_size, volume, `create volume ${volume.id} from snapshot ${snapshot.id}`),
    // Cinder's XtremIO driver has no revert (Cinder then copies through a host); the XMS has its own:
    // a refresh of the volume from the snapshot, no backup snapshot kept. The volume keeps its name
    // and mappings and takes the snapshot's size, so a larger volume is grown back.
    revertToSnapshot: async (volume, snapshot) => {
      const operation = `revert volume ${volume.id} to snapshot ${snapshot.id}`;
      const response = await this.xms.request('POST', 'snapshots', {
        operation,
        body: this.xms.withClusterId({ 'from-volume-id': snapshot.id, 'to-volume-id': volume.id, 'no-backup': true }),
      });
      if (response.status >= 300) throw creationFailure(this.xms, operation, response, { name: volume.id, source: snapshot.id });
      if (volume.size > snapshot.volume_size) await this.volumes.extendVolume(volume, volume.size);
    },
    cannotRevert: async () => (this.xms.api === 'v1' ? 'XMS 3 (REST API v1) has no refresh of a volume from a snapshot, which revert uses here; XMS 4 and later have it' : undefined),
  };

  /** Cinder: a clone is a regular (writable) XMS snapshot of the source volume. */
  readonly clones: CloneOperations = {
    createClonedVolume: (volume, source) => this.createWritableSnapshot(source.id, source.size, volume, `clone volume ${source.id} into ${volume.id}`),
  };

  constructor(
    private readonly xms: XmsClient,
    private readonly volumes: XtremioVolumes,
  ) {}

  /**
   * A volume from a snapshot or a clone (nothing is copied, so there is no progress to report):
   * Cinder extends it when it is to be larger than its source, and deletes it if that fails.
   */
  private async createWritableSnapshot(sourceName: string, sourceSizeGb: number, volume: CreateVolumeRequest, operation: string) {
    await this.createArraySnapshot(sourceName, volume.id, 'regular', operation);
    if (volume.size > sourceSizeGb) {
      try {
        await this.volumes.extendVolume(volume, volume.size);
      } catch (error) {
        await this.volumes
          .deleteVolume(volume)
          .catch((cleanup: unknown) => this.xms.context.log.warn(`${operation}: could not remove ${volume.id} after the failed extend: ${String(cleanup)}`));
        throw error;
      }
    }
  }

  /**
   * Cinder's XtremIOClient*.create_snapshot. XMS 3 (v1) names the snapshot at once. XMS 4 (v2)
   * makes it in a snapshot set named after the new object and names it "<source>.<suffix>", so
   * Cinder renames the object the answer links to and deletes it again if the rename fails.
   */
  private async createArraySnapshot(sourceName: string, newName: string, type: 'readonly' | 'regular', operation: string): Promise<void> {
    const xms = this.xms;
    const subjects = { name: newName, source: sourceName };
    if (xms.api === 'v1') {
      const response = await xms.request('POST', 'snapshots', { operation, body: { 'snap-vol-name': newName, 'ancestor-vol-id': sourceName } });
      if (response.status >= 300) throw creationFailure(xms, operation, response, subjects);
      return;
    }
    const response = await xms.request('POST', 'snapshots', {
      operation,
      body: xms.withClusterId({ 'snapshot-set-name': newName, 'snap-suffix': newName, 'volume-list': [sourceName], 'snapshot-type': type }),
    });
    if (response.status >= 300) throw creationFailure(xms, operation, response, subjects);
    const created = XmsClient.linked(xms.parse(createdSnapshotSchema, response, operation).links[0].href);
    const rename = `${operation}: rename ${created} to ${newName}`;
    try {
      const renamed = await xms.request('PUT', created, { operation: rename, body: xms.withClusterId({ name: newName }) });
      if (renamed.status >= 300) throw creationFailure(xms, rename, renamed, { name: newName, source: created });
    } catch (error) {
      // Unlike Cinder (which reverts only on VolumeBackendAPIException), revert on any failure:
      // a snapshot left under the array's name would be an object nobody knows about.
      const reverted = await xms.request('DELETE', created, { operation: `${operation}: revert`, query: xms.withClusterName({}) }).catch(() => undefined);
      if (!reverted || (reverted.status >= 300 && !isNotFound(reverted))) {
        xms.context.log.warn(`${operation}: could not remove ${created} after the failed rename; deleting ${newName} removes it`);
      }
      throw error;
    }
  }
}
