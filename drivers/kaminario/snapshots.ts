import { isStorageError } from '../kit/base.js';
import { CopyFailure, copyDevice } from '../kit/copy/host-copy.js';
import { LocalRunner } from '../kit/exec/local.js';
import { CommandTransportError, privilegedPrefix } from '../kit/exec/runner.js';
import type { CopyProgress, CreateVolumeRequest, LocalAttachment, SnapshotRef, VolumeRef } from '../kit/types.js';
import { k2GroupName, k2SnapshotName, k2ViewName, k2VolumeName, type K2Client } from './client.js';
import type { K2Volumes } from './volumes.js';

/**
 * A Cinder snapshot is a K2 snapshot of the volume's group with short_name "cs-<id>"; the K2
 * shares blocks between a group and its snapshots, so a snapshot takes no space of its own when
 * made. Copies (a volume from a snapshot, a clone) go through this server's host as Cinder's do:
 * attach the source (for a snapshot, a "cview-<new volume id>" view of it) and the new volume
 * here, dd, detach.
 */
export class K2Snapshots {
  /** Runs dd on this host for copies (the shared local command runner). */
  private readonly runner = new LocalRunner();

  constructor(
    private readonly k2: K2Client,
    private readonly volumes: K2Volumes,
    /** False for the FC driver: copies need connections it does not make. */
    private readonly canAttach: boolean,
  ) {}

  /** Cinder's create_snapshot: a snapshot of the volume's group, kept until Cinder deletes it. */
  async createSnapshot(snapshot: SnapshotRef): Promise<void> {
    const snapshotName = k2SnapshotName(snapshot.id);
    const groupName = k2GroupName(snapshot.volume_id);
    const policy = await this.volumes.retentionPolicy();
    const group = await this.k2.find('volume_groups', { name: groupName }, `look up ${groupName}`);
    if (!group) throw this.k2.error('NOT_FOUND', `create snapshot ${snapshotName}: volume group ${groupName} is not on the array`);
    await this.k2.create(
      'snapshots',
      {
        short_name: snapshotName,
        source: { ref: this.k2.ref('volume_groups', group) },
        retention_policy: { ref: this.k2.ref('retention_policies', policy) },
        // As Cinder: the policy may not expire a snapshot Cinder still tracks.
        is_auto_deleteable: false,
      },
      `create snapshot ${snapshotName} of ${groupName}`,
    );
  }

  /** Cinder's delete_snapshot: found by short_name; a snapshot already gone counts as deleted. */
  async deleteSnapshot(snapshot: SnapshotRef): Promise<void> {
    await this.k2.deleteFound('snapshots', { short_name: k2SnapshotName(snapshot.id) });
  }

  /**
   * Cinder's create_volume_from_snapshot: a view "cview-<new volume id>" of the snapshot (an
   * exposable snapshot of it, with Best_Effort_Retention), the view and the new volume attached
   * here, dd from one to the other, both detached and the view deleted; on failure the new volume
   * is deleted too. Asks this host first, and touches nothing on the array when it cannot attach.
   */
  async createVolumeFromSnapshot(volume: CreateVolumeRequest, snapshot: SnapshotRef, progress: CopyProgress): Promise<void> {
    const operation = `create volume ${volume.id} from snapshot ${snapshot.id}`;
    await this.refuseUnlessAttachable(
      operation,
      'attach a view of the snapshot and the new volume here, copy, detach',
      `keep the snapshot as a restore point on the array instead: the K2 can restore volume group ${k2GroupName(snapshot.volume_id)} from ${k2SnapshotName(snapshot.id)} in place`,
    );
    const view = await this.createView(operation, snapshot, volume);
    return this.copyThroughHost(operation, volume, view, snapshot.volume_size, progress, () => this.k2.deleteFound('snapshots', { short_name: view.id }));
  }

  /** A view "cview-<volume id>" of the snapshot (exposable, Best_Effort_Retention), as a VolumeRef exports can find by its provider_location. */
  private async createView(operation: string, snapshot: SnapshotRef, volume: VolumeRef): Promise<VolumeRef> {
    const snapshotName = k2SnapshotName(snapshot.id);
    const viewName = k2ViewName(volume.id);
    const policy = await this.volumes.retentionPolicy();
    const source = await this.k2.find('snapshots', { short_name: snapshotName }, `look up ${snapshotName}`);
    if (!source) throw this.k2.error('NOT_FOUND', `${operation}: snapshot ${snapshotName} is not on the array`);
    await this.k2.create(
      'snapshots',
      { short_name: viewName, source: { ref: this.k2.ref('snapshots', source) }, retention_policy: { ref: this.k2.ref('retention_policies', policy) }, is_exposable: true },
      `create view ${viewName} of ${snapshotName}`,
    );
    return { id: viewName, size: snapshot.volume_size, pool_name: volume.pool_name, provider_location: viewName };
  }

  /** Why this host cannot revert K2 volumes (Cinder's generic revert copies through it), or undefined. */
  async cannotRevert(): Promise<string | undefined> {
    const reason = this.canAttach ? await this.k2.context.host.cannotAttach() : "copies need Fibre Channel connections, which this server's Kaminario FC driver does not make";
    return (
      reason &&
      `the Kaminario K2 driver reverts as Cinder does for it (its generic revert: a view of the snapshot and the volume attached here, copied, detached), and this host cannot attach K2 volumes: ${reason}; create a volume from the snapshot instead`
    );
  }

  /** Cinder's generic revert (its Kaminario driver has none of its own): the snapshot's view copied over the volume through this host. */
  async revertToSnapshot(volume: VolumeRef, snapshot: SnapshotRef, progress: CopyProgress): Promise<void> {
    const operation = `revert volume ${volume.id} to snapshot ${snapshot.id}`;
    const refusal = await this.cannotRevert();
    if (refusal) throw this.k2.error('UNSUPPORTED', refusal);
    const view = await this.createView(operation, snapshot, volume);
    const attachments: LocalAttachment[] = [];
    let failure: unknown;
    try {
      const from = await this.k2.context.host.attach(view);
      attachments.push(from);
      const to = await this.k2.context.host.attach(volume);
      attachments.push(to);
      const rootHelper = await privilegedPrefix(this.runner, this.k2.context.rootHelper);
      await copyDevice(this.runner, { source: from.path, target: to.path, sizeMib: snapshot.volume_size * 1024, rootHelper, progress, operation });
    } catch (error) {
      failure = error;
    }
    for (const attachment of attachments.reverse()) await attachment.detach().catch((error: unknown) => (failure ??= error));
    await this.k2.deleteFound('snapshots', { short_name: view.id }).catch((error: unknown) => (failure ??= error));
    if (failure === undefined) return;
    if (failure instanceof CopyFailure || failure instanceof CommandTransportError) throw this.k2.error('BACKEND_UNAVAILABLE', `${operation}: ${failure.message}`);
    throw failure instanceof Error ? failure : new Error(`${operation} failed`);
  }

  /**
   * Cinder's create_cloned_volume: refused while the source is mapped to any host (the K2 driver
   * cannot clone an attached volume); otherwise the source and the new volume attached here, dd,
   * both detached; on failure the new volume is deleted.
   */
  async createClonedVolume(volume: CreateVolumeRequest, sourceVolume: VolumeRef, progress: CopyProgress): Promise<void> {
    const operation = `clone volume ${sourceVolume.id} to ${volume.id}`;
    await this.refuseUnlessAttachable(
      operation,
      'attach the source and the new volume here, copy, detach',
      `take a snapshot of volume ${sourceVolume.id} instead and keep it as a restore point on the array`,
    );
    const sourceName = k2VolumeName(sourceVolume.id);
    const source = await this.k2.find('volumes', { name: sourceName }, `look up ${sourceName}`);
    if (!source) throw this.k2.error('NOT_FOUND', `${operation}: volume ${sourceName} is not on the array`);
    const mappings = await this.k2.search('mappings', { 'volume.ref': this.k2.ref('volumes', source), __limit: 1 }, `look up mappings of ${sourceName}`);
    if (mappings.total !== 0) {
      throw this.k2.error(
        'IN_USE',
        `${operation}: the K2 driver does not support clone of an attached volume (${sourceName} is mapped to a host); ` +
          'disconnect it first, or create a snapshot of it and then a volume from the snapshot',
      );
    }
    return this.copyThroughHost(operation, volume, sourceVolume, sourceVolume.size, progress);
  }

  /** Throws UNSUPPORTED, touching nothing, when this host cannot attach K2 volumes (or no exports exist to attach with). */
  private async refuseUnlessAttachable(operation: string, how: string, instead: string): Promise<void> {
    const reason = this.canAttach ? await this.k2.context.host.cannotAttach() : "copies need Fibre Channel connections, which this server's Kaminario FC driver does not make";
    if (reason === undefined) return;
    throw this.k2.error(
      'UNSUPPORTED',
      `cannot ${operation}: the Kaminario K2 driver copies the data through this host, as Cinder's Kaminario driver does ` +
        `(${how}), and this host cannot attach K2 volumes: ${reason}. Nothing was created. To copy, run the server where ` +
        `it can attach them (an iSCSI initiator that reaches the K2's portals); or ${instead}.`,
    );
  }

  /**
   * The common part of Cinder's two copies: attach the source, create the new volume and attach
   * it, copy `sizeGb` GiB with dd, then detach both whatever happened and run `afterDetach` (the
   * view's delete). Any failure on the way (a detach, the view's delete included, as in Cinder's
   * try block) deletes the new volume from the array.
   */
  private async copyThroughHost(
    operation: string,
    volume: CreateVolumeRequest,
    source: VolumeRef,
    sizeGb: number,
    progress: CopyProgress,
    afterDetach?: () => Promise<void>,
  ): Promise<void> {
    const attachments: Array<{ what: string; attachment: LocalAttachment }> = [];
    let created = false;
    let failure: unknown;
    try {
      const from = await this.k2.context.host.attach(source);
      attachments.push({ what: `source ${source.provider_location ?? k2VolumeName(source.id)}`, attachment: from });
      await this.volumes.createVolume(volume);
      created = true;
      const to = await this.k2.context.host.attach({ id: volume.id, size: volume.size, pool_name: volume.pool_name });
      attachments.push({ what: `new volume ${k2VolumeName(volume.id)}`, attachment: to });
      await copyDevice(this.runner, {
        source: from.path,
        target: to.path,
        sizeMib: sizeGb * 1024,
        rootHelper: await privilegedPrefix(this.runner, this.k2.context.rootHelper),
        progress,
        operation,
      });
    } catch (error) {
      failure = error;
    }
    for (const { what, attachment } of attachments.reverse()) {
      try {
        await attachment.detach();
      } catch (error) {
        this.k2.context.log.error(`${operation}: detaching ${what} (${attachment.path}) failed: ${(error as Error).message}`);
        failure ??= error;
      }
    }
    if (afterDetach) {
      try {
        await afterDetach();
      } catch (error) {
        this.k2.context.log.error(`${operation}: cleaning up failed: ${(error as Error).message}`);
        failure ??= error;
      }
    }
    if (failure === undefined) return;
    if (created) {
      try {
        await this.volumes.deleteVolume(volume);
      } catch (error) {
        this.k2.context.log.error(`${operation} failed, and deleting the new volume ${k2VolumeName(volume.id)} failed too: ${(error as Error).message}`);
      }
    }
    throw this.copyFailure(operation, failure);
  }

  private copyFailure(operation: string, failure: unknown): unknown {
    if (isStorageError(failure)) return failure;
    if (failure instanceof CopyFailure || failure instanceof CommandTransportError) {
      return this.k2.error('BACKEND_UNAVAILABLE', `${operation}: ${failure.message}; the new volume was deleted`);
    }
    return failure;
  }
}
