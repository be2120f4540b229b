import { randomUUID } from 'node:crypto';
import { DEFAULT_VOLUME_DRIVER, findDriver, knownDriverNames } from '../drivers/catalog.js';
import type { BackendStats, PoolStats, VolumeDriver, VolumeRef } from '../drivers/types.js';
import { checkCapacity } from './capacity.js';
import { ConfigError } from './config/errors.js';
import type { BackendSpec } from './config/load.js';
import { validateDriverOptions } from './driver-options.js';
import { StorageError, describeError, isStorageError } from './errors.js';
import { KeyedMutex, SingleFlight } from './locks.js';
import type { Logger } from './log.js';
import type { VolumeStore } from './persistence/store.js';
import type { SecretRegistry } from './secrets.js';
import { type VolumeRecord } from './volume.js';

/**
 * A Backend is cinderlib's Backend: one array configuration, its driver, cached stats, and the
 * volumes the metadata store knows on it. It records every mutation's intent before the driver
 * touches the array, and serializes operations per volume.
 */
export interface BackendDependencies {
  store: VolumeStore;
  secrets: SecretRegistry;
  log: Logger;
  dataDir: string;
  rootHelper: string;
  outputAllBackendInfo: boolean;
  volumeLocks: KeyedMutex;
}

export interface CreateVolumeInput {
  size: number;
  name?: string;
  description?: string;
  bootable?: boolean;
  pool_name?: string;
}

type InitState = { phase: 'pending' } | { phase: 'ready' } | { phase: 'failed'; reason: string };

export class Backend {
  readonly id: string;
  readonly volumeDriver: string;
  private driver?: VolumeDriver;
  private state: InitState = { phase: 'pending' };
  private initialization?: Promise<void>;
  private cachedStats?: BackendStats;
  private statsGeneration = 0;
  private readonly statsFlight = new SingleFlight<BackendStats>();
  /** GiB promised to creates and extends under way, per pool, so concurrent requests cannot overbook. */
  private readonly pendingGb = new Map<string, number>();
  private driverNotes: string[] = [];
  readonly warnings: string[] = [];

  constructor(
    private readonly spec: BackendSpec,
    private readonly deps: BackendDependencies,
  ) {
    this.id = spec.name;
    const configured = spec.options.volume_driver;
    this.volumeDriver = typeof configured === 'string' && configured.trim() ? configured.trim() : DEFAULT_VOLUME_DRIVER;
  }

  get initialized(): boolean {
    return this.state.phase === 'ready';
  }

  /** Why the backend is not serving; undefined once initialized (or while still starting). */
  get error(): string | undefined {
    return this.state.phase === 'failed' ? this.state.reason : undefined;
  }

  get notes(): string[] {
    return this.driverNotes;
  }

  /** Loads, validates and sets up the driver once; failures leave the backend listed, not serving. */
  initialize(): Promise<void> {
    this.initialization ??= this.setUp().then(
      () => {
        this.state = { phase: 'ready' };
        this.deps.log.info(`backend "${this.id}" initialized (${this.volumeDriver})`);
      },
      (error: unknown) => {
        const reason = this.deps.secrets.redact(describeError(error));
        this.state = { phase: 'failed', reason };
        this.deps.log.warn(`backend "${this.id}" not initialized: ${reason}`);
      },
    );
    return this.initialization;
  }

  /** cinderlib's Backend.config: the name alone, or every option with secrets masked. */
  config(): Record<string, unknown> {
    if (!this.deps.outputAllBackendInfo) return { volume_backend_name: this.id };
    return this.deps.secrets.maskOptions({ ...this.spec.options, volume_driver: this.volumeDriver });
  }

  /** Cached stats; `refresh` asks the array again. Concurrent refreshes share one driver call. */
  async stats(refresh = false): Promise<BackendStats> {
    const driver = await this.ready();
    if (!refresh && this.cachedStats) return this.cachedStats;
    const generation = this.statsGeneration;
    const stats = await this.statsFlight.run(async () => this.normalizeStats(await driver.getStats()));
    // A mutation that finished while we were asking makes this answer stale: do not cache it.
    if (generation === this.statsGeneration) this.cachedStats = stats;
    return stats;
  }

  async poolNames(): Promise<string[]> {
    if (this.state.phase === 'failed') return [];
    return (await this.stats(false)).pools.map((pool) => pool.pool_name);
  }

  async createVolume(input: CreateVolumeInput): Promise<VolumeRecord> {
    const driver = await this.ready();
    const pool = await this.choosePool(input.pool_name);
    const verdict = checkCapacity(pool, input.size, this.pendingGb.get(pool.pool_name) ?? 0);
    if (!verdict.fits) {
      throw new StorageError(
        'OUT_OF_CAPACITY',
        `a ${input.size} GiB volume does not fit in backend "${this.id}" pool "${pool.pool_name}": ${verdict.roomGb} GiB of room left (${verdict.explanation}); ask for at most ${Math.floor(verdict.roomGb)} GiB or free space first`,
      );
    }
    const now = new Date().toISOString();
    const record: VolumeRecord = {
      id: randomUUID(),
      backend: this.id,
      name: input.name ?? '',
      description: input.description ?? '',
      size: input.size,
      status: 'creating',
      pool_name: pool.pool_name,
      bootable: input.bootable ?? false,
      created_at: now,
      updated_at: now,
      status_reason: null,
      provider_location: null,
    };
    // Intent first: a crash from here on leaves a record that start-up surfaces, never an unknown array volume.
    if (!this.deps.store.insert(record)) throw new StorageError('INTERNAL', `volume id ${record.id} already exists in the metadata store`);
    return this.withPending(pool.pool_name, input.size, () =>
      this.deps.volumeLocks.run(record.id, async () => {
        try {
          const created = await driver.createVolume({ ...this.ref(record), name: record.name, description: record.description, bootable: record.bootable });
          return this.transition(record.id, { status: 'available', status_reason: null, provider_location: created?.provider_location ?? null });
        } catch (error) {
          const failure = this.asStorageError(error, `create volume ${record.id}`);
          this.transition(record.id, { status: 'error', status_reason: `create failed: ${failure.message}` });
          throw new StorageError(
            failure.code,
            `${failure.message}. The volume record ${record.id} is kept in status "error"; delete_volume removes it`,
          );
        }
      }),
    );
  }

  async extendVolume(volumeId: string, newSize: number): Promise<VolumeRecord> {
    const driver = await this.ready();
    return this.deps.volumeLocks.run(volumeId, async () => {
      const record = this.requireVolume(volumeId);
      if (newSize < record.size) {
        throw new StorageError(
          'INVALID_ARGUMENT',
          `new_size ${newSize} GiB is smaller than volume ${volumeId}'s ${record.size} GiB; volumes cannot shrink, pass a new_size above ${record.size}`,
        );
      }
      this.requireStatus(record, ['available'], 'extended');
      if (newSize === record.size) return record; // already there: extending is idempotent
      const growth = newSize - record.size;
      const pool = await this.choosePool(record.pool_name);
      const verdict = checkCapacity(pool, growth, this.pendingGb.get(pool.pool_name) ?? 0);
      if (!verdict.fits) {
        throw new StorageError(
          'OUT_OF_CAPACITY',
          `growing volume ${volumeId} by ${growth} GiB (to ${newSize} GiB) does not fit in backend "${this.id}" pool "${pool.pool_name}": ${verdict.roomGb} GiB of room left (${verdict.explanation})`,
        );
      }
      return this.withPending(pool.pool_name, growth, async () => {
        this.transition(volumeId, { status: 'extending' }, ['available']);
        try {
          await driver.extendVolume(this.ref(record), newSize);
          return this.transition(volumeId, { status: 'available', size: newSize, status_reason: null });
        } catch (error) {
          const failure = this.asStorageError(error, `extend volume ${volumeId}`);
          // As Cinder's error_extending: the array's state is unknown, so the volume is not offered as usable.
          this.transition(volumeId, { status: 'error', status_reason: `extend to ${newSize} GiB failed: ${failure.message}` });
          throw failure;
        }
      });
    });
  }

  async deleteVolume(volumeId: string): Promise<void> {
    const driver = await this.ready();
    await this.deps.volumeLocks.run(volumeId, async () => {
      const record = this.requireVolume(volumeId);
      this.requireStatus(record, ['available', 'error'], 'deleted');
      this.transition(volumeId, { status: 'deleting' }, ['available', 'error']);
      try {
        await driver.deleteVolume(this.ref(record));
      } catch (error) {
        const failure = this.asStorageError(error, `delete volume ${volumeId}`);
        this.transition(volumeId, { status: 'error', status_reason: `delete failed: ${failure.message}` });
        throw failure;
      }
      this.deps.store.remove(volumeId);
      this.invalidateStats();
    });
  }

  /** cinderlib's Backend serialization: what JSON.stringify(backend) yields, secrets masked. */
  toJSON(): Record<string, unknown> {
    return {
      id: this.id,
      volume_driver: this.volumeDriver,
      initialized: this.initialized,
      ...(this.error ? { error: this.error } : {}),
      config: this.deps.secrets.maskOptions({ ...this.spec.options, volume_driver: this.volumeDriver }),
    };
  }

  async close(): Promise<void> {
    await this.driver?.close().catch((error: unknown) => this.deps.log.warn(`closing backend "${this.id}": ${describeError(error)}`));
  }

  private async setUp(): Promise<void> {
    const entry = findDriver(this.volumeDriver);
    if (!entry) {
      throw new ConfigError(
        `backend "${this.id}": volume_driver "${this.volumeDriver}" is not supported; use one of: ${knownDriverNames().join(', ')}`,
      );
    }
    const definition = await entry.load();
    const { options, unknown } = validateDriverOptions(this.id, definition, this.spec.options, this.deps.secrets);
    for (const key of unknown) {
      const warning = `backend "${this.id}": option "${key}" is not used by the ${entry.alias} driver; kept as given`;
      this.warnings.push(warning);
      this.deps.log.warn(warning);
    }
    this.driver = definition.create(
      options as never,
      {
        backendName: this.id,
        log: this.deps.log.child(this.id),
        secrets: this.deps.secrets,
        dataDir: this.deps.dataDir,
        rootHelper: this.deps.rootHelper,
      },
      this.volumeDriver,
    );
    await this.driver.setup();
    this.driverNotes = this.driver.notes?.() ?? [];
  }

  private async ready(): Promise<VolumeDriver> {
    await this.initialize();
    if (this.state.phase !== 'ready' || !this.driver) {
      throw new StorageError(
        'BACKEND_UNAVAILABLE',
        `backend "${this.id}" is not initialized: ${this.error ?? 'still starting'}; fix its config or the array and restart the server (cinderlib-mcp check shows every backend's state)`,
      );
    }
    return this.driver;
  }

  private async choosePool(poolName: string | undefined): Promise<PoolStats> {
    const { pools } = await this.stats(false);
    if (poolName === undefined) return pools[0]!;
    const pool = pools.find((candidate) => candidate.pool_name === poolName);
    if (!pool) {
      throw new StorageError(
        'INVALID_ARGUMENT',
        `pool_name "${poolName}" is not a pool of backend "${this.id}"; its pools are: ${pools.map((p) => p.pool_name).join(', ')}`,
      );
    }
    return pool;
  }

  private async withPending<T>(pool: string, sizeGb: number, task: () => Promise<T>): Promise<T> {
    this.pendingGb.set(pool, (this.pendingGb.get(pool) ?? 0) + sizeGb);
    try {
      return await task();
    } finally {
      this.pendingGb.set(pool, (this.pendingGb.get(pool) ?? 0) - sizeGb);
      this.invalidateStats();
    }
  }

  private invalidateStats(): void {
    this.statsGeneration++;
    this.cachedStats = undefined;
  }

  private normalizeStats(stats: BackendStats): BackendStats {
    const pools = stats.pools && stats.pools.length > 0 ? stats.pools : [];
    if (pools.length === 0) throw new StorageError('INTERNAL', `backend "${this.id}": the driver reported no pools`);
    return { ...stats, volume_backend_name: this.id, pools };
  }

  private requireVolume(volumeId: string): VolumeRecord {
    const record = this.deps.store.get(volumeId);
    if (!record || record.backend !== this.id) {
      throw new StorageError('NOT_FOUND', `volume ${volumeId} does not exist; list_volumes shows the volumes there are`);
    }
    return record;
  }

  private requireStatus(record: VolumeRecord, allowed: VolumeRecord['status'][], action: string): void {
    if (allowed.includes(record.status)) return;
    const busy = record.status === 'creating' || record.status === 'extending' || record.status === 'deleting';
    throw new StorageError(
      busy ? 'BACKEND_BUSY' : 'INVALID_ARGUMENT',
      `volume ${record.id} is "${record.status}"${record.status_reason ? ` (${record.status_reason})` : ''}; only ${allowed.map((s) => `"${s}"`).join(' or ')} volumes can be ${action}` +
        (busy ? '; wait and call get_volume again' : '; delete_volume removes a volume in error'),
    );
  }

  private transition(volumeId: string, patch: Parameters<VolumeStore['update']>[1], expected?: VolumeRecord['status'][]): VolumeRecord {
    const updated = this.deps.store.update(volumeId, patch, expected);
    if (!updated) {
      throw new StorageError('INTERNAL', `volume ${volumeId} changed under this operation (another server process?); call get_volume and retry`);
    }
    return updated;
  }

  private ref(record: VolumeRecord): VolumeRef {
    return { id: record.id, size: record.size, pool_name: record.pool_name, provider_location: record.provider_location };
  }

  private asStorageError(error: unknown, operation: string): StorageError {
    if (isStorageError(error)) return new StorageError(error.code, this.deps.secrets.redact(error.message));
    this.deps.log.error(`backend "${this.id}": ${operation}: unexpected failure: ${describeError(error)}`);
    return new StorageError('INTERNAL', `backend "${this.id}": ${operation} failed unexpectedly: ${this.deps.secrets.redact(describeError(error))}`);
  }
}
