/**
 * A Backend is cinderlib's Backend: one array configuration, its driver (initialized in the
 * background, retried on demand), cached stats and the capacity they leave. Mutations of its
 * volumes and snapshots go through its lifecycle (src/lifecycle.ts).
 */

import { DEFAULT_VOLUME_DRIVER, findDriver, knownDriverNames } from '../../drivers/catalog.js';
import type { BackendStats, Connector, PoolStats, StatsRequest, VolumeDriver } from '../../drivers/kit/types.js';
import { checkCapacity } from './capacity.js';
import type { CapacityLedger, Reservation } from './capacity-ledger.js';
import { ConfigError } from '../config/errors.js';
import type { BackendSpec } from '../config/load.js';
import { readCoreOptions, validateDriverOptions, type CoreOptions } from '../config/driver-options.js';
import { StorageError, describeError } from '../base/errors.js';
import { KeyedMutex, SingleFlight } from '../base/locks.js';
import { waitWithProgress } from './progress.js';
import { stepDone } from '../base/metrics.js';
import { backendFingerprint, differingOptions } from './backend-identity.js';
import { TombstoneKeeper } from './tombstones.js';
import { VolumeLifecycle } from './lifecycle.js';
import type { HostAttachers } from './attach/attacher.js';
import { ConnectionLifecycle } from './connections.js';
import { VolumeAdoption } from './adoption.js';
import type { Logger } from '../base/log.js';
import type { CapacityHold, HeldIntent, SharedCoordination, VolumeStore } from '../store/store.js';
import type { SecretRegistry } from '../base/secrets.js';

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
  /** False when only checking the config (cinderlib-mcp check): see DriverContext.serving. */
  serving: boolean;
  /** How this host attaches volumes (loop devices, open-iscsi), by driver_volume_type. */
  attachers: HostAttachers;
  /** os-brick's connector properties of this host. */
  ownConnector: () => Promise<Connector>;
}

/** A backend's config as answers and dumps show it (cinderlib's Backend.config): its name alone unless output_all_backend_info. */
export function backendConfigView(spec: BackendSpec, outputAllBackendInfo: boolean, secrets: SecretRegistry): Record<string, unknown> {
  if (!outputAllBackendInfo) return { volume_backend_name: spec.name };
  // Masked from the config's own object: the registry knows which of its values came from ${env:}.
  const options = secrets.maskOptions(spec.options);
  // The driver in use (Cinder's default when unset); a configured value keeps its masking.
  const configured = spec.options.volume_driver;
  return { ...options, volume_driver: typeof configured === 'string' && configured.trim() ? options.volume_driver : DEFAULT_VOLUME_DRIVER };
}

type InitState = { phase: 'initializing' } | { phase: 'ready' } | { phase: 'failed'; reason: string; failures: number; nextTryAt: number };

/** A stats answer and the ledger position it was taken at, so later operations can be added to it. */
interface StatsSnapshot {
  stats: BackendStats;
  seq: number;
  /** When the driver was asked, in this backend's order of asking: an older answer never replaces a newer one. */
  asked: number;
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
  private statsAsked = 0;
  private readonly statsFlight = new SingleFlight<StatsSnapshot>();
  /**
   * On a store several servers share: per capacity domain, the change count (CapacityRoom.changes)
   * that this backend's counts account for. While the domain's count stays there, no other server
   * changed it, and a capacity decision need not count the array anew.
   */
  private readonly seenChanges = new Map<string, number>();
  /**
   * Domains whose last decision here found another server at work (its holds, or changes it made):
   * the next decision counts the array before taking the domain's cluster-wide lock, so the other
   * servers' decisions do not wait for that array call. One decision per domain at a time here.
   */
  private readonly contendedDomains = new Set<string>();
  private readonly decisionTurns = new KeyedMutex();
  /** Pool names of the last stats seen, kept through cache invalidation so list_backends never waits. */
  private lastPoolNames: string[] = [];
  /** The last stats read, kept through cache invalidation: what /metrics shows without asking the array. */
  private lastStats?: BackendStats;
  private driverNotes: string[] = [];
  private tombstones?: TombstoneKeeper;
  private mutations?: VolumeLifecycle;
  private links?: ConnectionLifecycle;
  private adopting?: VolumeAdoption;
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

  /** Pools as last seen, without asking the array (empty until stats were first read). */
  get lastPools(): readonly PoolStats[] {
    return this.lastStats?.pools ?? [];
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
    if (this.state.phase === 'initializing' && !this.attempt) void this.initialize(); // sets this.attempt, awaited below
    await this.attempt;
  }

  /** cinderlib's Backend.config: the name alone, or every option with secrets masked. */
  config(): Record<string, unknown> {
    return backendConfigView(this.spec, this.deps.outputAllBackendInfo, this.deps.secrets);
  }

  /** Cached stats; `refresh` asks the array again (and retries a failed backend at once). */
  async stats(refresh = false): Promise<BackendStats> {
    return (await this.snapshot(refresh)).stats;
  }

  /** Pool names from the stats (cached unless none were read yet). */
  async poolNames(): Promise<string[]> {
    return (await this.stats(false)).pools.map((pool) => pool.pool_name);
  }

  /** The mutations of this backend's volumes and snapshots (src/lifecycle.ts). */
  get lifecycle(): VolumeLifecycle {
    return (this.mutations ??= new VolumeLifecycle(
      {
        id: this.id,
        volumeDriver: this.volumeDriver,
        ready: () => this.ready(),
        reserveCapacity: (poolName, sizeGb, refusal, intent) => this.reserveCapacity(poolName, sizeGb, refusal, intent),
        checkCapacity: (poolName, sizeGb, refusal) => this.checkCapacity(poolName, sizeGb, refusal),
        invalidateStats: (changedCapacity) => this.invalidateStats(changedCapacity),
        tombstones: () => this.tombstones!,
        afterExtend: (volumeId) => this.connections.resizeAttached(volumeId),
      },
      this.lifecycleDependencies(),
    ));
  }

  /** Array volumes no record knows: listing, adopting, forgetting (src/adoption.ts). */
  get adoption(): VolumeAdoption {
    return (this.adopting ??= new VolumeAdoption(
      { id: this.id, volumeDriver: this.volumeDriver, ready: () => this.ready(), checkCapacity: (poolName, sizeGb, refusal) => this.checkCapacity(poolName, sizeGb, refusal) },
      this.lifecycle,
      this.lifecycleDependencies(),
    ));
  }

  /** Connections of this backend's volumes: exports to hosts and attachments here (src/connections.ts). */
  get connections(): ConnectionLifecycle {
    return (this.links ??= new ConnectionLifecycle({ id: this.id, volumeDriver: this.volumeDriver, ready: () => this.ready() }, this.lifecycle, {
      ...this.lifecycleDependencies(),
      attachers: this.deps.attachers,
      ownConnector: this.deps.ownConnector,
    }));
  }

  private lifecycleDependencies() {
    return { store: this.deps.store, secrets: this.deps.secrets, log: this.deps.log, locks: this.deps.volumeLocks, serverId: this.deps.serverId, leaseMs: this.deps.leaseMs };
  }

  /** What the driver can do beyond volumes: the groups it implements (UNSUPPORTED answers the rest). */
  get capabilities(): { snapshots: boolean; clones: boolean; exports: boolean } | undefined {
    const offered = (operations: { unavailable?: string } | undefined) => !!operations && !operations.unavailable;
    return this.driver ? { snapshots: offered(this.driver.snapshots), clones: offered(this.driver.clones), exports: offered(this.driver.exports) } : undefined;
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
      this.tombstones = new TombstoneKeeper(this.deps.store, this.id, this.deps.log, {
        volume: (volume) => driver.deleteVolume(volume),
        snapshot: async (snapshot, volume) => driver.snapshots?.deleteSnapshot(snapshot, volume),
      });
      await this.tombstones.resume();
      // Connections a crash cut short are undone or finished now that the array answers.
      void this.connections.resolveInterrupted().catch((error: unknown) => this.deps.log.warn(`backend "${this.id}": resolving interrupted connections: ${describeError(error)}`));
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
      throw new ConfigError(`backend "${this.id}": volume_driver "${this.volumeDriver}" is not supported; use one of: ${knownDriverNames().join(', ')}`);
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
        serving: this.deps.serving,
        sharedStore: this.deps.store.shared !== undefined,
        // Resolved when a driver asks, by then the backend is ready: the host attaches through the driver's own exports.
        host: {
          cannotAttach: () => this.connections.hostAccess().cannotAttach(),
          attach: (volume) => this.connections.hostAccess().attach(volume),
        },
      },
      this.volumeDriver,
    );
    await this.driver.setup();
    this.driverNotes = this.driver.notes?.() ?? [];
    const shared = this.deps.store.shared;
    if (shared && this.deps.serving) {
      const fingerprint = backendFingerprint(entry.alias, Object.keys(definition.options), options, this.deps.secrets, this.driver.identity?.());
      const verdict = await shared.agreeOnBackend(this.id, this.deps.serverId, fingerprint, differingOptions);
      if (!verdict.agreed) {
        const how = verdict.differing.map((d) => `${d.option} (here ${d.here}, there ${d.there})`).join(', ');
        throw new StorageError(
          'BACKEND_UNAVAILABLE',
          `backend "${this.id}" is configured differently on server ${verdict.server}, which shares this metadata store and serves it: ${verdict.differing.length === 1 ? 'option' : 'options'} ${how}; ` +
            `one volume_backend_name must name one storage on every server: configure it alike on both (or give one of them another name); it is compared again on the next try`,
        );
      }
    }
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
        " (cinderlib-mcp check shows every backend's state)",
    );
  }

  /** Stats and the ledger position they were taken at; concurrent refreshes share one driver call. */
  private async snapshot(refresh: boolean): Promise<StatsSnapshot> {
    const driver = await this.ready(refresh);
    if (!refresh && this.cachedStats) return this.cachedStats;
    const generation = this.statsGeneration;
    return this.keep(await this.statsFlight.run(() => this.readStats(driver, { recount: refresh })), generation);
  }

  /** Asks the driver, and stamps the answer with the ledger's position (see StatsSnapshot). */
  private async readStats(driver: VolumeDriver, request: StatsRequest): Promise<StatsSnapshot> {
    const asked = ++this.statsAsked;
    const seq = this.deps.capacity.mark();
    const stats = this.normalizeStats(await driver.getStats(request));
    for (const pool of stats.pools) {
      const domain = this.capacityDomain(pool.pool_name);
      this.deps.capacity.recordSnapshot(domain, this.id, provisionedOf(pool), seq);
      const sharers = this.deps.capacity.sharers(domain, this.id);
      if (sharers.length) pool.capacity_shared_with = sharers;
    }
    return { stats, seq, asked };
  }

  /** Remembers an answer; caches it unless a mutation finished while it was asked (`generation` moved), which makes it stale. */
  private keep(snapshot: StatsSnapshot, generation: number): StatsSnapshot {
    this.lastPoolNames = snapshot.stats.pools.map((pool) => pool.pool_name);
    this.lastStats = snapshot.stats;
    if (generation === this.statsGeneration && snapshot.asked > (this.cachedStats?.asked ?? 0)) this.cachedStats = snapshot;
    return snapshot;
  }

  /**
   * Stats for a capacity decision on a shared store, under the domain's cluster-wide lock: the
   * cached answer, or this backend's own counts, while no other server changed the domain since
   * this backend last counted; otherwise counted anew. Never joins a stats request already under
   * way: it may have begun before the change this decision must see.
   */
  private async decisionStats(domain: string, changes: number): Promise<StatsSnapshot> {
    const driver = await this.ready();
    if (this.seenChanges.get(domain) === changes) {
      if (this.cachedStats) return this.cachedStats;
      const generation = this.statsGeneration;
      return this.keep(await this.readStats(driver, { unchangedElsewhere: true }), generation);
    }
    // Answers begun before now must not be cached after this count.
    this.dropCachedStats();
    const generation = this.statsGeneration;
    return this.keep(await this.readStats(driver, { recount: true }), generation);
  }

  /**
   * Counts the array now if another server changed the domain since this backend last counted it,
   * outside the domain's lock. Stats read after the count reflect every change it counts; a change
   * after it moves the count, and the decision under the lock then counts again.
   */
  private async countBeforeLocking(shared: SharedCoordination, domain: string): Promise<void> {
    const changes = await shared.capacityChanges(domain);
    if (changes === this.seenChanges.get(domain)) return;
    this.dropCachedStats();
    const generation = this.statsGeneration;
    const snapshot = this.keep(await this.readStats(await this.ready(), { recount: true }), generation);
    // Only stats kept in the cache may stand for this count (an operation that ended meanwhile made them stale).
    if (this.cachedStats === snapshot) this.seenChanges.set(domain, changes);
    stepDone('stats (counted before the lock)');
  }

  /** Remembers that this backend's counts account for the domain's change count `changes` (after its own change, a release). */
  private sawChange(domain: string, before: number | undefined, after: number | undefined): void {
    // Only a count this backend's own change moved by one: any other change may be another server's.
    if (after !== undefined && before !== undefined && this.seenChanges.get(domain) === before && after === before + 1) this.seenChanges.set(domain, after);
  }

  /**
   * Checks that `sizeGb` fits the pool (counting what the stats cannot show yet) and promises it to
   * the caller in the same tick, so no concurrent request can take the same room.
   */
  private async reserveCapacity(
    poolName: string | undefined,
    sizeGb: number,
    refusal: (room: { pool: string; gb: number; text: string }) => string,
    intent?: (pool: PoolStats) => HeldIntent | undefined,
  ): Promise<{ pool: PoolStats; reservation: Reservation; intentWritten?: boolean }> {
    const shared = this.deps.store.shared;
    if (shared) return this.reserveSharedCapacity(shared, poolName, sizeGb, refusal, intent);
    const { stats, seq } = await this.snapshot(false);
    const pool = this.choosePool(stats, poolName);
    const domain = this.capacityDomain(pool.pool_name);
    this.requireRoom(pool, sizeGb, this.deps.capacity.claims(domain, this.id, seq), refusal);
    return { pool, reservation: this.deps.capacity.reserve(domain, this.id, sizeGb) };
  }

  /** reserveCapacity's check on this server's figures, promising nothing (dry runs). */
  private async checkCapacity(poolName: string | undefined, sizeGb: number, refusal: (room: { pool: string; gb: number; text: string }) => string): Promise<PoolStats> {
    const { stats, seq } = await this.snapshot(false);
    const pool = this.choosePool(stats, poolName);
    this.requireRoom(pool, sizeGb, this.deps.capacity.claims(this.capacityDomain(pool.pool_name), this.id, seq), refusal);
    return pool;
  }

  /**
   * Capacity on a store several servers share: decided under the domain's cluster-wide lock, on
   * stats that account for every change another server made to the domain (counted anew when
   * there was one, see decisionStats), counting what other servers' operations under way hold;
   * what this one needs stays held in the store until it ends. So two servers never both promise
   * the last GiB. `intent`, when the operation has one to write now, is written with the hold.
   */
  private async reserveSharedCapacity(
    shared: SharedCoordination,
    poolName: string | undefined,
    sizeGb: number,
    refusal: (room: { pool: string; gb: number; text: string }) => string,
    intent?: (pool: PoolStats) => HeldIntent | undefined,
  ): Promise<{ pool: PoolStats; reservation: Reservation; intentWritten: boolean }> {
    // The pool (so its domain) from the pools already known: stats are read under the lock anyway.
    const known = poolName === undefined ? this.lastPoolNames[0] : this.lastPoolNames.find((name) => name === poolName);
    const domain = this.capacityDomain(known ?? this.choosePool((await this.snapshot(false)).stats, poolName).pool_name);
    stepDone('stats (cached)');
    let chosen!: PoolStats;
    let local: Reservation | undefined;
    let seen: number | undefined;
    let hold: CapacityHold;
    try {
      hold = await this.decisionTurns.run(domain, async () => {
        if (this.contendedDomains.has(domain)) await this.countBeforeLocking(shared, domain);
        return shared.holdCapacity(domain, this.deps.serverId, async ({ heldByOthersGb, changes }) => {
          const unchanged = this.seenChanges.get(domain) === changes;
          if (unchanged && heldByOthersGb === 0) this.contendedDomains.delete(domain);
          else this.contendedDomains.add(domain);
          const fresh = await this.decisionStats(domain, changes);
          this.seenChanges.set(domain, (seen = changes));
          stepDone(unchanged ? 'stats (own counts)' : 'stats (counted anew)');
          chosen = this.choosePool(fresh.stats, poolName);
          const claims = this.deps.capacity.claims(domain, this.id, fresh.seq);
          this.requireRoom(chosen, sizeGb, { ...claims, provisionedGb: claims.provisionedGb + heldByOthersGb, allocatedGb: claims.allocatedGb + heldByOthersGb }, refusal);
          local = this.deps.capacity.reserve(domain, this.id, sizeGb);
          return { gb: sizeGb, intent: intent?.(chosen) };
        });
      });
    } catch (error) {
      // Decided here but never held in the store (it failed to write): nothing is promised.
      local?.release();
      throw error;
    }
    stepDone('capacity hold written');
    const reserved = local!;
    // Sent after the operation's answer has gone out (the next turn of the event loop): nothing waits for it.
    const releaseHold = () =>
      setImmediate(
        () =>
          void hold.release().then(
            (after) => this.sawChange(domain, seen, after),
            (error: unknown) => this.deps.log.warn(`backend "${this.id}": releasing a capacity hold: ${describeError(error)} (it lapses with this server's lease)`),
          ),
      );
    return {
      pool: chosen,
      intentWritten: hold.intentWritten,
      reservation: {
        commit: () => {
          reserved.commit();
          releaseHold();
        },
        release: () => {
          reserved.release();
          releaseHold();
        },
      },
    };
  }

  private requireRoom(pool: PoolStats, sizeGb: number, claims: ReturnType<CapacityLedger['claims']>, refusal: (room: { pool: string; gb: number; text: string }) => string): void {
    const verdict = checkCapacity(pool, sizeGb, claims);
    if (!verdict.fits) {
      throw new StorageError('OUT_OF_CAPACITY', refusal({ pool: pool.pool_name, gb: verdict.roomGb, text: `${verdict.roomGb} GiB of room left (${verdict.explanation})` }));
    }
  }

  private capacityDomain(poolName: string): string {
    return this.driver?.capacityDomain?.(poolName) ?? `backend:${this.id}/${poolName}`;
  }

  private choosePool(stats: BackendStats, poolName: string | undefined): PoolStats {
    const { pools } = stats;
    if (poolName === undefined) return pools[0];
    const pool = pools.find((candidate) => candidate.pool_name === poolName);
    if (!pool) {
      throw new StorageError('INVALID_ARGUMENT', `pool_name "${poolName}" is not a pool of backend "${this.id}"; its pools are: ${pools.map((p) => p.pool_name).join(', ')}`);
    }
    return pool;
  }

  private async invalidateStats(changedCapacity = false): Promise<void> {
    this.dropCachedStats();
    const shared = this.deps.store.shared;
    if (!changedCapacity || !shared) return;
    // Other servers sharing the store learn that the pool changed before the caller is answered:
    // a create sent to another server right after a delete sees the room it left.
    const domains = new Set(this.lastPoolNames.map((pool) => this.capacityDomain(pool)));
    await Promise.all(
      [...domains].map((domain) => {
        const before = this.seenChanges.get(domain);
        return shared.noteCapacityChange(domain).then(
          (after) => this.sawChange(domain, before, after),
          (error: unknown) =>
            this.deps.log.warn(`backend "${this.id}": telling the other servers that ${domain} changed: ${describeError(error)} (they see it with the next change told)`),
        );
      }),
    );
  }

  private dropCachedStats(): void {
    this.statsGeneration++;
    this.cachedStats = undefined;
  }

  private normalizeStats(stats: BackendStats): BackendStats {
    const pools = stats.pools && stats.pools.length > 0 ? stats.pools : [];
    if (pools.length === 0) throw new StorageError('INTERNAL', `backend "${this.id}": the driver reported no pools`);
    return { ...stats, volume_backend_name: this.id, pools };
  }
}

/** What a pool's stats say is already promised to volumes, in GiB. */
function provisionedOf(pool: PoolStats): number {
  return pool.provisioned_capacity_gb ?? pool.allocated_capacity_gb ?? 0;
}
