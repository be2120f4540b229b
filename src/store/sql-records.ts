/**
 * The record tables and the small tables (tombstones, audit) written once for both SQL engines:
 * single statements go through the engine's `SqlStatements`; what runs inside an engine's own
 * transaction (insert with its request_id, import, recovery) stays in the engine, on the same
 * statements from sql.ts.
 */
import { OPERATION_OF_STATUS, TRANSITIONAL_STATUSES, type VolumeStatus } from '../model/volume.js';
import { OutcomeBuffer } from './outcome-buffer.js';
import type { TableName } from './schema.js';
import {
  POSTGRES,
  SQLITE,
  cutPage,
  deleteSql,
  insertSql,
  matchingSql,
  onlyFilter,
  namePattern,
  pageSql,
  patchValues,
  recordOf,
  rowValues,
  selectSql,
  setFilters,
  updateSql,
  type Dialect,
  type Engine,
  type Row,
} from './sql.js';
import {
  REQUEST_ID_TTL_MS,
  type AuditQuery,
  type AuditRecord,
  type InsertOutcome,
  type Page,
  type RecordTable,
  type RecoveredKind,
  type RequestEntry,
  type Tombstone,
} from './store.js';

/** One statement at a time, outside any transaction, as an engine runs it. */
export interface SqlStatements {
  readonly engine: Engine;
  /** The rows of a read; the store's own trouble becomes BACKEND_UNAVAILABLE. */
  read(sql: string, params: readonly unknown[]): Promise<Row[]>;
  /**
   * A write, after the deferred updates: the rows it returns (RETURNING) and how many it changed.
   * `relaxed`: a write whose loss in a crash of the database only leaves an operation to be
   * recovered as interrupted (its outcome, an audit line), committed without waiting for the disk
   * where the engine waits otherwise (PostgreSQL), as SQLite's WAL with synchronous=NORMAL does.
   */
  write(what: string, sql: string, params: readonly unknown[], relaxed?: boolean): Promise<{ rows: Row[]; changes: number }>;
  /** `write` of an UPDATE ... RETURNING, appending `audit` in the same transaction when it returned a row. */
  writeAudited(what: string, sql: string, params: readonly unknown[], audit: AuditRecord, relaxed?: boolean): Promise<{ rows: Row[]; changes: number }>;
}

export type RecordTableName = 'volumes' | 'snapshots' | 'connections';

export const dialectOf = (engine: Engine): Dialect => (engine === 'sqlite' ? SQLITE : POSTGRES);

/** Which rows of a kind are under way: recovery looks at these. */
export const underWay = (kind: RecoveredKind): string =>
  kind === 'connection' ? 'owner IS NOT NULL' : `status IN (${TRANSITIONAL_STATUSES.map((status) => `'${status}'`).join(', ')})`;

/** What recovery writes on a record found under way. */
export function recoveryPatch(record: { status: string; failed_operation?: string | null }, kind: RecoveredKind, reason: string): Record<string, unknown> {
  const patch: Record<string, unknown> = { status: 'error', status_reason: reason, owner: null, lease_expires_at: null };
  // An adoption stays one: its array volume is the user's data, not something this server made.
  if (kind !== 'connection') patch.failed_operation = record.failed_operation === 'manage' ? 'manage' : (OPERATION_OF_STATUS[record.status as VolumeStatus] ?? null);
  return patch;
}

/** A request entry still answering (younger than REQUEST_ID_TTL_MS). */
export function liveRequest(engine: Engine, row: Row | undefined): RequestEntry | undefined {
  const entry = row ? recordOf<RequestEntry>(engine, 'requests', row) : undefined;
  return entry && Date.parse(entry.created_at) + REQUEST_ID_TTL_MS > Date.now() ? entry : undefined;
}

/** A record table; the engine adds what runs inside its own transactions. */
export abstract class SqlRecords<R extends { id: string; status: string }, P extends object, Q extends { after?: number; limit: number }, Parent extends object> implements RecordTable<
  R,
  P,
  Q,
  Parent
> {
  readonly unwritten = new OutcomeBuffer<P>();
  protected readonly dialect: Dialect;

  constructor(
    protected readonly statements: SqlStatements,
    readonly table: RecordTableName,
    readonly kind: RecoveredKind,
  ) {
    this.dialect = dialectOf(statements.engine);
  }

  /** Inserts `record` and `request` in one transaction of the engine's. */
  protected abstract claimInsert(what: string, request: RequestEntry | undefined, record: R): Promise<InsertOutcome>;

  /** What a record or patch becomes before it is written (PostgreSQL moves lease ends onto its own clock). */
  protected adjust<T extends object>(patch: T): T {
    return patch;
  }

  insert(record: R, request?: RequestEntry): Promise<InsertOutcome> {
    return this.claimInsert(`record a new ${this.kind}`, request, this.adjust(record));
  }

  async get(id: string): Promise<R | undefined> {
    const [row] = await this.statements.read(selectSql(this.dialect, this.table), [id]);
    return this.unwritten.apply(row ? this.recordOf(row) : undefined);
  }

  async update(id: string, patch: P, expected?: readonly R['status'][], audit?: AuditRecord): Promise<R | undefined> {
    if (expected?.length === 0) return undefined;
    const [sql, params] = this.patchStatement(id, patch, expected);
    // An update that ends an operation (its owner let go): lost in a crash, the record is recovered as interrupted.
    const endsOperation = (patch as { owner?: unknown }).owner === null;
    const what = `update ${this.kind} ${id}`;
    const [row] = (audit ? await this.statements.writeAudited(what, sql, params, audit, endsOperation) : await this.statements.write(what, sql, params, endsOperation)).rows;
    if (!row) return undefined;
    this.unwritten.forget(id);
    return this.recordOf(row);
  }

  async remove(id: string): Promise<boolean> {
    const { changes } = await this.statements.write(`forget ${this.kind} ${id}`, deleteSql(this.dialect, this.table), [id], true);
    this.unwritten.forget(id);
    return changes === 1;
  }

  async list(query: Q): Promise<Page<R>> {
    const filters = setFilters(this.table, query);
    const name = (query as { name?: string }).name;
    const sql = pageSql(
      this.dialect,
      this.table,
      filters.map(([column]) => column),
      name !== undefined,
    );
    const rows = await this.statements.read(sql, [query.after ?? 0, ...filters.map(([, value]) => value), ...(name !== undefined ? [namePattern(name)] : []), query.limit + 1]);
    const { rows: page, nextAfter } = cutPage(rows, query.limit, (row) => row.seq);
    return { records: page.map((row) => this.unwritten.apply(this.recordOf(row))), nextAfter };
  }

  async all(parent: Parent): Promise<R[]> {
    const [column, value] = onlyFilter(this.table, parent);
    return (await this.statements.read(matchingSql(this.dialect, this.table, column), [value])).map((row) => this.unwritten.apply(this.recordOf(row)));
  }

  defer(id: string, patch: P): void {
    this.unwritten.defer(id, patch);
  }

  /** The UPDATE of a patch's fields (and updated_at) when the row's status is one of `expected`, with its parameters. */
  patchStatement(id: string, patch: object, expected?: readonly string[]): [string, unknown[]] {
    const fields = patchValues(this.statements.engine, this.table, this.adjust(patch));
    const sql = updateSql(
      this.dialect,
      this.table,
      fields.map(([column]) => column),
      expected?.length ?? 0,
    );
    return [sql, [...fields.map(([, value]) => value), new Date().toISOString(), id, ...(expected ?? [])]];
  }

  insertStatement(record: R): [string, unknown[]] {
    return [insertSql(this.dialect, this.table), rowValues(this.statements.engine, this.table, record)];
  }

  recordOf(row: Row): R {
    return recordOf<R>(this.statements.engine, this.table, row);
  }
}

/** What both SQL stores answer alike: tombstones, the audit log, request_ids. */
export abstract class SqlStore {
  protected abstract readonly statements: SqlStatements;

  private get dialect(): Dialect {
    return dialectOf(this.statements.engine);
  }

  /** The INSERT of a tombstone, replacing one with the same id, with its parameters. */
  protected bury(tombstone: Tombstone): [string, unknown[]] {
    return [insertSql(this.dialect, 'tombstones', 'replace'), rowValues(this.statements.engine, 'tombstones', tombstone)];
  }

  async tombstones(backend: string): Promise<Tombstone[]> {
    const rows = await this.statements.read(`SELECT * FROM tombstones WHERE backend = ${this.dialect.param(1)} ORDER BY next_check_at`, [backend]);
    return rows.map((row) => this.recordOf<Tombstone>('tombstones', row));
  }

  async rescheduleTombstone(objectId: string, next: { checks_done: number; next_check_at: string } | null): Promise<void> {
    const [p1, p2, p3] = [1, 2, 3].map((n) => this.dialect.param(n));
    const what = `reschedule the tombstone of ${objectId}`;
    if (next)
      await this.statements.write(what, `UPDATE tombstones SET checks_done = ${p1}, next_check_at = ${p2} WHERE object_id = ${p3}`, [next.checks_done, next.next_check_at, objectId]);
    else await this.statements.write(what, deleteSql(this.dialect, 'tombstones'), [objectId]);
  }

  async appendAudit(record: AuditRecord): Promise<void> {
    await this.statements.write('record an audit line', insertSql(this.dialect, 'audit_log', 'none'), rowValues(this.statements.engine, 'audit_log', record), true);
  }

  async listAudit(query: AuditQuery): Promise<Page<AuditRecord>> {
    const [p1, p2, p3] = [1, 2, 3].map((n) => this.dialect.param(n));
    const rows = await this.statements.read(`SELECT * FROM audit_log WHERE seq > ${p1} AND time >= ${p2} ORDER BY seq LIMIT ${p3}`, [
      query.after ?? 0,
      query.since ?? '',
      query.limit + 1,
    ]);
    const { rows: page, nextAfter } = cutPage(rows, query.limit, (row) => row.seq);
    return { records: page.map((row) => this.recordOf<AuditRecord>('audit_log', row)), nextAfter };
  }

  async findRequest(requestId: string): Promise<RequestEntry | undefined> {
    const [row] = await this.statements.read(selectSql(this.dialect, 'requests'), [requestId]);
    return liveRequest(this.statements.engine, row);
  }

  private recordOf<T>(table: TableName, row: Row): T {
    return recordOf<T>(this.statements.engine, table, row);
  }
}
