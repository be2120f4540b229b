import { Backend } from './backend.js';
import type { CreateVolumeInput } from './lifecycle.js';
import { CapacityLedger } from './capacity-ledger.js';
import type { LoadedConfig } from './config/load.js';
import { decodeCursor, encodeCursor } from './cursor.js';
import { StorageError, describeError, isStorageError } from './errors.js';
import { KeyedMutex } from './locks.js';
import type { Logger } from './log.js';
import { hostname } from 'node:os';
import { dataDir } from './paths.js';
import { openVolumeStore } from './persistence/index.js';
import { MemoryVolumeStore } from './persistence/memory.js';
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

/** How long list_backends waits for backends still starting before answering with what is known. */
const LIST_GRACE_MS = 500;

export interface BackendSummary {
  id: string;
  volume_driver: string;
  initialized: boolean;
  config: Record<string, unknown>;
  pool_names: string[];
  initializing?: boolean;
  error?: string;
  next_retry_at?: string;
}

export class BackendRegistry {
  private readonly backends = new Map<string, Backend>();

  /** Why the config file cannot be used at all (then no backend is served); see LoadedConfig.error. */
  readonly configError?: string;

  /** This server's identity in the metadata store: global.host, else hostname and data directory. */
  readonly serverId: string;
  private readonly leaseMs: number;
  private leaseTimer?: NodeJS.Timeout;

  private constructor(
    config: LoadedConfig,
    private readonly store: VolumeStore,
    secrets: SecretRegistry,
    private readonly log: Logger,
  ) {
    this.serverId = config.global.host ?? `${hostname()}:${dataDir()}`;
    this.leaseMs = config.global.leaseSeconds * 1000;
    const deps = {
      store,
      secrets,
      log,
      dataDir: dataDir(),
      rootHelper: config.global.rootHelper,
      outputAllBackendInfo: config.global.outputAllBackendInfo,
      volumeLocks: new KeyedMutex(),
      capacity: new CapacityLedger(),
      serverId: this.serverId,
      leaseMs: this.leaseMs,
    };
    this.configError = config.error;
    for (const spec of config.backends) this.backends.set(spec.name, new Backend(spec, deps));
  }

  /** Opens the metadata store, surfaces interrupted operations and starts every backend's setup. */
  static async open(config: LoadedConfig, secrets: SecretRegistry, log: Logger, store?: VolumeStore): Promise<BackendRegistry> {
    if (config.error) {
      log.error(`config error: ${config.error}`);
      return new BackendRegistry(config, store ?? new MemoryVolumeStore(), secrets, log);
    }
    let volumeStore: VolumeStore;
    try {
      volumeStore = store ?? (await openVolumeStore(config.global.persistence));
    } catch (error) {
      if (isStorageError(error)) throw error;
      throw new StorageError(
        'BACKEND_UNAVAILABLE',
        `the metadata store cannot be opened: ${secrets.redact(describeError(error))}; fix persistence_config and restart the server`,
      );
    }
    for (const warning of config.warnings) log.warn(warning);
    const registry = new BackendRegistry(config, volumeStore, secrets, log);
    await registry.recoverInterrupted(true);
    registry.keepLeases();
    for (const backend of registry.backends.values()) void backend.initialize();
    return registry;
  }

  /**
   * Marks as crashed the operations this server left under way before a restart, and those of a
   * server that stopped renewing its leases; a live server's operations are left alone.
   */
  private async recoverInterrupted(includeOwn: boolean): Promise<void> {
    const surfaced = await this.store.surfaceInterrupted(
      { owner: this.serverId, now: new Date().toISOString(), includeOwn },
      (record, kind) =>
        `interrupted while ${record.status}: ${record.owner && record.owner !== this.serverId ? `server ${record.owner} stopped renewing its lease` : 'the server stopped'} before the array answered; the array may or may not hold ${kind} ${record.id}. delete_${kind} cleans up both`,
    );
    for (const record of surfaced.volumes) this.log.warn(`volume ${record.id} on backend "${record.backend}" was left "${record.status_reason}"`);
    for (const record of surfaced.snapshots) this.log.warn(`snapshot ${record.id} on backend "${record.backend}" was left "${record.status_reason}"`);
  }

  /** While the server lives it renews its operations' leases, and recovers those of servers that died. */
  private keepLeases(): void {
    const every = Math.max(1000, Math.floor(this.leaseMs / 3));
    this.leaseTimer = setInterval(() => {
      void (async () => {
        await this.store.renewLeases(this.serverId, new Date(Date.now() + this.leaseMs).toISOString());
        await this.recoverInterrupted(false);
      })().catch((error: unknown) => this.log.warn(`renewing operation leases: ${describeError(error)}`));
    }, every);
    this.leaseTimer.unref(); // never keeps a stopping server alive
  }

  list(): Backend[] {
    return [...this.backends.values()];
  }

  /** Resolves once every backend has finished its current initialization attempt. */
  async settled(): Promise<void> {
    await Promise.all(this.list().map((backend) => backend.settled()));
  }

  /**
   * Every backend as list_backends shows it, from what is known: it waits at most a moment for
   * attempts under way (so a local backend that starts in milliseconds is not shown as starting),
   * never for a silent array.
   */
  async describeBackends(): Promise<BackendSummary[]> {
    let timer: NodeJS.Timeout | undefined;
    const moment = new Promise<void>((resolve) => (timer = setTimeout(resolve, LIST_GRACE_MS)));
    await Promise.race([Promise.all(this.list().map((backend) => backend.settled().then(() => backend.poolNamesSoon()))), moment]);
    clearTimeout(timer);
    return this.list().map((backend) => {
      // A failed backend whose back-off has passed is tried again in the background.
      if (!backend.initialized && !backend.initializing) void backend.initialize();
      return {
        id: backend.id,
        volume_driver: backend.volumeDriver,
        initialized: backend.initialized,
        config: backend.config(),
        pool_names: backend.knownPoolNames,
        ...(backend.initializing ? { initializing: true } : {}),
        ...(backend.error ? { error: backend.error } : {}),
        ...(backend.nextRetryAt ? { next_retry_at: backend.nextRetryAt } : {}),
      };
    });
  }

  get(name: string): Backend {
    this.requireUsableConfig();
    const backend = this.backends.get(name);
    if (!backend) {
      throw new StorageError('NOT_FOUND', `backend "${name}" is not configured; known backends: ${[...this.backends.keys()].join(', ')}`);
    }
    return backend;
  }

  async getVolume(volumeId: string): Promise<VolumeRecord> {
    this.requireUsableConfig();
    const record = await this.store.get(volumeId);
    if (!record) throw new StorageError('NOT_FOUND', `volume ${volumeId} does not exist; list_volumes shows the volumes there are`);
    return record;
  }

  /** A page of volumes from the metadata store (never the array), in creation order. */
  async listVolumes(input: ListVolumesInput): Promise<{ volumes: VolumeRecord[]; nextCursor?: string }> {
    this.requireUsableConfig();
    if (input.backend !== undefined) this.get(input.backend);
    const filters = { backend: input.backend, status: input.status };
    const after = input.cursor ? decodeCursor(input.cursor, 'list_volumes', filters) : undefined;
    const page = await this.store.list({ ...filters, after, limit: input.limit });
    return {
      volumes: page.records,
      nextCursor: page.nextAfter !== undefined ? encodeCursor('list_volumes', page.nextAfter, filters) : undefined,
    };
  }

  createVolume(backendName: string, input: CreateVolumeInput): Promise<VolumeRecord> {
    return this.get(backendName).createVolume(input);
  }

  extendVolume(volumeId: string, newSize: number): Promise<VolumeRecord> {
    return this.owner(volumeId).then((backend) => backend.extendVolume(volumeId, newSize));
  }

  deleteVolume(volumeId: string): Promise<void> {
    return this.owner(volumeId).then((backend) => backend.deleteVolume(volumeId));
  }

  async close(): Promise<void> {
    clearInterval(this.leaseTimer);
    await Promise.all(this.list().map((backend) => backend.close()));
    await this.store.close();
  }

  private requireUsableConfig(): void {
    if (this.configError) {
      throw new StorageError('BACKEND_UNAVAILABLE', `the server's config cannot be used, so it serves no backend: ${this.configError}. Fix the file and restart the server (cinderlib-mcp check --config FILE checks it)`);
    }
  }

  private async owner(volumeId: string): Promise<Backend> {
    const record = await this.getVolume(volumeId);
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
