/**
 * Every mutation of volumes and snapshots, each run by one routine (`mutate`): lock every key it
 * touches, hold the capacity it needs, record its intent, call the driver, record the outcome or
 * the error, free what it held. cinderlib wrote that try/finally once per object; here it is
 * written once, and each operation only says what its steps are.
 */

import { randomUUID } from 'node:crypto';
import type { CreateVolumeRequest, PoolStats, SnapshotOperations, SnapshotRef, VolumeDriver, VolumeRef } from '../../drivers/kit/types.js';
import type { Reservation } from './capacity-ledger.js';
import { StorageError, describeError, isStorageError } from '../base/errors.js';
import { runHoldingAll, type KeyedMutex } from '../base/locks.js';
import type { Logger } from '../base/log.js';
import type { HeldIntent, HeldLocks, RequestEntry, SnapshotPatch, VolumePatch, VolumeStore } from '../store/store.js';
import { outcomeAudit, trackCopy, type OutcomeAudit } from './progress.js';
import { LOCK_WAIT_HELP, LOCK_WAIT_SECONDS, metrics, stepDone, timedOperation } from '../base/metrics.js';
import { dryRunAnswer, type DryRunAnswer } from './dry-run.js';
import type { ConnectionRecord } from '../model/connection.js';
import type { SecretRegistry } from '../base/secrets.js';
import type { SnapshotRecord, SnapshotStatus } from '../model/snapshot.js';
import type { TombstoneKeeper } from './tombstones.js';
import { TRANSITIONAL_STATUSES, type VolumeRecord, type VolumeStatus } from '../model/volume.js';

export interface LifecycleHost {
  readonly id: string;
  readonly volumeDriver: string;
  ready(): Promise<VolumeDriver>;
  /** `intent`: what the operation would write first, which a shared store writes with the capacity hold (`intentWritten`). */
  reserveCapacity(
    poolName: string | undefined,
    sizeGb: number,
    refusal: (room: { pool: string; gb: number; text: string }) => string,
    intent?: (pool: PoolStats) => HeldIntent | undefined,
  ): Promise<{ pool: PoolStats; reservation: Reservation; intentWritten?: boolean }>;
  /** The same check as reserveCapacity, holding nothing (dry runs). */
  checkCapacity(poolName: string | undefined, sizeGb: number, refusal: (room: { pool: string; gb: number; text: string }) => string): Promise<PoolStats>;
  /**
   * After an operation: cached stats are stale. `changedCapacity`: it may have changed what the pool
   * holds without a capacity reservation (a delete frees space), which servers sharing the store are told.
   */
  invalidateStats(changedCapacity: boolean): Promise<void>;
  tombstones(): TombstoneKeeper;
  /** After a volume grew: devices attached on this host take the new size. */
  afterExtend?(volumeId: string, newSizeGb: number): Promise<void>;
}

export interface LifecycleDependencies {
  store: VolumeStore;
  secrets: SecretRegistry;
  log: Logger;
  locks: KeyedMutex;
  serverId: string;
  leaseMs: number;
}

export interface CreateVolumeInput {
  size?: number;
  name?: string;
  description?: string;
  bootable?: boolean;
  pool_name?: string;
  snapshot_id?: string;
  source_volume_id?: string;
  request_id?: string;
}

/** update_volume's fields: metadata the array never sees. */
export interface VolumeChanges {
  name?: string;
  description?: string;
  bootable?: boolean;
}

export interface CreateSnapshotInput {
  name?: string;
  description?: string;
  request_id?: string;
}

/** What a repeated request_id answers with: the object the first call made, in its current state. */
export type RequestReplay = { kind: 'volume'; record: VolumeRecord } | { kind: 'snapshot'; record: SnapshotRecord } | { kind: 'connection'; record: ConnectionRecord };

/** The record a repeated call's first run made, checked to be of the kind that call makes. */
export function replayedRecord(replay: RequestReplay, kind: 'volume'): VolumeRecord;
export function replayedRecord(replay: RequestReplay, kind: 'snapshot'): SnapshotRecord;
export function replayedRecord(replay: RequestReplay, kind: 'connection'): ConnectionRecord;
export function replayedRecord(replay: RequestReplay, kind: RequestReplay['kind']): RequestReplay['record'] {
  if (replay.kind !== kind) throw new StorageError('INTERNAL', `a request_id replay found a ${replay.kind} where a ${kind} was made; use a new request_id`);
  return replay.record;
}

interface CapacityNeed {
  poolName: string | undefined;
  sizeGb: number;
  refusal: (room: { pool: string; gb: number; text: string }) => string;
}

export interface Mutation<T, R> {
  /** "create volume <id>": for messages and logs. */
  what: string;
  /** Lock keys (volume:<id>, snapshot:<id>): one operation per object at a time, sources included. */
  locks: string[];
  capacity?: CapacityNeed;
  /** The operation never changes what the pool holds (connections): other servers need not count it anew. */
  keepsCapacity?: true;
  /**
   * Every lock key is a new object's id, which no other server can know before the intent is
   * written: the cluster-wide locks are taken while the capacity is decided, and held before the
   * array is asked.
   */
  freshLocks?: true;
  /**
   * Under the locks, before anything is held: reads the current state, and says what capacity the
   * operation needs, or answers at once when there is nothing to do.
   */
  prepare?(): Promise<{ capacity?: CapacityNeed; answer?: R }>;
  /**
   * The intent begin() would write, when it needs no check under the locks first (no source to
   * recheck, no request_id to claim): a shared store writes it with the capacity hold, one round
   * trip and one commit fewer, and begin() is told so.
   */
  intent?(pool: PoolStats): HeldIntent | undefined;
  /** Checks and writes the intent (unless `intentWritten`: written with the capacity hold); throwing here leaves nothing done. */
  begin(pool: PoolStats | undefined, intentWritten: boolean): Promise<void>;
  /** Calls the array; between two array calls, `stillHeld` throws when the cluster-wide locks were lost meanwhile. */
  act(driver: VolumeDriver, stillHeld: () => void): Promise<T>;
  /** Records success. */
  finish(result: T): Promise<R>;
  /** Records the failure; returns the error for the caller. */
  fail(error: StorageError): Promise<StorageError>;
  /**
   * Dry runs: the checks begin() makes, reading only, and what the call would do; `settled` when
   * prepare() found nothing to do.
   */
  plan?(pool: PoolStats | undefined, settled: boolean): Promise<Record<string, unknown>>;
}

/** An outcome the store could not take; carries what the caller must be told. */
class UnrecordedOutcome extends Error {
  constructor(readonly failure: StorageError) {
    super(failure.message);
  }
}

/** Thrown from begin() when a request_id turned out to be taken by a concurrent call. */
export class Replay extends Error {
  constructor(readonly entry: RequestEntry) {
    super(`request ${entry.request_id} replayed`);
  }
}

const IN_FLIGHT = 'cinderlib_mcp_operations_in_flight';
const IN_FLIGHT_HELP = 'Operations (create, extend, delete, snapshot, connect, ...) under way on this server, holding their locks.';

/** Waits before writing an operation's outcome again, when the metadata store refused it. */
const OUTCOME_RETRY_MS = [100, 500];

export const volumeKey = (id: string) => `volume:${id}`;
const snapshotKey = (id: string) => `snapshot:${id}`;

export class VolumeLifecycle {
  constructor(
    private readonly host: LifecycleHost,
    private readonly deps: LifecycleDependencies,
  ) {}

  /** A plain volume, a volume from a snapshot, or a clone (at most one source). */
  async createVolume(input: CreateVolumeInput, request?: RequestEntry): Promise<VolumeRecord> {
    try {
      return await this.mutate(await this.volumeCreation(input, request));
    } catch (error) {
      if (error instanceof Replay) return replayedRecord(await this.replay(error.entry, request!), 'volume');
      throw error;
    }
  }

  /** createVolume's checks, and what it would make. */
  async planCreateVolume(input: CreateVolumeInput): Promise<DryRunAnswer> {
    return this.dryRun(await this.volumeCreation(input));
  }

  private async volumeCreation(input: CreateVolumeInput, request?: RequestEntry): Promise<Mutation<CreateVolumeRequest, VolumeRecord>> {
    const driver = await this.host.ready();
    const source = await this.resolveSource(input, driver);
    const size = input.size ?? source?.size;
    if (size === undefined) throw new StorageError('INVALID_ARGUMENT', 'create_volume: size is required (in GiB) unless snapshot_id or source_volume_id gives it');
    if (source && size < source.size) {
      throw new StorageError(
        'INVALID_ARGUMENT',
        `size ${size} GiB is smaller than the source's ${source.size} GiB (${source.label}); pass at least ${source.size}, or omit size to use the source's`,
      );
    }
    const now = new Date().toISOString();
    const record: VolumeRecord = {
      id: randomUUID(),
      backend: this.host.id,
      // cinderlib's Volume(source, ...) copies the source volume's fields the call does not give.
      name: input.name ?? source?.inherited?.name ?? '',
      description: input.description ?? source?.inherited?.description ?? '',
      size,
      status: 'creating',
      pool_name: '',
      bootable: input.bootable ?? source?.inherited?.bootable ?? false,
      created_at: now,
      updated_at: now,
      status_reason: null,
      provider_location: null,
      snapshot_id: input.snapshot_id ?? null,
      source_volume_id: input.source_volume_id ?? null,
      ...this.claim(),
    };
    const ask: CreateVolumeRequest = { id: record.id, size, pool_name: '', name: record.name, description: record.description, bootable: record.bootable };
    const placed = (pool: PoolStats) => {
      record.pool_name = ask.pool_name = pool.pool_name;
      Object.assign(record, this.claim()); // the lease runs from the intent, not from before any wait for locks
    };
    return {
      what: `create volume ${record.id}`,
      locks: [volumeKey(record.id), ...(source?.locks ?? [])],
      ...(source ? {} : { freshLocks: true as const }),
      capacity: {
        poolName: input.pool_name ?? source?.poolName,
        sizeGb: size,
        refusal: (room) =>
          `a ${size} GiB volume does not fit in backend "${this.host.id}" pool "${room.pool}": ${room.text}; ask for at most ${Math.floor(room.gb)} GiB or free space first`,
      },
      intent:
        source || request
          ? undefined
          : (pool) => {
              placed(pool);
              return { kind: 'volume', record };
            },
      begin: async (pool, intentWritten) => {
        if (intentWritten) return;
        await source?.recheck();
        placed(pool!);
        // Intent first: a crash from here on leaves a record that start-up surfaces, never an unknown array volume.
        const outcome = await this.deps.store.volumes.insert(record, request && { ...request, object_id: record.id });
        if (outcome.inserted) return;
        if (outcome.existingRequest) throw new Replay(outcome.existingRequest);
        throw new StorageError('INTERNAL', `volume id ${record.id} already exists in the metadata store`);
      },
      act: async (driver, stillHeld) => {
        const created = source ? await source.copy({ ...ask, size: source.size }) : await driver.createVolume(ask);
        // Cinder makes the copy at the source's size and extends it afterwards.
        if (source && size > source.size) {
          stillHeld();
          await driver.extendVolume({ ...ask, size: source.size, provider_location: created?.provider_location ?? null }, size);
        }
        return { ...ask, provider_location: created?.provider_location ?? null };
      },
      finish: (made) =>
        this.recordVolumeOutcome(record.id, 'create', { status: 'available', status_reason: null, provider_location: made.provider_location ?? null, failed_operation: null }),
      fail: async (failure) => {
        await this.recordVolumeOutcome(record.id, 'create', { status: 'error', status_reason: `create failed: ${failure.message}`, failed_operation: 'create' });
        return new StorageError(failure.code, `${failure.message}. The volume record ${record.id} is kept in status "error"; delete_volume removes it`);
      },
      plan: async (pool) => {
        await source?.recheck();
        const { id: _id, provider_location: _location, ...volume } = { ...ask, pool_name: pool!.pool_name };
        return { action: 'create_volume', volume: { backend: this.host.id, ...volume, snapshot_id: record.snapshot_id, source_volume_id: record.source_volume_id } };
      },
    };
  }

  async extendVolume(volumeId: string, newSize: number): Promise<VolumeRecord> {
    return this.mutate(this.volumeExtension(volumeId, newSize));
  }

  async planExtendVolume(volumeId: string, newSize: number): Promise<DryRunAnswer> {
    return this.dryRun(this.volumeExtension(volumeId, newSize));
  }

  private volumeExtension(volumeId: string, newSize: number): Mutation<void, VolumeRecord> {
    let record!: VolumeRecord;
    return {
      what: `extend volume ${volumeId}`,
      locks: [volumeKey(volumeId)],
      prepare: async () => {
        record = await this.requireVolume(volumeId);
        if (newSize < record.size) {
          throw new StorageError(
            'INVALID_ARGUMENT',
            `new_size ${newSize} GiB is smaller than volume ${volumeId}'s ${record.size} GiB; volumes cannot shrink, pass a new_size above ${record.size}`,
          );
        }
        this.requireStatus('volume', record, ['available', 'in-use'], 'extended');
        if (newSize === record.size) return { answer: record }; // already there: extending is idempotent
        const growth = newSize - record.size;
        return {
          capacity: {
            poolName: record.pool_name,
            sizeGb: growth,
            refusal: (room) => `growing volume ${volumeId} by ${growth} GiB (to ${newSize} GiB) does not fit in backend "${this.host.id}" pool "${record.pool_name}": ${room.text}`,
          },
        };
      },
      begin: async () => void (await this.transitionVolume(volumeId, { status: 'extending' }, ['available', 'in-use'])),
      act: async (driver, stillHeld) => {
        await driver.extendVolume(this.volumeRef(record), newSize);
        stillHeld();
        // A connected volume's export follows the new size (Cinder's extend_target).
        if (record.status === 'in-use') await driver.exports?.extendExport?.({ ...this.volumeRef(record), size: newSize });
        await this.host.afterExtend?.(record.id, newSize);
      },
      finish: () => this.recordVolumeOutcome(volumeId, 'extend', { status: record.status, size: newSize, status_reason: null, failed_operation: null }),
      fail: async (failure) => {
        // As Cinder's error_extending: the array's state is unknown, so the volume is not offered as usable.
        await this.recordVolumeOutcome(volumeId, 'extend', { status: 'error', status_reason: `extend to ${newSize} GiB failed: ${failure.message}`, failed_operation: 'extend' });
        return failure;
      },
      plan: async (_pool, settled) => ({ action: settled ? 'none' : 'extend_volume', volume_id: volumeId, size: record.size, new_size: newSize }),
    };
  }

  /**
   * Cinder's revert_to_snapshot: an available volume at least the snapshot's size takes the
   * snapshot's bytes back (the driver's own revert, or its copy); it is "reverting" meanwhile and
   * "error" if that fails, as in Cinder.
   */
  async revertToSnapshot(volumeId: string, snapshotId: string): Promise<VolumeRecord> {
    return this.mutate(await this.volumeReversion(volumeId, snapshotId));
  }

  async planRevertToSnapshot(volumeId: string, snapshotId: string): Promise<DryRunAnswer> {
    return this.dryRun(await this.volumeReversion(volumeId, snapshotId));
  }

  private async volumeReversion(volumeId: string, snapshotId: string): Promise<Mutation<void, VolumeRecord>> {
    const driver = await this.host.ready();
    const operations = this.requireSnapshots(driver, true);
    const revert = operations.revertToSnapshot?.bind(operations);
    if (!revert) throw this.unsupported('revert volumes to snapshots', 'create a volume from the snapshot (create_volume with snapshot_id) instead');
    let volume!: VolumeRecord;
    let snapshot!: SnapshotRecord;
    const check = async () => {
      volume = await this.requireVolume(volumeId);
      snapshot = await this.requireSnapshot(snapshotId);
      if (snapshot.volume_id !== volumeId) {
        throw new StorageError('INVALID_ARGUMENT', `snapshot ${snapshotId} is of volume ${snapshot.volume_id}, not of volume ${volumeId}; a volume reverts only to its own snapshots`);
      }
      if (volume.status === 'in-use') {
        const connections = await this.deps.store.connections.all({ volume_id: volumeId });
        throw new StorageError(
          'IN_USE',
          `volume ${volumeId} is connected (${connections.map((c) => `connection ${c.id}`).join(', ')}); disconnect it first (disconnect_volume), then revert`,
        );
      }
      this.requireStatus('volume', volume, ['available'], 'reverted');
      this.requireStatus('snapshot', snapshot, ['available'], 'reverted to');
      if (volume.size < snapshot.volume_size) {
        throw new StorageError(
          'INVALID_ARGUMENT',
          `volume ${volumeId} is ${volume.size} GiB, smaller than snapshot ${snapshotId}'s ${snapshot.volume_size} GiB; extend it first (extend_volume)`,
        );
      }
      const reason = await operations.cannotRevert?.();
      if (reason) throw new StorageError('UNSUPPORTED', `backend "${this.host.id}": ${reason}`);
    };
    return {
      what: `revert volume ${volumeId} to snapshot ${snapshotId}`,
      locks: [volumeKey(volumeId), snapshotKey(snapshotId)],
      begin: async () => {
        await check();
        await this.transitionVolume(volumeId, { status: 'reverting' }, ['available']);
      },
      act: () => trackCopy(`reverting volume ${volumeId} to snapshot ${snapshotId}`, (progress) => revert(this.volumeRef(volume), this.snapshotRef(snapshot), progress)),
      finish: () => this.recordVolumeOutcome(volumeId, 'revert', { status: 'available', status_reason: null, failed_operation: null }),
      fail: async (failure) => {
        await this.recordVolumeOutcome(volumeId, 'revert', {
          status: 'error',
          status_reason: `revert to snapshot ${snapshotId} failed: ${failure.message}`,
          failed_operation: 'revert',
        });
        return new StorageError(failure.code, `${failure.message}. Volume ${volumeId} is left in status "error": its data may be partly reverted; snapshot ${snapshotId} is intact`);
      },
      plan: async () => {
        await check();
        return { action: 'revert_to_snapshot', volume_id: volumeId, snapshot_id: snapshotId, size: volume.size, snapshot_size: snapshot.volume_size };
      },
    };
  }

  /** Changes a volume's name, description or bootable flag: the metadata store alone, in any status. */
  async updateVolume(volumeId: string, changes: VolumeChanges): Promise<VolumeRecord> {
    this.requireChanges(changes);
    await this.requireVolume(volumeId);
    const audit = outcomeAudit();
    const updated = await this.deps.store.volumes.update(volumeId, defined(changes), undefined, audit?.record);
    if (!updated) throw new StorageError('NOT_FOUND', `volume ${volumeId} does not exist; list_volumes shows the volumes there are`);
    if (audit) audit.written = true;
    return updated;
  }

  async planUpdateVolume(volumeId: string, changes: VolumeChanges): Promise<DryRunAnswer> {
    this.requireChanges(changes);
    const record = await this.requireVolume(volumeId);
    const changed = Object.fromEntries(Object.entries(defined(changes)).map(([key, value]) => [key, { from: record[key as keyof VolumeChanges], to: value }]));
    return dryRunAnswer({ action: 'update_volume', volume_id: volumeId, changes: changed });
  }

  private requireChanges(changes: VolumeChanges): void {
    if (Object.keys(defined(changes)).length === 0) throw new StorageError('INVALID_ARGUMENT', 'update_volume: nothing to change; pass name, description and/or bootable');
  }

  /**
   * Deletes a volume; with `cascade`, its snapshots first (Cinder's cascade delete). Without it, a
   * volume with snapshots is refused with IN_USE naming them.
   */
  async deleteVolume(volumeId: string, cascade = false): Promise<{ snapshotsDeleted: string[] }> {
    const snapshotsDeleted: string[] = [];
    if (cascade) {
      // Every precondition first, the volume's and each snapshot's: a refusal means nothing was deleted.
      const snapshots = await this.deps.store.snapshots.all({ volume_id: volumeId });
      await this.requireVolumeDeletable(await this.requireVolume(volumeId), []);
      for (const snapshot of snapshots) this.requireStatus('snapshot', snapshot, ['available', 'error'], 'deleted with its volume');
      for (const snapshot of snapshots) {
        await this.deleteSnapshot(snapshot.id);
        snapshotsDeleted.push(snapshot.id);
      }
    }
    await this.mutate(this.volumeDeletion(volumeId));
    return { snapshotsDeleted };
  }

  /** deleteVolume's checks (each snapshot's too, with cascade), and what it would delete. */
  async planDeleteVolume(volumeId: string, cascade = false): Promise<DryRunAnswer> {
    const snapshots = await this.deps.store.snapshots.all({ volume_id: volumeId });
    if (!cascade) return this.dryRun(this.volumeDeletion(volumeId));
    await this.requireVolumeDeletable(await this.requireVolume(volumeId), []);
    for (const snapshot of snapshots) this.requireStatus('snapshot', snapshot, ['available', 'error'], 'deleted with its volume');
    const driver = await this.host.ready();
    for (const snapshot of snapshots) await this.dryRun(this.snapshotDeletion(snapshot, this.requireSnapshots(driver)));
    return dryRunAnswer({ action: 'delete_volume', volume_id: volumeId, snapshots_deleted: snapshots.map((snapshot) => snapshot.id) });
  }

  private volumeDeletion(volumeId: string): Mutation<void, void> {
    let record!: VolumeRecord;
    const check = async () => {
      record = await this.requireVolume(volumeId);
      await this.requireVolumeDeletable(record, await this.deps.store.snapshots.all({ volume_id: volumeId }));
    };
    return {
      what: `delete volume ${volumeId}`,
      locks: [volumeKey(volumeId)],
      begin: async () => {
        await check();
        await this.transitionVolume(volumeId, { status: 'deleting' }, ['available', 'error']);
      },
      // An adoption never confirmed: the array volume is the user's (renamed or not), only the record goes.
      act: async (driver) => (record.failed_operation === 'manage' ? undefined : driver.deleteVolume(this.volumeRef(record))),
      finish: async () => {
        // "Not on the array" is not "gone" for a create that may still finish there: re-check later.
        if (record.failed_operation === 'create') await this.host.tombstones().bury(record);
        else await this.deps.store.volumes.remove(volumeId);
      },
      fail: async (failure) => {
        // A create (or adoption) that never confirmed stays unconfirmed through a failed delete.
        const failedOperation = record.failed_operation === 'create' || record.failed_operation === 'manage' ? record.failed_operation : 'delete';
        await this.recordVolumeOutcome(volumeId, 'delete', { status: 'error', status_reason: `delete failed: ${failure.message}`, failed_operation: failedOperation });
        return failure;
      },
      plan: async () => {
        await check();
        return { action: 'delete_volume', volume_id: volumeId };
      },
    };
  }

  /** Why the volume cannot be deleted now (snapshots left, connections, a status that is not available or error), as IN_USE or INVALID_ARGUMENT. */
  async requireVolumeDeletable(record: VolumeRecord, snapshots: readonly SnapshotRecord[]): Promise<void> {
    if (snapshots.length > 0) {
      throw new StorageError(
        'IN_USE',
        `volume ${record.id} has ${snapshots.length} snapshot(s): ${snapshots.map((s) => s.id).join(', ')}; delete them first (delete_snapshot), or call delete_volume with cascade: true to delete them with it`,
      );
    }
    const connections = await this.deps.store.connections.all({ volume_id: record.id });
    if (connections.length > 0) {
      throw new StorageError(
        'IN_USE',
        `volume ${record.id} is connected (${connections.map((c) => `connection ${c.id} to ${typeof c.connector.host === 'string' ? c.connector.host : 'a host'}`).join(', ')}); disconnect it first (disconnect_volume)`,
      );
    }
    this.requireStatus('volume', record, ['available', 'error'], 'deleted');
  }

  async createSnapshot(volumeId: string, input: CreateSnapshotInput, request?: RequestEntry): Promise<SnapshotRecord> {
    try {
      return await this.mutate(await this.snapshotCreation(volumeId, input, request));
    } catch (error) {
      if (error instanceof Replay) return replayedRecord(await this.replay(error.entry, request!), 'snapshot');
      throw error;
    }
  }

  async planCreateSnapshot(volumeId: string, input: CreateSnapshotInput): Promise<DryRunAnswer> {
    return this.dryRun(await this.snapshotCreation(volumeId, input));
  }

  private async snapshotCreation(volumeId: string, input: CreateSnapshotInput, request?: RequestEntry): Promise<Mutation<string | null, SnapshotRecord>> {
    const driver = await this.host.ready();
    const operations = this.requireSnapshots(driver, true);
    let volume = await this.requireVolume(volumeId);
    const now = new Date().toISOString();
    const record: SnapshotRecord = {
      id: randomUUID(),
      volume_id: volumeId,
      backend: this.host.id,
      name: input.name ?? '',
      description: input.description ?? '',
      volume_size: volume.size,
      status: 'creating',
      created_at: now,
      updated_at: now,
      status_reason: null,
      provider_location: null,
      ...this.claim(),
    };
    const copyOnWriteGb = driver.snapshotSizeGb?.(this.volumeRef(volume)) ?? 0;
    const check = async () => {
      volume = await this.requireVolume(volumeId);
      this.requireStatus('volume', volume, ['available', 'in-use'], 'snapshotted');
    };
    return {
      what: `snapshot volume ${volumeId}`,
      locks: [volumeKey(volumeId), snapshotKey(record.id)],
      capacity:
        copyOnWriteGb > 0
          ? {
              poolName: volume.pool_name,
              sizeGb: copyOnWriteGb,
              refusal: (room) => `a snapshot of volume ${volumeId} needs ${copyOnWriteGb} GiB of copy-on-write space in pool "${room.pool}": ${room.text}`,
            }
          : undefined,
      begin: async () => {
        await check();
        record.volume_size = volume.size;
        Object.assign(record, this.claim()); // the lease runs from the intent, not from before any wait for locks
        const outcome = await this.deps.store.snapshots.insert(record, request && { ...request, object_id: record.id });
        if (outcome.inserted) return;
        if (outcome.existingRequest) throw new Replay(outcome.existingRequest);
        throw new StorageError('INTERNAL', `snapshot id ${record.id} already exists in the metadata store`);
      },
      // Every copy reports progress (section 7): a file snapshot is one; an array's answers at once.
      act: async () =>
        (await trackCopy(`snapshotting volume ${volumeId}`, (progress) => operations.createSnapshot(this.snapshotRef(record), this.volumeRef(volume), progress)))?.provider_location ??
        null,
      finish: (location) => this.recordSnapshotOutcome(record.id, 'create', { status: 'available', status_reason: null, provider_location: location, failed_operation: null }),
      fail: async (failure) => {
        await this.recordSnapshotOutcome(record.id, 'create', { status: 'error', status_reason: `create failed: ${failure.message}`, failed_operation: 'create' });
        return new StorageError(failure.code, `${failure.message}. The snapshot record ${record.id} is kept in status "error"; delete_snapshot removes it`);
      },
      plan: async () => {
        await check();
        return { action: 'create_snapshot', volume_id: volumeId, snapshot: { name: record.name, description: record.description, volume_size: volume.size } };
      },
    };
  }

  async deleteSnapshot(snapshotId: string): Promise<void> {
    const driver = await this.host.ready();
    await this.mutate(this.snapshotDeletion(await this.requireSnapshot(snapshotId), this.requireSnapshots(driver)));
  }

  async planDeleteSnapshot(snapshotId: string): Promise<DryRunAnswer> {
    const driver = await this.host.ready();
    return this.dryRun(this.snapshotDeletion(await this.requireSnapshot(snapshotId), this.requireSnapshots(driver)));
  }

  private snapshotDeletion(first: SnapshotRecord, operations: SnapshotOperations): Mutation<VolumeRef, void> {
    const snapshotId = first.id;
    let record!: SnapshotRecord;
    const check = async () => {
      record = await this.requireSnapshot(snapshotId);
      this.requireStatus('snapshot', record, ['available', 'error'], 'deleted');
    };
    return {
      what: `delete snapshot ${snapshotId}`,
      locks: [volumeKey(first.volume_id), snapshotKey(snapshotId)],
      begin: async () => {
        await check();
        await this.transitionSnapshot(snapshotId, { status: 'deleting' }, ['available', 'error']);
      },
      act: async () => {
        const volume = await this.deps.store.volumes.get(record.volume_id);
        const volumeRef = volume ? this.volumeRef(volume) : { id: record.volume_id, size: record.volume_size, pool_name: '', provider_location: null };
        await operations.deleteSnapshot(this.snapshotRef(record), volumeRef);
        return volumeRef;
      },
      finish: async (volumeRef) => {
        // As for volumes: a snapshot whose create never confirmed may still appear on the array.
        if (record.failed_operation === 'create') await this.host.tombstones().burySnapshot(record, volumeRef);
        else await this.deps.store.snapshots.remove(snapshotId);
      },
      fail: async (failure) => {
        // A create that never confirmed stays unconfirmed through a failed delete.
        const failedOperation = record.failed_operation === 'create' ? 'create' : 'delete';
        await this.recordSnapshotOutcome(snapshotId, 'delete', { status: 'error', status_reason: `delete failed: ${failure.message}`, failed_operation: failedOperation });
        return failure;
      },
      plan: async () => {
        await check();
        return { action: 'delete_snapshot', snapshot_id: snapshotId, volume_id: record.volume_id };
      },
    };
  }

  /** What a request_id already made, if it is still remembered: the same call again answers it. */
  async replayIfRepeated(request: RequestEntry | undefined): Promise<RequestReplay | undefined> {
    if (!request) return undefined;
    const entry = await this.deps.store.findRequest(request.request_id);
    return entry ? this.replay(entry, request) : undefined;
  }

  /**
   * A mutation's dry run: its reads and checks, capacity by the same rule, no lock and nothing
   * written; answers what it would do.
   */
  async dryRun<T, R>(mutation: Mutation<T, R>): Promise<DryRunAnswer> {
    await this.host.ready();
    if (!mutation.plan) throw new StorageError('INTERNAL', `${mutation.what}: no dry run is defined for it`);
    const prepared = await mutation.prepare?.();
    if (prepared && 'answer' in prepared) return dryRunAnswer(await mutation.plan(undefined, true));
    const need = prepared?.capacity ?? mutation.capacity;
    const pool = need ? await this.host.checkCapacity(need.poolName, need.sizeGb, need.refusal) : undefined;
    return dryRunAnswer(await mutation.plan(pool, false));
  }

  /** The one routine every mutation goes through (connections' too: src/connections.ts). */
  async mutate<T, R>(mutation: Mutation<T, R>): Promise<R> {
    const driver = await this.host.ready();
    // This process's locks first, then (on a store several servers share) the cluster's.
    const shared = this.deps.store.shared;
    const waited = performance.now();
    const holdEverywhere = <X>(task: (locks?: HeldLocks) => Promise<X>) =>
      runHoldingAll(this.deps.locks, mutation.locks, () => {
        stepDone('local locks');
        if (!shared) return task();
        return shared.holdKeys(
          mutation.locks,
          (locks) => {
            stepDone('cluster locks');
            return task(locks);
          },
          { fresh: mutation.freshLocks === true },
        );
      });
    const labels = { backend: this.host.id };
    return timedOperation(mutation.what, () =>
      holdEverywhere(async (locks) => {
        metrics.observe(LOCK_WAIT_SECONDS, LOCK_WAIT_HELP, { lock: 'object' }, (performance.now() - waited) / 1000);
        metrics.add(IN_FLIGHT, IN_FLIGHT_HELP, labels, 1);
        try {
          return await this.runHolding(mutation, driver, locks);
        } finally {
          metrics.add(IN_FLIGHT, IN_FLIGHT_HELP, labels, -1);
        }
      }).finally(() => stepDone('unlock')),
    );
  }

  /** mutate's steps, once every lock is held. */
  private async runHolding<T, R>(mutation: Mutation<T, R>, driver: VolumeDriver, locks: HeldLocks | undefined): Promise<R> {
    const prepared = await mutation.prepare?.();
    stepDone('prepare');
    if (prepared && 'answer' in prepared) return prepared.answer as R;
    const need = prepared?.capacity ?? mutation.capacity;
    const held = need ? await this.host.reserveCapacity(need.poolName, need.sizeGb, need.refusal, mutation.intent?.bind(mutation)) : undefined;
    stepDone('capacity');
    let acted = false;
    let asked = false;
    try {
      await mutation.begin(held?.pool, held?.intentWritten === true);
      stepDone('record intent');
      let result: T;
      // Locks lost with a dropped database session: stop before the next array call, and record
      // the operation as failed (as a crash's recovery would) rather than its outcome.
      const stillHeld = () => locks?.check();
      try {
        await locks?.acquired;
        stepDone('cluster locks held');
        stillHeld();
        asked = true;
        result = await mutation.act(driver, stillHeld);
        stillHeld();
        stepDone('array');
      } catch (error) {
        throw await mutation.fail(this.asStorageError(error, mutation.what));
      }
      acted = true;
      const outcome = await mutation.finish(result);
      stepDone('record outcome');
      held?.reservation.commit();
      return outcome;
    } catch (error) {
      // The array did the work even when the store could not say so: the space is taken.
      if (acted && error instanceof UnrecordedOutcome) held?.reservation.commit();
      else held?.reservation.release();
      throw error instanceof UnrecordedOutcome ? error.failure : error;
    } finally {
      // A reservation's end tells the other servers itself; an array call that failed may still have changed the pool.
      await this.host.invalidateStats(asked && !held && !mutation.keepsCapacity);
    }
  }

  /** The source of a volume made from a snapshot or cloned from a volume: checks, locks and the copy. */
  private async resolveSource(input: CreateVolumeInput, driver: VolumeDriver) {
    if (input.snapshot_id !== undefined) {
      const snapshotId = input.snapshot_id;
      const operations = this.requireSnapshots(driver, true);
      const snapshot = await this.requireSnapshot(snapshotId);
      const recheck = async () => this.requireStatus('snapshot', await this.requireSnapshot(snapshotId), ['available'], 'used as a source', 'IN_USE');
      await recheck();
      const volume = await this.deps.store.volumes.get(snapshot.volume_id);
      return {
        size: snapshot.volume_size,
        label: `snapshot ${snapshotId}`,
        poolName: volume?.pool_name,
        // cinderlib's Snapshot.create_volume starts from the snapshot's volume, not the snapshot.
        inherited: volume,
        locks: [snapshotKey(snapshotId)],
        recheck,
        copy: (ask: CreateVolumeRequest) =>
          trackCopy(`copying snapshot ${snapshotId} into volume ${ask.id}`, (progress) => operations.createVolumeFromSnapshot(ask, this.snapshotRef(snapshot), progress)),
      };
    }
    if (input.source_volume_id !== undefined) {
      const sourceId = input.source_volume_id;
      if (!driver.clones) throw this.unsupported('clone volumes', 'take a snapshot (create_snapshot) and create a volume from it instead, where the driver has snapshots');
      if (driver.clones.unavailable) throw new StorageError('UNSUPPORTED', `backend "${this.host.id}": ${driver.clones.unavailable}`);
      const clones = driver.clones;
      const source = await this.requireVolume(sourceId);
      const recheck = async () => {
        const current = await this.requireVolume(sourceId);
        if (current.status === 'in-use' && clones.refusesConnectedSource) {
          const connections = await this.deps.store.connections.all({ volume_id: sourceId });
          throw new StorageError(
            'IN_USE',
            `volume ${sourceId} is connected (${connections.map((c) => `connection ${c.id}`).join(', ')}) and the ${this.host.volumeDriver} driver cannot clone a connected volume; disconnect it first (disconnect_volume), or snapshot it and create the volume from the snapshot`,
          );
        }
        this.requireStatus('volume', current, ['available', 'in-use'], 'cloned', 'IN_USE');
      };
      await recheck();
      return {
        size: source.size,
        label: `volume ${sourceId}`,
        poolName: source.pool_name,
        inherited: source,
        locks: [volumeKey(sourceId)],
        recheck,
        copy: (ask: CreateVolumeRequest) =>
          trackCopy(`cloning volume ${sourceId} into volume ${ask.id}`, (progress) => clones.createClonedVolume(ask, this.volumeRef(source), progress)),
      };
    }
    return undefined;
  }

  async replay(entry: RequestEntry, request: RequestEntry): Promise<RequestReplay> {
    if (entry.tool !== request.tool || entry.fingerprint !== request.fingerprint) {
      throw new StorageError(
        'ALREADY_EXISTS',
        `request_id "${request.request_id}" was already used ${entry.tool === request.tool ? 'with other arguments' : `by ${entry.tool}`} (it made ${entry.object_kind} ${entry.object_id}); use a new request_id for a new request, or repeat the first call exactly`,
      );
    }
    if (entry.object_kind === 'connection') {
      const record = await this.deps.store.connections.get(entry.object_id);
      if (!record) throw new StorageError('NOT_FOUND', `request_id "${request.request_id}" made connection ${entry.object_id}, which has been disconnected since`);
      return { kind: 'connection', record };
    }
    if (entry.object_kind === 'snapshot') {
      const record = await this.deps.store.snapshots.get(entry.object_id);
      if (!record) throw new StorageError('NOT_FOUND', `request_id "${request.request_id}" made snapshot ${entry.object_id}, which has been deleted since`);
      return { kind: 'snapshot', record };
    }
    const record = await this.deps.store.volumes.get(entry.object_id);
    if (!record) throw new StorageError('NOT_FOUND', `request_id "${request.request_id}" made volume ${entry.object_id}, which has been deleted since`);
    return { kind: 'volume', record };
  }

  /** The driver's snapshots; `toCreate` also refuses where the host cannot make them now (deleting still works there). */
  private requireSnapshots(driver: VolumeDriver, toCreate = false) {
    if (!driver.snapshots) throw this.unsupported('take snapshots', 'clone the volume instead, where the driver can');
    if (toCreate && driver.snapshots.unavailable) throw new StorageError('UNSUPPORTED', `backend "${this.host.id}": ${driver.snapshots.unavailable}`);
    return driver.snapshots;
  }

  unsupported(what: string, instead: string): StorageError {
    return new StorageError('UNSUPPORTED', `backend "${this.host.id}": the ${this.host.volumeDriver} driver cannot ${what}; ${instead}`);
  }

  async requireVolume(volumeId: string): Promise<VolumeRecord> {
    const record = await this.deps.store.volumes.get(volumeId);
    if (!record || record.backend !== this.host.id) {
      throw new StorageError('NOT_FOUND', `volume ${volumeId} does not exist; list_volumes shows the volumes there are`);
    }
    return record;
  }

  private async requireSnapshot(snapshotId: string): Promise<SnapshotRecord> {
    const record = await this.deps.store.snapshots.get(snapshotId);
    if (!record || record.backend !== this.host.id) {
      throw new StorageError('NOT_FOUND', `snapshot ${snapshotId} does not exist; list_snapshots shows the snapshots there are`);
    }
    return record;
  }

  /**
   * Refuses an object in the wrong status: one under an operation is BACKEND_BUSY (IN_USE when it
   * is the source of the caller's copy: the operation holds it), one in error INVALID_ARGUMENT.
   */
  requireStatus(kind: 'volume' | 'snapshot', record: VolumeRecord | SnapshotRecord, allowed: string[], action: string, busyCode: 'BACKEND_BUSY' | 'IN_USE' = 'BACKEND_BUSY'): void {
    if (allowed.includes(record.status)) return;
    const busy = TRANSITIONAL_STATUSES.includes(record.status);
    throw new StorageError(
      busy ? busyCode : 'INVALID_ARGUMENT',
      `${kind} ${record.id} is "${record.status}"${record.status_reason ? ` (${record.status_reason})` : ''}; only ${allowed.map((s) => `"${s}"`).join(' or ')} ${kind}s can be ${action}` +
        (busy ? `; wait and call get_${kind} again` : `; delete_${kind} removes a ${kind} in error`),
    );
  }

  /** Marks a record as this server's, for as long as an operation on it is under way. */
  claim(): { owner: string; lease_expires_at: string } {
    return { owner: this.deps.serverId, lease_expires_at: new Date(Date.now() + this.deps.leaseMs).toISOString() };
  }

  /** Into an operation this server claims the record; out of it nobody does. */
  private withClaim<P extends { status?: string }>(patch: P): P {
    if (patch.status === undefined) return patch;
    return { ...patch, ...(TRANSITIONAL_STATUSES.includes(patch.status as VolumeStatus) ? this.claim() : { owner: null, lease_expires_at: null }) };
  }

  /** With `audit`, the call's audit record is written with this update (see OutcomeAudit). */
  private async transitionVolume(volumeId: string, patch: VolumePatch, expected?: VolumeStatus[], audit?: OutcomeAudit): Promise<VolumeRecord> {
    const updated = await this.deps.store.volumes.update(volumeId, this.withClaim(patch), expected, audit?.record);
    if (!updated) throw this.changedUnder('volume', volumeId);
    if (audit) audit.written = true;
    return updated;
  }

  private async transitionSnapshot(snapshotId: string, patch: SnapshotPatch, expected?: SnapshotStatus[], audit?: OutcomeAudit): Promise<SnapshotRecord> {
    const updated = await this.deps.store.snapshots.update(snapshotId, this.withClaim(patch), expected, audit?.record);
    if (!updated) throw this.changedUnder('snapshot', snapshotId);
    if (audit) audit.written = true;
    return updated;
  }

  private changedUnder(kind: string, id: string): StorageError {
    return new StorageError('BACKEND_BUSY', `${kind} ${id} changed under this operation (another server is operating on it); call get_${kind} and retry`);
  }

  private recordVolumeOutcome(volumeId: string, operation: 'create' | 'extend' | 'revert' | 'delete', patch: VolumePatch): Promise<VolumeRecord> {
    return this.recordOutcome(
      'volume',
      volumeId,
      operation,
      patch,
      // A success is the call's outcome: it carries the call's audit record, when the call has one to give.
      () => this.transitionVolume(volumeId, patch, undefined, patch.status === 'error' ? undefined : outcomeAudit()),
      (kept) => this.deps.store.volumes.defer(volumeId, kept),
    );
  }

  private recordSnapshotOutcome(snapshotId: string, operation: 'create' | 'delete', patch: SnapshotPatch): Promise<SnapshotRecord> {
    return this.recordOutcome(
      'snapshot',
      snapshotId,
      operation,
      patch,
      () => this.transitionSnapshot(snapshotId, patch, undefined, patch.status === 'error' ? undefined : outcomeAudit()),
      (kept) => this.deps.store.snapshots.defer(snapshotId, kept),
    );
  }

  /**
   * Writes an operation's outcome, trying again briefly when the metadata store refuses. If it
   * still cannot, the running server keeps the object as `error` in memory (written at the store's
   * next successful write) so it can be seen and deleted, and the caller is told, with the id.
   */
  private async recordOutcome<R>(
    kind: 'volume' | 'snapshot',
    id: string,
    operation: 'create' | 'extend' | 'revert' | 'delete',
    patch: VolumePatch | SnapshotPatch,
    write: () => Promise<R>,
    keep: (patch: VolumePatch & SnapshotPatch) => void,
  ): Promise<R> {
    try {
      return await this.retryingStoreWrites(write);
    } catch (error) {
      if (!isStoreTrouble(error)) throw error;
      const happened = patch.status === 'error' ? `the ${operation} failed (${patch.status_reason})` : `the ${operation} finished on the array`;
      const reason = `${happened}, but the metadata store could not record it (${error.message})`;
      keep({
        status: 'error',
        status_reason: `${reason}; delete_${kind} removes it`,
        failed_operation: operation === 'create' ? 'create' : (patch.failed_operation ?? operation),
        owner: null,
        lease_expires_at: null,
      });
      throw new UnrecordedOutcome(
        new StorageError('BACKEND_UNAVAILABLE', `${kind} ${id}: ${reason}. It is kept in status "error" for now; once the store takes writes again, delete_${kind} removes it`),
      );
    }
  }

  private async retryingStoreWrites<T>(write: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await write();
      } catch (error) {
        if (!isStoreTrouble(error) || attempt >= OUTCOME_RETRY_MS.length) throw error;
        await new Promise((resolve) => setTimeout(resolve, OUTCOME_RETRY_MS[attempt]));
      }
    }
  }

  volumeRef(record: VolumeRecord): VolumeRef {
    return { id: record.id, size: record.size, pool_name: record.pool_name, provider_location: record.provider_location, provider_auth: record.provider_auth ?? null };
  }

  private snapshotRef(record: SnapshotRecord): SnapshotRef {
    return { id: record.id, volume_id: record.volume_id, volume_size: record.volume_size, provider_location: record.provider_location };
  }

  asStorageError(error: unknown, operation: string): StorageError {
    if (isStorageError(error)) return new StorageError(error.code, this.deps.secrets.redact(error.message), { cause: error });
    this.deps.log.error(`backend "${this.host.id}": ${operation}: unexpected failure: ${describeError(error)}`);
    return new StorageError('INTERNAL', `backend "${this.host.id}": ${operation} failed unexpectedly: ${this.deps.secrets.redact(describeError(error))}`, { cause: error });
  }
}

/** The fields that are set. */
function defined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, item]) => item !== undefined)) as Partial<T>;
}

function isStoreTrouble(error: unknown): error is StorageError {
  return isStorageError(error) && error.code === 'BACKEND_UNAVAILABLE';
}
