import Database from 'better-sqlite3';
import { statSync } from 'node:fs';
import type { ConnectionRecord } from '../model/connection.js';
import { StorageError, errorCode } from '../base/errors.js';
import { privateFile } from '../base/private-files.js';
import type { HeldLock } from '../base/process-lock.js';
import type { SnapshotRecord } from '../model/snapshot.js';
import type { VolumeRecord } from '../model/volume.js';
import { isRecoverable } from './recovery.js';
import { SQLITE, deleteSql, insertSql, rowValues, selectSql, upgradeSteps, type Row } from './sql.js';
import { SqlRecords, SqlStore, liveRequest, recoveryPatch, underWay, type RecordTableName, type SqlStatements } from './sql-records.js';
import type {
  ConnectionPatch,
  ConnectionQuery,
  ImportBatch,
  InsertOutcome,
  RecoveredKind,
  RecoveryClaim,
  RequestEntry,
  SnapshotPatch,
  SnapshotQuery,
  Tombstone,
  VolumePatch,
  VolumeQuery,
  VolumeStore,
} from './store.js';

/**
 * PRAGMA user_version. Versions 1 to 9 were numbered migrations; since the tables are declared
 * (schema.ts), opening a file brings it to the declarations whatever its version up to this one.
 * The number moves only for a change a declaration cannot express (a column dropped or retyped).
 */
const SCHEMA_VERSION = 9;

/** SQLite result codes that mean the store itself cannot take writes now, not that a call was wrong. */
const STORE_TROUBLE = /^SQLITE_(FULL|IOERR|READONLY|CANTOPEN|CORRUPT|NOTADB|BUSY|LOCKED)/;

/** One record table on SQLite; what runs inside the store's transactions is synchronous. */
class SqliteRecords<R extends { id: string; status: string }, P extends object, Q extends { after?: number; limit: number }, Parent extends object> extends SqlRecords<R, P, Q, Parent> {
  constructor(
    private readonly store: SqliteVolumeStore,
    table: RecordTableName,
    kind: RecoveredKind,
  ) {
    super(store.statements, table, kind);
  }

  protected async claimInsert(what: string, request: RequestEntry | undefined, record: R): Promise<InsertOutcome> {
    return this.store.writing(what, () => this.store.insertClaiming(request, () => this.insertRow(record)));
  }

  insertRow(record: R): boolean {
    const [sql, params] = this.insertStatement(record);
    return this.store.statement(sql).run(...params).changes === 1;
  }

  removeRow(id: string): boolean {
    this.unwritten.forget(id);
    return this.store.statement(deleteSql(SQLITE, this.table)).run(id).changes === 1;
  }

  patchRow(id: string, patch: object, expected?: readonly string[]): R | undefined {
    const [sql, params] = this.patchStatement(id, patch, expected);
    // all(), not get(): it steps to the end, so an autocommit's failure is thrown, not lost in a reset.
    const [row] = this.store.statement(sql).all(...params) as Row[];
    return row ? this.recordOf(row) : undefined;
  }

  /** Records under way that `claim` may recover, moved to error. */
  recover(claim: RecoveryClaim, reason: (record: R, kind: RecoveredKind) => string): R[] {
    return (this.store.statement(`SELECT * FROM ${this.table} WHERE ${underWay(this.kind)} ORDER BY seq`).all() as Row[])
      .map((row) => this.recordOf(row))
      .filter((record) => isRecoverable(record as { owner?: string | null }, claim))
      .map((record) => {
        this.unwritten.forget(record.id);
        return this.patchRow(record.id, recoveryPatch(record, this.kind, reason(record, this.kind)), [record.status]);
      })
      .filter((record): record is R => record !== undefined);
  }
}

export class SqliteVolumeStore extends SqlStore implements VolumeStore {
  private readonly db: Database.Database;
  private readonly prepared = new Map<string, Database.Statement>();
  readonly statements: SqlStatements = {
    engine: 'sqlite',
    read: async (sql, params) => this.read(() => this.statement(sql).all(...params) as Row[]),
    write: async (what, sql, params) =>
      this.writing(what, () => {
        const statement = this.statement(sql);
        if (!statement.reader) return { rows: [], changes: statement.run(...params).changes };
        const rows = statement.all(...params) as Row[];
        return { rows, changes: rows.length };
      }),
    writeAudited: async (what, sql, params, audit) =>
      this.writing(what, () =>
        this.db.transaction(() => {
          const rows = this.statement(sql).all(...params) as Row[];
          if (rows.length > 0) this.statement(insertSql(SQLITE, 'audit_log', 'none')).run(...rowValues('sqlite', 'audit_log', audit));
          return { rows, changes: rows.length };
        })(),
      ),
  };
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
    super();
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

  async surfaceInterrupted(
    claim: RecoveryClaim,
    reason: (record: { id: string; status: string; owner?: string | null }, kind: RecoveredKind) => string,
  ): Promise<{ volumes: VolumeRecord[]; snapshots: SnapshotRecord[]; connections: ConnectionRecord[] }> {
    return this.writing('mark interrupted operations', () =>
      this.db.transaction(() => ({
        volumes: this.volumes.recover(claim, reason),
        snapshots: this.snapshots.recover(claim, reason),
        connections: this.connections.recover(claim, reason),
      }))(),
    );
  }

  async renewLeases(owner: string, until: string): Promise<void> {
    this.writing('renew the leases of operations under way', () => {
      for (const records of [this.volumes, this.snapshots, this.connections]) {
        this.statement(`UPDATE ${records.table} SET lease_expires_at = ? WHERE owner = ? AND ${underWay(records.kind)}`).run(until, owner);
      }
    });
  }

  async importRecords(batch: ImportBatch): Promise<void> {
    this.writing('load a dump', () =>
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
    return this.writing(`forget ${tombstone.kind} ${id}`, () =>
      this.db.transaction(() => {
        if (!records.removeRow(id)) return false;
        const [sql, params] = this.bury(tombstone);
        this.statement(sql).run(...params);
        return true;
      })(),
    );
  }

  /** Seeds a file in tests (test/e2e): `volumes.insert` is the store's way. */
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
    let statement = this.prepared.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.prepared.set(sql, statement);
    }
    return statement;
  }

  /** Inserts with `insert` and records `request` in the same transaction, unless the request_id is already live. */
  insertClaiming(request: RequestEntry | undefined, insert: () => boolean): InsertOutcome {
    return this.db.transaction((): InsertOutcome => {
      if (request) {
        const existing = liveRequest('sqlite', this.statement(selectSql(SQLITE, 'requests')).get(request.request_id) as Row | undefined);
        if (existing) return { inserted: false, existingRequest: existing };
        this.statement(deleteSql(SQLITE, 'requests')).run(request.request_id); // an expired one
      }
      if (!insert()) return { inserted: false };
      if (request) this.statement(insertSql(SQLITE, 'requests', 'none')).run(...rowValues('sqlite', 'requests', request));
      return { inserted: true };
    })();
  }

  /** A write, after the deferred ones; the store's own trouble becomes BACKEND_UNAVAILABLE naming it. */
  writing<T>(what: string, task: () => T): T {
    this.checkFile(what);
    try {
      for (const records of [this.volumes, this.snapshots, this.connections] as const) {
        // In a transaction of its own: its COMMIT is a statement that throws on a full disk, where
        // an UPDATE ... RETURNING read with get() would report success and roll back unseen.
        records.unwritten.flush((id, patch) => void this.db.transaction(() => records.patchRow(id, patch))());
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
    const code = errorCode(error);
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
