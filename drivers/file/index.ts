import { constants } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { access, link, mkdir, open, readFile, readdir, realpath, rename, stat, statfs, truncate, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { acquireProcessLock, defaultVolumesDir, type HeldLock, LockHeldError, StorageError } from '../kit/base.js';
import { LocalRunner } from '../kit/exec/local.js';
import { privilegedPrefix } from '../kit/exec/runner.js';
import { capacityOptions, enumOption, stringOption } from '../kit/options.js';
import { TARGET_HELPERS, UnsupportedExports, targetFor, targetOptions, tgtSettings, thisHostAddress } from '../kit/targets/index.js';
import {
  defineDriver,
  type BackendStats,
  type CloneOperations,
  type ConnectionInfo,
  type CopyProgress,
  type CreatedVolume,
  type DriverContext,
  type DriverOptions,
  type ExportOperations,
  type ManageableVolume,
  type ManageOperations,
  type SnapshotOperations,
  type SnapshotRef,
  type StatsRequest,
  type VolumeDriver,
  type VolumeRef,
} from '../kit/types.js';
import { BYTES_PER_GIB, roundGb } from '../kit/units.js';
import { CopyFailure, copyImage } from '../kit/copy/sparse-copy.js';

/**
 * The embedded default: each volume is a sparse raw image file `volume-<id>` in volumes_dir.
 * Capacity comes from the real filesystem (statfs); sparse files make the pool thin. A snapshot
 * is a copy of the image, `snapshot-<id>` beside it; volumes from snapshots and clones are copies
 * too. Copies share blocks where the filesystem can reflink, and stay sparse where it cannot.
 */
const VOLUME_FILE = /^volume-[0-9a-f-]{36}$/;
const SNAPSHOT_FILE = /^snapshot-[0-9a-f-]{36}$/;
/** Held for the server's life: a folder's capacity accounting belongs to one backend of one server. */
const LOCK_FILE = '.cinderlib-mcp.lock';
/**
 * The folder's own identity, made once by whichever server gets there first: servers sharing the
 * folder (NFS) name one capacity domain by it, whatever device number each host gives the mount.
 */
const FOLDER_ID_FILE = '.cinderlib-mcp.folder-id';
const FOLDER_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Folders served by a backend of this process on a shared store (by real path): one backend per folder here too. */
const servedHere = new Map<string, string>();
/** A revert's copy of the snapshot, before it takes the volume's place. */
const REVERT_PREFIX = '.revert-volume-';

const options = {
  volumes_dir: stringOption('Directory holding the volume image files.', {
    default: defaultVolumesDir(),
    defaultText: '$XDG_DATA_HOME/cinderlib-mcp/volumes',
  }),
  ...capacityOptions,
  target_helper: enumOption('Export volumes to other hosts through this target (tgtadm: Linux SCSI target, tgtd); unset: no exports, attach_volume still works here.', TARGET_HELPERS),
  ...targetOptions,
};

type FileOptions = DriverOptions<typeof options>;

class FileDriver implements VolumeDriver {
  private provisionedGb = 0;
  private volumeCount = 0;
  private lock?: HeldLock;
  /** On a shared store: the folder's real path, as this process's claim on it. */
  private servedPath?: string;
  private readonly setupNotes: string[] = [];
  /**
   * The capacity domain: on a store several servers share, the folder's id (kept in the folder);
   * otherwise the filesystem it is on (backends in other folders of it draw on the same free space).
   */
  private domain = '';

  /** Cinder's create_snapshot, delete_snapshot and create_volume_from_snapshot, as file copies. */
  readonly snapshots: SnapshotOperations = {
    createSnapshot: async (snapshot, volume, progress) => {
      await this.copy(this.pathOf(volume), this.snapshotPathOf(snapshot), `volume ${volume.id}`, progress ?? (() => undefined));
      return { provider_location: this.snapshotPathOf(snapshot) };
    },
    deleteSnapshot: (snapshot) => this.removeImage(this.snapshotPathOf(snapshot), false),
    createVolumeFromSnapshot: (volume, snapshot, progress) => this.copyIntoVolume(this.snapshotPathOf(snapshot), volume, `snapshot ${snapshot.id}`, progress),
    revertToSnapshot: (volume, snapshot, progress) => this.revert(volume, snapshot, progress),
  };

  /** Cinder's create_cloned_volume: a full copy of the source's image. */
  readonly clones: CloneOperations = {
    createClonedVolume: (volume, source, progress) => this.copyIntoVolume(this.pathOf(source), volume, `volume ${source.id}`, progress),
  };

  /**
   * The files of volumes_dir as volumes to adopt (what Cinder's LVM driver does for LVs): a file is
   * adopted by renaming it volume-<id> and giving it a whole number of GiB (sparse).
   */
  readonly manage: ManageOperations = {
    listManageable: () => this.manageableFiles(),
    manageExisting: async (volume, name) => {
      const path = this.pathOf(volume);
      const source = join(this.options.volumes_dir, name);
      const counted = VOLUME_FILE.test(name) || SNAPSHOT_FILE.test(name);
      const before = gibOf((await stat(source)).size);
      try {
        if (source !== path) await rename(source, path);
        await truncate(path, Math.max(volume.size * BYTES_PER_GIB, (await stat(path)).size));
      } catch (error) {
        throw this.failure(`adopt ${source} as`, path, error);
      }
      this.provisionedGb += volume.size - (counted ? before : 0);
      if (!VOLUME_FILE.test(name)) this.volumeCount++;
      return { provider_location: path };
    },
  };

  /** Cinder's target export over iSCSI, when target_helper is set. */
  readonly exports: ExportOperations;

  constructor(
    private readonly options: FileOptions,
    private readonly context: DriverContext,
  ) {
    const backend = `backend "${context.backendName}"`;
    const runner = new LocalRunner();
    this.exports = options.target_helper
      ? targetFor(
          options.target_helper,
          tgtSettings(options, context, thisHostAddress()),
          { runner, privileged: () => privilegedPrefix(runner, context.rootHelper) },
          (volume) => this.pathOf(volume),
          context,
        )
      : new UnsupportedExports(
          `${backend}: the file driver exports volumes to other hosts only through a target; set target_helper: tgtadm and run tgtd (attach_volume works without it)`,
        );
  }

  /** The image file itself: attach_volume puts a loop device on it. */
  localConnection(volume: VolumeRef): ConnectionInfo {
    return { driver_volume_type: 'local', data: { device_path: this.pathOf(volume), volume_id: volume.id } };
  }

  async setup(): Promise<void> {
    const dir = this.options.volumes_dir;
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 }); // volumes hold users' data: no other local user reads them
      await access(dir, constants.R_OK | constants.W_OK);
    } catch (error) {
      throw new StorageError('BACKEND_UNAVAILABLE', `backend "${this.context.backendName}": volumes_dir ${dir} is not a writable directory (${errorCode(error)})`);
    }
    if (this.context.sharedStore) {
      await this.claimSharedFolder(dir);
      await this.recount();
      return;
    }
    try {
      this.lock = await acquireProcessLock(join(dir, LOCK_FILE), `backend "${this.context.backendName}"`);
    } catch (error) {
      if (!(error instanceof LockHeldError)) throw this.failure('lock', join(dir, LOCK_FILE), error);
      if (this.context.serving) {
        throw new StorageError(
          'BACKEND_UNAVAILABLE',
          `backend "${this.context.backendName}": volumes_dir ${dir} is already used by ${error.holder}; two backends or servers on one folder would each count its space as their own, so give each backend its own volumes_dir`,
        );
      }
      // `check` only looks: a running server holding the folder is what a checked config is for.
      this.setupNotes.push(`volumes_dir ${dir} is in use by ${error.holder}`);
    }
    this.domain = `filesystem:${(await stat(dir)).dev}`;
    await this.recount();
  }

  /**
   * On a store several servers share, every server serves the folder: capacity is decided under
   * the cluster-wide lock of the folder's id, on a fresh count. Two backends of this one server on
   * one folder are still refused (each would count the other's images as its own).
   */
  private async claimSharedFolder(dir: string): Promise<void> {
    const path = await realpath(dir);
    const holder = servedHere.get(path);
    if (holder !== undefined && this.context.serving) {
      throw new StorageError(
        'BACKEND_UNAVAILABLE',
        `backend "${this.context.backendName}": volumes_dir ${dir} is already served by backend "${holder}" of this server; give each backend its own volumes_dir (servers sharing the store may all serve it)`,
      );
    }
    this.domain = `folder:${await this.folderId(dir)}`;
    if (this.context.serving) {
      servedHere.set(path, this.context.backendName);
      this.servedPath = path;
    }
  }

  /** The folder's id, made here (atomically: a hard link never replaces) when no server made it yet. */
  private async folderId(dir: string): Promise<string> {
    const path = join(dir, FOLDER_ID_FILE);
    for (let attempt = 0; attempt < 2; attempt++) {
      let text: string | undefined;
      try {
        text = await readFile(path, 'utf8');
      } catch (error) {
        if (errorCode(error) !== 'ENOENT') throw this.failure('read', path, error);
      }
      if (text !== undefined) {
        const id = text.trim();
        // Read back from a folder others write to: untrusted until it has the shape this driver writes.
        if (!FOLDER_ID.test(id)) {
          throw new StorageError(
            'BACKEND_UNAVAILABLE',
            `backend "${this.context.backendName}": ${path} does not hold a folder id this driver wrote (a UUID); remove it if no server uses the folder, and it is made again`,
          );
        }
        return id;
      }
      const draft = join(dir, `${FOLDER_ID_FILE}.${randomUUID()}`);
      try {
        await writeFile(draft, `${randomUUID()}\n`, { mode: 0o600, flag: 'wx' });
        await link(draft, path);
      } catch (error) {
        if (errorCode(error) !== 'EEXIST') throw this.failure('create', path, error);
      } finally {
        await unlink(draft).catch(() => undefined);
      }
    }
    throw new StorageError('BACKEND_UNAVAILABLE', `backend "${this.context.backendName}": ${path} could not be read after it was made`);
  }

  notes(): string[] {
    return this.setupNotes;
  }

  capacityDomain(): string {
    return this.domain;
  }

  identity(): Record<string, string> {
    return this.context.sharedStore ? { volumes_dir: this.domain } : {};
  }

  /** Counted at setup and on refresh, and kept up to date by each operation, so stats stay flat as volumes grow. */
  private async recount(): Promise<void> {
    let provisionedGb = 0;
    let volumeCount = 0;
    // Images only: the lock file and anything else in the folder are not ours to count.
    const images = (await readdir(this.options.volumes_dir, { withFileTypes: true })).filter(
      (entry) => entry.isFile() && (VOLUME_FILE.test(entry.name) || SNAPSHOT_FILE.test(entry.name)),
    );
    // Asked all at once: a shared folder is counted for every capacity decision.
    const sizes = await Promise.all(
      images.map((entry) =>
        stat(join(this.options.volumes_dir, entry.name)).then(
          (info) => info.size,
          () => undefined,
        ),
      ),
    );
    images.forEach((entry, index) => {
      const size = sizes[index];
      if (size === undefined) return; // deleted while counting
      provisionedGb += gibOf(size);
      if (VOLUME_FILE.test(entry.name)) volumeCount++;
    });
    this.provisionedGb = provisionedGb;
    this.volumeCount = volumeCount;
  }

  async getStats(request: StatsRequest = {}): Promise<BackendStats> {
    let fs;
    try {
      // Other servers add and remove images in a shared folder: only a count says what it holds,
      // unless the core knows that none did since the last count.
      if (request.recount || (this.context.sharedStore && !request.unchangedElsewhere)) await this.recount();
      fs = await statfs(this.options.volumes_dir);
    } catch (error) {
      throw this.failure('read capacity of', this.options.volumes_dir, error);
    }
    const total = (fs.blocks * fs.bsize) / BYTES_PER_GIB;
    const free = (fs.bavail * fs.bsize) / BYTES_PER_GIB;
    return {
      volume_backend_name: this.context.backendName,
      vendor_name: 'Open Source',
      driver_version: '1.0.0',
      storage_protocol: this.options.target_helper === 'tgtadm' ? 'iSCSI' : 'file',
      pools: [
        {
          pool_name: this.context.backendName,
          total_capacity_gb: roundGb(total),
          free_capacity_gb: roundGb(free),
          provisioned_capacity_gb: this.provisionedGb,
          allocated_capacity_gb: this.provisionedGb,
          reserved_percentage: this.options.reserved_percentage,
          max_over_subscription_ratio: this.options.max_over_subscription_ratio,
          thin_provisioning_support: true,
          thick_provisioning_support: false,
          total_volumes: this.volumeCount,
          location_info: `file:${this.options.volumes_dir}`,
          multiattach: false,
        },
      ],
    };
  }

  async createVolume(volume: VolumeRef): Promise<{ provider_location: string }> {
    const path = this.pathOf(volume);
    let handle;
    try {
      handle = await open(path, 'wx', 0o600); // exclusive: never overwrite an existing image
    } catch (error) {
      if (errorCode(error) === 'EEXIST') {
        throw new StorageError('ALREADY_EXISTS', `backend "${this.context.backendName}": ${path} already exists; it was left alone`);
      }
      throw this.failure('create', path, error);
    }
    try {
      await handle.truncate(volume.size * BYTES_PER_GIB);
    } catch (error) {
      await handle.close();
      await unlink(path).catch(() => undefined);
      throw this.failure('create', path, error);
    }
    await handle.close();
    this.provisionedGb += volume.size;
    this.volumeCount++;
    return { provider_location: path };
  }

  async extendVolume(volume: VolumeRef, newSizeGb: number): Promise<void> {
    const path = this.pathOf(volume);
    try {
      await truncate(path, newSizeGb * BYTES_PER_GIB);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') {
        throw new StorageError('NOT_FOUND', `backend "${this.context.backendName}": the image file ${path} is missing, so it cannot be extended`);
      }
      throw this.failure('extend', path, error);
    }
    this.provisionedGb += newSizeGb - volume.size;
  }

  async deleteVolume(volume: VolumeRef): Promise<void> {
    await this.removeImage(this.pathOf(volume), true);
  }

  /** A snapshot's copy-on-write space: none, its copy is as thin as the pool. */
  snapshotSizeGb(): number {
    return 0;
  }

  /** Regular files of volumes_dir but ours (the lock, a revert's staging copy: dot files), with what a loop device holds. */
  private async manageableFiles(): Promise<ManageableVolume[]> {
    const attached = await loopBackingFiles();
    const found: ManageableVolume[] = [];
    for (const entry of await readdir(this.options.volumes_dir, { withFileTypes: true })) {
      if (!entry.isFile() || entry.name.startsWith('.')) continue;
      const path = join(this.options.volumes_dir, entry.name);
      const info = await stat(path).catch(() => undefined);
      if (!info) continue;
      const loop = attached.get(path);
      found.push({
        name: entry.name,
        sizeGb: gibOf(info.size),
        carriedId: /^(?:volume|snapshot)-(.{36})$/.exec(entry.name)?.[1],
        ...(loop ? { notSafe: `in use: attached as ${loop}` } : {}),
      });
    }
    return found;
  }

  /** Removes an image file (already gone counts as removed) and takes it off the counts. */
  private async removeImage(path: string, isVolume: boolean): Promise<void> {
    let sizeGb: number;
    try {
      sizeGb = gibOf((await stat(path)).size);
      await unlink(path);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return; // already gone counts as deleted
      throw this.failure('delete', path, error);
    }
    this.provisionedGb = Math.max(0, this.provisionedGb - sizeGb);
    if (isVolume) this.volumeCount = Math.max(0, this.volumeCount - 1);
  }

  private async copyIntoVolume(source: string, volume: VolumeRef, sourceLabel: string, progress: CopyProgress): Promise<CreatedVolume> {
    const path = this.pathOf(volume);
    await this.copy(source, path, sourceLabel, progress);
    this.volumeCount++;
    return { provider_location: path };
  }

  /**
   * Copies an image (sharing blocks or sparse, see sparse-copy.ts) and counts the copy as
   * provisioned; a copy that fails leaves no file behind.
   */
  private async copy(source: string, destination: string, sourceLabel: string, progress: CopyProgress): Promise<void> {
    const { bytes } = await this.copied(source, destination, sourceLabel, progress);
    this.provisionedGb += gibOf(bytes);
  }

  private async copied(source: string, destination: string, sourceLabel: string, progress: CopyProgress): Promise<{ bytes: number }> {
    try {
      return await copyImage(source, destination, progress);
    } catch (error) {
      if (!(error instanceof CopyFailure)) throw error;
      if (error.step === 'create' && error.code === 'EEXIST') {
        throw new StorageError('ALREADY_EXISTS', `backend "${this.context.backendName}": ${destination} already exists; it was left alone`);
      }
      if (error.path === source && error.code === 'ENOENT') {
        throw new StorageError('NOT_FOUND', `backend "${this.context.backendName}": the image file ${source} of ${sourceLabel} is missing, so it cannot be copied`);
      }
      throw this.failure(`copy ${source} to`, destination, error.cause);
    }
  }

  /**
   * Cinder's revert: the snapshot is copied (sparse) beside the volume, given the volume's length
   * (past the snapshot's end it reads zeros), and renamed over the volume's image in one step, so
   * the volume is either reverted or untouched, never half of each.
   */
  private async revert(volume: VolumeRef, snapshot: SnapshotRef, progress: CopyProgress): Promise<void> {
    const path = this.pathOf(volume);
    const staging = join(this.options.volumes_dir, `${REVERT_PREFIX}${volume.id}`);
    await unlink(staging).catch(() => undefined); // what an interrupted revert left
    await this.copied(this.snapshotPathOf(snapshot), staging, `snapshot ${snapshot.id}`, progress);
    try {
      await truncate(staging, volume.size * BYTES_PER_GIB);
      await rename(staging, path);
    } catch (error) {
      await unlink(staging).catch(() => undefined);
      throw this.failure('revert', path, error);
    }
  }

  async close(): Promise<void> {
    this.lock?.release();
    this.lock = undefined;
    if (this.servedPath !== undefined && servedHere.get(this.servedPath) === this.context.backendName) servedHere.delete(this.servedPath);
    this.servedPath = undefined;
  }

  private pathOf(volume: VolumeRef): string {
    return join(this.options.volumes_dir, `volume-${volume.id}`);
  }

  private snapshotPathOf(snapshot: SnapshotRef): string {
    return join(this.options.volumes_dir, `snapshot-${snapshot.id}`);
  }

  private failure(operation: string, path: string, error: unknown): StorageError {
    const code = errorCode(error);
    return new StorageError(code === 'ENOSPC' ? 'OUT_OF_CAPACITY' : 'BACKEND_UNAVAILABLE', `backend "${this.context.backendName}": ${operation} ${path} failed (${code})`, {
      cause: error,
    });
  }
}

/** Loop devices' backing files on this host, by path (none where /sys has no loop devices). */
async function loopBackingFiles(): Promise<Map<string, string>> {
  const devices = new Map<string, string>();
  const names = await readdir('/sys/block').catch(() => [] as string[]);
  for (const name of names.filter((candidate) => candidate.startsWith('loop'))) {
    const backing = await readFile(`/sys/block/${name}/loop/backing_file`, 'utf8').catch(() => '');
    if (backing.trim()) devices.set(backing.trim(), `/dev/${name}`);
  }
  return devices;
}

/** What an image of `bytes` provisions, in whole GiB. */
function gibOf(bytes: number): number {
  return Math.ceil(bytes / BYTES_PER_GIB);
}

function errorCode(error: unknown): string {
  return (error as NodeJS.ErrnoException)?.code ?? String(error);
}

export default defineDriver({
  summary: 'Sparse raw image files in a local directory; the embedded default.',
  options,
  version: '1.0.0',
  create: (opts, context) => new FileDriver(opts, context),
});
