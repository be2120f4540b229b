import type { ConnectionRecord, ConnectionStatus } from '../connection.js';
import type { SnapshotRecord, SnapshotStatus } from '../snapshot.js';
import { OPERATION_OF_STATUS, TRANSITIONAL_STATUSES, type VolumeRecord, type VolumeStatus } from '../volume.js';
import { StorageError } from '../errors.js';
import { isRecoverable } from './recovery.js';
import {
  REQUEST_ID_TTL_MS,
  type ConnectionPage,
  type ConnectionPatch,
  type ConnectionQuery,
  type InsertOutcome,
  type AuditQuery,
  type AuditRecord,
  type ImportBatch,
  type RecoveredKind,
  type RecoveryClaim,
  type RequestEntry,
  type SnapshotPage,
  type SnapshotPatch,
  type SnapshotQuery,
  type Tombstone,
  type VolumePage,
  type VolumePatch,
  type VolumeQuery,
  type VolumeStore,
} from './store.js';

/** Records in insertion order (Map iteration order), which gives stable, creation-ordered pages. */
class Table<R extends { id: string; status: string }> {
  private readonly byId = new Map<string, { seq: number; record: R }>();
  private nextSeq = 1;

  insert(record: R): boolean {
    if (this.byId.has(record.id)) return false;
    this.byId.set(record.id, { seq: this.nextSeq++, record: { ...record } });
    return true;
  }

  get(id: string): R | undefined {
    const entry = this.byId.get(id);
    return entry ? { ...entry.record } : undefined;
  }

  update(id: string, patch: Partial<R>, expected?: readonly string[]): R | undefined {
    const entry = this.byId.get(id);
    if (!entry || (expected && !expected.includes(entry.record.status))) return undefined;
    const defined = Object.fromEntries(Object.entries(patch).filter(([, value]) => value !== undefined));
    entry.record = { ...entry.record, ...defined, updated_at: new Date().toISOString() };
    return { ...entry.record };
  }

  remove(id: string): boolean {
    return this.byId.delete(id);
  }

  page(after: number | undefined, limit: number, keep: (record: R) => boolean): { records: R[]; nextAfter?: number } {
    const records: R[] = [];
    let lastSeq = 0;
    for (const { seq, record } of this.byId.values()) {
      if (seq <= (after ?? 0) || !keep(record)) continue;
      if (records.length === limit) return { records, nextAfter: lastSeq };
      records.push({ ...record });
      lastSeq = seq;
    }
    return { records };
  }

  all(): R[] {
    return [...this.byId.values()].map((entry) => entry.record);
  }
}

/** cinderlib's `memory` storage: everything is gone when the process ends. */
export class MemoryVolumeStore implements VolumeStore {
  private readonly volumes = new Table<VolumeRecord>();
  private readonly snapshots = new Table<SnapshotRecord>();
  private readonly connections = new Table<ConnectionRecord>();
  private readonly graves = new Map<string, Tombstone>();
  private readonly requests = new Map<string, RequestEntry>();

  async insert(record: VolumeRecord): Promise<boolean> {
    return this.volumes.insert(record);
  }

  async insertForRequest(record: VolumeRecord, request: RequestEntry | undefined): Promise<InsertOutcome> {
    return this.insertClaiming(request, () => this.volumes.insert(record));
  }

  async insertSnapshotForRequest(record: SnapshotRecord, request: RequestEntry | undefined): Promise<InsertOutcome> {
    return this.insertClaiming(request, () => this.snapshots.insert(record));
  }

  async findRequest(requestId: string): Promise<RequestEntry | undefined> {
    return this.liveRequest(requestId);
  }

  async get(id: string): Promise<VolumeRecord | undefined> {
    return this.volumes.get(id);
  }

  async update(id: string, patch: VolumePatch, expected?: readonly VolumeStatus[]): Promise<VolumeRecord | undefined> {
    return this.volumes.update(id, patch, expected);
  }

  async remove(id: string): Promise<boolean> {
    return this.volumes.remove(id);
  }

  async list(query: VolumeQuery): Promise<VolumePage> {
    return this.volumes.page(
      query.after,
      query.limit,
      (record) => (query.backend === undefined || record.backend === query.backend) && (query.status === undefined || record.status === query.status),
    );
  }

  async getSnapshot(id: string): Promise<SnapshotRecord | undefined> {
    return this.snapshots.get(id);
  }

  async updateSnapshot(id: string, patch: SnapshotPatch, expected?: readonly SnapshotStatus[]): Promise<SnapshotRecord | undefined> {
    return this.snapshots.update(id, patch, expected);
  }

  async removeSnapshot(id: string): Promise<boolean> {
    return this.snapshots.remove(id);
  }

  async listSnapshots(query: SnapshotQuery): Promise<SnapshotPage> {
    return this.snapshots.page(
      query.after,
      query.limit,
      (record) =>
        (query.backend === undefined || record.backend === query.backend) &&
        (query.volume_id === undefined || record.volume_id === query.volume_id) &&
        (query.status === undefined || record.status === query.status),
    );
  }

  async snapshotsOf(volumeId: string): Promise<SnapshotRecord[]> {
    return this.snapshots.all().filter((record) => record.volume_id === volumeId).map((record) => ({ ...record }));
  }

  async volumesFromSnapshot(snapshotId: string): Promise<VolumeRecord[]> {
    return this.volumes.all().filter((record) => record.snapshot_id === snapshotId).map((record) => ({ ...record }));
  }

  async insertConnection(record: ConnectionRecord): Promise<boolean> {
    return this.connections.insert(record);
  }

  async insertConnectionForRequest(record: ConnectionRecord, request: RequestEntry | undefined): Promise<InsertOutcome> {
    return this.insertClaiming(request, () => this.connections.insert(record));
  }

  async getConnection(id: string): Promise<ConnectionRecord | undefined> {
    return this.connections.get(id);
  }

  async updateConnection(id: string, patch: ConnectionPatch, expected?: readonly ConnectionStatus[]): Promise<ConnectionRecord | undefined> {
    return this.connections.update(id, patch, expected);
  }

  async removeConnection(id: string): Promise<boolean> {
    return this.connections.remove(id);
  }

  async listConnections(query: ConnectionQuery): Promise<ConnectionPage> {
    return this.connections.page(
      query.after,
      query.limit,
      (record) => (query.backend === undefined || record.backend === query.backend) && (query.volume_id === undefined || record.volume_id === query.volume_id),
    );
  }

  async connectionsOf(volumeId: string): Promise<ConnectionRecord[]> {
    return this.connections.all().filter((record) => record.volume_id === volumeId).map((record) => ({ ...record }));
  }

  async surfaceInterrupted(
    claim: RecoveryClaim,
    reason: (record: { id: string; status: string; owner?: string | null }, kind: RecoveredKind) => string,
  ): Promise<{ volumes: VolumeRecord[]; snapshots: SnapshotRecord[]; connections: ConnectionRecord[] }> {
    const recover = <R extends VolumeRecord | SnapshotRecord>(table: Table<R>, kind: 'volume' | 'snapshot'): R[] =>
      table
        .all()
        .filter((record) => TRANSITIONAL_STATUSES.includes(record.status as VolumeStatus) && isRecoverable(record, claim))
        .map(
          (record) =>
            table.update(record.id, {
              status: 'error',
              status_reason: reason(record, kind),
              failed_operation: OPERATION_OF_STATUS[record.status as VolumeStatus] ?? null,
              owner: null,
              lease_expires_at: null,
            } as Partial<R>)!,
        );
    const connections = this.connections
      .all()
      .filter((record) => record.owner && isRecoverable(record, claim))
      .map((record) => this.connections.update(record.id, { status: 'error', status_reason: reason(record, 'connection'), owner: null, lease_expires_at: null })!);
    return { volumes: recover(this.volumes, 'volume'), snapshots: recover(this.snapshots, 'snapshot'), connections };
  }

  readonly description = 'memory (nothing kept after the process ends)';
  private readonly audit: AuditRecord[] = [];

  async appendAudit(record: AuditRecord): Promise<void> {
    this.audit.push(structuredClone(record));
  }

  async listAudit(query: AuditQuery): Promise<{ records: AuditRecord[]; nextAfter?: number }> {
    const start = query.after ?? 0;
    const matching: Array<{ seq: number; record: AuditRecord }> = [];
    for (let index = start; index < this.audit.length && matching.length <= query.limit; index++) {
      const record = this.audit[index]!;
      if (!query.since || record.time >= query.since) matching.push({ seq: index + 1, record });
    }
    const page = matching.slice(0, query.limit);
    return { records: page.map((entry) => structuredClone(entry.record)), nextAfter: matching.length > query.limit ? page[page.length - 1]!.seq : undefined };
  }

  async importRecords(batch: ImportBatch): Promise<void> {
    const taken =
      batch.volumes.find((record) => this.volumes.get(record.id))?.id ??
      batch.snapshots.find((record) => this.snapshots.get(record.id))?.id ??
      batch.connections.find((record) => this.connections.get(record.id))?.id;
    if (taken) throw new StorageError('ALREADY_EXISTS', `${taken} is already in the metadata store; nothing was loaded`);
    for (const record of batch.volumes) this.volumes.insert(record);
    for (const record of batch.snapshots) this.snapshots.insert(record);
    for (const record of batch.connections) this.connections.insert(record);
  }

  async renewLeases(owner: string, until: string): Promise<void> {
    for (const record of [...this.volumes.all(), ...this.snapshots.all()]) {
      if (record.owner === owner && TRANSITIONAL_STATUSES.includes(record.status as VolumeStatus)) record.lease_expires_at = until;
    }
    for (const record of this.connections.all()) if (record.owner === owner) record.lease_expires_at = until;
  }


  /** Memory cannot fill up the way a disk does: the update is applied at once. */
  deferUpdate(id: string, patch: VolumePatch): void {
    this.volumes.update(id, patch);
  }

  deferSnapshotUpdate(id: string, patch: SnapshotPatch): void {
    this.snapshots.update(id, patch);
  }

  async removeLeavingTombstone(id: string, tombstone: Tombstone): Promise<boolean> {
    if (!(tombstone.kind === 'snapshot' ? this.snapshots : this.volumes).remove(id)) return false;
    this.graves.set(id, { ...tombstone });
    return true;
  }

  async tombstones(backend: string): Promise<Tombstone[]> {
    return [...this.graves.values()].filter((grave) => grave.backend === backend).map((grave) => ({ ...grave }));
  }

  async rescheduleTombstone(objectId: string, next: { checks_done: number; next_check_at: string } | null): Promise<void> {
    const grave = this.graves.get(objectId);
    if (!grave) return;
    if (next) Object.assign(grave, next);
    else this.graves.delete(objectId);
  }

  async close(): Promise<void> {
    this.requests.clear();
    this.graves.clear();
  }

  private insertClaiming(request: RequestEntry | undefined, insert: () => boolean): InsertOutcome {
    if (request) {
      const existing = this.liveRequest(request.request_id);
      if (existing) return { inserted: false, existingRequest: existing };
    }
    if (!insert()) return { inserted: false };
    if (request) this.requests.set(request.request_id, { ...request });
    return { inserted: true };
  }

  private liveRequest(requestId: string): RequestEntry | undefined {
    const entry = this.requests.get(requestId);
    if (!entry) return undefined;
    if (Date.parse(entry.created_at) + REQUEST_ID_TTL_MS > Date.now()) return { ...entry };
    this.requests.delete(requestId);
    return undefined;
  }
}
