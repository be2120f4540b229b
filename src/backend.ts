import { randomUUID } from 'node:crypto';
import { DEFAULT_VOLUME_DRIVER, findDriver, knownDriverNames } from '../drivers/catalog.js';
import type { BackendStats, PoolStats, VolumeDriver, VolumeRef } from '../drivers/types.js';
import { checkCapacity } from './capacity.js';
import type { CapacityLedger, Reservation } from './capacity-ledger.js';
import { ConfigError } from './config/errors.js';
import type { BackendSpec } from './config/load.js';
import { readCoreOptions, validateDriverOptions, type CoreOptions } from './driver-options.js';
import { StorageError, describeError, isStorageError } from './errors.js';
import { KeyedMutex, SingleFlight } from './locks.js';
import { waitWithProgress } from './progress.js';
import { TombstoneKeeper } from './tombstones.js';
import type { Logger } from './log.js';
import type { VolumePatch, VolumeStore } from './persistence/store.js';
import type { SecretRegistry } from './secrets.js';
import { TRANSITIONAL_STATUSES, type VolumeRecord } from './volume.js';

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
  /** Shared by every backend of the registry, so backends drawing on one space see each other. */
  capacity: CapacityLedger;
  /** This server's identity, written on every record while an operation on it is under way. */
  serverId: string;
  /** How long such a claim holds unless renewed (the registry renews it while the server lives). */
  leaseMs: number;
}

export interface CreateVolumeInput {
  size: number;
  name?: string;
  description?: string;
  bootable?: boolean;
  pool_name?: string;
}

type InitState =
  | { phase: 'initializing' }
  | { phase: 'ready' }
  | { phase: 'failed'; reason: string; failures: number; nextTryAt: number };

/** A stats answer and the ledger position it was taken at, so later operations can be added to it. */
interface StatsSnapshot {
  stats: BackendStats;
  seq: number;
}

/** The longest wait between two initialization attempts of a failed backend. */
const MAX_RETRY_INTERVAL_MS = 5 * 60_000;

export class Backend {
  readonly id: string;
  readonly volumeDriver: string;
  private driver?: VolumeDriver;
  private state: InitState = { phase: 'initializing' };
  private attempt?: Promise<void>;
  private attemptCount = 0;
  private readonly core: CoreOptions | { error: string };
  private cachedStats?: StatsSnapshot;
  private statsGeneration = 0;
  private readonly statsFlight = new SingleFlight<StatsSnapshot>();
  /** Pool names of the last stats seen, kept through cache invalidation so list_backends never waits. */
  private lastPoolNames: string[] = [];
  private driverNotes: string[] = [];
  private tombstones?: TombstoneKeeper;
  readonly warnings: string[] = [];

  constructor(
    private readonly spec: BackendSpec,
    private readonly deps: BackendDependencies,
  ) {
    this.id = spec.name;
    const configured = spec.options.volume_driver;
    this.volumeDriver = typeof configured === 'string' && configured.trim() ? configured.trim() : DEFAULT_VOLUME_DRIVER;
    this.core = readCoreOptions(spec, deps.secrets);
  }

  get initialized(): boolean {
    return this.state.phase === 'ready';
  }

  /** True while an initialization attempt runs (at start-up, or a retry). */
  get initializing(): boolean {
    return this.attempt !== undefined;
  }

  /** Why the backend is not serving (the last attempt's reason); undefined once initialized. */
  get error(): string | undefined {
    return this.state.phase === 'failed' ? this.state.reason : undefined;
  }

  /** When a failed backend will be tried again on its next call (ISO 8601); never for a config problem. */
  get nextRetryAt(): string | undefined {
    if (this.state.phase !== 'failed' || this.attempt || !Number.isFinite(this.state.nextTryAt)) return undefined;
    return new Date(this.state.nextTryAt).toISOString();
  }

  get notes(): string[] {
    return this.driverNotes;
  }

  /** Pool names as last seen, without asking the array (empty until stats were first read). */
  get knownPoolNames(): string[] {
    return this.lastPoolNames;
  }

  /**
   * Starts (or joins) an initialization attempt. A failed backend is tried again once its back-off
   * has passed, or at once when `force` (get_stats refresh) asks. Resolves when the attempt ends.
   */
  initialize(force = false): Promise<void> {
    if (this.attempt) return this.attempt;
    if (this.state.phase === 'ready') return Promise.resolve();
    if (this.state.phase === 'failed' && (!Number.isFinite(this.state.nextTryAt) || (!force && Date.now() < this.state.nextTryAt))) {
      return Promise.resolve();
    }
    this.attempt = this.runAttempt().finally(() => (this.attempt = undefined));
    return this.attempt;
  }

  /** Pool names, reading the stats once if they were never read; never throws. */
  async poolNamesSoon(): Promise<string[]> {
    if (this.initialized && this.lastPoolNames.length === 0) await this.snapshot(false).catch(() => undefined);
    return this.lastPoolNames;
  }

  /** Resolves when the backend is serving or its current attempt has failed; never retries. */
  async settled(): Promise<void> {
    if (this.state.phase === 'initializing' && !this.attempt) this.initialize();
    await this.attempt;
  }

  /** cinderlib's Backend.config: the name alone, or every option with secrets masked. */
  config(): Record<string, unknown> {
    if (!this.deps.outputAllBackendInfo) return { volume_backend_name: this.id };
    // Masked from the config's own object: the registry knows which of its values came from ${env:}.
    const options = this.deps.secrets.maskOptions(this.spec.options);
    // The driver in use (Cinder's default when unset); a configured value keeps its masking.
    return { ...options, volume_driver: this.spec.options.volume_driver ? options.volume_driver : this.volumeDriver };
  }

  /** Cached stats; `refresh` asks the array again (and retries a failed backend at once). */
  async stats(refresh = false): Promise<BackendStats> {
    return (await this.snapshot(refresh)).stats;
  }

  /** Pool names from the stats (cached unless none were read yet). */
  async poolNames(): Promise<string[]> {
    return (await this.stats(false)).pools.map((pool) => pool.pool_name);
  }

  async createVolume(input: CreateVolumeInput): Promise<VolumeRecord> {
    const driver = await this.ready();
    const { pool, reservation } = await this.reserveCapacity(input.pool_name, input.size, (room) =>
      `a ${input.size} GiB volume does not fit in backend "${this.id}" pool "${input.pool_name ?? room.pool}": ${room.text}; ask for at most ${Math.floor(room.gb)} GiB or free space first`,
    );
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
      ...this.claim(),
    };
    // Intent first: a crash from here on leaves a record that start-up surfaces, never an unknown array volume.
    if (!(await this.deps.store.insert(record))) {
      reservation.release();
      throw new StorageError('INTERNAL', `volume id ${record.id} already exists in the metadata store`);
    }
    return this.settle(reservation, () =>
      this.deps.volumeLocks.run(record.id, async () => {
        try {
          const created = await driver.createVolume({ ...this.ref(record), name: record.name, description: record.description, bootable: record.bootable });
          return await this.recordOutcome(record.id, 'create', { status: 'available', status_reason: null, provider_location: created?.provider_location ?? null, failed_operation: null });
        } catch (error) {
          if (error instanceof UnrecordedOutcome) throw error.failure;
          const failure = this.asStorageError(error, `create volume ${record.id}`);
          await this.recordOutcome(record.id, 'create', { status: 'error', status_reason: `create failed: ${failure.message}`, failed_operation: 'create' });
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
      const record = await this.requireVolume(volumeId);
      if (newSize < record.size) {
        throw new StorageError(
          'INVALID_ARGUMENT',
          `new_size ${newSize} GiB is smaller than volume ${volumeId}'s ${record.size} GiB; volumes cannot shrink, pass a new_size above ${record.size}`,
        );
      }
      this.requireStatus(record, ['available'], 'extended');
      if (newSize === record.size) return record; // already there: extending is idempotent
      const growth = newSize - record.size;
      const { reservation } = await this.reserveCapacity(record.pool_name, growth, (room) =>
        `growing volume ${volumeId} by ${growth} GiB (to ${newSize} GiB) does not fit in backend "${this.id}" pool "${record.pool_name}": ${room.text}`,
      );
      return this.settle(reservation, async () => {
        await this.transition(volumeId, { status: 'extending' }, ['available']);
        try {
          await driver.extendVolume(this.ref(record), newSize);
          return await this.recordOutcome(volumeId, 'extend', { status: 'available', size: newSize, status_reason: null, failed_operation: null });
        } catch (error) {
          if (error instanceof UnrecordedOutcome) throw error.failure;
          const failure = this.asStorageError(error, `extend volume ${volumeId}`);
          // As Cinder's error_extending: the array's state is unknown, so the volume is not offered as usable.
          await this.recordOutcome(volumeId, 'extend', { status: 'error', status_reason: `extend to ${newSize} GiB failed: ${failure.message}`, failed_operation: 'extend' });
          throw failure;
        }
      });
    });
  }

  async deleteVolume(volumeId: string): Promise<void> {
    const driver = await this.ready();
    await this.deps.volumeLocks.run(volumeId, async () => {
      const record = await this.requireVolume(volumeId);
      this.requireStatus(record, ['available', 'error'], 'deleted');
      await this.transition(volumeId, { status: 'deleting' }, ['available', 'error']);
      // A create that never confirmed stays unconfirmed through a failed delete.
      const failedOperation = record.failed_operation === 'create' ? 'create' : 'delete';
      try {
        await driver.deleteVolume(this.ref(record));
      } catch (error) {
        const failure = this.asStorageError(error, `delete volume ${volumeId}`);
        await this.recordOutcome(volumeId, 'delete', { status: 'error', status_reason: `delete failed: ${failure.message}`, failed_operation: failedOperation });
        throw failure;
      }
      // "Not on the array" is not "gone" for a create that may still finish there: re-check later.
      if (record.failed_operation === 'create') await this.tombstones!.bury(record);
      else await this.deps.store.remove(volumeId);
      this.invalidateStats();
    });
  }

  async close(): Promise<void> {
    this.tombstones?.close();
    await this.driver?.close().catch((error: unknown) => this.deps.log.warn(`closing backend "${this.id}": ${describeError(error)}`));
  }

  private async runAttempt(): Promise<void> {
    const attempt = ++this.attemptCount;
    const timeoutSeconds = 'error' in this.core ? 0 : this.core.backend_init_timeout;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_resolve, reject) => {
      if (timeoutSeconds > 0) {
        timer = setTimeout(
          () =>
            reject(
              new StorageError(
                'BACKEND_UNAVAILABLE',
                `the array did not finish answering within ${timeoutSeconds} s (backend_init_timeout); it may accept connections without answering, or be slow: check it, or raise backend_init_timeout`,
              ),
            ),
          timeoutSeconds * 1000,
        );
      }
    });
    try {
      await Promise.race([this.setUp(), timedOut]);
      this.state = { phase: 'ready' };
      this.deps.log.info(`backend "${this.id}" initialized (${this.volumeDriver})`);
      const driver = this.driver!;
      this.tombstones?.close();
      this.tombstones = new TombstoneKeeper(this.deps.store, this.id, this.deps.log, (volume) => driver.deleteVolume(volume));
      await this.tombstones.resume();
      // As Cinder reads stats right after setup: pool names for list_backends, and the space this
      // backend draws on registered before any backend sharing it checks capacity.
      await this.snapshot(false).catch((error: unknown) => this.deps.log.warn(`backend "${this.id}": first stats failed: ${describeError(error)}`));
    } catch (error) {
      const abandoned = this.driver;
      this.driver = undefined;
      if (abandoned) void abandoned.close().catch(() => undefined);
      const failures = this.state.phase === 'failed' ? this.state.failures + 1 : 1;
      const baseMs = 'error' in this.core ? 5_000 : this.core.backend_init_retry_interval * 1000;
      const waitMs = Math.min(MAX_RETRY_INTERVAL_MS, baseMs * 2 ** (failures - 1));
      const reason = this.deps.secrets.redact(describeError(error));
      // The config does not change while the server runs: trying it again cannot help.
      const permanent = error instanceof ConfigError;
      this.state = { phase: 'failed', reason, failures, nextTryAt: permanent ? Number.POSITIVE_INFINITY : Date.now() + waitMs };
      this.deps.log.warn(
        `backend "${this.id}" not initialized (attempt ${attempt}): ${reason}` +
          (permanent ? '; fix the config and restart the server' : `; next try on demand after ${Math.round(waitMs / 1000)} s`),
      );
    } finally {
      clearTimeout(timer);
    }
  }

  private async setUp(): Promise<void> {
    if (this.spec.error) throw new ConfigError(this.spec.error);
    if ('error' in this.core) throw new ConfigError(this.core.error);
    const entry = findDriver(this.volumeDriver);
    if (!entry) {
      throw new ConfigError(
        `backend "${this.id}": volume_driver "${this.volumeDriver}" is not supported; use one of: ${knownDriverNames().join(', ')}`,
      );
    }
    const definition = await entry.load();
    this.warnings.length = 0;
    const { options, unknown } = validateDriverOptions(this.id, definition, this.spec.options, this.deps.secrets);
    for (const key of unknown) {
      const warning = `backend "${this.id}": option "${key}" is not used by the ${entry.alias} driver; kept as given`;
      this.warnings.push(warning);
      this.deps.log.warn(warning);
    }
    this.driver = definition.create(
      options,
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

  /** The driver, once initialized; waits (with progress) for an attempt under way, retries a failed backend after its back-off. */
  private async ready(force = false): Promise<VolumeDriver> {
    if (this.state.phase !== 'ready') {
      const attempt = this.initialize(force);
      if (this.attempt) await waitWithProgress(`waiting for backend "${this.id}" to initialize`, attempt);
      else await attempt;
    }
    if (this.state.phase === 'ready' && this.driver) return this.driver;
    const next = this.nextRetryAt;
    throw new StorageError(
      'BACKEND_UNAVAILABLE',
      `backend "${this.id}" is not initialized: ${this.error ?? 'still starting'}; ` +
        (next ? `it is tried again on the next call after ${next}, or now with get_stats refresh: true` : 'fix its config and restart the server') +
        ' (cinderlib-mcp check shows every backend\'s state)',
    );
  }

  /** Stats and the ledger position they were taken at; concurrent refreshes share one driver call. */
  private async snapshot(refresh: boolean): Promise<StatsSnapshot> {
    const driver = await this.ready(refresh);
    if (!refresh && this.cachedStats) return this.cachedStats;
    const generation = this.statsGeneration;
    const snapshot = await this.statsFlight.run(async () => {
      const seq = this.deps.capacity.mark();
      const stats = this.normalizeStats(await driver.getStats({ recount: refresh }));
      for (const pool of stats.pools) {
        const domain = this.capacityDomain(pool.pool_name);
        this.deps.capacity.recordSnapshot(domain, this.id, provisionedOf(pool), seq);
        const sharers = this.deps.capacity.sharers(domain, this.id);
        if (sharers.length) pool.capacity_shared_with = sharers;
      }
      return { stats, seq };
    });
    this.lastPoolNames = snapshot.stats.pools.map((pool) => pool.pool_name);
    // A mutation that finished while we were asking makes this answer stale: do not cache it.
    if (generation === this.statsGeneration) this.cachedStats = snapshot;
    return snapshot;
  }

  /**
   * Checks that `sizeGb` fits the pool (counting what the stats cannot show yet) and promises it to
   * the caller in the same tick, so no concurrent request can take the same room.
   */
  private async reserveCapacity(
    poolName: string | undefined,
    sizeGb: number,
    refusal: (room: { pool: string; gb: number; text: string }) => string,
  ): Promise<{ pool: PoolStats; reservation: Reservation }> {
    const { stats, seq } = await this.snapshot(false);
    const pool = this.choosePool(stats, poolName);
    const domain = this.capacityDomain(pool.pool_name);
    const verdict = checkCapacity(pool, sizeGb, this.deps.capacity.claims(domain, this.id, seq));
    if (!verdict.fits) {
      throw new StorageError('OUT_OF_CAPACITY', refusal({ pool: pool.pool_name, gb: verdict.roomGb, text: `${verdict.roomGb} GiB of room left (${verdict.explanation})` }));
    }
    return { pool, reservation: this.deps.capacity.reserve(domain, this.id, sizeGb) };
  }

  private capacityDomain(poolName: string): string {
    return this.driver?.capacityDomain?.(poolName) ?? `backend:${this.id}/${poolName}`;
  }

  private choosePool(stats: BackendStats, poolName: string | undefined): PoolStats {
    const { pools } = stats;
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

  /** Runs a mutation holding capacity; its GiB count as used when it succeeds, and are freed when it fails. */
  private async settle<T>(reservation: Reservation, task: () => Promise<T>): Promise<T> {
    try {
      const result = await task();
      reservation.commit();
      return result;
    } catch (error) {
      reservation.release();
      throw error;
    } finally {
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

  private async requireVolume(volumeId: string): Promise<VolumeRecord> {
    const record = await this.deps.store.get(volumeId);
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

  /**
   * Writes an operation's outcome, trying again briefly when the metadata store refuses. If it
   * still cannot, the running server keeps the volume as `error` in memory (written at the store's
   * next successful write) so it can be seen and deleted, and the caller is told, with the id.
   */
  private async recordOutcome(volumeId: string, operation: 'create' | 'extend' | 'delete', patch: VolumePatch): Promise<VolumeRecord> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.transition(volumeId, patch);
      } catch (error) {
        if (!isStorageError(error) || error.code !== 'BACKEND_UNAVAILABLE') throw error;
        if (attempt < OUTCOME_RETRY_MS.length) {
          await new Promise((resolve) => setTimeout(resolve, OUTCOME_RETRY_MS[attempt]));
          continue;
        }
        const happened = patch.status === 'error' ? `the ${operation} failed (${patch.status_reason})` : `the ${operation} finished on the array`;
        const reason = `${happened}, but the metadata store could not record it (${error.message})`;
        this.deps.store.deferUpdate(volumeId, {
          status: 'error',
          status_reason: `${reason}; delete_volume removes it`,
          failed_operation: operation === 'create' ? 'create' : (patch.failed_operation ?? operation),
          owner: null,
          lease_expires_at: null,
        });
        throw new UnrecordedOutcome(
          new StorageError('BACKEND_UNAVAILABLE', `volume ${volumeId}: ${reason}. It is kept in status "error" for now; once the store takes writes again, delete_volume removes it`),
        );
      }
    }
  }

  /** Marks a record as this server's, for as long as an operation on it is under way. */
  private claim(): Pick<VolumeRecord, 'owner' | 'lease_expires_at'> {
    return { owner: this.deps.serverId, lease_expires_at: new Date(Date.now() + this.deps.leaseMs).toISOString() };
  }

  private async transition(volumeId: string, patch: VolumePatch, expected?: VolumeRecord['status'][]): Promise<VolumeRecord> {
    if (patch.status !== undefined) {
      // Into an operation: this server claims the record; out of it: nobody does.
      patch = { ...patch, ...(TRANSITIONAL_STATUSES.includes(patch.status) ? this.claim() : { owner: null, lease_expires_at: null }) };
    }
    const updated = await this.deps.store.update(volumeId, patch, expected);
    if (!updated) {
      throw new StorageError('INTERNAL', `volume ${volumeId} changed under this operation (another server process?); call get_volume and retry`);
    }
    return updated;
  }

  private ref(record: VolumeRecord): VolumeRef {
    return { id: record.id, size: record.size, pool_name: record.pool_name, provider_location: record.provider_location };
  }

  private asStorageError(error: unknown, operation: string): StorageError {
    if (isStorageError(error)) return new StorageError(error.code, this.deps.secrets.redact(error.message), { cause: error });
    this.deps.log.error(`backend "${this.id}": ${operation}: unexpected failure: ${describeError(error)}`);
    return new StorageError('INTERNAL', `backend "${this.id}": ${operation} failed unexpectedly: ${this.deps.secrets.redact(describeError(error))}`, { cause: error });
  }
}

/** Waits before writing an operation's outcome again, when the metadata store refused it. */
const OUTCOME_RETRY_MS = [100, 500];

/** An outcome the store could not take; carries what the caller must be told. */
class UnrecordedOutcome extends Error {
  constructor(readonly failure: StorageError) {
    super(failure.message);
  }
}

/** What a pool's stats say is already promised to volumes, in GiB. */
function provisionedOf(pool: PoolStats): number {
  return pool.provisioned_capacity_gb ?? pool.allocated_capacity_gb ?? 0;
}
