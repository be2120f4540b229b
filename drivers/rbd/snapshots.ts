import type { CloneOperations, CreateVolumeRequest, SnapshotOperations, SnapshotRef, VolumeRef } from '../kit/types.js';
import { Errno, cloneSnapshotName, snapshotName, volumeIdOf, volumeImage } from './cli.js';
import type { RbdImages } from './images.js';

export interface CloneSettings {
  /** rbd_max_clone_depth: clones behind a new clone before it is flattened; 0 copies instead of cloning. */
  maxCloneDepth: number;
  /** rbd_flatten_volume_from_snapshot. */
  flattenFromSnapshot: boolean;
}

/**
 * Cinder's RBD snapshots, volumes from snapshots and clones: protected snapshots, copy-on-write
 * clones of them, and flattening as rbd_max_clone_depth and rbd_flatten_volume_from_snapshot say.
 * A failed create leaves nothing behind: not the new image, not the snapshot it was cloned from.
 */
export class RbdSnapshots implements SnapshotOperations, CloneOperations {
  constructor(
    private readonly images: RbdImages,
    private readonly settings: CloneSettings,
  ) {}

  private get cli() {
    return this.images.cli;
  }

  /** Cinder's create_snapshot: created, then protected so that volumes can be cloned from it. */
  async createSnapshot(snapshot: SnapshotRef, volume: VolumeRef): Promise<void> {
    await this.snapAndProtect(volumeImage(volume.id), snapshotName(snapshot.id));
  }

  /**
   * Cinder's RBD revert_to_snapshot: `rbd snap rollback` (the image's bytes and size become the
   * snapshot's), then the image resized back to the volume's size when it had grown since.
   */
  async revertToSnapshot(volume: VolumeRef, snapshot: SnapshotRef): Promise<void> {
    const image = volumeImage(volume.id);
    const operation = `roll ${image} back to ${snapshotName(snapshot.id)}`;
    this.cli.check(await this.cli.rbd(['snap', 'rollback', '--no-progress', this.cli.spec(image, snapshotName(snapshot.id))], operation), operation);
    if (volume.size > snapshot.volume_size) await this.images.resize(image, volume.size);
  }

  /** Cinder's delete_snapshot: unprotect (refused while clones depend on it: IN_USE naming them), then remove. */
  async deleteSnapshot(snapshot: SnapshotRef, volume: VolumeRef): Promise<void> {
    const image = volumeImage(volume.id);
    const snap = snapshotName(snapshot.id);
    if (await this.images.removeSnapshot(image, snap)) return;
    const children = await this.images.children(image, snap);
    const named = children.map((child) => {
      const id = volumeIdOf(child.split('/').pop() ?? '');
      return id ? `volume ${id} (${child})` : child;
    });
    throw this.cli.error(
      'IN_USE',
      `snapshot ${snapshot.id} (${image}@${snap}) has volumes cloned from it: ${named.join(', ') || 'clones rbd lists no more'}; delete them first (or create them with rbd_flatten_volume_from_snapshot: true)`,
    );
  }

  /** Cinder's create_volume_from_snapshot: a clone of the protected snapshot, flattened when rbd_flatten_volume_from_snapshot. */
  async createVolumeFromSnapshot(volume: CreateVolumeRequest, snapshot: SnapshotRef): Promise<void> {
    const source = volumeImage(snapshot.volume_id);
    const snap = snapshotName(snapshot.id);
    const image = volumeImage(volume.id);
    const info = await this.images.info(source, snap);
    if (!info) throw this.cli.error('NOT_FOUND', `cannot create volume ${volume.id}: snapshot ${source}@${snap} does not exist in pool ${this.cli.settings.pool}`);
    // Cinder's _get_stripe_unit: objects at least as large as the source's.
    const objectSize = Math.max(info.object_size ?? 0, this.images.chunkBytes);
    await this.clone(source, snap, image, ['--object-size', `${objectSize / 1024}K`]);
    if (this.settings.flattenFromSnapshot) await this.removingOnFailure(image, () => this.images.flatten(image));
  }

  /**
   * Cinder's create_cloned_volume: a protected `volume-<new>.clone_snap` of the source and a
   * clone of it; when the source already has rbd_max_clone_depth clones behind it, the new
   * volume is flattened and the snapshot removed. rbd_max_clone_depth 0 copies the image instead.
   */
  async createClonedVolume(volume: CreateVolumeRequest, source: VolumeRef): Promise<void> {
    const sourceImage = volumeImage(source.id);
    const image = volumeImage(volume.id);
    if (this.settings.maxCloneDepth <= 0) {
      const operation = `copy ${sourceImage} to ${image}`;
      await this.removingOnFailure(image, async () => {
        this.cli.check(await this.cli.rbd(['cp', '--no-progress', this.cli.spec(sourceImage), this.cli.spec(image)], operation, { timeoutMs: 24 * 3600_000 }), operation);
      });
      return;
    }
    const snap = cloneSnapshotName(volume.id);
    await this.snapAndProtect(sourceImage, snap);
    try {
      await this.clone(sourceImage, snap, image, []);
    } catch (error) {
      await this.images.removeSnapshot(sourceImage, snap).catch(() => undefined);
      throw error;
    }
    if ((await this.images.cloneDepth(sourceImage)) < this.settings.maxCloneDepth) return;
    await this.removingOnFailure(image, async () => {
      await this.images.flatten(image);
      await this.images.removeSnapshot(sourceImage, snap);
    });
  }

  /** Creates image@snap and protects it; the snapshot is removed again when protecting fails. */
  private async snapAndProtect(image: string, snap: string): Promise<void> {
    const spec = this.cli.spec(image, snap);
    const created = await this.cli.rbd(['snap', 'create', '--no-progress', spec], `snapshot ${image} as ${snap}`);
    if (created.exitCode === Errno.NOENT) throw this.cli.error('NOT_FOUND', `cannot snapshot ${image}: it does not exist in pool ${this.cli.settings.pool}`);
    this.cli.check(created, `snapshot ${image} as ${snap}`);
    const protectedResult = await this.cli.rbd(['snap', 'protect', spec], `protect ${image}@${snap}`);
    if (protectedResult.exitCode !== 0) {
      await this.images.removeSnapshot(image, snap).catch(() => undefined);
      throw this.cli.failure(`protect ${image}@${snap}`, protectedResult);
    }
  }

  private async clone(sourceImage: string, snap: string, image: string, extra: string[]): Promise<void> {
    const operation = `clone ${sourceImage}@${snap} to ${image}`;
    const result = await this.cli.rbd(['clone', ...extra, this.cli.spec(sourceImage, snap), this.cli.spec(image)], operation);
    if (result.exitCode === 0) return;
    // A clone that failed half-way may have left the image: nothing the metadata store does not know stays.
    if (result.exitCode !== Errno.EXIST) await this.images.remove(image).catch(() => undefined);
    throw this.cli.failure(operation, result);
  }

  /** Runs `work`; when it fails the new image (and what it was cloned from, through deleteVolume's rules) goes. */
  private async removingOnFailure(image: string, work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (error) {
      const id = volumeIdOf(image);
      if (id) await this.images.deleteVolume(id).catch(() => undefined);
      throw error;
    }
  }
}
