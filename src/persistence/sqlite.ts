import Database from 'better-sqlite3';
import { statSync } from 'node:fs';
import type { ConnectionRecord } from '../connection.js';
import { StorageError } from '../errors.js';
import { privateFile } from '../private-files.js';
import type { HeldLock } from '../process-lock.js';
import type { SnapshotRecord } from '../snapshot.js';
import { OPERATION_OF_STATUS, TRANSITIONAL_STATUSES, type VolumeRecord, type VolumeStatus } from '../volume.js';
import { OutcomeBuffer } from './outcome-buffer.js';
import { isRecoverable } from './recovery.js';
import {
  SQLITE, cutPage, deleteSql, insertSql, matchingSql, onlyFilter, pageSql, patchValues, recordOf, rowValues, selectSql, setFilters, updateSql, upgradeSteps,
  type Row,
} from './sql.js';
import {
  REQUEST_ID_TTL_MS,
  type AuditQuery,
  type AuditRecord,
  type ImportBatch,
  type InsertOutcome,
  type Page,
  type RecordTable,
  type RecoveredKind,
  type RecoveryClaim,
  type RequestEntry,
  type ConnectionPatch,
  type ConnectionQuery,
  type SnapshotPatch,
  type SnapshotQuery,
  type Tombstone,
  type VolumePatch,
  type VolumeQuery,
  type VolumeStore,
} from './store.js';

/**
 * PRAGMA user_version. Versions 1 to 9 were numbered migrations; since the tables are declared
 * (schema.ts), opening a file brings it to the declarations whatever its version up to this one.
 * The number moves only for a change a declaration cannot express (a column dropped or retyped).
 */
const SCHEMA_VERSION = 9;

/** SQLite result codes that mean the store itself cannot take writes now, not that a call was wrong. */
const STORE_TROUBLE = /^SQLITE_(FULL|IOERR|READONLY|CANTOPEN|CORRUPT|NOTADB|BUSY|LOCKED)/;

const TRANSITIONAL = `(${TRANSITIONAL_STATUSES.map((status) => `'${status}'`).join(', ')})`;

type RecordTableName = 'volumes' | 'snapshots' | 'connections';

/** One record table on SQLite, every statement prepared once and kept. */
class SqliteRecords<R extends { id: string; status: string }, P extends object, Q extends { after?: number; limit: number }, Parent extends object>
  implements RecordTable<R, P, Q, Parent>
{
  readonly unwritten = new OutcomeBuffer<P>();

  constructor(
    private readonly store: SqliteVolumeStore,
    readonly table: RecordTableName,
    private readonly kind: RecoveredKind,
  ) {}

  async insert(record: R, request?: RequestEntry): Promise<InsertOutcome> {
    return this.store.write(`record a new ${this.kind}`, () => this.store.insertClaiming(request, () => this.insertRow(record)));
  }

  async get(id: string): Promise<R | undefined> {
    return this.store.read(() => this.unwritten.apply(this.readRow(id)));
  }

  async update(id: string, patch: P, expected?: readonly R['status'][]): Promise<R | undefined> {
    return this.store.write(`update ${this.kind} ${id}`, () => {
      const written = this.patchRow(id, patch, expected);
      if (written) this.unwritten.forget(id);
      return written;
    });
  }

  async remove(id: string): Promise<boolean> {
    return this.store.write(`forget ${this.kind} ${id}`, () => this.removeRow(id));
  }

  async list(query: Q): Promise<Page<R>> {
    return this.store.read(() => {
      const filters = setFilters(this.table, query);
      const sql = pageSql(SQLITE, this.table, filters.map(([column]) => column));
      const rows = this.store.statement(sql).all(query.after ?? 0, ...filters.map(([, value]) => value), query.limit + 1) as Row[];
      const { rows: page, nextAfter } = cutPage(rows, query.limit, (row) => row.seq);
      return { records: page.map((row) => this.unwritten.apply(this.recordOf(row))), nextAfter };
    });
  }

  async all(parent: Parent): Promise<R[]> {
    const [column, value] = onlyFilter(this.table, parent);
    return this.store.read(() => (this.store.statement(matchingSql(SQLITE, this.table, column)).all(value) as Row[]).map((row) => this.unwritten.apply(this.recordOf(row))));
  }

  defer(id: string, patch: P): void {
    this.unwritten.defer(id, patch);
  }

  insertRow(record: R): boolean {
    return this.store.statement(insertSql(SQLITE, this.table)).run(...rowValues('sqlite', this.table, record)).changes === 1;
  }

  readRow(id: string): R | undefined {
    const row = this.store.statement(selectSql(SQLITE, this.table)).get(id) as Row | undefined;
    return row ? this.recordOf(row) : undefined;
  }

  removeRow(id: string): boolean {
    this.unwritten.forget(id);
    return this.store.statement(deleteSql(SQLITE, this.table)).run(id).changes === 1;
  }

  /** UPDATE of the patch's fields (and updated_at) when the row's status is one of `expected`; the record as written. */
  patchRow(id: string, patch: object, expected?: readonly string[]): R | undefined {
    if (expected?.length === 0) return undefined;
    const fields = patchValues('sqlite', this.table, patch);
    const sql = updateSql(SQLITE, this.table, fields.map(([column]) => column), expected?.length ?? 0);
    const row = this.store.statement(sql).get(...fields.map(([, value]) => value), new Date().toISOString(), id, ...(expected ?? [])) as Row | undefined;
    return row ? this.recordOf(row) : undefined;
  }

  /** Records under way that `claim` may recover, moved to error. */
  recover(claim: RecoveryClaim, reason: (record: R, kind: RecoveredKind) => string): R[] {
    const under = this.kind === 'connection' ? 'owner IS NOT NULL' : `status IN ${TRANSITIONAL}`;
    return (this.store.statement(`SELECT * FROM ${this.table} WHERE ${under} ORDER BY seq`).all() as Row[])
      .map((row) => this.recordOf(row))
      .filter((record) => isRecoverable(record as { owner?: string | null }, claim))
      .map((record) => {
        const patch: Record<string, unknown> = { status: 'error', status_reason: reason(record, this.kind), owner: null, lease_expires_at: null };
        if (this.kind !== 'connection') patch.failed_operation = OPERATION_OF_STATUS[record.status as VolumeStatus] ?? null;
        this.unwritten.forget(record.id);
        return this.patchRow(record.id, patch, [record.status]);
      })
      .filter((record): record is R => record !== undefined);
  }

  private recordOf(row: Row): R {
    return recordOf<R>('sqlite', this.table, row);
  }
}

export class SqliteVolumeStore implements VolumeStore {
  private readonly db: Database.Database;
  private readonly statements = new Map<string, Database.Statement>();
  /** The file's identity at open: a store deleted or replaced under the server must not take writes into nowhere. */
  private readonly fileIdentity?: { dev: number; ino: number };
  readonly volumes = new SqliteRecords<VolumeRecord, VolumePatch, VolumeQuery, { snapshot_id: string }>(this, 'volumes', 'volume');
  readonly snapshots = new SqliteRecords<SnapshotRecord, SnapshotPatch, SnapshotQuery, { volume_id: string }>(this, 'snapshots', 'snapshot');
  readonly connections = new SqliteRecords<ConnectionRecord, ConnectionPatch, ConnectionQuery, { volume_id: string }>(this, 'connections', 'connection');

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
  }

  get description(): string {
    return `SQLite ${this.path}`;
  }

  async findRequest(requestId: string): Promise<RequestEntry | undefined> {
    return this.read(() => this.liveRequest(requestId));
  }

  async surfaceInterrupted(
    claim: RecoveryClaim,
    reason: (record: { id: string; status: string; owner?: string | null }, kind: RecoveredKind) => string,
  ): Promise<{ volumes: VolumeRecord[]; snapshots: SnapshotRecord[]; connections: ConnectionRecord[] }> {
    return this.write('mark interrupted operations', () =>
      this.db.transaction(() => ({
        volumes: this.volumes.recover(claim, reason),
        snapshots: this.snapshots.recover(claim, reason),
        connections: this.connections.recover(claim, reason),
      }))(),
    );
  }

  async renewLeases(owner: string, until: string): Promise<void> {
    this.write('renew the leases of operations under way', () => {
      for (const table of ['volumes', 'snapshots']) this.statement(`UPDATE ${table} SET lease_expires_at = ? WHERE owner = ? AND status IN ${TRANSITIONAL}`).run(until, owner);
      this.statement('UPDATE connections SET lease_expires_at = ? WHERE owner = ?').run(until, owner);
    });
  }

  async importRecords(batch: ImportBatch): Promise<void> {
    await this.write('load a dump', () =>
      // A throw inside the transaction rolls every row of it back: all or nothing.
      this.db.transaction(() => {
        const taken = (what: string) => new StorageError('ALREADY_EXISTS', `${what} is already in the metadata store; nothing was loaded`);
        for (const record of batch.volumes) if (!this.volumes.insertRow(record)) throw taken(`volume ${record.id}`);
        for (const record of batch.snapshots) if (!this.snapshots.insertRow(record)) throw taken(`snapshot ${record.id}`);
        for (const record of batch.connections) if (!this.connections.insertRow(record)) throw taken(`connection ${record.id}`);
      })(),
    );
  }

  async removeLeavingTombstone(id: string, tombstone: Tombstone): Promise<boolean> {
    const records = tombstone.kind === 'snapshot' ? this.snapshots : this.volumes;
    return this.write(`forget ${tombstone.kind} ${id}`, () =>
      this.db.transaction(() => {
        if (!records.removeRow(id)) return false;
        this.statement(insertSql(SQLITE, 'tombstones', 'replace')).run(...rowValues('sqlite', 'tombstones', tombstone));
        return true;
      })(),
    );
  }

  async tombstones(backend: string): Promise<Tombstone[]> {
    return this.read(() => (this.statement('SELECT * FROM tombstones WHERE backend = ? ORDER BY next_check_at').all(backend) as Row[]).map((row) => recordOf<Tombstone>('sqlite', 'tombstones', row)));
  }

  async rescheduleTombstone(objectId: string, next: { checks_done: number; next_check_at: string } | null): Promise<void> {
    this.write(`reschedule the tombstone of ${objectId}`, () => {
      if (next) this.statement('UPDATE tombstones SET checks_done = ?, next_check_at = ? WHERE object_id = ?').run(next.checks_done, next.next_check_at, objectId);
      else this.statement(deleteSql(SQLITE, 'tombstones')).run(objectId);
    });
  }

  async appendAudit(record: AuditRecord): Promise<void> {
    this.write('record an audit line', () => this.statement(insertSql(SQLITE, 'audit_log', 'none')).run(...rowValues('sqlite', 'audit_log', record)));
  }

  async listAudit(query: AuditQuery): Promise<Page<AuditRecord>> {
    return this.read(() => {
      const rows = this.statement('SELECT * FROM audit_log WHERE seq > ? AND time >= ? ORDER BY seq LIMIT ?').all(query.after ?? 0, query.since ?? '', query.limit + 1) as Row[];
      const { rows: page, nextAfter } = cutPage(rows, query.limit, (row) => row.seq);
      return { records: page.map((row) => recordOf<AuditRecord>('sqlite', 'audit_log', row)), nextAfter };
    });
  }

  /** Seeds a file in tests and benchmarks (test/e2e): `volumes.insert` is the store's way. */
  async insert(record: VolumeRecord): Promise<boolean> {
    return (await this.volumes.insert(record)).inserted;
  }

  /** Seeds a file in tests (test/e2e): `connections.insert` is the store's way. */
  async insertConnection(record: ConnectionRecord): Promise<boolean> {
    return (await this.connections.insert(record)).inserted;
  }

  /** For benchmarks: many records in one transaction. */
  insertMany(records: VolumeRecord[]): void {
    this.db.transaction(() => records.forEach((record) => this.volumes.insertRow(record)))();
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
    this.lock?.release();
  }

  // ---- for the record tables ----

  /** The prepared statement of `sql`, prepared on first use and kept. */
  statement(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  /** Inserts with `insert` and records `request` in the same transaction, unless the request_id is already live. */
  insertClaiming(request: RequestEntry | undefined, insert: () => boolean): InsertOutcome {
    return this.db.transaction((): InsertOutcome => {
      if (request) {
        const existing = this.liveRequest(request.request_id);
        if (existing) return { inserted: false, existingRequest: existing };
        this.statement(deleteSql(SQLITE, 'requests')).run(request.request_id); // an expired one
      }
      if (!insert()) return { inserted: false };
      if (request) this.statement(insertSql(SQLITE, 'requests', 'none')).run(...rowValues('sqlite', 'requests', request));
      return { inserted: true };
    })();
  }

  /** A write, after the deferred ones; the store's own trouble becomes BACKEND_UNAVAILABLE naming it. */
  write<T>(what: string, task: () => T): T {
    this.checkFile(what);
    try {
      for (const records of [this.volumes, this.snapshots, this.connections] as const) {
        records.unwritten.flush((id, patch) => void records.patchRow(id, patch));
      }
      return task();
    } catch (error) {
      throw this.storeTrouble(what, error);
    }
  }

  read<T>(task: () => T): T {
    try {
      return task();
    } catch (error) {
      throw this.storeTrouble('read', error);
    }
  }

  private liveRequest(requestId: string): RequestEntry | undefined {
    const row = this.statement(selectSql(SQLITE, 'requests')).get(requestId) as Row | undefined;
    const entry = row ? recordOf<RequestEntry>('sqlite', 'requests', row) : undefined;
    return entry && Date.parse(entry.created_at) + REQUEST_ID_TTL_MS > Date.now() ? entry : undefined;
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

  /** The tables of the file and their columns. */
  private existingColumns(): Map<string, Set<string>> {
    const tables = this.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>;
    return new Map(tables.map(({ name }) => [name, new Set((this.db.pragma(`table_info(${name})`) as Array<{ name: string }>).map((column) => column.name))]));
  }

  private requireCurrentSchema(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    const behind = version === SCHEMA_VERSION && upgradeSteps('sqlite', this.existingColumns()).some((step) => step.kind !== 'index');
    if (version !== SCHEMA_VERSION || behind) {
      throw new StorageError(
        'BACKEND_UNAVAILABLE',
        `the metadata store ${this.path} has schema version ${version}${behind ? ' without every column this cinderlib-mcp reads' : ''}, this cinderlib-mcp reads version ${SCHEMA_VERSION}; ${version < SCHEMA_VERSION || behind ? 'let the server (or this command, with the server stopped) upgrade it first' : 'upgrade cinderlib-mcp'}`,
      );
    }
  }

  /** Brings the file to the declarations (schema.ts) in one transaction: tables, columns, indexes. */
  private migrate(): void {
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      throw new Error(`metadata store schema version ${version} is newer than this cinderlib-mcp understands (${SCHEMA_VERSION}); upgrade cinderlib-mcp`);
    }
    this.db.transaction(() => {
      for (const step of upgradeSteps('sqlite', this.existingColumns())) this.db.exec(step.sql);
      if (version !== SCHEMA_VERSION) this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
    })();
  }
}
