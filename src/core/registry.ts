/**
 * cinderlib's class-level registry of backends: backends by volume_backend_name, and the routes
 * from a volume id to the backend that owns it.
 */

import { Backend } from './backend.js';
import { replayedRecord, type CreateSnapshotInput, type CreateVolumeInput, type VolumeChanges } from './lifecycle.js';
import type { RequestEntry } from '../store/store.js';
import type { SnapshotRecord, SnapshotStatus } from '../model/snapshot.js';
import { CapacityLedger } from './capacity-ledger.js';
import type { LoadedConfig } from '../config/load.js';
import { decodeCursor, encodeCursor } from '../model/cursor.js';
import { StorageError, describeError, isStorageError } from '../base/errors.js';
import { KeyedMutex } from '../base/locks.js';
import type { Logger } from '../base/log.js';
import { hostname } from 'node:os';
import { hostAttachers, thisHostConnector } from './attach/index.js';
import { AuditLog } from './audit.js';
import { metrics } from '../base/metrics.js';
import { dataDir } from '../base/paths.js';
import { openVolumeStore } from '../store/index.js';
import { MemoryVolumeStore } from '../store/memory.js';
import type { SharedCoordination, VolumeStore } from '../store/store.js';
import type { SecretRegistry } from '../base/secrets.js';
import type { ConnectionRecord } from '../model/connection.js';
import type { Connector } from '../../drivers/kit/types.js';
import type { VolumeRecord, VolumeStatus } from '../model/volume.js';
import type { SerializationSource } from '../serialization/dump.js';
import { dryRunAnswer, type DryRunAnswer } from './dry-run.js';
import type { UnmanagedVolume } from './adoption.js';

export interface ListVolumesInput {
  backend?: string;
  status?: VolumeStatus;
  /** Case-insensitive substring of the name. */
  name?: string;
  limit: number;
  cursor?: string;
}

/** How long list_backends waits for backends still starting before answering with what is known. */
const LIST_GRACE_MS = 500;

export interface ListSnapshotsInput {
  backend?: string;
  volume_id?: string;
  status?: SnapshotStatus;
  /** Case-insensitive substring of the name. */
  name?: string;
  limit: number;
  cursor?: string;
}

/** The request_id entry of a call, fingerprinted by its arguments (request_id itself left out). */
function requestEntry(requestId: string | undefined, tool: string, kind: RequestEntry['object_kind'], args: Record<string, unknown>): RequestEntry | undefined {
  if (requestId === undefined) return undefined;
  const { request_id: _id, dry_run: _dryRun, ...rest } = args;
  const fingerprint = JSON.stringify(canonical(rest));
  return { request_id: requestId, tool, fingerprint, object_kind: kind, object_id: '', created_at: new Date().toISOString() };
}

/** Objects with their keys sorted at every depth and undefined values dropped: one spelling per set of arguments. */
function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, child]) => child !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([key, child]) => [key, canonical(child)]),
    );
  }
  return value;
}

/** A dry run of a call that repeats a request_id: the real call would answer what the first one made. */
function replayPlan(id: string, kind: 'volume' | 'snapshot' | 'connection'): DryRunAnswer {
  return dryRunAnswer({ action: 'none', reason: `request_id already made ${kind} ${id}: the call would answer it`, [`${kind}_id`]: id });
}

export interface ListConnectionsInput {
  backend?: string;
  volume_id?: string;
  limit: number;
  cursor?: string;
}

export interface BackendSummary {
  id: string;
  volume_driver: string;
  initialized: boolean;
  config: Record<string, unknown>;
  pool_names: string[];
  capabilities?: { snapshots: boolean; clones: boolean; exports: boolean };
  initializing?: boolean;
  error?: string;
  next_retry_at?: string;
}

/** The server must not start: its shared store is unreachable, or another live server has its identity. */
export class StartupRefusal extends Error {
  override readonly name = 'StartupRefusal';
}

export class BackendRegistry {
  private readonly backends = new Map<string, Backend>();

  /** Why the config file cannot be used at all (then no backend is served); see LoadedConfig.error. */
  readonly configError?: string;

  /** This server's identity in the metadata store: global.host, else hostname and data directory. */
  readonly serverId: string;
  /** cinderlib's cfg.CONF.host, in dumps' `host` fields. */
  private readonly cinderHost: string;
  /** Every mutating call, refused or not (src/audit.ts). */
  readonly audit: AuditLog;
  private readonly leaseMs: number;
  private leaseTimer?: NodeJS.Timeout;
  private stopMetrics?: () => void;

  private constructor(
    config: LoadedConfig,
    private readonly store: VolumeStore,
    private readonly secrets: SecretRegistry,
    private readonly log: Logger,
    serving: boolean,
  ) {
    this.serverId = config.global.host ?? `${hostname()}:${dataDir()}`;
    this.cinderHost = config.global.host ?? hostname();
    this.audit = new AuditLog(store, this.serverId, secrets, log, config.global.auditLog, config.global.auditRotation);
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
      serving,
      attachers: hostAttachers(config.global.rootHelper),
      ownConnector: thisHostConnector,
    };
    this.configError = config.error;
    for (const spec of config.backends) this.backends.set(spec.name, new Backend(spec, deps));
  }

  /** Opens the metadata store, surfaces interrupted operations and starts every backend's setup. */
  /**
   * `checkOnly` (cinderlib-mcp check): backends initialize against a throw-away memory store and
   * take nothing a running server holds for its life.
   */
  static async open(config: LoadedConfig, secrets: SecretRegistry, log: Logger, checkOnly = false): Promise<BackendRegistry> {
    const serving = !checkOnly;
    if (config.error) {
      log.error(`config error: ${config.error}`);
      return new BackendRegistry(config, new MemoryVolumeStore(), secrets, log, serving);
    }
    let volumeStore: VolumeStore;
    try {
      // The real store is left alone when checking: a running server may be mid-operation on it.
      volumeStore = checkOnly ? new MemoryVolumeStore() : await openVolumeStore(config.global.persistence, { log: log.child('metadata-store') });
    } catch (error) {
      // A shared store (PostgreSQL) that cannot be reached at start-up stops the server: it would serve nothing.
      if (config.global.persistence.storage === 'db' && 'engine' in config.global.persistence) {
        throw new StartupRefusal(isStorageError(error) ? error.message : `the metadata store cannot be opened: ${secrets.redact(describeError(error))}`);
      }
      if (isStorageError(error)) throw error;
      throw new StorageError('BACKEND_UNAVAILABLE', `the metadata store cannot be opened: ${secrets.redact(describeError(error))}; fix persistence_config and restart the server`);
    }
    for (const warning of config.warnings) log.warn(warning);
    const registry = new BackendRegistry(config, volumeStore, secrets, log, serving);
    if (volumeStore.shared) {
      try {
        await registry.joinSharedStore(volumeStore.shared);
      } catch (error) {
        await volumeStore.close().catch(() => undefined);
        throw error instanceof StartupRefusal ? error : new StartupRefusal(`cannot register this server in ${volumeStore.description}: ${secrets.redact(describeError(error))}`);
      }
    }
    await registry.recoverInterrupted(true);
    registry.keepLeases();
    if (serving) registry.stopMetrics = metrics.collect(() => registry.metricSamples());
    for (const backend of registry.backends.values()) void backend.initialize();
    return registry;
  }

  /**
   * Marks as crashed the operations this server left under way before a restart, and those of a
   * server that stopped renewing its leases; a live server's operations are left alone.
   */
  private async recoverInterrupted(includeOwn: boolean): Promise<void> {
    const surfaced = await this.store.surfaceInterrupted({ owner: this.serverId, now: new Date().toISOString(), includeOwn }, (record, kind) => {
      const who = record.owner && record.owner !== this.serverId ? `server ${record.owner} stopped renewing its lease` : 'the server stopped';
      if (kind === 'connection') {
        const step = record.status === 'attached' ? 'disconnecting' : 'connecting';
        return `interrupted while ${step}: ${who} before the array or target answered; the export may be partly in place. disconnect_volume removes what is left (and the connection)`;
      }
      if (record.failed_operation === 'manage') {
        return `interrupted while adopting an array volume: ${who} before the array answered; it may be named as before or volume-${record.id} now. delete_volume forgets this record and leaves that array volume as it is; list_unmanaged then shows it, and manage_volume adopts it again`;
      }
      return `interrupted while ${record.status}: ${who} before the array answered; the array may or may not hold ${kind} ${record.id}. delete_${kind} cleans up both`;
    });
    for (const record of surfaced.volumes) this.log.warn(`volume ${record.id} on backend "${record.backend}" was left "${record.status_reason}"`);
    for (const record of surfaced.snapshots) this.log.warn(`snapshot ${record.id} on backend "${record.backend}" was left "${record.status_reason}"`);
    for (const record of surfaced.connections) this.log.warn(`connection ${record.id} of volume ${record.volume_id} was left "${record.status_reason}"`);
    // Another server's, found while serving: resolved here at once (a backend still starting does it when ready).
    for (const name of new Set(surfaced.connections.map((record) => record.backend))) {
      const backend = this.backends.get(name);
      if (backend?.initialized)
        void backend.connections.resolveInterrupted().catch((error: unknown) => this.log.warn(`resolving interrupted connections of "${name}": ${describeError(error)}`));
    }
  }

  /** While the server lives it renews its operations' leases, and recovers those of servers that died. */
  private keepLeases(): void {
    const every = Math.max(1000, Math.floor(this.leaseMs / 3));
    this.leaseTimer = setInterval(() => {
      void (async () => {
        await this.store.renewLeases(this.serverId, this.leaseUntil());
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
        ...(backend.capabilities ? { capabilities: backend.capabilities } : {}),
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
    const record = await this.store.volumes.get(volumeId);
    if (!record) throw new StorageError('NOT_FOUND', `volume ${volumeId} does not exist; list_volumes shows the volumes there are`);
    return record;
  }

  /** A page of volumes from the metadata store (never the array), in creation order. */
  async listVolumes(input: ListVolumesInput): Promise<{ volumes: VolumeRecord[]; nextCursor?: string }> {
    const filters = { backend: input.backend, status: input.status, name: input.name };
    const { records, nextCursor } = await this.page('list_volumes', input, filters, (query) => this.store.volumes.list(query));
    return { volumes: records, nextCursor };
  }

  /**
   * A plain volume on `backendName`, or one made from a snapshot or cloned from a volume (then on
   * the source's backend; naming another is INVALID_ARGUMENT). With a request_id, a repeat of the
   * same call answers what the first made.
   */
  async createVolume(backendName: string | undefined, input: CreateVolumeInput, requestArguments: Record<string, unknown> = {}, dryRun = false): Promise<VolumeRecord | DryRunAnswer> {
    this.requireUsableConfig();
    if (input.snapshot_id !== undefined && input.source_volume_id !== undefined) {
      throw new StorageError('INVALID_ARGUMENT', 'create_volume takes at most one of snapshot_id and source_volume_id');
    }
    const sourceBackend =
      input.snapshot_id !== undefined
        ? (await this.getSnapshot(input.snapshot_id)).backend
        : input.source_volume_id !== undefined
          ? (await this.getVolume(input.source_volume_id)).backend
          : undefined;
    if (sourceBackend !== undefined && backendName !== undefined && backendName !== sourceBackend) {
      throw new StorageError(
        'INVALID_ARGUMENT',
        `the source is on backend "${sourceBackend}", not "${backendName}": a volume made from a snapshot or a clone lives on its source's backend; omit backend or pass "${sourceBackend}"`,
      );
    }
    const target = sourceBackend ?? backendName;
    if (target === undefined) {
      throw new StorageError(
        'INVALID_ARGUMENT',
        `create_volume: backend is required (known backends: ${[...this.backends.keys()].join(', ')}), unless snapshot_id or source_volume_id names what to copy`,
      );
    }
    // A backend the caller named is a typo when unknown (NOT_FOUND, listing them); a source's may have left the config.
    const backend = sourceBackend === undefined ? this.get(target) : this.backendOf(target, 'the source');
    const request = requestEntry(input.request_id, 'create_volume', 'volume', requestArguments);
    const replay = await backend.lifecycle.replayIfRepeated(request);
    if (replay) return dryRun ? replayPlan(replay.record.id, 'volume') : replayedRecord(replay, 'volume');
    return dryRun ? backend.lifecycle.planCreateVolume(input) : backend.lifecycle.createVolume(input, request);
  }

  async extendVolume(volumeId: string, newSize: number, dryRun = false): Promise<VolumeRecord | DryRunAnswer> {
    const lifecycle = (await this.owner(volumeId)).lifecycle;
    return dryRun ? lifecycle.planExtendVolume(volumeId, newSize) : lifecycle.extendVolume(volumeId, newSize);
  }

  /** Cinder's get_manageable_volumes: array volumes no record of the backend knows. */
  async listUnmanaged(backendName: string, limit: number, cursor?: string): Promise<{ volumes: UnmanagedVolume[]; nextCursor?: string }> {
    return this.get(backendName).adoption.listUnmanaged(limit, cursor);
  }

  /** Cinder's manage_existing. */
  async manageVolume(backendName: string, sourceName: string, name: string | undefined, dryRun = false): Promise<VolumeRecord | DryRunAnswer> {
    return this.get(backendName).adoption.manage(sourceName, name, dryRun);
  }

  /** Cinder's unmanage: forgets the volume, leaving the array as it is. */
  async unmanageVolume(volumeId: string, dryRun = false): Promise<{ volume_id: string; unmanaged: true } | DryRunAnswer> {
    return (await this.owner(volumeId)).adoption.unmanage(volumeId, dryRun);
  }

  /** Cinder's revert_to_snapshot, on the volume's backend. */
  async revertToSnapshot(volumeId: string, snapshotId: string, dryRun = false): Promise<VolumeRecord | DryRunAnswer> {
    const lifecycle = (await this.owner(volumeId)).lifecycle;
    return dryRun ? lifecycle.planRevertToSnapshot(volumeId, snapshotId) : lifecycle.revertToSnapshot(volumeId, snapshotId);
  }

  /** Metadata only: name, description, bootable. */
  async updateVolume(volumeId: string, changes: VolumeChanges, dryRun = false): Promise<VolumeRecord | DryRunAnswer> {
    const lifecycle = (await this.owner(volumeId)).lifecycle;
    return dryRun ? lifecycle.planUpdateVolume(volumeId, changes) : lifecycle.updateVolume(volumeId, changes);
  }

  async deleteVolume(volumeId: string, cascade = false, dryRun = false): Promise<{ snapshotsDeleted: string[] } | DryRunAnswer> {
    const lifecycle = (await this.owner(volumeId)).lifecycle;
    return dryRun ? lifecycle.planDeleteVolume(volumeId, cascade) : lifecycle.deleteVolume(volumeId, cascade);
  }

  async getSnapshot(snapshotId: string): Promise<SnapshotRecord> {
    this.requireUsableConfig();
    const record = await this.store.snapshots.get(snapshotId);
    if (!record) throw new StorageError('NOT_FOUND', `snapshot ${snapshotId} does not exist; list_snapshots shows the snapshots there are`);
    return record;
  }

  /** A page of snapshots from the metadata store (never the array), in creation order. */
  async listSnapshots(input: ListSnapshotsInput): Promise<{ snapshots: SnapshotRecord[]; nextCursor?: string }> {
    const filters = { backend: input.backend, volume_id: input.volume_id, status: input.status, name: input.name };
    const { records, nextCursor } = await this.page('list_snapshots', input, filters, (query) => this.store.snapshots.list(query));
    return { snapshots: records, nextCursor };
  }

  async createSnapshot(volumeId: string, input: CreateSnapshotInput, requestArguments: Record<string, unknown> = {}, dryRun = false): Promise<SnapshotRecord | DryRunAnswer> {
    const backend = await this.owner(volumeId);
    const request = requestEntry(input.request_id, 'create_snapshot', 'snapshot', requestArguments);
    const replay = await backend.lifecycle.replayIfRepeated(request);
    if (replay) return dryRun ? replayPlan(replay.record.id, 'snapshot') : replayedRecord(replay, 'snapshot');
    return dryRun ? backend.lifecycle.planCreateSnapshot(volumeId, input) : backend.lifecycle.createSnapshot(volumeId, input, request);
  }

  async deleteSnapshot(snapshotId: string, dryRun = false): Promise<void | DryRunAnswer> {
    const snapshot = await this.getSnapshot(snapshotId);
    const lifecycle = this.backendOf(snapshot.backend, `snapshot ${snapshotId}`).lifecycle;
    return dryRun ? lifecycle.planDeleteSnapshot(snapshotId) : lifecycle.deleteSnapshot(snapshotId);
  }

  /** Cinder's validate_connector on a backend: the connector keys its protocol needs. */
  async validateConnector(backendName: string, connector: Connector): Promise<void> {
    await this.get(backendName).connections.validateConnector(connector);
  }

  async getConnection(connectionId: string): Promise<ConnectionRecord> {
    this.requireUsableConfig();
    const record = await this.store.connections.get(connectionId);
    if (!record) throw new StorageError('NOT_FOUND', `connection ${connectionId} does not exist; list_connections shows the connections there are`);
    return record;
  }

  /** A page of connections from the metadata store, in creation order. */
  async listConnections(input: ListConnectionsInput): Promise<{ connections: ConnectionRecord[]; nextCursor?: string }> {
    const { records, nextCursor } = await this.page('list_connections', input, { backend: input.backend, volume_id: input.volume_id }, (query) => this.store.connections.list(query));
    return { connections: records, nextCursor };
  }

  async connectVolume(
    volumeId: string,
    connector: Connector,
    requestId: string | undefined,
    requestArguments: Record<string, unknown>,
    dryRun = false,
  ): Promise<ConnectionRecord | DryRunAnswer> {
    const backend = await this.owner(volumeId);
    const request = requestEntry(requestId, 'connect_volume', 'connection', requestArguments);
    const replay = await backend.lifecycle.replayIfRepeated(request);
    if (replay) return dryRun ? replayPlan(replay.record.id, 'connection') : replayedRecord(replay, 'connection');
    return dryRun ? backend.connections.planConnect(volumeId, connector) : backend.connections.connect(volumeId, connector, request);
  }

  async attachVolume(volumeId: string, dryRun = false): Promise<ConnectionRecord | DryRunAnswer> {
    const connections = (await this.owner(volumeId)).connections;
    return dryRun ? connections.planAttach(volumeId) : connections.attach(volumeId);
  }

  async disconnectVolume(connectionId: string, force: boolean, dryRun = false): Promise<void | DryRunAnswer> {
    const connection = await this.getConnection(connectionId);
    const connections = this.backendOf(connection.backend, `connection ${connectionId}`).connections;
    return dryRun ? connections.planDisconnect(connectionId, force) : connections.disconnect(connectionId, force);
  }

  async detachVolume(connectionId: string, dryRun = false): Promise<void | DryRunAnswer> {
    const connection = await this.getConnection(connectionId);
    const connections = this.backendOf(connection.backend, `connection ${connectionId}`).connections;
    return dryRun ? connections.planDetach(connectionId) : connections.detach(connectionId);
  }

  /** What cinderlib's JSON of every object is made from (dump, and the MCP resources built on it). */
  serializationSource(): SerializationSource {
    this.requireUsableConfig();
    return {
      store: this.store,
      secrets: this.secrets,
      backends: () => this.list().map((backend) => ({ id: backend.id, config: backend.config() })),
      dumper: { store: this.store, secrets: this.secrets, context: { host: this.cinderHost } },
    };
  }

  /** Why the metadata store does not answer now, or undefined when it does (for /healthz). */
  async storeHealth(): Promise<string | undefined> {
    try {
      await this.store.ping?.();
      return undefined;
    } catch (error) {
      return this.secrets.redact(describeError(error));
    }
  }

  /** Masks secret-named keys (CHAP passwords) and every registered secret, for answers. */
  mask<T>(value: T): T {
    return this.secrets.maskOptions(value);
  }

  /** Backends up or down, and each pool's capacity from the stats last read (never asking an array for a scrape). */
  private metricSamples(): Array<{ name: string; help: string; labels: Record<string, string>; value: number }> {
    const samples: Array<{ name: string; help: string; labels: Record<string, string>; value: number }> = [];
    const UP_HELP = 'Whether the backend is initialized and serving (1) or not (0).';
    const CAPACITY_HELP = 'Capacity of a pool in GiB from the stats last read: kind="total", "free" or "provisioned".';
    for (const backend of this.backends.values()) {
      samples.push({ name: 'cinderlib_mcp_backend_up', help: UP_HELP, labels: { backend: backend.id }, value: backend.initialized ? 1 : 0 });
      for (const pool of backend.lastPools) {
        const figures: Array<[string, unknown]> = [
          ['total', pool.total_capacity_gb],
          ['free', pool.free_capacity_gb],
          ['provisioned', pool.provisioned_capacity_gb ?? pool.allocated_capacity_gb],
        ];
        for (const [kind, value] of figures) {
          if (typeof value === 'number')
            samples.push({ name: 'cinderlib_mcp_pool_capacity_gb', help: CAPACITY_HELP, labels: { backend: backend.id, pool: pool.pool_name, kind }, value });
        }
      }
    }
    return samples;
  }

  async close(): Promise<void> {
    this.stopMetrics?.();
    clearInterval(this.leaseTimer);
    await Promise.all(this.list().map((backend) => backend.close()));
    await this.store.shared?.leave(this.serverId).catch((error: unknown) => this.log.warn(`leaving the shared store: ${describeError(error)}`));
    await this.store.close();
  }

  /**
   * One live server per identity on a shared store: a twin would take this one's operations for
   * its own. Liveness is the database session holding the identity, so an earlier run killed
   * before it could leave (kill -9, even one left a zombie) has already given it up.
   */
  private async joinSharedStore(shared: SharedCoordination): Promise<void> {
    const description = `pid ${process.pid} on ${hostname()} since ${new Date().toISOString()}`;
    const joined = await shared.join(this.serverId, description, this.leaseUntil());
    if (joined.joined) return;
    throw new StartupRefusal(
      `another live server with identity ${this.serverId} (${joined.holder}) holds the metadata store ${this.store.description}: its database session is open; give each server its own global.host`,
    );
  }

  /** Until when this server's claims hold unless renewed. */
  private leaseUntil(): string {
    return new Date(Date.now() + this.leaseMs).toISOString();
  }

  /** A page of `list` from the metadata store (never the array), in creation order, with an opaque cursor bound to its filters. */
  private async page<F extends { backend?: string }, R>(
    list: string,
    input: { cursor?: string; limit: number },
    filters: F,
    fetch: (query: F & { after?: number; limit: number }) => Promise<{ records: R[]; nextAfter?: number }>,
  ): Promise<{ records: R[]; nextCursor?: string }> {
    this.requireUsableConfig();
    if (filters.backend !== undefined) this.get(filters.backend);
    const after = input.cursor ? decodeCursor(input.cursor, list, filters) : undefined;
    const page = await fetch({ ...filters, after, limit: input.limit });
    return { records: page.records, nextCursor: page.nextAfter !== undefined ? encodeCursor(list, page.nextAfter, filters) : undefined };
  }

  private requireUsableConfig(): void {
    if (this.configError) {
      throw new StorageError(
        'BACKEND_UNAVAILABLE',
        `the server's config cannot be used, so it serves no backend: ${this.configError}. Fix the file and restart the server (cinderlib-mcp check --config FILE checks it)`,
      );
    }
  }

  private async owner(volumeId: string): Promise<Backend> {
    const record = await this.getVolume(volumeId);
    return this.backendOf(record.backend, `volume ${volumeId}`);
  }

  /** The backend an object lives on, which may have left the config since. */
  private backendOf(name: string, what: string): Backend {
    const backend = this.backends.get(name);
    if (!backend) {
      throw new StorageError('BACKEND_UNAVAILABLE', `${what} belongs to backend "${name}", which is not in the current config; add it back to manage it`);
    }
    return backend;
  }
}
