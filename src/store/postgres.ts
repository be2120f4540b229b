/**
 * The metadata store on PostgreSQL (contract section 10): several servers, on several hosts, share
 * one database, as cinderlib's servers did with any SQL database. Same records and semantics as
 * the SQLite store (src/persistence/sqlite.ts is the reference), plus what servers sharing a store
 * need (SharedCoordination): cluster-wide locks, capacity held by operations under way anywhere,
 * and one live server per identity.
 *
 * Driver: node-postgres (`pg`): the most used and maintained PostgreSQL driver for Node, with
 * pooling built in and plain parameterized SQL (no ORM between us and the statements).
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { ConnectionRecord } from '../model/connection.js';
import { StorageError, errorCode } from '../base/errors.js';
import { LOCK_WAIT_HELP, LOCK_WAIT_SECONDS, metrics, stepDone } from '../base/metrics.js';
import { KeyedMutex } from '../base/locks.js';
import { createLogger, type Logger } from '../base/log.js';
import { SecretRegistry } from '../base/secrets.js';
import type { SnapshotRecord } from '../model/snapshot.js';
import type { VolumeRecord } from '../model/volume.js';
import type { OutcomeBuffer } from './outcome-buffer.js';
import { LockSession } from './pg-lock-session.js';
import { isRecoverable } from './recovery.js';
import { POSTGRES, deleteSql, insertSql, rowValues, selectSql, upgradeSteps, type Row } from './sql.js';
import { columnsOf, type ColumnType } from './schema.js';
import { SqlRecords, SqlStore, liveRequest, recoveryPatch, underWay, type RecordTableName, type SqlStatements } from './sql-records.js';
import type {
  BackendDisagreement,
  BackendFingerprint,
  CapacityDecision,
  CapacityHold,
  CapacityRoom,
  ConnectionPatch,
  ConnectionQuery,
  ImportBatch,
  InsertOutcome,
  RecoveredKind,
  RecoveryClaim,
  RequestEntry,
  SharedCoordination,
  SnapshotPatch,
  SnapshotQuery,
  Tombstone,
  VolumePatch,
  VolumeQuery,
  VolumeStore,
} from './store.js';

const { Pool } = pg;
type Queryable = Pick<pg.PoolClient, 'query'>;

/**
 * The versions recorded in `schema_migrations`. Versions 1 and 2 were numbered migrations; since
 * the tables are declared (schema.ts), opening a database brings it to the declarations (under one
 * lock: servers starting together do it once) whatever its version up to this one. The number
 * moves only for a change a declaration cannot express (a column dropped or retyped).
 */
const MIGRATIONS_DONE = 2;

/** The schema version this code writes and reads. */
export const POSTGRES_SCHEMA_VERSION = MIGRATIONS_DONE;

/** SQLSTATE classes that mean the store itself is in trouble, not that a call was wrong. */
const TROUBLE_STATES = /^(08|28|3D|53|57|58|XX)/;
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'EPIPE', 'ECONNABORTED', 'EADDRNOTAVAIL']);
const TROUBLE_MESSAGES =
  /Connection terminated|timeout exceeded when trying to connect|Query read timeout|connection timeout|Client has encountered a connection error|Cannot use a pool after calling end|Client was closed|not queryable/i;

/** `postgresql+psycopg2://` (SQLAlchemy) and `postgres://` as the driver reads them: `postgresql://`. */
export function driverUrl(url: string): string {
  return url.replace(/^(postgresql|postgres)(\+[A-Za-z0-9_]+)?:\/\//i, 'postgresql://');
}

/** Whether `url` names a PostgreSQL store (any spelling this project accepts). */
export function isPostgresUrl(url: string): boolean {
  return /^(postgresql|postgres)(\+[A-Za-z0-9_]+)?:\/\//i.test(url);
}

/** "PostgreSQL <db> on <host>:<port>": what the store is, never with its user's password. */
/**
 * Whether the database answers, for `cinderlib-mcp check`: one connection and `SELECT 1`, nothing
 * written (no schema migration). Resolves with the reason it does not, masked, or undefined.
 */
export async function probePostgres(url: string, secrets: SecretRegistry, timeoutMs = 10_000): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: driverUrl(url), connectionTimeoutMillis: timeoutMs, application_name: 'cinderlib-mcp check' });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (error) {
    return secrets.redact(reasonOf(error));
  } finally {
    await client.end().catch(() => undefined);
  }
}

export function describePostgresUrl(url: string): string {
  try {
    const parsed = new URL(driverUrl(url));
    const host = parsed.hostname || parsed.searchParams.get('host') || 'localhost';
    const port = parsed.port || parsed.searchParams.get('port') || '5432';
    const database = decodeURIComponent(parsed.pathname.replace(/^\//, '')) || decodeURIComponent(parsed.username) || 'postgres';
    return `PostgreSQL ${database} on ${host}:${port}`;
  } catch {
    return 'PostgreSQL (unparseable connection URL)';
  }
}

/** The password of a PostgreSQL URL, decoded; undefined when it has none. */
export function postgresUrlPassword(url: string): string | undefined {
  try {
    const parsed = new URL(driverUrl(url));
    const password = parsed.password ? decodeURIComponent(parsed.password) : parsed.searchParams.get('password');
    return password || undefined;
  } catch {
    return undefined;
  }
}

export interface PostgresOpenOptions {
  /** The registry masking secrets everywhere; the URL's password is registered with it. */
  secrets?: SecretRegistry;
  /** Connections for records (default 10); the coordination pool (locks held during operations) has as many again. */
  poolSize?: number;
  /** Server-side limit of one statement (default 30 s). */
  statementTimeoutMs?: number;
  /** How long opening a connection may take (default 10 s). */
  connectTimeoutMs?: number;
  /** How long holdKeys (and a capacity domain's lock) waits behind another server before BACKEND_BUSY (default 30 s). */
  lockTimeoutMs?: number;
  /** A capacity hold's lease until its owner renews it, when the owner has not joined with a longer one (default 30 s). */
  holdLeaseMs?: number;
  /** How long join keeps trying for an identity whose holder's session is ending (default 3 s): a predecessor killed a moment ago. */
  joinGraceMs?: number;
  /** Where the loss of the lock session is told (default: the process's stderr logger). */
  log?: Pick<Logger, 'info' | 'warn' | 'error'>;
}

/** The database's clock as the ISO-8601 text the records keep: leases are compared on it, never on a server's. */
const DB_NOW = `to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

function isStoreTrouble(error: unknown): boolean {
  if (error instanceof StorageError) return false;
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && (NETWORK_CODES.has(code) || (/^[0-9A-Z]{5}$/.test(code) && (TROUBLE_STATES.test(code) || code === '25006')))) return true;
  if (error instanceof AggregateError) return error.errors.some(isStoreTrouble) || error.errors.length === 0;
  return typeof message === 'string' && TROUBLE_MESSAGES.test(message);
}

function reasonOf(error: unknown): string {
  const { code, message } = error as { code?: unknown; message?: unknown };
  let text = typeof message === 'string' && message ? message : String(error);
  if (error instanceof AggregateError && error.errors.length > 0) text = error.errors.map((inner) => reasonOf(inner)).join('; ');
  return typeof code === 'string' && !text.includes(code) ? `${text} (${code})` : text;
}

/** Loads at least this large analyze the tables they filled. */
const LOAD_ANALYZE_THRESHOLD = 1000;

/** One record table on PostgreSQL; what runs inside the store's transactions takes its connection. */
class PostgresRecords<R extends { id: string; status: string }, P extends object, Q extends { after?: number; limit: number }, Parent extends object> extends SqlRecords<
  R,
  P,
  Q,
  Parent
> {
  constructor(
    private readonly store: PostgresVolumeStore,
    table: RecordTableName,
    kind: RecoveredKind,
  ) {
    super(store.statements, table, kind);
  }

  protected claimInsert(what: string, request: RequestEntry | undefined, record: R): Promise<InsertOutcome> {
    return this.store.write(what, () => this.store.insertClaiming(request, (db) => this.insertRow(db, record)));
  }

  protected override adjust<T extends object>(patch: T): T {
    return this.store.onDbClock<T>(patch);
  }

  /** The INSERT of `record` with its values as literals, for a message of several statements (which take no parameters). */
  literalInsert(record: R): string {
    const [sql, params] = this.insertStatement(this.adjust(record));
    // The statement is ours, built from declared column names: its only `$` are the placeholders.
    return sql.replace(/\$(\d+)/g, (_, index: string) => sqlLiteral(params[Number(index) - 1]));
  }

  async insertRow(db: Queryable, record: R): Promise<boolean> {
    return (await db.query(...this.insertStatement(record))).rowCount === 1;
  }

  async removeRow(db: Queryable, id: string): Promise<boolean> {
    const removed = (await db.query(deleteSql(POSTGRES, this.table), [id])).rowCount === 1;
    this.unwritten.forget(id);
    return removed;
  }

  async patchRow(db: Queryable, id: string, patch: object, expected?: readonly string[]): Promise<R | undefined> {
    const row = (await db.query<Row>(...this.patchStatement(id, patch, expected))).rows[0];
    return row ? this.recordOf(row) : undefined;
  }

  /**
   * Records under way that `claim` may recover, moved to error. FOR UPDATE: another server's
   * recovery waits, then finds these rows no longer under way.
   */
  async recover(db: Queryable, claim: RecoveryClaim, reason: (record: R, kind: RecoveredKind) => string): Promise<R[]> {
    const recovered: R[] = [];
    for (const row of (await db.query<Row>(`SELECT * FROM ${this.table} WHERE ${underWay(this.kind)} ORDER BY seq FOR UPDATE`)).rows) {
      const record = this.recordOf(row);
      if (!isRecoverable(record as { owner?: string | null }, claim)) continue;
      const updated = await this.patchRow(db, record.id, recoveryPatch(record, this.kind, reason(record, this.kind)), [record.status]);
      if (!updated) continue;
      this.unwritten.forget(record.id);
      recovered.push(updated);
    }
    return recovered;
  }
}

export class PostgresVolumeStore extends SqlStore implements VolumeStore {
  readonly description: string;
  readonly shared: SharedCoordination;
  readonly statements: SqlStatements = {
    engine: 'postgresql',
    read: (sql, params) => this.read(async () => (await this.pool.query<Row>(sql, [...params])).rows),
    write: (what, sql, params, relaxed) =>
      this.write(
        what,
        async (db) => {
          const result = await db.query<Row>(sql, [...params]);
          return { rows: result.rows, changes: result.rowCount ?? 0 };
        },
        relaxed ? this.relaxed : this.pool,
      ),
    // One statement: the audit row is inserted only when the UPDATE returned one.
    writeAudited: (what, sql, params, audit, relaxed) =>
      this.write(
        what,
        async (db) => {
          const values = rowValues('postgresql', 'audit_log', audit);
          const columns = columnsOf('audit_log');
          const selected = columns.map((column, i) => `$${params.length + i + 1}::${CASTS[column.type]}`).join(', ');
          const text = `WITH updated AS (${sql}), audited AS (INSERT INTO audit_log (${columns.map((column) => column.name).join(', ')}) SELECT ${selected} WHERE EXISTS (SELECT 1 FROM updated)) SELECT * FROM updated`;
          const result = await db.query<Row>(text, [...params, ...values]);
          return { rows: result.rows, changes: result.rowCount ?? 0 };
        },
        relaxed ? this.relaxed : this.pool,
      ),
  };
  readonly volumes = new PostgresRecords<VolumeRecord, VolumePatch, VolumeQuery, { snapshot_id: string }>(this, 'volumes', 'volume');
  readonly snapshots = new PostgresRecords<SnapshotRecord, SnapshotPatch, SnapshotQuery, { volume_id: string }>(this, 'snapshots', 'snapshot');
  readonly connections = new PostgresRecords<ConnectionRecord, ConnectionPatch, ConnectionQuery, { volume_id: string }>(this, 'connections', 'connection');
  private readonly lockTimeoutMs: number;
  private readonly holdLeaseMs: number;
  private readonly joinGraceMs: number;
  /** Every session-level lock of this server (its identity, its operations' keys) on one dedicated connection. */
  private readonly locks: LockSession;
  /** This process's capacity decisions wait their turn here, so only one per domain holds a connection. */
  private readonly capacityTurns = new KeyedMutex();
  /** The database's clock minus this server's (ms): lease times are written on the database's clock. */
  private clockOffsetMs = 0;
  private closed = false;

  /** Use `PostgresVolumeStore.open`: the schema must be migrated before the store is used. */
  private constructor(
    readonly pool: pg.Pool,
    /** Connections whose commits do not wait for the disk (synchronous_commit off): see SqlStatements.write's `relaxed`. */
    private readonly relaxed: pg.Pool,
    /** Connections for capacity decisions (one per domain at a time), so they never starve record queries. */
    private readonly coordination: pg.Pool,
    lockClient: pg.ClientConfig,
    description: string,
    private readonly secrets: SecretRegistry,
    options: PostgresOpenOptions,
  ) {
    super();
    this.description = description;
    this.lockTimeoutMs = options.lockTimeoutMs ?? 30_000;
    this.holdLeaseMs = options.holdLeaseMs ?? 30_000;
    this.joinGraceMs = options.joinGraceMs ?? 3_000;
    this.locks = new LockSession({
      client: lockClient,
      description,
      lockTimeoutMs: this.lockTimeoutMs,
      trouble: (what, error) => this.storeTrouble(what, error),
      log: options.log ?? createLogger('metadata-store'),
    });
    this.shared = {
      holdKeys: (keys, task, options) => this.locks.hold(keys, task, options?.fresh === true),
      holdCapacity: (domain, owner, decide) => this.capacityTurns.run(domain, () => this.holdCapacity(domain, owner, decide)),
      noteCapacityChange: (domain) => this.noteCapacityChange(domain),
      capacityChanges: (domain) =>
        this.read(async () => Number((await this.pool.query<{ changes: number }>('SELECT changes FROM capacity_domains WHERE domain = $1', [domain])).rows[0]?.changes ?? 0)),
      join: (serverId, description, until) => this.join(serverId, description, until),
      agreeOnBackend: (backend, serverId, fingerprint, differ) => this.agreeOnBackend(backend, serverId, fingerprint, differ),
      leave: (serverId) => this.leave(serverId),
    };
  }

  /**
   * Connects, migrates the schema (once, whichever server gets there first) and returns the store.
   * An unreachable server, refused credentials or a schema newer than this code reject with a
   * StorageError BACKEND_UNAVAILABLE naming the store, never its password.
   */
  static async open(url: string, options: PostgresOpenOptions = {}): Promise<PostgresVolumeStore> {
    const secrets = options.secrets ?? new SecretRegistry();
    const password = postgresUrlPassword(url);
    if (password) secrets.register(password);
    const description = describePostgresUrl(url);
    const statementTimeout = options.statementTimeoutMs ?? 30_000;
    const lockTimeout = options.lockTimeoutMs ?? 30_000;
    const common: pg.PoolConfig = {
      connectionString: driverUrl(url),
      connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
      application_name: 'cinderlib-mcp',
      keepAlive: true,
      idleTimeoutMillis: 30_000,
    };
    const pool = new Pool({
      ...common,
      max: options.poolSize ?? 10,
      statement_timeout: statementTimeout,
      // A peer that vanished without closing the connection: give up a little after the server would.
      query_timeout: statementTimeout + 5_000,
    });
    const coordination = new Pool({
      ...common,
      max: options.poolSize ?? 10,
      // A lock wait is bounded by lock_timeout, which must fire first (BACKEND_BUSY, not trouble).
      statement_timeout: Math.max(statementTimeout, lockTimeout + 5_000),
      lock_timeout: lockTimeout,
    });
    const relaxed = new Pool({
      ...common,
      max: Math.max(2, Math.ceil((options.poolSize ?? 10) / 2)),
      statement_timeout: statementTimeout,
      query_timeout: statementTimeout + 5_000,
      options: '-c synchronous_commit=off',
    });
    // An idle connection the server drops emits 'error' on its pool: the next call reports it.
    for (const each of [pool, coordination, relaxed]) each.on('error', () => undefined);
    const lockClient: pg.ClientConfig = {
      connectionString: common.connectionString,
      connectionTimeoutMillis: common.connectionTimeoutMillis,
      keepAlive: true,
      keepAliveInitialDelayMillis: 5_000,
      // Lock statements never wait in PostgreSQL (try-locks): a slow answer is a session in trouble.
      statement_timeout: 10_000,
      query_timeout: 15_000,
    };
    const store = new PostgresVolumeStore(pool, relaxed, coordination, lockClient, description, secrets, options);
    try {
      // An upgrade that meets running servers' writes may be chosen as a deadlock's victim: it tries again.
      for (let attempt = 1; ; attempt++) {
        try {
          await store.migrate();
          break;
        } catch (error) {
          if (errorCode(error) !== '40P01' || attempt >= 5) throw error;
        }
      }
      await store.measureClock(pool);
    } catch (error) {
      await Promise.allSettled([pool.end(), relaxed.end(), coordination.end()]);
      if (error instanceof StorageError) throw error;
      throw new StorageError(
        'BACKEND_UNAVAILABLE',
        `cannot open the metadata store ${description}: ${secrets.redact(reasonOf(error))}; check that PostgreSQL runs and persistence_config.connection (host, port, database, user, password) is right`,
      );
    }
    return store;
  }

  // ---- recovery and leases ----

  async surfaceInterrupted(
    claim: RecoveryClaim,
    reason: (record: { id: string; status: string; owner?: string | null }, kind: RecoveredKind) => string,
  ): Promise<{ volumes: VolumeRecord[]; snapshots: SnapshotRecord[]; connections: ConnectionRecord[] }> {
    return this.write('mark interrupted operations', () =>
      this.transaction(async (db) => {
        // Leases lapse on the database's clock, whatever this server's says.
        claim = { ...claim, now: (await db.query<{ now: string }>(`SELECT ${DB_NOW} AS now`)).rows[0].now };
        return {
          volumes: await this.volumes.recover(db, claim, reason),
          snapshots: await this.snapshots.recover(db, claim, reason),
          connections: await this.connections.recover(db, claim, reason),
        };
      }),
    );
  }

  async renewLeases(owner: string, until: string): Promise<void> {
    await this.write('renew the leases of operations under way', () =>
      this.transaction(async (db) => {
        await this.measureClock(db);
        until = this.toDbClock(until);
        for (const records of [this.volumes, this.snapshots, this.connections]) {
          await db.query(`UPDATE ${records.table} SET lease_expires_at = $1 WHERE owner = $2 AND ${underWay(records.kind)}`, [until, owner]);
        }
        await db.query('UPDATE capacity_holds SET lease_expires_at = $1 WHERE owner = $2', [until, owner]);
        await db.query('UPDATE servers SET lease_expires_at = $1 WHERE server_id = $2', [until, owner]);
        await db.query('UPDATE backend_fingerprints SET lease_expires_at = $1 WHERE server_id = $2', [until, owner]);
      }),
    );
  }

  // ---- import, audit, tombstones ----

  async importRecords(batch: ImportBatch): Promise<void> {
    await this.write('load a dump', () =>
      // A throw inside the transaction rolls every row of it back: all or nothing.
      this.transaction(async (db) => {
        const taken = (what: string) => new StorageError('ALREADY_EXISTS', `${what} is already in the metadata store; nothing was loaded`);
        for (const record of batch.volumes) if (!(await this.volumes.insertRow(db, record))) throw taken(`volume ${record.id}`);
        for (const record of batch.snapshots) if (!(await this.snapshots.insertRow(db, record))) throw taken(`snapshot ${record.id}`);
        for (const record of batch.connections) if (!(await this.connections.insertRow(db, record))) throw taken(`connection ${record.id}`);
      }),
    );
    // Planner statistics for what a large load added: without them list pages scan the whole table until autovacuum runs.
    if (batch.volumes.length + batch.snapshots.length + batch.connections.length >= LOAD_ANALYZE_THRESHOLD) {
      await this.write('update planner statistics after a load', (db) => db.query('ANALYZE volumes, snapshots, connections'));
    }
  }

  async ping(): Promise<void> {
    await this.read(async () => void (await this.pool.query('SELECT 1')));
  }

  async removeLeavingTombstone(id: string, tombstone: Tombstone): Promise<boolean> {
    const records = tombstone.kind === 'snapshot' ? this.snapshots : this.volumes;
    return this.write(`forget ${tombstone.kind} ${id}`, () =>
      this.transaction(async (db) => {
        if (!(await records.removeRow(db, id))) return false;
        await db.query(...this.bury(tombstone));
        return true;
      }),
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([this.locks.close(), this.pool.end(), this.relaxed.end(), this.coordination.end()]);
  }

  // ---- shared coordination ----

  /**
   * Two round trips: BEGIN, the domain's lock and one read (the database's time, other servers' live
   * holds, this server's lease, the domain's change count; lapsed holds forgotten, and counted as a
   * change, on the way) in one message; then the hold written with COMMIT. Each statement of a
   * message reads its own snapshot, so the read sees what the lock's previous holder committed.
   * Holds are committed without waiting for the disk (synchronous_commit off): a hold lost with a
   * crash of PostgreSQL goes with every session, so with every lock the operations held, and with
   * the change counts that would have told servers to count the array anew: a server that lost its
   * session counts anew (its seen counts start over with the new store connection's first decision).
   */
  private async holdCapacity(domain: string, owner: string, decide: (room: CapacityRoom) => Promise<number | CapacityDecision>): Promise<CapacityHold> {
    const what = `hold capacity of ${domain}`;
    const id = randomUUID();
    const [d, o] = [sqlLiteral(domain), sqlLiteral(owner)];
    const lockAndRead = `BEGIN; SET LOCAL synchronous_commit TO off;
      SELECT pg_advisory_xact_lock(hashtextextended(${sqlLiteral(`capacity:${domain}`)}, 0));
      WITH clock AS MATERIALIZED (SELECT ${DB_NOW} AS now),
           lapsed AS (DELETE FROM capacity_holds WHERE domain = ${d} AND lease_expires_at <= (SELECT now FROM clock) RETURNING id),
           counted AS (${countChange(d)} WHERE EXISTS (SELECT 1 FROM lapsed) ${ON_CHANGE_COUNTED})
      SELECT (SELECT now FROM clock) AS now,
             (SELECT COALESCE(SUM(gb), 0)::float8 FROM capacity_holds WHERE domain = ${d} AND owner <> ${o} AND lease_expires_at > (SELECT now FROM clock)) AS held,
             (SELECT lease_expires_at FROM servers WHERE server_id = ${o}) AS joined,
             COALESCE((SELECT changes FROM counted), (SELECT changes FROM capacity_domains WHERE domain = ${d}), 0)::float8 AS changes`;
    const waited = performance.now();
    let gb: number;
    let intentWritten = false;
    try {
      gb = await this.transaction(
        async (client, begun) => {
          metrics.observe(LOCK_WAIT_SECONDS, LOCK_WAIT_HELP, { lock: 'capacity' }, (performance.now() - waited) / 1000);
          stepDone('capacity lock and read');
          const { now, held, joined, changes } = begun[begun.length - 1].rows[0] as { now: string; held: number; joined: string | null; changes: number };
          const decision = await decide({ heldByOthersGb: Number(held), changes: Number(changes) });
          const { gb, intent } = typeof decision === 'number' ? { gb: decision, intent: undefined } : decision;
          const statements: string[] = [];
          if (gb > 0) {
            const ownLease = new Date(Date.parse(now) + this.holdLeaseMs).toISOString();
            const until = joined && joined > ownLease ? joined : ownLease;
            statements.push(`INSERT INTO capacity_holds (id, domain, gb, owner, lease_expires_at) VALUES (${sqlLiteral(id)}, ${d}, ${sqlLiteral(gb)}, ${o}, ${sqlLiteral(until)})`);
          }
          // An intent must outlive a crash of PostgreSQL: this commit waits for the disk.
          if (intent) statements.push('SET LOCAL synchronous_commit TO on', this.volumes.literalInsert(intent.record));
          if (statements.length === 0) return gb;
          const results = [await this.storeCall(what, () => client.query([...statements, 'COMMIT'].join('; ')))].flat() as pg.QueryResult[];
          intentWritten = intent !== undefined && results[results.length - 2].rowCount === 1;
          return gb;
        },
        () => this.checkout(this.coordination, what).finally(() => stepDone('capacity connection')),
        (run) => this.storeCall(what, run),
        lockAndRead,
      );
    } catch (error) {
      if (!isLockTimeout(error)) throw error;
      if (errorCode(error) === '40P01')
        throw new StorageError('BACKEND_BUSY', `deciding the capacity of ${domain} met another server's schema upgrade (PostgreSQL broke a deadlock); retry`);
      throw new StorageError('BACKEND_BUSY', `the capacity of ${domain} is being decided by another server for longer than ${Math.round(this.lockTimeoutMs / 1000)} s; retry`);
    }
    let released = gb <= 0;
    return {
      intentWritten,
      release: async () => {
        if (released) return undefined;
        // The hold goes and the change is counted in one statement: a decision sees one or the other, never neither.
        const { rows } = await this.write(
          `release capacity held in ${domain}`,
          (db) => db.query<{ changes: number }>(`WITH gone AS (DELETE FROM capacity_holds WHERE id = $1) ${countChange('$2')} ${ON_CHANGE_COUNTED}`, [id, domain]),
          this.relaxed,
        );
        released = true;
        return Number(rows[0].changes);
      },
    };
  }

  private async noteCapacityChange(domain: string): Promise<number> {
    const { rows } = await this.write(`count a change of ${domain}`, (db) => db.query<{ changes: number }>(`${countChange('$1')} ${ON_CHANGE_COUNTED}`, [domain]), this.relaxed);
    return Number(rows[0].changes);
  }

  /**
   * The identity is the session-level lock on the lock session: held while this server's session
   * lives, freed the moment it ends (kill -9 included). The servers row only describes the holder
   * (for a refused twin's message) and carries the lease capacity holds follow.
   */
  private async join(serverId: string, description: string, until: string): Promise<{ joined: true } | { joined: false; holder: string }> {
    const what = `register server ${serverId}`;
    if (!(await this.locks.claimIdentity(serverId, this.joinGraceMs))) {
      const row = await this.read(async () => (await this.pool.query<{ description: string }>('SELECT description FROM servers WHERE server_id = $1', [serverId])).rows[0]);
      return { joined: false, holder: row?.description ?? 'a server that has not described itself yet' };
    }
    try {
      await this.write(what, (db) =>
        db.query(
          `INSERT INTO servers (server_id, description, lease_expires_at) VALUES ($1, $2, $3)
           ON CONFLICT (server_id) DO UPDATE SET description = EXCLUDED.description, lease_expires_at = EXCLUDED.lease_expires_at`,
          [serverId, description, this.toDbClock(until)],
        ),
      );
    } catch (error) {
      await this.locks.releaseIdentity(serverId);
      throw error;
    }
    return { joined: true };
  }

  private async agreeOnBackend(
    backend: string,
    serverId: string,
    fingerprint: BackendFingerprint,
    differ: (here: BackendFingerprint, there: BackendFingerprint) => BackendDisagreement['differing'],
  ): Promise<{ agreed: true } | ({ agreed: false } & BackendDisagreement)> {
    return this.write(`compare backend "${backend}" with the other servers`, () =>
      this.transaction(async (db) => {
        await db.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`backend:${backend}`]);
        const now = (await db.query<{ now: string }>(`SELECT ${DB_NOW} AS now`)).rows[0].now;
        const { rows } = await db.query<{ server_id: string; fingerprint: string | BackendFingerprint }>(
          'SELECT server_id, fingerprint FROM backend_fingerprints WHERE backend = $1 AND server_id <> $2 AND lease_expires_at > $3 ORDER BY server_id',
          [backend, serverId, now],
        );
        for (const row of rows) {
          const theirs = (typeof row.fingerprint === 'string' ? JSON.parse(row.fingerprint) : row.fingerprint) as BackendFingerprint;
          const differing = differ(fingerprint, theirs);
          if (differing.length > 0) return { agreed: false as const, server: row.server_id, differing };
        }
        const joined = (await db.query<{ lease_expires_at: string }>('SELECT lease_expires_at FROM servers WHERE server_id = $1', [serverId])).rows[0]?.lease_expires_at;
        const until = joined ?? new Date(Date.parse(now) + this.holdLeaseMs).toISOString();
        await db.query(
          `INSERT INTO backend_fingerprints (id, backend, server_id, fingerprint, lease_expires_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (id) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, lease_expires_at = EXCLUDED.lease_expires_at`,
          [JSON.stringify([backend, serverId]), backend, serverId, JSON.stringify(fingerprint), until],
        );
        return { agreed: true as const };
      }),
    );
  }

  /** Removes the server's registration and the capacity it still held, and gives its identity up: its operations are over. */
  private async leave(serverId: string): Promise<void> {
    try {
      await this.write(`unregister server ${serverId}`, () =>
        this.transaction(async (db) => {
          await db.query('DELETE FROM capacity_holds WHERE owner = $1', [serverId]);
          await db.query('DELETE FROM backend_fingerprints WHERE server_id = $1', [serverId]);
          await db.query('DELETE FROM servers WHERE server_id = $1', [serverId]);
        }),
      );
    } finally {
      await this.locks.releaseIdentity(serverId);
    }
  }

  /** Measures how far the database's clock is from this server's (half a round trip is the error). */
  private async measureClock(db: Queryable): Promise<void> {
    const sent = Date.now();
    const now = (await db.query<{ now: string }>(`SELECT ${DB_NOW} AS now`)).rows[0].now;
    const received = Date.now();
    const offset = Date.parse(now) - (sent + received) / 2;
    // An offset within the measurement's own error is noise: same-clock hosts keep their leases exact.
    this.clockOffsetMs = Math.abs(offset) <= (received - sent) / 2 + 5 ? 0 : Math.round(offset);
  }

  /** A lease end this server computed on its own clock, as the same span on the database's clock. */
  private toDbClock(iso: string): string {
    return new Date(Date.parse(iso) + this.clockOffsetMs).toISOString();
  }

  /** A record (or patch) whose lease end is moved onto the database's clock. */
  onDbClock<T extends { lease_expires_at?: string | null }>(record: T): T {
    return record.lease_expires_at ? { ...record, lease_expires_at: this.toDbClock(record.lease_expires_at) } : record;
  }

  // ---- for the record tables ----

  /**
   * Inserts with `insert` and records `request` in the same transaction, unless the request_id is
   * already live. The request id's own transaction lock makes two servers' retries of one request
   * meet in turn: the second sees the first's entry.
   */
  async insertClaiming(request: RequestEntry | undefined, insert: (db: Queryable) => Promise<boolean>): Promise<InsertOutcome> {
    // One statement needs no transaction of its own: one round trip instead of three.
    if (!request) return (await insert(this.pool)) ? { inserted: true } : { inserted: false };
    return this.transaction(async (db): Promise<InsertOutcome> => {
      if (request) {
        await db.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`request:${request.request_id}`]);
        const existing = await this.liveRequest(db, request.request_id);
        if (existing) return { inserted: false, existingRequest: existing };
        await db.query(deleteSql(POSTGRES, 'requests'), [request.request_id]); // an expired one
      }
      if (!(await insert(db))) return { inserted: false };
      if (request) await db.query(insertSql(POSTGRES, 'requests', 'none'), rowValues('postgresql', 'requests', request));
      return { inserted: true };
    });
  }

  private async liveRequest(db: Queryable, requestId: string): Promise<RequestEntry | undefined> {
    return liveRequest('postgresql', (await db.query<Row>(selectSql(POSTGRES, 'requests'), [requestId])).rows[0]);
  }

  /**
   * Runs `task` in one transaction on one connection, of the record pool unless `open` gives
   * another; `step` wraps BEGIN and COMMIT (holdCapacity names its store trouble with it). `begin`
   * may carry the transaction's first statements too: their results are the task's `begun`.
   */
  private async transaction<T>(
    task: (db: pg.PoolClient, begun: pg.QueryResult[]) => Promise<T>,
    open: () => Promise<pg.PoolClient> = () => this.pool.connect(),
    step: <X>(run: () => Promise<X>) => Promise<X> = (run) => run(),
    begin = 'BEGIN',
  ): Promise<T> {
    const client = await open();
    let broken: Error | undefined;
    const onError = (error: Error) => (broken = error);
    client.on('error', onError);
    try {
      const begun = [await step(() => client.query(begin))].flat() as pg.QueryResult[];
      const result = await task(client, begun);
      // A task may end its transaction itself, with its last statement (one round trip less).
      if (transactionOpen(client)) await step(() => client.query('COMMIT'));
      return result;
    } catch (error) {
      // Always: node-postgres rejects on the error before the server says the transaction failed
      // (its transaction status is stale then), and a ROLLBACK with none open is only a warning.
      if (!broken) await client.query('ROLLBACK').catch((rollbackError: Error) => (broken = rollbackError));
      throw error;
    } finally {
      client.off('error', onError);
      client.release(broken ?? undefined);
    }
  }

  /** A write, after the deferred ones; the store's own trouble becomes BACKEND_UNAVAILABLE naming it. */
  async write<T>(what: string, task: (db: Queryable) => Promise<T>, db: Queryable = this.pool): Promise<T> {
    try {
      await this.flushDeferred();
      return await task(db);
    } catch (error) {
      throw this.storeTrouble(what, error);
    }
  }

  async read<T>(task: () => Promise<T>): Promise<T> {
    try {
      return await task();
    } catch (error) {
      throw this.storeTrouble('read', error);
    }
  }

  /** A store call whose trouble is reported as such; anything else (a decide's own error) passes as thrown. */
  private async storeCall<T>(what: string, task: () => Promise<T>): Promise<T> {
    try {
      return await task();
    } catch (error) {
      throw this.storeTrouble(what, error);
    }
  }

  private async checkout(pool: pg.Pool, what: string): Promise<pg.PoolClient> {
    try {
      return await pool.connect();
    } catch (error) {
      // Every connection busy (each deciding another domain's capacity) is this server's load, not the database's trouble.
      if (pool.totalCount >= (pool.options.max ?? 10) && /timeout/i.test(reasonOf(error))) {
        throw new StorageError('BACKEND_BUSY', `${what}: this server is already deciding the capacity of ${pool.totalCount} pools at once on ${this.description}; retry in a moment`);
      }
      throw this.storeTrouble(what, error);
    }
  }

  /**
   * Writes the updates deferred while the store could not take them, one at a time, oldest first;
   * stops at the first that fails (the caller's own write then reports the store's state). A patch
   * deferred again while its write was under way stays, to be written next time.
   */
  private async flushDeferred(): Promise<void> {
    const flushOne = async <P extends object>(buffer: OutcomeBuffer<P>, write: (id: string, patch: P) => Promise<unknown>): Promise<boolean> => {
      let next: [string, P] | undefined;
      buffer.flush((id, patch) => {
        next = [id, patch];
        throw new Error('peek'); // keeps it in the buffer until it is written
      });
      if (!next) return false;
      const [id, patch] = next;
      await write(id, patch);
      const now = buffer.apply({ id });
      if (JSON.stringify(now) === JSON.stringify({ id, ...patch })) buffer.forget(id);
      return true;
    };
    try {
      for (const records of [this.volumes, this.snapshots, this.connections] as const) {
        for (let rounds = 0; rounds < 1000 && (await flushOne<object>(records.unwritten, (id, patch) => records.patchRow(this.pool, id, patch))); rounds++);
      }
    } catch {
      // Kept for the next write.
    }
  }

  private storeTrouble(what: string, error: unknown): unknown {
    if (error instanceof StorageError || !isStoreTrouble(error)) return error;
    return new StorageError(
      'BACKEND_UNAVAILABLE',
      `cannot ${what}: the metadata store ${this.description} is unavailable: ${this.secrets.redact(reasonOf(error))}; retry once PostgreSQL is reachable again`,
    );
  }

  private async migrate(): Promise<void> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    const onError = (error: Error) => (broken = error);
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      try {
        // One transaction under one lock: servers starting together migrate once, in turn.
        await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', ['cinderlib-mcp:schema_migrations']);
        await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
        const version = Number((await client.query<{ version: number | null }>('SELECT MAX(version) AS version FROM schema_migrations')).rows[0]?.version ?? 0);
        if (version > MIGRATIONS_DONE) {
          throw new StorageError(
            'BACKEND_UNAVAILABLE',
            `the metadata store ${this.description} has schema version ${version}, newer than this cinderlib-mcp understands (${MIGRATIONS_DONE}); upgrade cinderlib-mcp`,
          );
        }
        const { rows } = await client.query<{ table_name: string; column_name: string }>(
          'SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()',
        );
        const existing = new Map<string, Set<string>>();
        for (const row of rows) existing.set(row.table_name, (existing.get(row.table_name) ?? new Set()).add(row.column_name));
        const indexes = new Set((await client.query<{ indexname: string }>('SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()')).rows.map((row) => row.indexname));
        // A server starting beside running ones changes nothing on an up-to-date schema, so locks none of their tables.
        for (const step of upgradeSteps('postgresql', existing, indexes)) await client.query(step.sql);
        for (let next = version + 1; next <= MIGRATIONS_DONE; next++) {
          await client.query('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [next, new Date().toISOString()]);
        }
        await client.query('COMMIT');
      } catch (error) {
        if (!broken) await client.query('ROLLBACK').catch((rollbackError: Error) => (broken = rollbackError));
        throw error;
      }
    } finally {
      client.off('error', onError);
      client.release(broken ?? undefined);
    }
  }
}

/** Whether `client`'s session is inside a transaction (node-postgres keeps the server's last ReadyForQuery status). */
function transactionOpen(client: pg.PoolClient): boolean {
  return (client as unknown as { getTransactionStatus?(): string | null }).getTransactionStatus?.() !== 'I';
}

/** The statement counting one change of domain `domain` (an SQL expression), from its first. */
const countChange = (domain: string) => `INSERT INTO capacity_domains (domain, changes) SELECT ${domain}, 1`;
// INTEGER wraps to 1 long before it overflows: a server that saw the count before the wrap counts anew, as after any change it did not make.
const ON_CHANGE_COUNTED = `ON CONFLICT (domain) DO UPDATE SET changes = CASE WHEN capacity_domains.changes >= 2000000000 THEN 1 ELSE capacity_domains.changes + 1 END RETURNING changes`;

/** The cast of a parameter to its column's type, where the statement gives it no column (INSERT ... SELECT $n). */
const CASTS: Record<ColumnType, string> = { text: 'text', stamp: 'text', json: 'text', integer: 'integer', real: 'double precision', boolean: 'boolean' };

/**
 * A value (a row's, as rowValues gives it, or a name) as an SQL literal, for messages of several
 * statements, which take no parameters; anything else is refused, never spliced.
 */
function sqlLiteral(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'boolean') return value ? 'TRUE' : 'FALSE';
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'string') return pg.escapeLiteral(value);
  throw new Error(`cannot write a ${typeof value} as an SQL literal`);
}

/** lock_timeout (55P03), or a deadlock PostgreSQL broke (40P01): someone else holds the lock. */
function isLockTimeout(error: unknown): boolean {
  const code = errorCode(error);
  return code === '55P03' || code === '40P01';
}

/** Opens (and migrates) the PostgreSQL store at `url`; see PostgresVolumeStore.open. */
export function openPostgresVolumeStore(url: string, options: PostgresOpenOptions = {}): Promise<PostgresVolumeStore> {
  return PostgresVolumeStore.open(url, options);
}
