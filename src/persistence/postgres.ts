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
import type { ConnectionRecord, ConnectionStatus } from '../connection.js';
import { StorageError } from '../errors.js';
import { KeyedMutex } from '../locks.js';
import { createLogger, type Logger } from '../log.js';
import { SecretRegistry } from '../secrets.js';
import type { SnapshotRecord, SnapshotStatus } from '../snapshot.js';
import { OPERATION_OF_STATUS, TRANSITIONAL_STATUSES, type VolumeRecord, type VolumeStatus } from '../volume.js';
import { OutcomeBuffer } from './outcome-buffer.js';
import { LockSession } from './pg-lock-session.js';
import { isRecoverable } from './recovery.js';
import {
  REQUEST_ID_TTL_MS,
  type AuditQuery,
  type AuditRecord,
  type ConnectionPage,
  type ConnectionPatch,
  type ConnectionQuery,
  type ImportBatch,
  type InsertOutcome,
  type RecoveredKind,
  type RecoveryClaim,
  type RequestEntry,
  type SharedCoordination,
  type SnapshotPage,
  type SnapshotPatch,
  type SnapshotQuery,
  type Tombstone,
  type VolumePage,
  type VolumePatch,
  type VolumeQuery,
  type VolumeStore,
} from './store.js';

const { Pool } = pg;
type Queryable = Pick<pg.PoolClient, 'query'>;

/**
 * Forward-only migrations; `schema_migrations` holds the versions that ran. The record tables are
 * SQLite's final schema in PostgreSQL types: times stay ISO-8601 TEXT, compared and ordered in
 * the "C" collation (byte order, as SQLite's, whatever the database's locale), JSON-valued fields
 * TEXT (round-trip exact), `seq` a BIGSERIAL for paging.
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE volumes (
     seq BIGSERIAL PRIMARY KEY,
     id TEXT NOT NULL UNIQUE,
     backend TEXT NOT NULL,
     name TEXT NOT NULL,
     description TEXT NOT NULL,
     size INTEGER NOT NULL,
     status TEXT NOT NULL,
     pool_name TEXT NOT NULL,
     bootable BOOLEAN NOT NULL,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL,
     status_reason TEXT,
     provider_location TEXT,
     failed_operation TEXT,
     owner TEXT,
     lease_expires_at TEXT COLLATE "C",
     snapshot_id TEXT,
     source_volume_id TEXT,
     provider_auth TEXT,
     cinderlib_extra TEXT
   );
   CREATE INDEX volumes_by_backend ON volumes (backend, seq);
   CREATE INDEX volumes_by_status ON volumes (status, seq);
   CREATE INDEX volumes_by_backend_status ON volumes (backend, status, seq);
   CREATE INDEX volumes_by_snapshot ON volumes (snapshot_id);
   CREATE TABLE tombstones (
     object_id TEXT PRIMARY KEY,
     backend TEXT NOT NULL,
     pool_name TEXT NOT NULL,
     size INTEGER NOT NULL,
     provider_location TEXT,
     checks_done INTEGER NOT NULL,
     next_check_at TEXT COLLATE "C" NOT NULL,
     kind TEXT NOT NULL DEFAULT 'volume',
     parent_volume_id TEXT
   );
   CREATE INDEX tombstones_by_backend ON tombstones (backend);
   CREATE TABLE snapshots (
     seq BIGSERIAL PRIMARY KEY,
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
     lease_expires_at TEXT COLLATE "C",
     cinderlib_extra TEXT
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
   );
   CREATE TABLE connections (
     seq BIGSERIAL PRIMARY KEY,
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
     status_reason TEXT,
     owner TEXT,
     lease_expires_at TEXT COLLATE "C",
     cinderlib_extra TEXT
   );
   CREATE INDEX connections_by_backend ON connections (backend, seq);
   CREATE INDEX connections_by_volume ON connections (volume_id, seq);
   CREATE INDEX connections_by_owner ON connections (owner) WHERE owner IS NOT NULL;
   CREATE TABLE audit_log (
     seq BIGSERIAL PRIMARY KEY,
     time TEXT COLLATE "C" NOT NULL,
     server TEXT NOT NULL,
     client TEXT NOT NULL,
     tool TEXT NOT NULL,
     arguments TEXT NOT NULL,
     outcome TEXT NOT NULL,
     error TEXT
   );
   CREATE INDEX audit_log_by_time ON audit_log (time, seq);`,
  `CREATE TABLE capacity_holds (
     id TEXT PRIMARY KEY,
     domain TEXT NOT NULL,
     gb DOUBLE PRECISION NOT NULL,
     owner TEXT NOT NULL,
     lease_expires_at TEXT COLLATE "C" NOT NULL
   );
   CREATE INDEX capacity_holds_by_domain ON capacity_holds (domain, lease_expires_at);
   CREATE INDEX capacity_holds_by_owner ON capacity_holds (owner);
   CREATE TABLE servers (
     server_id TEXT PRIMARY KEY,
     description TEXT NOT NULL,
     lease_expires_at TEXT COLLATE "C" NOT NULL
   );`,
];

/** The schema version this code writes and reads. */
export const POSTGRES_SCHEMA_VERSION = MIGRATIONS.length;

const VOLUME_COLUMNS = [
  'id', 'backend', 'name', 'description', 'size', 'status', 'pool_name', 'bootable', 'created_at', 'updated_at', 'status_reason', 'provider_location',
  'provider_auth', 'failed_operation', 'owner', 'lease_expires_at', 'snapshot_id', 'source_volume_id', 'cinderlib_extra',
] as const;
const SNAPSHOT_COLUMNS = [
  'id', 'volume_id', 'backend', 'name', 'description', 'volume_size', 'status', 'created_at', 'updated_at', 'status_reason', 'provider_location',
  'failed_operation', 'owner', 'lease_expires_at', 'cinderlib_extra',
] as const;
const CONNECTION_COLUMNS = [
  'id', 'volume_id', 'backend', 'status', 'attach_mode', 'connector', 'connection_info', 'device', 'created_at', 'updated_at', 'status_reason', 'owner',
  'lease_expires_at', 'cinderlib_extra',
] as const;
const TOMBSTONE_COLUMNS = ['object_id', 'kind', 'parent_volume_id', 'backend', 'pool_name', 'size', 'provider_location', 'checks_done', 'next_check_at'] as const;
const REQUEST_COLUMNS = ['request_id', 'tool', 'fingerprint', 'object_kind', 'object_id', 'created_at'] as const;

type Table = 'volumes' | 'snapshots' | 'connections';

function insertStatement(table: string, columns: readonly string[], onConflict: string): string {
  return `INSERT INTO ${table} (${columns.join(', ')}) VALUES (${columns.map((_, i) => `$${i + 1}`).join(', ')}) ${onConflict}`;
}

const INSERT_VOLUME = insertStatement('volumes', VOLUME_COLUMNS, 'ON CONFLICT (id) DO NOTHING');
const INSERT_SNAPSHOT = insertStatement('snapshots', SNAPSHOT_COLUMNS, 'ON CONFLICT (id) DO NOTHING');
const INSERT_CONNECTION = insertStatement('connections', CONNECTION_COLUMNS, 'ON CONFLICT (id) DO NOTHING');
const BURY = insertStatement(
  'tombstones',
  TOMBSTONE_COLUMNS,
  `ON CONFLICT (object_id) DO UPDATE SET ${TOMBSTONE_COLUMNS.filter((c) => c !== 'object_id').map((c) => `${c} = EXCLUDED.${c}`).join(', ')}`,
);
const CLAIM_REQUEST = insertStatement('requests', REQUEST_COLUMNS, '');

const values = (columns: readonly string[], row: Record<string, unknown>): unknown[] => columns.map((column) => row[column] ?? null);

/** The unmodeled fields of a loaded cinderlib dump, as stored (JSON text). */
const extraText = (extra: Record<string, unknown> | null | undefined): string | null => (extra ? JSON.stringify(extra) : null);
const extraOf = (text: string | null | undefined): Record<string, unknown> | null => (text ? (JSON.parse(text) as Record<string, unknown>) : null);

type Row = Record<string, unknown> & { seq: string | number };

function fromRow(row: Row): VolumeRecord {
  const { seq: _seq, cinderlib_extra, ...rest } = row;
  return { ...(rest as unknown as VolumeRecord), cinderlib_extra: extraOf(cinderlib_extra as string | null) };
}

function fromSnapshotRow(row: Row): SnapshotRecord {
  const { seq: _seq, cinderlib_extra, ...rest } = row;
  return { ...(rest as unknown as SnapshotRecord), cinderlib_extra: extraOf(cinderlib_extra as string | null) };
}

function fromConnectionRow(row: Row): ConnectionRecord {
  const { seq: _seq, connector, connection_info, device, cinderlib_extra, ...rest } = row;
  return {
    ...(rest as unknown as ConnectionRecord),
    connector: JSON.parse(connector as string),
    connection_info: JSON.parse(connection_info as string),
    device: device === null ? null : JSON.parse(device as string),
    cinderlib_extra: extraOf(cinderlib_extra as string | null),
  };
}

function toConnectionColumns(patch: Partial<ConnectionRecord>): Record<string, unknown> {
  const columns: Record<string, unknown> = { ...patch };
  for (const key of ['connector', 'connection_info', 'device', 'cinderlib_extra'] as const) {
    if (patch[key] !== undefined) columns[key] = patch[key] === null ? null : JSON.stringify(patch[key]);
  }
  return columns;
}

const volumeRow = (record: VolumeRecord): Record<string, unknown> => ({ ...record, bootable: record.bootable === true, cinderlib_extra: extraText(record.cinderlib_extra) });
const snapshotRow = (record: SnapshotRecord): Record<string, unknown> => ({ ...record, cinderlib_extra: extraText(record.cinderlib_extra) });
const connectionRow = (record: ConnectionRecord): Record<string, unknown> => toConnectionColumns({ owner: null, lease_expires_at: null, cinderlib_extra: null, ...record });

/** The column names a patch may carry: identifiers are spliced into SQL, so only these pass. */
const PATCHABLE = /^[a-z_]+$/;

/** SQLSTATE classes that mean the store itself is in trouble, not that a call was wrong. */
const TROUBLE_STATES = /^(08|28|3D|53|57|58|XX)/;
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'EPIPE', 'ECONNABORTED', 'EADDRNOTAVAIL']);
const TROUBLE_MESSAGES = /Connection terminated|timeout exceeded when trying to connect|Query read timeout|connection timeout|Client has encountered a connection error|Cannot use a pool after calling end|Client was closed|not queryable/i;

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

export class PostgresVolumeStore implements VolumeStore {
  readonly description: string;
  readonly shared: SharedCoordination;
  private readonly unwritten = new OutcomeBuffer<VolumePatch>();
  private readonly unwrittenSnapshots = new OutcomeBuffer<SnapshotPatch>();
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
    private readonly pool: pg.Pool,
    /** Connections for capacity decisions (one per domain at a time), so they never starve record queries. */
    private readonly coordination: pg.Pool,
    lockClient: pg.ClientConfig,
    description: string,
    private readonly secrets: SecretRegistry,
    options: PostgresOpenOptions,
  ) {
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
      holdKeys: (keys, task) => this.locks.hold(keys, task),
      holdCapacity: (domain, owner, decide) => this.capacityTurns.run(domain, () => this.holdCapacity(domain, owner, decide)),
      join: (serverId, description, until) => this.join(serverId, description, until),
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
    // An idle connection the server drops emits 'error' on its pool: the next call reports it.
    pool.on('error', () => undefined);
    coordination.on('error', () => undefined);
    const lockClient: pg.ClientConfig = {
      connectionString: common.connectionString,
      connectionTimeoutMillis: common.connectionTimeoutMillis,
      keepAlive: true,
      keepAliveInitialDelayMillis: 5_000,
      // Lock statements never wait in PostgreSQL (try-locks): a slow answer is a session in trouble.
      statement_timeout: 10_000,
      query_timeout: 15_000,
    };
    const store = new PostgresVolumeStore(pool, coordination, lockClient, description, secrets, options);
    try {
      await store.migrate();
      await store.measureClock(pool);
    } catch (error) {
      await Promise.allSettled([pool.end(), coordination.end()]);
      if (error instanceof StorageError) throw error;
      throw new StorageError(
        'BACKEND_UNAVAILABLE',
        `cannot open the metadata store ${description}: ${secrets.redact(reasonOf(error))}; check that PostgreSQL runs and persistence_config.connection (host, port, database, user, password) is right`,
      );
    }
    return store;
  }

  // ---- volumes ----

  async insert(record: VolumeRecord): Promise<boolean> {
    return this.write('record a new volume', async (db) => (await db.query(INSERT_VOLUME, values(VOLUME_COLUMNS, volumeRow(this.onDbClock(record))))).rowCount === 1);
  }

  async insertForRequest(record: VolumeRecord, request: RequestEntry | undefined): Promise<InsertOutcome> {
    return this.write('record a new volume', () =>
      this.insertClaiming(request, async (db) => (await db.query(INSERT_VOLUME, values(VOLUME_COLUMNS, volumeRow(this.onDbClock(record))))).rowCount === 1),
    );
  }

  async get(id: string): Promise<VolumeRecord | undefined> {
    return this.read(async () => {
      const row = (await this.pool.query<Row>('SELECT * FROM volumes WHERE id = $1', [id])).rows[0];
      return this.unwritten.apply(row ? fromRow(row) : undefined);
    });
  }

  async update(id: string, patch: VolumePatch, expected?: readonly VolumeStatus[]): Promise<VolumeRecord | undefined> {
    return this.write(`update volume ${id}`, (db) => this.applyUpdate(db, id, patch, expected));
  }

  deferUpdate(id: string, patch: VolumePatch): void {
    this.unwritten.defer(id, patch);
  }

  deferSnapshotUpdate(id: string, patch: SnapshotPatch): void {
    this.unwrittenSnapshots.defer(id, patch);
  }

  async remove(id: string): Promise<boolean> {
    return this.write(`forget volume ${id}`, async (db) => {
      const removed = (await db.query('DELETE FROM volumes WHERE id = $1', [id])).rowCount === 1;
      this.unwritten.forget(id);
      return removed;
    });
  }

  async list(query: VolumeQuery): Promise<VolumePage> {
    const { rows, nextAfter } = await this.page('volumes', query, { backend: query.backend, status: query.status });
    return { records: rows.map((row) => this.unwritten.apply(fromRow(row))), nextAfter };
  }

  async volumesFromSnapshot(snapshotId: string): Promise<VolumeRecord[]> {
    return this.read(async () =>
      (await this.pool.query<Row>('SELECT * FROM volumes WHERE snapshot_id = $1 ORDER BY seq', [snapshotId])).rows.map((row) => this.unwritten.apply(fromRow(row))),
    );
  }

  // ---- snapshots ----

  async insertSnapshotForRequest(record: SnapshotRecord, request: RequestEntry | undefined): Promise<InsertOutcome> {
    return this.write('record a new snapshot', () =>
      this.insertClaiming(request, async (db) => (await db.query(INSERT_SNAPSHOT, values(SNAPSHOT_COLUMNS, snapshotRow(this.onDbClock(record))))).rowCount === 1),
    );
  }

  async getSnapshot(id: string): Promise<SnapshotRecord | undefined> {
    return this.read(async () => {
      const row = (await this.pool.query<Row>('SELECT * FROM snapshots WHERE id = $1', [id])).rows[0];
      return this.unwrittenSnapshots.apply(row ? fromSnapshotRow(row) : undefined);
    });
  }

  async updateSnapshot(id: string, patch: SnapshotPatch, expected?: readonly SnapshotStatus[]): Promise<SnapshotRecord | undefined> {
    return this.write(`update snapshot ${id}`, async (db) => {
      const row = await this.applyPatch(db, 'snapshots', id, patch, expected);
      if (!row) return undefined;
      this.unwrittenSnapshots.forget(id);
      return fromSnapshotRow(row);
    });
  }

  async removeSnapshot(id: string): Promise<boolean> {
    return this.write(`forget snapshot ${id}`, async (db) => {
      const removed = (await db.query('DELETE FROM snapshots WHERE id = $1', [id])).rowCount === 1;
      this.unwrittenSnapshots.forget(id);
      return removed;
    });
  }

  async listSnapshots(query: SnapshotQuery): Promise<SnapshotPage> {
    const { rows, nextAfter } = await this.page('snapshots', query, { backend: query.backend, volume_id: query.volume_id, status: query.status });
    return { records: rows.map((row) => this.unwrittenSnapshots.apply(fromSnapshotRow(row))), nextAfter };
  }

  async snapshotsOf(volumeId: string): Promise<SnapshotRecord[]> {
    return this.read(async () =>
      (await this.pool.query<Row>('SELECT * FROM snapshots WHERE volume_id = $1 ORDER BY seq', [volumeId])).rows.map((row) => this.unwrittenSnapshots.apply(fromSnapshotRow(row))),
    );
  }

  // ---- connections ----

  async insertConnection(record: ConnectionRecord): Promise<boolean> {
    return this.write('record a new connection', async (db) => (await db.query(INSERT_CONNECTION, values(CONNECTION_COLUMNS, connectionRow(this.onDbClock(record))))).rowCount === 1);
  }

  async insertConnectionForRequest(record: ConnectionRecord, request: RequestEntry | undefined): Promise<InsertOutcome> {
    return this.write('record a new connection', () =>
      this.insertClaiming(request, async (db) => (await db.query(INSERT_CONNECTION, values(CONNECTION_COLUMNS, connectionRow(this.onDbClock(record))))).rowCount === 1),
    );
  }

  async getConnection(id: string): Promise<ConnectionRecord | undefined> {
    return this.read(async () => {
      const row = (await this.pool.query<Row>('SELECT * FROM connections WHERE id = $1', [id])).rows[0];
      return row ? fromConnectionRow(row) : undefined;
    });
  }

  async updateConnection(id: string, patch: ConnectionPatch, expected?: readonly ConnectionStatus[]): Promise<ConnectionRecord | undefined> {
    return this.write(`update connection ${id}`, async (db) => {
      const row = await this.applyPatch(db, 'connections', id, toConnectionColumns(patch), expected);
      return row ? fromConnectionRow(row) : undefined;
    });
  }

  async removeConnection(id: string): Promise<boolean> {
    return this.write(`forget connection ${id}`, async (db) => (await db.query('DELETE FROM connections WHERE id = $1', [id])).rowCount === 1);
  }

  async listConnections(query: ConnectionQuery): Promise<ConnectionPage> {
    const { rows, nextAfter } = await this.page('connections', query, { backend: query.backend, volume_id: query.volume_id });
    return { records: rows.map(fromConnectionRow), nextAfter };
  }

  async connectionsOf(volumeId: string): Promise<ConnectionRecord[]> {
    return this.read(async () => (await this.pool.query<Row>('SELECT * FROM connections WHERE volume_id = $1 ORDER BY seq', [volumeId])).rows.map(fromConnectionRow));
  }

  // ---- requests ----

  async findRequest(requestId: string): Promise<RequestEntry | undefined> {
    return this.read(() => this.liveRequest(this.pool, requestId));
  }

  // ---- recovery and leases ----

  async surfaceInterrupted(
    claim: RecoveryClaim,
    reason: (record: { id: string; status: string; owner?: string | null }, kind: RecoveredKind) => string,
  ): Promise<{ volumes: VolumeRecord[]; snapshots: SnapshotRecord[]; connections: ConnectionRecord[] }> {
    return this.write('mark interrupted operations', () =>
      this.transaction(async (db) => {
        // Leases lapse on the database's clock, whatever this server's says.
        claim = { ...claim, now: (await db.query<{ now: string }>(`SELECT ${DB_NOW} AS now`)).rows[0]!.now };
        const recover = async (table: 'volumes' | 'snapshots'): Promise<Row[]> => {
          const kind = table === 'volumes' ? 'volume' : 'snapshot';
          // FOR UPDATE: another server's recovery waits, then finds these rows no longer under way.
          const rows = (await db.query<Row>(`SELECT * FROM ${table} WHERE status = ANY($1) ORDER BY seq FOR UPDATE`, [TRANSITIONAL_STATUSES])).rows;
          const recovered: Row[] = [];
          for (const row of rows) {
            const record = row as unknown as { id: string; status: VolumeStatus; owner: string | null; lease_expires_at: string | null };
            if (!isRecoverable(record, claim)) continue;
            const updated = await this.applyPatch(
              db,
              table,
              record.id,
              { status: 'error', status_reason: reason(record, kind), failed_operation: OPERATION_OF_STATUS[record.status] ?? null, owner: null, lease_expires_at: null },
              [record.status],
            );
            if (updated) recovered.push(updated);
          }
          return recovered;
        };
        const volumes = (await recover('volumes')).map((row) => {
          this.unwritten.forget(row.id as string);
          return fromRow(row);
        });
        const snapshots = (await recover('snapshots')).map((row) => {
          this.unwrittenSnapshots.forget(row.id as string);
          return fromSnapshotRow(row);
        });
        const connections: ConnectionRecord[] = [];
        for (const row of (await db.query<Row>('SELECT * FROM connections WHERE owner IS NOT NULL ORDER BY seq FOR UPDATE')).rows) {
          const record = row as unknown as { id: string; status: ConnectionStatus; owner: string | null; lease_expires_at: string | null };
          if (!isRecoverable(record, claim)) continue;
          const updated = await this.applyPatch(db, 'connections', record.id, { status: 'error', status_reason: reason(record, 'connection'), owner: null, lease_expires_at: null }, [record.status]);
          if (updated) connections.push(fromConnectionRow(updated));
        }
        return { volumes, snapshots, connections };
      }),
    );
  }

  async renewLeases(owner: string, until: string): Promise<void> {
    await this.write('renew the leases of operations under way', () =>
      this.transaction(async (db) => {
        await this.measureClock(db);
        until = this.toDbClock(until);
        for (const table of ['volumes', 'snapshots']) {
          await db.query(`UPDATE ${table} SET lease_expires_at = $1 WHERE owner = $2 AND status = ANY($3)`, [until, owner, TRANSITIONAL_STATUSES]);
        }
        await db.query('UPDATE connections SET lease_expires_at = $1 WHERE owner = $2', [until, owner]);
        await db.query('UPDATE capacity_holds SET lease_expires_at = $1 WHERE owner = $2', [until, owner]);
        await db.query('UPDATE servers SET lease_expires_at = $1 WHERE server_id = $2', [until, owner]);
      }),
    );
  }

  // ---- import, audit, tombstones ----

  async importRecords(batch: ImportBatch): Promise<void> {
    await this.write('load a dump', () =>
      // A throw inside the transaction rolls every row of it back: all or nothing.
      this.transaction(async (db) => {
        const taken = (what: string) => new StorageError('ALREADY_EXISTS', `${what} is already in the metadata store; nothing was loaded`);
        for (const record of batch.volumes) if ((await db.query(INSERT_VOLUME, values(VOLUME_COLUMNS, volumeRow(record)))).rowCount !== 1) throw taken(`volume ${record.id}`);
        for (const record of batch.snapshots) if ((await db.query(INSERT_SNAPSHOT, values(SNAPSHOT_COLUMNS, snapshotRow(record)))).rowCount !== 1) throw taken(`snapshot ${record.id}`);
        for (const record of batch.connections) {
          if ((await db.query(INSERT_CONNECTION, values(CONNECTION_COLUMNS, connectionRow(record)))).rowCount !== 1) throw taken(`connection ${record.id}`);
        }
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

  async appendAudit(record: AuditRecord): Promise<void> {
    await this.write('record an audit line', (db) =>
      db.query('INSERT INTO audit_log (time, server, client, tool, arguments, outcome, error) VALUES ($1, $2, $3, $4, $5, $6, $7)', [
        record.time, record.server, record.client, record.tool, JSON.stringify(record.arguments), record.outcome, record.error ?? null,
      ]),
    );
  }

  async listAudit(query: AuditQuery): Promise<{ records: AuditRecord[]; nextAfter?: number }> {
    return this.read(async () => {
      const rows = (
        await this.pool.query<Row>('SELECT * FROM audit_log WHERE seq > $1 AND time >= $2 ORDER BY seq LIMIT $3', [query.after ?? 0, query.since ?? '', query.limit + 1])
      ).rows;
      const more = rows.length > query.limit;
      const page = rows.slice(0, query.limit);
      return {
        records: page.map(({ seq: _seq, arguments: args, error, ...rest }) => ({ ...(rest as unknown as AuditRecord), arguments: JSON.parse(args as string), ...(error ? { error: error as string } : {}) })),
        nextAfter: more ? Number(page[page.length - 1]!.seq) : undefined,
      };
    });
  }

  async removeLeavingTombstone(id: string, tombstone: Tombstone): Promise<boolean> {
    return this.write(`forget ${tombstone.kind} ${id}`, async () => {
      const removed = await this.transaction(async (db) => {
        const table = tombstone.kind === 'snapshot' ? 'snapshots' : 'volumes';
        if ((await db.query(`DELETE FROM ${table} WHERE id = $1`, [id])).rowCount !== 1) return false;
        await db.query(BURY, values(TOMBSTONE_COLUMNS, tombstone as unknown as Record<string, unknown>));
        return true;
      });
      (tombstone.kind === 'snapshot' ? this.unwrittenSnapshots : this.unwritten).forget(id);
      return removed;
    });
  }

  async tombstones(backend: string): Promise<Tombstone[]> {
    return this.read(async () => (await this.pool.query<Tombstone>(`SELECT ${TOMBSTONE_COLUMNS.join(', ')} FROM tombstones WHERE backend = $1 ORDER BY next_check_at`, [backend])).rows);
  }

  async rescheduleTombstone(objectId: string, next: { checks_done: number; next_check_at: string } | null): Promise<void> {
    await this.write(`reschedule the tombstone of ${objectId}`, async (db) => {
      if (next) await db.query('UPDATE tombstones SET checks_done = $1, next_check_at = $2 WHERE object_id = $3', [next.checks_done, next.next_check_at, objectId]);
      else await db.query('DELETE FROM tombstones WHERE object_id = $1', [objectId]);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([this.locks.close(), this.pool.end(), this.coordination.end()]);
  }

  // ---- shared coordination ----

  private async holdCapacity(domain: string, owner: string, decide: (heldByOthersGb: number) => Promise<number>): Promise<{ release(): Promise<void> }> {
    const what = `hold capacity of ${domain}`;
    const client = await this.checkout(this.coordination, what);
    let broken: Error | undefined;
    const onError = (error: Error) => (broken = error);
    client.on('error', onError);
    const id = randomUUID();
    let gb = 0;
    try {
      await this.storeCall(what, () => client.query('BEGIN'));
      try {
        await this.storeCall(what, async () => {
          try {
            await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`capacity:${domain}`]);
          } catch (error) {
            if (!isLockTimeout(error)) throw error;
            throw new StorageError('BACKEND_BUSY', `the capacity of ${domain} is being decided by another server for longer than ${Math.round(this.lockTimeoutMs / 1000)} s; retry`);
          }
        });
        const now = await this.storeCall(what, async () => (await client.query<{ now: string }>(`SELECT ${DB_NOW} AS now`)).rows[0]!.now);
        const heldByOthers = await this.storeCall(what, async () => {
          // Holds whose owner stopped renewing are gone: forget them here, lazily.
          await client.query('DELETE FROM capacity_holds WHERE domain = $1 AND lease_expires_at <= $2', [domain, now]);
          const { rows } = await client.query<{ held: number }>(
            'SELECT COALESCE(SUM(gb), 0)::float8 AS held FROM capacity_holds WHERE domain = $1 AND owner <> $2 AND lease_expires_at > $3',
            [domain, owner, now],
          );
          return Number(rows[0]!.held);
        });
        gb = await decide(heldByOthers);
        if (gb > 0) {
          await this.storeCall(what, async () => {
            const joined = (await client.query<{ lease_expires_at: string }>('SELECT lease_expires_at FROM servers WHERE server_id = $1', [owner])).rows[0]?.lease_expires_at;
            const ownLease = new Date(Date.parse(now) + this.holdLeaseMs).toISOString();
            const until = joined && joined > ownLease ? joined : ownLease;
            await client.query('INSERT INTO capacity_holds (id, domain, gb, owner, lease_expires_at) VALUES ($1, $2, $3, $4, $5)', [id, domain, gb, owner, until]);
          });
        }
        await this.storeCall(what, () => client.query('COMMIT'));
      } catch (error) {
        if (!broken) await client.query('ROLLBACK').catch((rollbackError: Error) => (broken = rollbackError));
        throw error;
      }
    } finally {
      client.off('error', onError);
      client.release(broken ?? undefined);
    }
    let released = gb <= 0;
    return {
      release: async () => {
        if (released) return;
        await this.write(`release capacity held in ${domain}`, (db) => db.query('DELETE FROM capacity_holds WHERE id = $1', [id]));
        released = true;
      },
    };
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

  /** Removes the server's registration and the capacity it still held, and gives its identity up: its operations are over. */
  private async leave(serverId: string): Promise<void> {
    try {
      await this.write(`unregister server ${serverId}`, () =>
        this.transaction(async (db) => {
          await db.query('DELETE FROM capacity_holds WHERE owner = $1', [serverId]);
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
    const now = (await db.query<{ now: string }>(`SELECT ${DB_NOW} AS now`)).rows[0]!.now;
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
  private onDbClock<T extends { lease_expires_at?: string | null }>(record: T): T {
    return record.lease_expires_at ? { ...record, lease_expires_at: this.toDbClock(record.lease_expires_at) } : record;
  }

  // ---- helpers ----

  private async applyUpdate(db: Queryable, id: string, patch: VolumePatch, expected?: readonly VolumeStatus[]): Promise<VolumeRecord | undefined> {
    const row = await this.applyPatch(db, 'volumes', id, patch, expected);
    if (!row) return undefined;
    this.unwritten.forget(id);
    return this.unwritten.apply(fromRow(row));
  }

  /** UPDATE of the given fields (and updated_at) when the row's status is one of `expected`; the row as written. */
  private async applyPatch(db: Queryable, table: Table, id: string, patch: object, expected?: readonly string[]): Promise<Row | undefined> {
    const fields = Object.entries(this.onDbClock(patch as { lease_expires_at?: string | null })).filter(([field, value]) => value !== undefined && field !== 'updated_at');
    for (const [field] of fields) if (!PATCHABLE.test(field)) throw new Error(`not a column: ${field}`);
    const params: unknown[] = fields.map(([, value]) => value);
    const sets = fields.map(([field], i) => `${field} = $${i + 1}`);
    params.push(new Date().toISOString());
    sets.push(`updated_at = $${params.length}`);
    params.push(id);
    let where = `id = $${params.length}`;
    if (expected) {
      params.push([...expected]);
      where += ` AND status = ANY($${params.length})`;
    }
    return (await db.query<Row>(`UPDATE ${table} SET ${sets.join(', ')} WHERE ${where} RETURNING *`, params)).rows[0];
  }

  /** A page in creation order; one row past the page tells whether another exists, without a COUNT. */
  private async page(table: Table, query: { after?: number; limit: number }, filters: Record<string, string | undefined>): Promise<{ rows: Row[]; nextAfter?: number }> {
    const params: unknown[] = [query.after ?? 0];
    const conditions = ['seq > $1'];
    for (const [column, value] of Object.entries(filters)) {
      if (value === undefined) continue;
      params.push(value);
      conditions.push(`${column} = $${params.length}`);
    }
    params.push(query.limit + 1);
    const rows = await this.read(async () => (await this.pool.query<Row>(`SELECT * FROM ${table} WHERE ${conditions.join(' AND ')} ORDER BY seq LIMIT $${params.length}`, params)).rows);
    const page = rows.slice(0, query.limit);
    return { rows: page, nextAfter: rows.length > query.limit ? Number(page[page.length - 1]!.seq) : undefined };
  }

  /**
   * Inserts with `insert` and records `request` in the same transaction, unless the request_id is
   * already live. The request id's own transaction lock makes two servers' retries of one request
   * meet in turn: the second sees the first's entry.
   */
  private insertClaiming(request: RequestEntry | undefined, insert: (db: Queryable) => Promise<boolean>): Promise<InsertOutcome> {
    return this.transaction(async (db): Promise<InsertOutcome> => {
      if (request) {
        await db.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`request:${request.request_id}`]);
        const existing = await this.liveRequest(db, request.request_id);
        if (existing) return { inserted: false, existingRequest: existing };
        await db.query('DELETE FROM requests WHERE request_id = $1', [request.request_id]); // an expired one
      }
      if (!(await insert(db))) return { inserted: false };
      if (request) await db.query(CLAIM_REQUEST, values(REQUEST_COLUMNS, request as unknown as Record<string, unknown>));
      return { inserted: true };
    });
  }

  private async liveRequest(db: Queryable, requestId: string): Promise<RequestEntry | undefined> {
    const entry = (await db.query<RequestEntry>(`SELECT ${REQUEST_COLUMNS.join(', ')} FROM requests WHERE request_id = $1`, [requestId])).rows[0];
    return entry && Date.parse(entry.created_at) + REQUEST_ID_TTL_MS > Date.now() ? entry : undefined;
  }

  /** Runs `task` in one transaction on one connection of the record pool. */
  private async transaction<T>(task: (db: Queryable) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    const onError = (error: Error) => (broken = error);
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      try {
        const result = await task(client);
        await client.query('COMMIT');
        return result;
      } catch (error) {
        if (!broken) await client.query('ROLLBACK').catch((rollbackError: Error) => (broken = rollbackError));
        throw error;
      }
    } finally {
      client.off('error', onError);
      client.release(broken ?? undefined);
    }
  }

  /** A write, after the deferred ones; the store's own trouble becomes BACKEND_UNAVAILABLE naming it. */
  private async write<T>(what: string, task: (db: Queryable) => Promise<T>): Promise<T> {
    try {
      await this.flushDeferred();
      return await task(this.pool);
    } catch (error) {
      throw this.storeTrouble(what, error);
    }
  }

  private async read<T>(task: () => Promise<T>): Promise<T> {
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
        throw new StorageError(
          'BACKEND_BUSY',
          `${what}: this server is already deciding the capacity of ${pool.totalCount} pools at once on ${this.description}; retry in a moment`,
        );
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
      const now = buffer.apply({ id } as { id: string });
      if (JSON.stringify(now) === JSON.stringify({ id, ...patch })) buffer.forget(id);
      return true;
    };
    try {
      for (let rounds = 0; rounds < 1000 && (await flushOne(this.unwritten, (id, patch) => this.applyPatch(this.pool, 'volumes', id, patch))); rounds++);
      for (let rounds = 0; rounds < 1000 && (await flushOne(this.unwrittenSnapshots, (id, patch) => this.applyPatch(this.pool, 'snapshots', id, patch))); rounds++);
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
        if (version > MIGRATIONS.length) {
          throw new StorageError(
            'BACKEND_UNAVAILABLE',
            `the metadata store ${this.description} has schema version ${version}, newer than this cinderlib-mcp understands (${MIGRATIONS.length}); upgrade cinderlib-mcp`,
          );
        }
        for (let next = version; next < MIGRATIONS.length; next++) {
          await client.query(MIGRATIONS[next]!);
          await client.query('INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)', [next + 1, new Date().toISOString()]);
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

/** lock_timeout (55P03), or a deadlock PostgreSQL broke (40P01): someone else holds the lock. */
function isLockTimeout(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return code === '55P03' || code === '40P01';
}

/** Opens (and migrates) the PostgreSQL store at `url`; see PostgresVolumeStore.open. */
export function openPostgresVolumeStore(url: string, options: PostgresOpenOptions = {}): Promise<PostgresVolumeStore> {
  return PostgresVolumeStore.open(url, options);
}
