import { Backend, type CreateVolumeInput } from './backend.js';
import type { LoadedConfig } from './config/load.js';
import { decodeCursor, encodeCursor } from './cursor.js';
import { StorageError } from './errors.js';
import { KeyedMutex } from './locks.js';
import type { Logger } from './log.js';
import { dataDir } from './paths.js';
import { openVolumeStore } from './persistence/index.js';
import type { VolumeStore } from './persistence/store.js';
import type { SecretRegistry } from './secrets.js';
import type { VolumeRecord, VolumeStatus } from './volume.js';

/**
 * cinderlib's class-level registry of backends: backends by volume_backend_name, and the routes
 * from a volume id to the backend that owns it.
 */
export interface ListVolumesInput {
  backend?: string;
  status?: VolumeStatus;
  limit: number;
  cursor?: string;
}

export class BackendRegistry {
  private readonly backends = new Map<string, Backend>();

  private constructor(
    readonly config: LoadedConfig,
    private readonly store: VolumeStore,
    secrets: SecretRegistry,
    private readonly log: Logger,
  ) {
    const deps = {
      store,
      secrets,
      log,
      dataDir: dataDir(),
      rootHelper: config.global.rootHelper,
      outputAllBackendInfo: config.global.outputAllBackendInfo,
      volumeLocks: new KeyedMutex(),
    };
    for (const spec of config.backends) this.backends.set(spec.name, new Backend(spec, deps));
  }

  /** Opens the metadata store, surfaces interrupted operations and starts every backend's setup. */
  static open(config: LoadedConfig, secrets: SecretRegistry, log: Logger, store?: VolumeStore): BackendRegistry {
    const volumeStore = store ?? openVolumeStore(config.global.persistence);
    const surfaced = volumeStore.surfaceInterrupted(
      (record) =>
        `interrupted while ${record.status}: the server stopped before the array answered; the array may or may not hold volume-${record.id}. delete_volume cleans up both`,
    );
    for (const record of surfaced) log.warn(`volume ${record.id} on backend "${record.backend}" was left "${record.status_reason}"`);
    for (const warning of config.warnings) log.warn(warning);
    const registry = new BackendRegistry(config, volumeStore, secrets, log);
    for (const backend of registry.backends.values()) void backend.initialize();
    return registry;
  }

  list(): Backend[] {
    return [...this.backends.values()];
  }

  /** Resolves once every backend has finished trying to initialize. */
  async settled(): Promise<void> {
    await Promise.all(this.list().map((backend) => backend.initialize()));
  }

  get(name: string): Backend {
    const backend = this.backends.get(name);
    if (!backend) {
      throw new StorageError('NOT_FOUND', `backend "${name}" is not configured; known backends: ${[...this.backends.keys()].join(', ')}`);
    }
    return backend;
  }

  getVolume(volumeId: string): VolumeRecord {
    const record = this.store.get(volumeId);
    if (!record) throw new StorageError('NOT_FOUND', `volume ${volumeId} does not exist; list_volumes shows the volumes there are`);
    return record;
  }

  /** A page of volumes from the metadata store (never the array), in creation order. */
  listVolumes(input: ListVolumesInput): { volumes: VolumeRecord[]; nextCursor?: string } {
    if (input.backend !== undefined) this.get(input.backend);
    const filters = { backend: input.backend, status: input.status };
    const after = input.cursor ? decodeCursor(input.cursor, filters) : undefined;
    const page = this.store.list({ ...filters, after, limit: input.limit });
    return {
      volumes: page.records,
      nextCursor: page.nextAfter !== undefined ? encodeCursor({ ...filters, after: page.nextAfter }) : undefined,
    };
  }

  createVolume(backendName: string, input: CreateVolumeInput): Promise<VolumeRecord> {
    return this.get(backendName).createVolume(input);
  }

  extendVolume(volumeId: string, newSize: number): Promise<VolumeRecord> {
    return this.owner(volumeId).extendVolume(volumeId, newSize);
  }

  deleteVolume(volumeId: string): Promise<void> {
    return this.owner(volumeId).deleteVolume(volumeId);
  }

  async close(): Promise<void> {
    await Promise.all(this.list().map((backend) => backend.close()));
    this.store.close();
  }

  private owner(volumeId: string): Backend {
    const record = this.getVolume(volumeId);
    const backend = this.backends.get(record.backend);
    if (!backend) {
      throw new StorageError(
        'BACKEND_UNAVAILABLE',
        `volume ${volumeId} belongs to backend "${record.backend}", which is not in the current config; add it back to manage this volume`,
      );
    }
    return backend;
  }
}
