import Database from 'better-sqlite3';
import { statSync } from 'node:fs';
import { privateFile } from '../private-files.js';
import { StorageError } from '../errors.js';
import type { HeldLock } from '../process-lock.js';
import { OPERATION_OF_STATUS, TRANSITIONAL_STATUSES, type VolumeRecord, type VolumeStatus } from '../volume.js';
import { OutcomeBuffer } from './outcome-buffer.js';
import { isRecoverable } from './recovery.js';
import type { ConnectionRecord, ConnectionStatus } from '../connection.js';
import type { SnapshotRecord, SnapshotStatus } from '../snapshot.js';
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

/**
 * Forward-only migrations; PRAGMA user_version holds how many have run. `seq` gives listing a
 * stable, creation-ordered key that cursors point into (AUTOINCREMENT: never reused).
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE volumes (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     id TEXT NOT NULL UNIQUE,
     backend TEXT NOT NULL,
     name TEXT NOT NULL,
     description TEXT NOT NULL,
     size INTEGER NOT NULL,
     status TEXT NOT NULL,
     pool_name TEXT NOT NULL,
     bootable INTEGER NOT NULL,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL,
     status_reason TEXT,
     provider_location TEXT
   );
   CREATE INDEX volumes_by_backend ON volumes (backend, seq);
   CREATE INDEX volumes_by_status ON volumes (status, seq);
   CREATE INDEX volumes_by_backend_status ON volumes (backend, status, seq);`,
  `ALTER TABLE volumes ADD COLUMN failed_operation TEXT;
   CREATE TABLE tombstones (
     volume_id TEXT PRIMARY KEY,
     backend TEXT NOT NULL,
     pool_name TEXT NOT NULL,
     size INTEGER NOT NULL,
     provider_location TEXT,
     checks_done INTEGER NOT NULL,
     next_check_at TEXT NOT NULL
   );
   CREATE INDEX tombstones_by_backend ON tombstones (backend);`,
  `ALTER TABLE volumes ADD COLUMN owner TEXT;
   ALTER TABLE volumes ADD COLUMN lease_expires_at TEXT;`,
  `ALTER TABLE volumes ADD COLUMN snapshot_id TEXT;
   ALTER TABLE volumes ADD COLUMN source_volume_id TEXT;
   CREATE INDEX volumes_by_snapshot ON volumes (snapshot_id);
   CREATE TABLE snapshots (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     id TEXT NOT NULL UNIQUE,
     volume_id TEXT NOT NULL,
     backend TEXT NOT NULL,
     name TEXT NOT NULL,
     description TEXT NOT NULL,
     volume_size INTEGER NOT NULL,
     status TEXT NOT NULL,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL,
     status_reason TEXT,
     provider_location TEXT,
     failed_operation TEXT,
     owner TEXT,
     lease_expires_at TEXT
   );
   CREATE INDEX snapshots_by_backend ON snapshots (backend, seq);
   CREATE INDEX snapshots_by_volume ON snapshots (volume_id, seq);
   CREATE INDEX snapshots_by_status ON snapshots (status, seq);
   CREATE INDEX snapshots_by_backend_status ON snapshots (backend, status, seq);
   CREATE TABLE requests (
     request_id TEXT PRIMARY KEY,
     tool TEXT NOT NULL,
     fingerprint TEXT NOT NULL,
     object_kind TEXT NOT NULL,
     object_id TEXT NOT NULL,
     created_at TEXT NOT NULL
   );`,
  `CREATE TABLE connections (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     id TEXT NOT NULL UNIQUE,
     volume_id TEXT NOT NULL,
     backend TEXT NOT NULL,
     status TEXT NOT NULL,
     attach_mode TEXT NOT NULL,
     connector TEXT NOT NULL,
     connection_info TEXT NOT NULL,
     device TEXT,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL,
     status_reason TEXT
   );
   CREATE INDEX connections_by_backend ON connections (backend, seq);
   CREATE INDEX connections_by_volume ON connections (volume_id, seq);`,
  `ALTER TABLE tombstones RENAME COLUMN volume_id TO object_id;
   ALTER TABLE tombstones ADD COLUMN kind TEXT NOT NULL DEFAULT 'volume';
   ALTER TABLE tombstones ADD COLUMN parent_volume_id TEXT;`,
  `ALTER TABLE volumes ADD COLUMN provider_auth TEXT;
   ALTER TABLE connections ADD COLUMN owner TEXT;
   ALTER TABLE connections ADD COLUMN lease_expires_at TEXT;`,
  `ALTER TABLE volumes ADD COLUMN cinderlib_extra TEXT;
   ALTER TABLE snapshots ADD COLUMN cinderlib_extra TEXT;
   ALTER TABLE connections ADD COLUMN cinderlib_extra TEXT;`,
  `CREATE TABLE audit_log (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     time TEXT NOT NULL,
     server TEXT NOT NULL,
     client TEXT NOT NULL,
     tool TEXT NOT NULL,
     arguments TEXT NOT NULL,
     outcome TEXT NOT NULL,
     error TEXT
   );
   CREATE INDEX audit_log_by_time ON audit_log (time, seq);`,
];

/** SQLite result codes that mean the store itself cannot take writes now, not that a call was wrong. */
const STORE_TROUBLE = /^SQLITE_(FULL|IOERR|READONLY|CANTOPEN|CORRUPT|NOTADB|BUSY|LOCKED)/;

interface Row {
  seq: number;
  id: string;
  backend: string;
  name: string;
  description: string;
  size: number;
  status: VolumeStatus;
  pool_name: string;
  bootable: number;
  created_at: string;
  updated_at: string;
  status_reason: string | null;
  provider_location: string | null;
  provider_auth: string | null;
  failed_operation: VolumeRecord['failed_operation'];
  owner: string | null;
  lease_expires_at: string | null;
  snapshot_id: string | null;
  source_volume_id: string | null;
  cinderlib_extra: string | null;
}

type SnapshotRow = Omit<SnapshotRecord, 'cinderlib_extra'> & { seq: number; cinderlib_extra: string | null };

/** The unmodeled fields of a loaded cinderlib dump, as stored (JSON text). */
const extraText = (extra: Record<string, unknown> | null | undefined): string | null => (extra ? JSON.stringify(extra) : null);
const extraOf = (text: string | null | undefined): Record<string, unknown> | null => (text ? (JSON.parse(text) as Record<string, unknown>) : null);

/** A connection as stored: its JSON-valued fields as text. */
interface ConnectionRow extends Omit<ConnectionRecord, 'connector' | 'connection_info' | 'device' | 'cinderlib_extra'> {
  seq: number;
  connector: string;
  connection_info: string;
  device: string | null;
  cinderlib_extra: string | null;
}

function fromConnectionRow(row: ConnectionRow): ConnectionRecord {
  const { seq: _seq, connector, connection_info, device, cinderlib_extra, ...rest } = row;
  return {
    ...rest,
    connector: JSON.parse(connector),
    connection_info: JSON.parse(connection_info),
    device: device === null ? null : JSON.parse(device),
    cinderlib_extra: extraOf(cinderlib_extra),
  };
}

function toConnectionColumns(patch: Partial<ConnectionRecord>): Record<string, unknown> {
  const columns: Record<string, unknown> = { ...patch };
  for (const key of ['connector', 'connection_info', 'device', 'cinderlib_extra'] as const) {
    if (patch[key] !== undefined) columns[key] = patch[key] === null ? null : JSON.stringify(patch[key]);
  }
  return columns;
}

function connectionRow(record: ConnectionRecord): Record<string, unknown> {
  return toConnectionColumns({ owner: null, lease_expires_at: null, cinderlib_extra: null, ...record });
}

function fromSnapshotRow(row: SnapshotRow): SnapshotRecord {
  const { seq: _seq, cinderlib_extra, ...record } = row;
  return { ...record, cinderlib_extra: extraOf(cinderlib_extra) };
}

function fromRow(row: Row): VolumeRecord {
  const { seq: _seq, bootable, cinderlib_extra, ...rest } = row;
  return { ...rest, bootable: bootable === 1, cinderlib_extra: extraOf(cinderlib_extra) };
}

export class SqliteVolumeStore implements VolumeStore {
  private readonly db: Database.Database;
  private readonly statements;
  private readonly unwritten = new OutcomeBuffer<VolumePatch>();
  private readonly unwrittenSnapshots = new OutcomeBuffer<SnapshotPatch>();
  /** The file's identity at open: a store deleted or replaced under the server must not take writes into nowhere. */
  private readonly fileIdentity?: { dev: number; ino: number };

  /**
   * `lock`, when given, is the process lock guarding the file; it is released on close. With
   * `readOnly` (a dump beside the running server that holds the lock) nothing is written, schema
   * upgrades included.
   */
  constructor(
    private readonly path: string,
    private readonly lock?: HeldLock,
    options: { readOnly?: boolean } = {},
  ) {
    if (options.readOnly) {
      this.db = new Database(path, { readonly: true, fileMustExist: true });
      this.db.pragma('busy_timeout = 5000');
      this.requireCurrentSchema();
    } else {
      if (path !== ':memory:') privateFile(path, ['-wal', '-shm']);
      this.db = new Database(path);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('busy_timeout = 5000');
      this.migrate();
    }
    if (path !== ':memory:') {
      const { dev, ino } = statSync(path);
      this.fileIdentity = { dev, ino };
    }
    this.statements = {
      insert: this.db.prepare(
        `INSERT OR IGNORE INTO volumes (id, backend, name, description, size, status, pool_name, bootable, created_at, updated_at, status_reason, provider_location, provider_auth, failed_operation, owner, lease_expires_at, snapshot_id, source_volume_id, cinderlib_extra)
         VALUES (@id, @backend, @name, @description, @size, @status, @pool_name, @bootable, @created_at, @updated_at, @status_reason, @provider_location, @provider_auth, @failed_operation, @owner, @lease_expires_at, @snapshot_id, @source_volume_id, @cinderlib_extra)`,
      ),
      get: this.db.prepare('SELECT * FROM volumes WHERE id = ?'),
      remove: this.db.prepare('DELETE FROM volumes WHERE id = ?'),
      bury: this.db.prepare(
        `INSERT OR REPLACE INTO tombstones (object_id, kind, parent_volume_id, backend, pool_name, size, provider_location, checks_done, next_check_at)
         VALUES (@object_id, @kind, @parent_volume_id, @backend, @pool_name, @size, @provider_location, @checks_done, @next_check_at)`,
      ),
      tombstones: this.db.prepare('SELECT * FROM tombstones WHERE backend = ? ORDER BY next_check_at'),
      reschedule: this.db.prepare('UPDATE tombstones SET checks_done = @checks_done, next_check_at = @next_check_at WHERE object_id = @object_id'),
      forget: this.db.prepare('DELETE FROM tombstones WHERE object_id = ?'),
      renew: [
        ...['volumes', 'snapshots'].map((table) =>
          this.db.prepare(
            `UPDATE ${table} SET lease_expires_at = @until WHERE owner = @owner AND status IN (${TRANSITIONAL_STATUSES.map((status) => `'${status}'`).join(', ')})`,
          ),
        ),
        this.db.prepare('UPDATE connections SET lease_expires_at = @until WHERE owner = @owner'),
      ],
      insertSnapshot: this.db.prepare(
        `INSERT OR IGNORE INTO snapshots (id, volume_id, backend, name, description, volume_size, status, created_at, updated_at, status_reason, provider_location, failed_operation, owner, lease_expires_at, cinderlib_extra)
         VALUES (@id, @volume_id, @backend, @name, @description, @volume_size, @status, @created_at, @updated_at, @status_reason, @provider_location, @failed_operation, @owner, @lease_expires_at, @cinderlib_extra)`,
      ),
      getSnapshot: this.db.prepare('SELECT * FROM snapshots WHERE id = ?'),
      removeSnapshot: this.db.prepare('DELETE FROM snapshots WHERE id = ?'),
      snapshotsOf: this.db.prepare('SELECT * FROM snapshots WHERE volume_id = ? ORDER BY seq'),
      volumesFromSnapshot: this.db.prepare('SELECT * FROM volumes WHERE snapshot_id = ? ORDER BY seq'),
      insertConnection: this.db.prepare(
        `INSERT OR IGNORE INTO connections (id, volume_id, backend, status, attach_mode, connector, connection_info, device, created_at, updated_at, status_reason, owner, lease_expires_at, cinderlib_extra)
         VALUES (@id, @volume_id, @backend, @status, @attach_mode, @connector, @connection_info, @device, @created_at, @updated_at, @status_reason, @owner, @lease_expires_at, @cinderlib_extra)`,
      ),
      getConnection: this.db.prepare('SELECT * FROM connections WHERE id = ?'),
      removeConnection: this.db.prepare('DELETE FROM connections WHERE id = ?'),
      connectionsOf: this.db.prepare('SELECT * FROM connections WHERE volume_id = ? ORDER BY seq'),
      findRequest: this.db.prepare('SELECT * FROM requests WHERE request_id = ?'),
      forgetRequest: this.db.prepare('DELETE FROM requests WHERE request_id = ?'),
      claimRequest: this.db.prepare(
        `INSERT INTO requests (request_id, tool, fingerprint, object_kind, object_id, created_at)
         VALUES (@request_id, @tool, @fingerprint, @object_kind, @object_id, @created_at)`,
      ),
    };
  }

  async insert(record: VolumeRecord): Promise<boolean> {
    return this.write('record a new volume', () => {
      const result = this.statements.insert.run(this.row(record));
      return result.changes === 1;
    });
  }

  async insertForRequest(record: VolumeRecord, request: RequestEntry | undefined): Promise<InsertOutcome> {
    return this.write('record a new volume', () => this.insertClaiming(request, () => this.statements.insert.run(this.row(record)).changes === 1));
  }

  async insertSnapshotForRequest(record: SnapshotRecord, request: RequestEntry | undefined): Promise<InsertOutcome> {
    return this.write('record a new snapshot', () =>
      this.insertClaiming(request, () => this.statements.insertSnapshot.run(this.snapshotRow(record)).changes === 1),
    );
  }

  async findRequest(requestId: string): Promise<RequestEntry | undefined> {
    return this.read(() => this.liveRequest(requestId));
  }

  async get(id: string): Promise<VolumeRecord | undefined> {
    return this.read(() => this.readRecord(id));
  }

  async getSnapshot(id: string): Promise<SnapshotRecord | undefined> {
    return this.read(() => {
      const row = this.statements.getSnapshot.get(id) as SnapshotRow | undefined;
      return this.unwrittenSnapshots.apply(row ? fromSnapshotRow(row) : undefined);
    });
  }

  async updateSnapshot(id: string, patch: SnapshotPatch, expected?: readonly SnapshotStatus[]): Promise<SnapshotRecord | undefined> {
    return this.write(`update snapshot ${id}`, () => {
      if (!this.applyPatch('snapshots', id, patch, expected)) return undefined;
      this.unwrittenSnapshots.forget(id);
      return fromSnapshotRow(this.statements.getSnapshot.get(id) as SnapshotRow);
    });
  }

  async removeSnapshot(id: string): Promise<boolean> {
    return this.write(`forget snapshot ${id}`, () => {
      this.unwrittenSnapshots.forget(id);
      return this.statements.removeSnapshot.run(id).changes === 1;
    });
  }

  async listSnapshots(query: SnapshotQuery): Promise<SnapshotPage> {
    const { rows, nextAfter } = this.page<SnapshotRow>('snapshots', query, { backend: query.backend, volume_id: query.volume_id, status: query.status });
    return { records: rows.map((row) => this.unwrittenSnapshots.apply(fromSnapshotRow(row))), nextAfter };
  }

  async snapshotsOf(volumeId: string): Promise<SnapshotRecord[]> {
    return this.read(() => (this.statements.snapshotsOf.all(volumeId) as SnapshotRow[]).map((row) => this.unwrittenSnapshots.apply(fromSnapshotRow(row))));
  }

  async volumesFromSnapshot(snapshotId: string): Promise<VolumeRecord[]> {
    return this.read(() => (this.statements.volumesFromSnapshot.all(snapshotId) as Row[]).map((row) => this.unwritten.apply(fromRow(row))));
  }

  async update(id: string, patch: VolumePatch, expected?: readonly VolumeStatus[]): Promise<VolumeRecord | undefined> {
    return this.write(`update volume ${id}`, () => this.applyUpdate(id, patch, expected));
  }

  deferUpdate(id: string, patch: VolumePatch): void {
    this.unwritten.defer(id, patch);
  }

  deferSnapshotUpdate(id: string, patch: SnapshotPatch): void {
    this.unwrittenSnapshots.defer(id, patch);
  }

  async remove(id: string): Promise<boolean> {
    return this.write(`forget volume ${id}`, () => {
      const removed = this.statements.remove.run(id).changes === 1;
      this.unwritten.forget(id);
      return removed;
    });
  }

  async list(query: VolumeQuery): Promise<VolumePage> {
    const { rows, nextAfter } = this.page<Row>('volumes', query, { backend: query.backend, status: query.status });
    return { records: rows.map((row) => this.unwritten.apply(fromRow(row))), nextAfter };
  }

  async insertConnection(record: ConnectionRecord): Promise<boolean> {
    return this.write('record a new connection', () => this.statements.insertConnection.run(connectionRow(record)).changes === 1);
  }

  async insertConnectionForRequest(record: ConnectionRecord, request: RequestEntry | undefined): Promise<InsertOutcome> {
    return this.write('record a new connection', () => this.insertClaiming(request, () => this.statements.insertConnection.run(connectionRow(record)).changes === 1));
  }

  async getConnection(id: string): Promise<ConnectionRecord | undefined> {
    return this.read(() => {
      const row = this.statements.getConnection.get(id) as ConnectionRow | undefined;
      return row ? fromConnectionRow(row) : undefined;
    });
  }

  async updateConnection(id: string, patch: ConnectionPatch, expected?: readonly ConnectionStatus[]): Promise<ConnectionRecord | undefined> {
    return this.write(`update connection ${id}`, () => {
      if (!this.applyPatch('connections', id, toConnectionColumns(patch), expected)) return undefined;
      return fromConnectionRow(this.statements.getConnection.get(id) as ConnectionRow);
    });
  }

  async removeConnection(id: string): Promise<boolean> {
    return this.write(`forget connection ${id}`, () => this.statements.removeConnection.run(id).changes === 1);
  }

  async listConnections(query: ConnectionQuery): Promise<ConnectionPage> {
    const { rows, nextAfter } = this.page<ConnectionRow>('connections', query, { backend: query.backend, volume_id: query.volume_id });
    return { records: rows.map(fromConnectionRow), nextAfter };
  }

  async connectionsOf(volumeId: string): Promise<ConnectionRecord[]> {
    return this.read(() => (this.statements.connectionsOf.all(volumeId) as ConnectionRow[]).map(fromConnectionRow));
  }

  async surfaceInterrupted(
    claim: RecoveryClaim,
    reason: (record: { id: string; status: string; owner?: string | null }, kind: RecoveredKind) => string,
  ): Promise<{ volumes: VolumeRecord[]; snapshots: SnapshotRecord[]; connections: ConnectionRecord[] }> {
    const placeholders = TRANSITIONAL_STATUSES.map(() => '?').join(', ');
    return this.write('mark interrupted operations', () =>
      this.db.transaction(() => {
        const recover = (table: 'volumes' | 'snapshots'): string[] => {
          const kind = table === 'volumes' ? 'volume' : 'snapshot';
          const rows = this.db.prepare(`SELECT * FROM ${table} WHERE status IN (${placeholders})`).all(...TRANSITIONAL_STATUSES) as Array<Row | SnapshotRow>;
          return rows
            .filter((row) => isRecoverable(row, claim))
            .filter((row) =>
              this.applyPatch(
                table,
                row.id,
                { status: 'error', status_reason: reason(row, kind), failed_operation: OPERATION_OF_STATUS[row.status as VolumeStatus] ?? null, owner: null, lease_expires_at: null },
                [row.status],
              ),
            )
            .map((row) => row.id);
        };
        const connections = (this.db.prepare('SELECT * FROM connections WHERE owner IS NOT NULL').all() as ConnectionRow[])
          .filter((row) => isRecoverable(row, claim))
          .filter((row) => this.applyPatch('connections', row.id, { status: 'error', status_reason: reason(row, 'connection'), owner: null, lease_expires_at: null }, [row.status]))
          .map((row) => fromConnectionRow(this.statements.getConnection.get(row.id) as ConnectionRow));
        return {
          volumes: recover('volumes').map((id) => this.readRecord(id)!),
          snapshots: recover('snapshots').map((id) => fromSnapshotRow(this.statements.getSnapshot.get(id) as SnapshotRow)),
          connections,
        };
      })(),
    );
  }


  async renewLeases(owner: string, until: string): Promise<void> {
    this.write('renew the leases of operations under way', () => {
      for (const statement of this.statements.renew) statement.run({ owner, until });
    });
  }

  async removeLeavingTombstone(id: string, tombstone: Tombstone): Promise<boolean> {
    return this.write(`forget ${tombstone.kind} ${id}`, () => {
      const removed = this.db.transaction(() => {
        const remove = tombstone.kind === 'snapshot' ? this.statements.removeSnapshot : this.statements.remove;
        if (remove.run(id).changes !== 1) return false;
        this.statements.bury.run(tombstone);
        return true;
      })();
      (tombstone.kind === 'snapshot' ? this.unwrittenSnapshots : this.unwritten).forget(id);
      return removed;
    });
  }

  async tombstones(backend: string): Promise<Tombstone[]> {
    return this.read(() => this.statements.tombstones.all(backend) as Tombstone[]);
  }

  async rescheduleTombstone(objectId: string, next: { checks_done: number; next_check_at: string } | null): Promise<void> {
    this.write(`reschedule the tombstone of ${objectId}`, () => {
      if (next) this.statements.reschedule.run({ object_id: objectId, ...next });
      else this.statements.forget.run(objectId);
    });
  }

  /** For benchmarks and imports: many records in one transaction. */
  get description(): string {
    return `SQLite ${this.path}`;
  }

  async appendAudit(record: AuditRecord): Promise<void> {
    this.write('record an audit line', () =>
      this.db
        .prepare('INSERT INTO audit_log (time, server, client, tool, arguments, outcome, error) VALUES (@time, @server, @client, @tool, @arguments, @outcome, @error)')
        .run({ ...record, arguments: JSON.stringify(record.arguments), error: record.error ?? null }),
    );
  }

  async listAudit(query: AuditQuery): Promise<{ records: AuditRecord[]; nextAfter?: number }> {
    return this.read(() => {
      const rows = this.db
        .prepare('SELECT * FROM audit_log WHERE seq > @after AND time >= @since ORDER BY seq LIMIT @limit')
        .all({ after: query.after ?? 0, since: query.since ?? '', limit: query.limit + 1 }) as Array<Omit<AuditRecord, 'arguments'> & { seq: number; arguments: string; error: string | null }>;
      const more = rows.length > query.limit;
      const page = rows.slice(0, query.limit);
      return {
        records: page.map(({ seq: _seq, arguments: args, error, ...rest }) => ({ ...rest, arguments: JSON.parse(args), ...(error ? { error } : {}) })),
        nextAfter: more ? page[page.length - 1]!.seq : undefined,
      };
    });
  }

  async importRecords(batch: ImportBatch): Promise<void> {
    await this.write('load a dump', () =>
      // A throw inside the transaction rolls every row of it back: all or nothing.
      this.db.transaction(() => {
        const taken = (what: string) => new StorageError('ALREADY_EXISTS', `${what} is already in the metadata store; nothing was loaded`);
        for (const record of batch.volumes) if (this.statements.insert.run(this.row(record)).changes !== 1) throw taken(`volume ${record.id}`);
        for (const record of batch.snapshots) if (this.statements.insertSnapshot.run(this.snapshotRow(record)).changes !== 1) throw taken(`snapshot ${record.id}`);
        for (const record of batch.connections) if (this.statements.insertConnection.run(connectionRow(record)).changes !== 1) throw taken(`connection ${record.id}`);
      })(),
    );
  }

  insertMany(records: VolumeRecord[]): void {
    const insertAll = this.db.transaction((batch: VolumeRecord[]) => {
      for (const record of batch) this.statements.insert.run(this.row(record));
    });
    insertAll(records);
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
    this.lock?.release();
  }

  private row(record: VolumeRecord): Record<string, unknown> {
    return {
      provider_auth: null,
      failed_operation: null,
      owner: null,
      lease_expires_at: null,
      snapshot_id: null,
      source_volume_id: null,
      ...record,
      bootable: record.bootable ? 1 : 0,
      cinderlib_extra: extraText(record.cinderlib_extra),
    };
  }

  private snapshotRow(record: SnapshotRecord): Record<string, unknown> {
    return { failed_operation: null, owner: null, lease_expires_at: null, ...record, cinderlib_extra: extraText(record.cinderlib_extra) };
  }

  private applyUpdate(id: string, patch: VolumePatch, expected?: readonly VolumeStatus[]): VolumeRecord | undefined {
    if (!this.applyPatch('volumes', id, patch, expected)) return undefined;
    this.unwritten.forget(id);
    return this.readRecord(id);
  }

  /** UPDATE of the given fields (and updated_at) when the row's status is one of `expected`. */
  private applyPatch(table: 'volumes' | 'snapshots' | 'connections', id: string, patch: object, expected?: readonly string[]): boolean {
    const fields = Object.entries(patch).filter(([, value]) => value !== undefined);
    const sets = [...fields.map(([field]) => `${field} = @${field}`), 'updated_at = @updated_at'];
    const params: Record<string, unknown> = { ...Object.fromEntries(fields), id, updated_at: new Date().toISOString() };
    let where = 'id = @id';
    if (expected) {
      where += ` AND status IN (${expected.map((_, i) => `@expected${i}`).join(', ')})`;
      expected.forEach((status, i) => (params[`expected${i}`] = status));
    }
    return this.db.prepare(`UPDATE ${table} SET ${sets.join(', ')} WHERE ${where}`).run(params).changes === 1;
  }

  /** A page in creation order; one row past the page tells whether another exists, without a COUNT. */
  private page<R extends { seq: number }>(table: 'volumes' | 'snapshots' | 'connections', query: { after?: number; limit: number }, filters: Record<string, string | undefined>): { rows: R[]; nextAfter?: number } {
    const conditions = ['seq > @after'];
    for (const [column, value] of Object.entries(filters)) if (value !== undefined) conditions.push(`${column} = @${column}`);
    const rows = this.read(
      () =>
        this.db
          .prepare(`SELECT * FROM ${table} WHERE ${conditions.join(' AND ')} ORDER BY seq LIMIT @take`)
          .all({ ...filters, after: query.after ?? 0, take: query.limit + 1 }) as R[],
    );
    const page = rows.slice(0, query.limit);
    return { rows: page, nextAfter: rows.length > query.limit ? page[page.length - 1]!.seq : undefined };
  }

  /** Inserts with `insert` and records `request` in the same transaction, unless the request_id is already live. */
  private insertClaiming(request: RequestEntry | undefined, insert: () => boolean): InsertOutcome {
    return this.db.transaction((): InsertOutcome => {
      if (request) {
        const existing = this.liveRequest(request.request_id);
        if (existing) return { inserted: false, existingRequest: existing };
        this.statements.forgetRequest.run(request.request_id); // an expired one
      }
      if (!insert()) return { inserted: false };
      if (request) this.statements.claimRequest.run(request);
      return { inserted: true };
    })();
  }

  private liveRequest(requestId: string): RequestEntry | undefined {
    const entry = this.statements.findRequest.get(requestId) as RequestEntry | undefined;
    return entry && Date.parse(entry.created_at) + REQUEST_ID_TTL_MS > Date.now() ? entry : undefined;
  }

  private readRecord(id: string): VolumeRecord | undefined {
    const row = this.statements.get.get(id) as Row | undefined;
    return this.unwritten.apply(row ? fromRow(row) : undefined);
  }

  /** A write, after the deferred ones; the store's own trouble becomes BACKEND_UNAVAILABLE naming it. */
  private write<T>(what: string, task: () => T): T {
    this.checkFile(what);
    try {
      this.unwritten.flush((id, patch) => void this.applyUpdate(id, patch));
      this.unwrittenSnapshots.flush((id, patch) => {
        if (this.applyPatch('snapshots', id, patch)) this.unwrittenSnapshots.forget(id);
      });
      return task();
    } catch (error) {
      throw this.storeTrouble(what, error);
    }
  }

  private read<T>(task: () => T): T {
    try {
      return task();
    } catch (error) {
      throw this.storeTrouble('read', error);
    }
  }

  private checkFile(what: string): void {
    if (!this.fileIdentity) return;
    let now: { dev: number; ino: number } | undefined;
    try {
      now = statSync(this.path);
    } catch {
      now = undefined;
    }
    if (now?.dev === this.fileIdentity.dev && now.ino === this.fileIdentity.ino) return;
    throw new StorageError(
      'BACKEND_UNAVAILABLE',
      `cannot ${what}: the metadata store ${this.path} was ${now ? 'replaced' : 'deleted'} while the server was running, so nothing more is written to it; restore the file and restart the server (a restart without it starts an empty store)`,
    );
  }

  private storeTrouble(what: string, error: unknown): unknown {
    const code = (error as { code?: string }).code;
    if (error instanceof StorageError || !code || !STORE_TROUBLE.test(code)) return error;
    const why = code === 'SQLITE_FULL' ? 'its disk is full' : code.startsWith('SQLITE_READONLY') ? 'it is read-only' : `it failed (${code})`;
    return new StorageError('BACKEND_UNAVAILABLE', `cannot ${what}: the metadata store ${this.path} cannot be written: ${why}; free space or fix the file, and retry`, { cause: error });
  }

  private requireCurrentSchema(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version !== MIGRATIONS.length) {
      throw new StorageError(
        'BACKEND_UNAVAILABLE',
        `the metadata store ${this.path} has schema version ${version}, this cinderlib-mcp reads version ${MIGRATIONS.length}; ${version < MIGRATIONS.length ? 'let the server (or this command, with the server stopped) upgrade it first' : 'upgrade cinderlib-mcp'}`,
      );
    }
  }

  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new Error(
        `metadata store schema version ${version} is newer than this cinderlib-mcp understands (${MIGRATIONS.length}); upgrade cinderlib-mcp`,
      );
    }
    for (let next = version; next < MIGRATIONS.length; next++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[next]!);
        this.db.pragma(`user_version = ${next + 1}`);
      })();
    }
  }
}
