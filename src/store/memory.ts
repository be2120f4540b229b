import type { ConnectionRecord } from '../model/connection.js';
import { StorageError } from '../base/errors.js';
import type { SnapshotRecord } from '../model/snapshot.js';
import { OPERATION_OF_STATUS, TRANSITIONAL_STATUSES, type VolumeRecord } from '../model/volume.js';
import { isRecoverable } from './recovery.js';
import { TABLES } from './schema.js';
import {
  REQUEST_ID_TTL_MS,
  type AuditQuery,
  type AuditRecord,
  type ConnectionPatch,
  type ConnectionQuery,
  type ImportBatch,
  type InsertOutcome,
  type Page,
  type RecordTable,
  type RecoveredKind,
  type RecoveryClaim,
  type RequestEntry,
  type SnapshotPatch,
  type SnapshotQuery,
  type Tombstone,
  type VolumePatch,
  type VolumeQuery,
  type VolumeStore,
} from './store.js';

/** Records in insertion order (Map iteration order), which gives stable, creation-ordered pages. */
class MemoryRecords<R extends { id: string; status: string }, P extends object, Q extends { after?: number; limit: number }, Parent extends object> implements RecordTable<
  R,
  P,
  Q,
  Parent
> {
  private readonly byId = new Map<string, { seq: number; record: R }>();
  private nextSeq = 1;

  constructor(
    private readonly requests: Requests,
    /** The query fields that filter a page (equality), as in schema.ts. */
    private readonly filters: readonly string[],
    /** Where an update's audit record goes (the store's audit log). */
    private readonly appendAudit: (record: AuditRecord) => void,
  ) {}

  async insert(record: R, request?: RequestEntry): Promise<InsertOutcome> {
    return this.requests.claim(request, () => this.insertRecord(record));
  }

  async get(id: string): Promise<R | undefined> {
    const entry = this.byId.get(id);
    return entry ? { ...entry.record } : undefined;
  }

  async update(id: string, patch: P, expected?: readonly R['status'][], audit?: AuditRecord): Promise<R | undefined> {
    const updated = this.updateRecord(id, patch, expected);
    if (updated && audit) this.appendAudit(audit);
    return updated;
  }

  async remove(id: string): Promise<boolean> {
    return this.byId.delete(id);
  }

  async list(query: Q): Promise<Page<R>> {
    const fields = query as unknown as Record<string, unknown>;
    const name = typeof fields.name === 'string' ? fields.name.toLowerCase() : undefined;
    const keep = (record: R) =>
      this.filters.every((field) => fields[field] === undefined || (record as Record<string, unknown>)[field] === fields[field]) &&
      (name === undefined || ((record as { name?: string }).name ?? '').toLowerCase().includes(name));
    const records: R[] = [];
    let lastSeq = 0;
    for (const { seq, record } of this.byId.values()) {
      if (seq <= (query.after ?? 0) || !keep(record)) continue;
      if (records.length === query.limit) return { records, nextAfter: lastSeq };
      records.push({ ...record });
      lastSeq = seq;
    }
    return { records };
  }

  async all(parent: Parent): Promise<R[]> {
    const [[field, value]] = Object.entries(parent) as Array<[string, unknown]>;
    return this.records()
      .filter((record) => (record as Record<string, unknown>)[field] === value)
      .map((record) => ({ ...record }));
  }

  /** Memory cannot fill up the way a disk does: the update is applied at once. */
  defer(id: string, patch: P): void {
    this.updateRecord(id, patch);
  }

  insertRecord(record: R): boolean {
    if (this.byId.has(record.id)) return false;
    this.byId.set(record.id, { seq: this.nextSeq++, record: { ...record } });
    return true;
  }

  updateRecord(id: string, patch: object, expected?: readonly string[]): R | undefined {
    const entry = this.byId.get(id);
    if (!entry || (expected && !expected.includes(entry.record.status))) return undefined;
    const defined = Object.fromEntries(Object.entries(patch).filter(([, value]) => value !== undefined));
    entry.record = { ...entry.record, ...defined, updated_at: new Date().toISOString() };
    return { ...entry.record };
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  /** The stored records themselves, not copies. */
  records(): R[] {
    return [...this.byId.values()].map((entry) => entry.record);
  }
}

/** The request_ids answered with what they made. */
class Requests {
  private readonly entries = new Map<string, RequestEntry>();

  claim(request: RequestEntry | undefined, insert: () => boolean): InsertOutcome {
    if (request) {
      const existing = this.live(request.request_id);
      if (existing) return { inserted: false, existingRequest: existing };
    }
    if (!insert()) return { inserted: false };
    if (request) this.entries.set(request.request_id, { ...request });
    return { inserted: true };
  }

  live(requestId: string): RequestEntry | undefined {
    const entry = this.entries.get(requestId);
    if (!entry) return undefined;
    if (Date.parse(entry.created_at) + REQUEST_ID_TTL_MS > Date.now()) return { ...entry };
    this.entries.delete(requestId);
    return undefined;
  }

  clear(): void {
    this.entries.clear();
  }
}

/** cinderlib's `memory` storage: everything is gone when the process ends. */
export class MemoryVolumeStore implements VolumeStore {
  private readonly requests = new Requests();
  private readonly audit: AuditRecord[] = [];
  readonly volumes = new MemoryRecords<VolumeRecord, VolumePatch, VolumeQuery, { snapshot_id: string }>(this.requests, TABLES.volumes.filters, (record) =>
    this.audit.push(structuredClone(record)),
  );
  readonly snapshots = new MemoryRecords<SnapshotRecord, SnapshotPatch, SnapshotQuery, { volume_id: string }>(this.requests, TABLES.snapshots.filters, (record) =>
    this.audit.push(structuredClone(record)),
  );
  readonly connections = new MemoryRecords<ConnectionRecord, ConnectionPatch, ConnectionQuery, { volume_id: string }>(this.requests, TABLES.connections.filters, (record) =>
    this.audit.push(structuredClone(record)),
  );
  private readonly graves = new Map<string, Tombstone>();

  async findRequest(requestId: string): Promise<RequestEntry | undefined> {
    return this.requests.live(requestId);
  }

  async surfaceInterrupted(
    claim: RecoveryClaim,
    reason: (record: { id: string; status: string; owner?: string | null }, kind: RecoveredKind) => string,
  ): Promise<{ volumes: VolumeRecord[]; snapshots: SnapshotRecord[]; connections: ConnectionRecord[] }> {
    const recover = <R extends VolumeRecord | SnapshotRecord>(table: MemoryRecords<R, object, VolumeQuery, object>, kind: 'volume' | 'snapshot'): R[] =>
      table
        .records()
        .filter((record) => TRANSITIONAL_STATUSES.includes(record.status) && isRecoverable(record, claim))
        .map((record) =>
          table.updateRecord(record.id, {
            status: 'error',
            status_reason: reason(record, kind),
            failed_operation: record.failed_operation === 'manage' ? 'manage' : (OPERATION_OF_STATUS[record.status] ?? null),
            owner: null,
            lease_expires_at: null,
          })!,
        );
    const connections = this.connections
      .records()
      .filter((record) => record.owner && isRecoverable(record, claim))
      .map((record) => this.connections.updateRecord(record.id, { status: 'error', status_reason: reason(record, 'connection'), owner: null, lease_expires_at: null })!);
    return { volumes: recover(this.volumes, 'volume'), snapshots: recover(this.snapshots, 'snapshot'), connections };
  }

  readonly description = 'memory (nothing kept after the process ends)';

  async appendAudit(record: AuditRecord): Promise<void> {
    this.audit.push(structuredClone(record));
  }

  async listAudit(query: AuditQuery): Promise<Page<AuditRecord>> {
    const start = query.after ?? 0;
    const matching: Array<{ seq: number; record: AuditRecord }> = [];
    for (let index = start; index < this.audit.length && matching.length <= query.limit; index++) {
      const record = this.audit[index];
      if (!query.since || record.time >= query.since) matching.push({ seq: index + 1, record });
    }
    const page = matching.slice(0, query.limit);
    return { records: page.map((entry) => structuredClone(entry.record)), nextAfter: matching.length > query.limit ? page[page.length - 1].seq : undefined };
  }

  async importRecords(batch: ImportBatch): Promise<void> {
    const taken =
      batch.volumes.find((record) => this.volumes.has(record.id))?.id ??
      batch.snapshots.find((record) => this.snapshots.has(record.id))?.id ??
      batch.connections.find((record) => this.connections.has(record.id))?.id;
    if (taken) throw new StorageError('ALREADY_EXISTS', `${taken} is already in the metadata store; nothing was loaded`);
    for (const record of batch.volumes) this.volumes.insertRecord(record);
    for (const record of batch.snapshots) this.snapshots.insertRecord(record);
    for (const record of batch.connections) this.connections.insertRecord(record);
  }

  async renewLeases(owner: string, until: string): Promise<void> {
    for (const record of [...this.volumes.records(), ...this.snapshots.records()]) {
      if (record.owner === owner && TRANSITIONAL_STATUSES.includes(record.status)) record.lease_expires_at = until;
    }
    for (const record of this.connections.records()) if (record.owner === owner) record.lease_expires_at = until;
  }

  async removeLeavingTombstone(id: string, tombstone: Tombstone): Promise<boolean> {
    if (!(await (tombstone.kind === 'snapshot' ? this.snapshots : this.volumes).remove(id))) return false;
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
}
