import { constants } from 'node:fs';
import { access, mkdir, open, readdir, stat, statfs, truncate, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { StorageError } from '../../src/errors.js';
import { defaultVolumesDir } from '../../src/paths.js';
import { LockHeldError, acquireProcessLock, type HeldLock } from '../../src/process-lock.js';
import { capacityOptions, stringOption } from '../options.js';
import { defineDriver, type BackendStats, type DriverContext, type DriverOptions, type VolumeDriver, type VolumeRef } from '../types.js';
import { BYTES_PER_GIB, roundGb } from '../units.js';

/**
 * The embedded default: each volume is a sparse raw image file `volume-<id>` in volumes_dir.
 * Capacity comes from the real filesystem (statfs); sparse files make the pool thin.
 */
const VOLUME_FILE = /^volume-[0-9a-f-]{36}$/;
/** Held for the server's life: a folder's capacity accounting belongs to one backend of one server. */
const LOCK_FILE = '.cinderlib-mcp.lock';

const options = {
  volumes_dir: stringOption('Directory holding the volume image files.', {
    default: defaultVolumesDir(),
    defaultText: '$XDG_DATA_HOME/cinderlib-mcp/volumes',
  }),
  ...capacityOptions,
};

type FileOptions = DriverOptions<typeof options>;

class FileDriver implements VolumeDriver {
  private provisionedGb = 0;
  private volumeCount = 0;
  private lock?: HeldLock;
  /** The filesystem the folder is on: backends in other folders of it draw on the same free space. */
  private filesystem = '';

  constructor(
    private readonly options: FileOptions,
    private readonly context: DriverContext,
  ) {}

  async setup(): Promise<void> {
    const dir = this.options.volumes_dir;
    try {
      await mkdir(dir, { recursive: true });
      await access(dir, constants.R_OK | constants.W_OK);
    } catch (error) {
      throw new StorageError('BACKEND_UNAVAILABLE', `backend "${this.context.backendName}": volumes_dir ${dir} is not a writable directory (${errorCode(error)})`);
    }
    try {
      this.lock = await acquireProcessLock(join(dir, LOCK_FILE), `backend "${this.context.backendName}"`);
    } catch (error) {
      if (!(error instanceof LockHeldError)) throw this.failure('lock', join(dir, LOCK_FILE), error);
      throw new StorageError(
        'BACKEND_UNAVAILABLE',
        `backend "${this.context.backendName}": volumes_dir ${dir} is already used by ${error.holder}; two backends or servers on one folder would each count its space as their own, so give each backend its own volumes_dir`,
      );
    }
    this.filesystem = String((await stat(dir)).dev);
    await this.recount();
  }

  capacityDomain(): string {
    return `filesystem:${this.filesystem}`;
  }

  /** Counted at setup and on refresh, and kept up to date by each operation, so stats stay flat as volumes grow. */
  private async recount(): Promise<void> {
    let provisionedGb = 0;
    let volumeCount = 0;
    for (const entry of await readdir(this.options.volumes_dir, { withFileTypes: true })) {
      if (!entry.isFile() || !VOLUME_FILE.test(entry.name)) continue;
      const info = await stat(join(this.options.volumes_dir, entry.name)).catch(() => undefined);
      if (!info) continue; // deleted while counting
      provisionedGb += Math.ceil(info.size / BYTES_PER_GIB);
      volumeCount++;
    }
    this.provisionedGb = provisionedGb;
    this.volumeCount = volumeCount;
  }

  async getStats(request: { recount?: boolean } = {}): Promise<BackendStats> {
    let fs;
    try {
      if (request.recount) await this.recount();
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
      storage_protocol: 'file',
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
      handle = await open(path, 'wx'); // exclusive: never overwrite an existing image
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
    const path = this.pathOf(volume);
    let sizeGb: number;
    try {
      sizeGb = Math.ceil((await stat(path)).size / BYTES_PER_GIB);
      await unlink(path);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return; // already gone counts as deleted
      throw this.failure('delete', path, error);
    }
    this.provisionedGb = Math.max(0, this.provisionedGb - sizeGb);
    this.volumeCount = Math.max(0, this.volumeCount - 1);
  }

  async close(): Promise<void> {
    this.lock?.release();
    this.lock = undefined;
  }

  private pathOf(volume: VolumeRef): string {
    return join(this.options.volumes_dir, `volume-${volume.id}`);
  }

  private failure(operation: string, path: string, error: unknown): StorageError {
    const code = errorCode(error);
    return new StorageError(
      code === 'ENOSPC' ? 'OUT_OF_CAPACITY' : 'BACKEND_UNAVAILABLE',
      `backend "${this.context.backendName}": ${operation} ${path} failed (${code})`,
      { cause: error },
    );
  }
}

function errorCode(error: unknown): string {
  return (error as NodeJS.ErrnoException)?.code ?? String(error);
}


export default defineDriver({
  summary: 'Sparse raw image files in a local directory; the embedded default.',
  options,
  create: (opts, context) => new FileDriver(opts, context),
});
