import type { z } from 'zod';
import type { DriverContext, ManageOperations, ManageableVolume, VolumeRef } from '../kit/types.js';
import { BYTES_PER_GIB, roundGb } from '../kit/units.js';
import type { CephCli } from './cli.js';
import { DELETED_SUFFIX, Errno, childrenSchema, dfSchema, imageInfoSchema, longListSchema, snapListSchema, statusSchema, volumeIdOf, volumeImage, type ImageInfo } from './cli.js';

/**
 * The images of the pool as Cinder's RBD driver keeps them: volumes created, resized and deleted
 * (clone chains included), their parents and children looked up, and the pool's capacity read
 * from the cluster's own `df`.
 */
export class RbdImages {
  private usage: { pool: PoolUsage; at: number } | undefined;

  constructor(
    readonly cli: CephCli,
    private readonly chunkMiB: number,
    private readonly context: Pick<DriverContext, 'log'>,
  ) {}

  /** rbd_store_chunk_size in bytes: the object size of new images. */
  get chunkBytes(): number {
    return this.chunkMiB * 1024 * 1024;
  }

  /** Cinder's create_volume: a format 2 image with the conf's default features, objects of rbd_store_chunk_size MiB. */
  async create(volumeId: string, sizeGb: number): Promise<void> {
    const image = volumeImage(volumeId);
    const result = await this.cli.rbd(['create', '--size', `${sizeGb}G`, '--object-size', `${this.chunkMiB}M`, this.cli.spec(image)], `create ${image}`);
    this.cli.check(result, `create ${image}`);
  }

  /** Cinder's extend_volume (a resize; shrinking is refused by rbd itself without --allow-shrink). */
  async resize(image: string, sizeGb: number): Promise<void> {
    const operation = `resize ${image} to ${sizeGb} GiB`;
    this.cli.check(await this.cli.rbd(['resize', '--no-progress', '--size', `${sizeGb}G`, this.cli.spec(image)], operation), operation);
  }

  /** The image's `rbd info`, or undefined when it does not exist. */
  async info(image: string, snapshot?: string): Promise<ImageInfo | undefined> {
    const operation = `look up ${image}${snapshot ? `@${snapshot}` : ''}`;
    const result = await this.cli.rbd(['info', '--format', 'json', this.cli.spec(image, snapshot)], operation);
    if (result.exitCode === Errno.NOENT) return undefined;
    return this.cli.parse(imageInfoSchema, this.cli.check(result, operation).stdout, operation);
  }

  /** The image's snapshot names, or undefined when the image does not exist. */
  async snapshots(image: string): Promise<Array<{ name: string; protected: boolean }> | undefined> {
    const operation = `list the snapshots of ${image}`;
    const result = await this.cli.rbd(['snap', 'ls', '--format', 'json', this.cli.spec(image)], operation);
    if (result.exitCode === Errno.NOENT) return undefined;
    return this.cli.parse(snapListSchema, this.cli.check(result, operation).stdout, operation).map((snap) => ({ name: snap.name, protected: String(snap.protected) === 'true' }));
  }

  /** The images cloned from image@snapshot, as "pool/image". */
  async children(image: string, snapshot: string): Promise<string[]> {
    const operation = `list the clones of ${image}@${snapshot}`;
    const result = await this.cli.rbd(['children', '--format', 'json', this.cli.spec(image, snapshot)], operation);
    if (result.exitCode === Errno.NOENT) return [];
    return this.cli.parse(childrenSchema, this.cli.check(result, operation).stdout, operation).map((child) => `${child.pool}/${child.image}`);
  }

  /** Who has the image open (qemu, tgtd, a crashed client), by address. */
  async watchers(image: string): Promise<string[]> {
    const operation = `list the watchers of ${image}`;
    const result = await this.cli.rbd(['status', '--format', 'json', this.cli.spec(image)], operation);
    if (result.exitCode !== 0) return [];
    return this.cli.parse(statusSchema, result.stdout, operation).watchers.map((watcher) => watcher.address);
  }

  /** Every image of the pool with its size, and every snapshot (`snapshot` set), in one `rbd ls -l`. */
  async longList(operation: string): Promise<Array<{ image: string; size: number; snapshot?: string; protected: boolean }>> {
    const result = await this.cli.rbd(['ls', '-l', '--format', 'json', this.cli.settings.pool], operation);
    // An image removed while it was listed makes rbd complain on stderr and exit non-zero after a full answer.
    if (result.exitCode !== 0 && !result.stdout.trim().startsWith('[')) throw this.cli.failure(operation, result);
    return this.cli.parse(longListSchema, result.stdout, operation).map((entry) => ({ ...entry, protected: String(entry.protected) === 'true' }));
  }

  /** unprotect + remove; a snapshot already gone (or never protected) is fine. Answers false when clones still depend on it. */
  async removeSnapshot(image: string, snapshot: string): Promise<boolean> {
    const spec = this.cli.spec(image, snapshot);
    const unprotect = await this.cli.rbd(['snap', 'unprotect', spec], `unprotect ${image}@${snapshot}`);
    if (unprotect.exitCode === Errno.NOENT) return true;
    if (unprotect.exitCode === Errno.BUSY) return false;
    if (unprotect.exitCode !== 0 && unprotect.exitCode !== Errno.INVAL) throw this.cli.failure(`unprotect ${image}@${snapshot}`, unprotect);
    const removed = await this.cli.rbd(['snap', 'rm', '--no-progress', spec], `remove ${image}@${snapshot}`);
    if (removed.exitCode !== 0 && removed.exitCode !== Errno.NOENT) throw this.cli.failure(`remove ${image}@${snapshot}`, removed);
    return true;
  }

  /**
   * `rbd rm`; an image with watchers or snapshots goes to the trash instead, where Cinder defers
   * its deletion. Already gone counts as removed. Still watched after that: IN_USE naming who.
   */
  async remove(image: string): Promise<void> {
    const removed = await this.cli.rbd(['rm', '--no-progress', this.cli.spec(image)], `remove ${image}`);
    if (removed.exitCode === 0 || removed.exitCode === Errno.NOENT) return;
    if (removed.exitCode !== Errno.BUSY && removed.exitCode !== Errno.NOTEMPTY) throw this.cli.failure(`remove ${image}`, removed);
    const trashed = await this.cli.rbd(['trash', 'mv', this.cli.spec(image)], `move ${image} to the trash`);
    if (trashed.exitCode === 0 || trashed.exitCode === Errno.NOENT) {
      this.context.log.info(`${image} is busy or has snapshots; moved to the trash of pool ${this.cli.settings.pool}, as Cinder defers such deletions`);
      return;
    }
    const watchers = await this.watchers(image);
    if (watchers.length > 0) {
      throw this.cli.error('IN_USE', `${image} is still open by ${watchers.join(', ')} (a client that crashed lets go within 30 seconds); close it there, then delete again`);
    }
    throw this.cli.failure(`move ${image} to the trash`, trashed);
  }

  /**
   * Cinder's delete_volume: an image with clones of its own `.clone_snap` snapshots lives on as
   * `volume-<id>.deleted` until they go; otherwise it is removed, and if it was itself a clone, its
   * parent's clone snapshot goes too (and that parent, when it was a `.deleted` one with nothing
   * left). Beyond Cinder, a clone snapshot without clones (left by an interrupted clone) is removed
   * rather than keeping the volume alive.
   */
  async deleteVolume(volumeId: string): Promise<void> {
    const image = volumeImage(volumeId);
    const info = await this.info(image);
    if (!info) return this.removeStrayCloneSnapshot(volumeId);
    let withClones = false;
    // `rbd info` counts the snapshots: only an image that has some is asked for them.
    const snaps = info.snapshot_count === 0 ? [] : ((await this.snapshots(image)) ?? []);
    for (const snap of snaps.filter((s) => s.name.endsWith('.clone_snap'))) {
      if ((await this.children(image, snap.name)).length > 0) withClones = true;
      else await this.removeSnapshot(image, snap.name);
    }
    if (withClones) {
      const renamed = await this.cli.rbd(['rename', this.cli.spec(image), this.cli.spec(`${image}${DELETED_SUFFIX}`)], `rename ${image}`);
      this.cli.check(renamed, `rename ${image} to ${image}${DELETED_SUFFIX}`);
      this.context.log.info(`${image} has clones; kept as ${image}${DELETED_SUFFIX} until they are deleted, as Cinder does`);
      return;
    }
    const parent = cloneParent(image, info);
    await this.remove(image);
    if (parent) await this.deleteParentReferences(parent.image, parent.snapshot);
  }

  /** Cinder's _delete_clone_parent_refs: walks up the clone chain removing clone snapshots and `.deleted` parents left with nothing. */
  private async deleteParentReferences(parentImage: string, parentSnapshot: string): Promise<void> {
    const grandparent = cloneParent(parentImage, await this.info(parentImage, parentSnapshot));
    if (!(await this.removeSnapshot(parentImage, parentSnapshot))) return; // another clone still uses it
    const left = await this.snapshots(parentImage);
    if (!left || left.length > 0 || !parentImage.endsWith(DELETED_SUFFIX)) return;
    await this.remove(parentImage);
    if (grandparent) await this.deleteParentReferences(grandparent.image, grandparent.snapshot);
  }

  /**
   * A clone killed after its source snapshot was made and before the clone image was: the
   * `volume-<id>.clone_snap` left on the source is found and removed once nothing was cloned from it.
   */
  private async removeStrayCloneSnapshot(volumeId: string): Promise<void> {
    const wanted = `${volumeImage(volumeId)}.clone_snap`;
    const stray = (await this.longList(`look for ${wanted}`)).find((entry) => entry.snapshot === wanted);
    if (!stray) return;
    if ((await this.children(stray.image, wanted)).length > 0) return;
    this.context.log.info(`removing ${stray.image}@${wanted}, left by an interrupted clone of volume ${volumeId}`);
    await this.removeSnapshot(stray.image, wanted);
    if (stray.image.endsWith(DELETED_SUFFIX) && (await this.snapshots(stray.image))?.length === 0) await this.remove(stray.image);
  }

  /** Cinder's _get_clone_depth: how many clone (`.clone_snap`) parents stand behind `image`. */
  async cloneDepth(image: string): Promise<number> {
    let depth = 0;
    let parent = cloneParent(image, await this.info(image));
    while (parent && depth < 64) {
      depth++;
      parent = cloneParent(parent.image, await this.info(parent.image));
    }
    return depth;
  }

  async flatten(image: string): Promise<void> {
    const operation = `flatten ${image}`;
    // Copies every block the parent holds: as long as the data takes, not a command timeout.
    this.cli.check(await this.cli.rbd(['flatten', '--no-progress', this.cli.spec(image)], operation, { timeoutMs: 24 * 3600_000 }), operation);
  }

  /**
   * Capacity from the mon's `df` as Cinder 21 reads it: free is the pool's max_avail (within its
   * quota), total is free + stored. Provisioned: every image's size when the pool is shared
   * (Cinder's _get_usage_info), else this backend's volumes only (what Cinder's scheduler counts
   * as allocated_capacity_gb for an exclusive pool).
   */
  async capacity(exclusive: boolean, fresh: boolean): Promise<{ totalGb: number; freeGb: number; provisionedGb: number }> {
    const pool = await this.poolUsage(fresh);
    const stored = pool.stored ?? pool.bytes_used ?? 0;
    const quota = pool.quota_bytes ?? 0;
    const free = quota ? Math.max(Math.min(quota - stored, pool.max_avail), 0) : pool.max_avail;
    const images = (await this.longList('get stats')).filter((entry) => entry.snapshot === undefined);
    const counted = exclusive ? images.filter((entry) => /^volume-[0-9a-f-]{36}$/.test(entry.image) && volumeIdOf(entry.image)) : images;
    const provisionedBytes = counted.reduce((sum, entry) => sum + entry.size, 0);
    return {
      freeGb: roundGb(free / BYTES_PER_GIB),
      totalGb: roundGb((free + stored) / BYTES_PER_GIB),
      provisionedGb: exclusive ? roundGb(provisionedBytes / BYTES_PER_GIB) : Math.ceil(provisionedBytes / BYTES_PER_GIB),
    };
  }

  /**
   * The pool's line of the mon's `df`. The ceph CLI is a Python start-up (about 0.35 s), and the
   * core asks for stats before every create and extend: the answer is reused for DF_REUSE_MS
   * unless `fresh` (get_stats refresh). Thin creates do not move it; the provisioned figure is
   * counted anew every time.
   */
  private async poolUsage(fresh: boolean): Promise<PoolUsage> {
    if (!fresh && this.usage && Date.now() - this.usage.at < DF_REUSE_MS) return this.usage.pool;
    const df = await this.cli.json('ceph', ['df', 'detail'], dfSchema, 'read the pool usage (ceph df)');
    const pool = df.pools.find((entry) => entry.name === this.cli.settings.pool);
    if (!pool)
      throw this.cli.error('BACKEND_UNAVAILABLE', `pool "${this.cli.settings.pool}" is not in the cluster's df; create it (ceph osd pool create, rbd pool init) or set rbd_pool`);
    this.usage = { pool: pool.stats, at: Date.now() };
    return pool.stats;
  }
}

/** How long a `ceph df` answer stands for capacity checks between refreshes. */
const DF_REUSE_MS = 10_000;
type PoolUsage = z.output<typeof dfSchema>['pools'][number]['stats'];

/** Cinder's _get_clone_info: the parent, when `image` is a clone of the parent's `<image>.clone_snap`. */
export function cloneParent(image: string, info: ImageInfo | undefined): { image: string; snapshot: string } | undefined {
  const parent = info?.parent;
  if (!parent) return undefined;
  const name = image.endsWith(DELETED_SUFFIX) ? image.slice(0, -DELETED_SUFFIX.length) : image;
  return parent.snapshot === `${name}.clone_snap` ? { image: parent.image, snapshot: parent.snapshot } : undefined;
}

/**
 * Cinder's RBD get_manageable_volumes and manage_existing: the pool's images no record knows
 * (a `.deleted` image kept for its clones, or one with watchers, is not safe), adopted by a rename
 * to `volume-<id>`.
 */
export class RbdManage implements ManageOperations {
  constructor(private readonly images: RbdImages) {}

  async listManageable(): Promise<ManageableVolume[]> {
    const listed = await this.images.longList('list the images of the pool');
    const found: ManageableVolume[] = [];
    for (const entry of listed.filter((item) => item.snapshot === undefined)) {
      const carriedId = volumeIdOf(entry.image);
      const deleted = entry.image.endsWith(DELETED_SUFFIX);
      // Watchers cost an `rbd status` per image: asked only for the images a page shows.
      const unsafeBecause = async () => {
        const watchers = await this.images.watchers(entry.image);
        return watchers.length > 0 ? `volume in use: ${watchers.length} client(s) have it open` : undefined;
      };
      found.push({
        name: entry.image,
        sizeGb: Math.ceil(entry.size / BYTES_PER_GIB),
        ...(carriedId ? { carriedId } : {}),
        ...(deleted ? { notSafe: 'a deleted volume kept for the clones that still need it' } : { unsafeBecause }),
      });
    }
    return found;
  }

  async manageExisting(volume: VolumeRef, name: string): Promise<void> {
    const image = volumeImage(volume.id);
    if (name === image) return;
    const operation = `rename ${name} to ${image}`;
    this.images.cli.check(await this.images.cli.rbd(['rename', this.images.cli.spec(name), this.images.cli.spec(image)], operation), operation);
  }
}
