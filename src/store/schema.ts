/**
 * The metadata store's tables, declared once. Each engine's DDL, its upgrade of an existing
 * database and its row mapping (record <-> row) are derived from these declarations
 * (src/persistence/sql.ts); the memory store keeps records as given.
 *
 * How to add a column:
 *   1. Declare it in its table below: `name: 'text?'` (nullable), or NOT NULL with a default
 *      (`{ type: 'integer', default: 0 }`): rows already stored need a value.
 *   2. Add the field to the record type (VolumeRecord in src/volume.ts, SnapshotRecord, ...),
 *      optional when records written before it exist.
 *   3. If an operation changes it later, add it to the patch type in src/persistence/store.ts.
 * That is all: SQLite and PostgreSQL add a declared column missing from an existing database when
 * they open it (and create missing tables and indexes), so there is no migration to write. A
 * renamed column keeps `was: 'old_name'`. Removing or retyping a column is not expressible here:
 * it needs a numbered step in the engine's upgrade and a new schema version.
 */

/**
 * text: TEXT. stamp: an ISO-8601 time compared in SQL (leases, schedules), TEXT in byte order
 * (COLLATE "C" on PostgreSQL, whatever the database's locale). integer, real: numbers. boolean:
 * INTEGER 0/1 on SQLite, BOOLEAN on PostgreSQL. json: an object kept as JSON text (exact round trip).
 */
export type ColumnType = 'text' | 'stamp' | 'integer' | 'real' | 'boolean' | 'json';

/** A column: its type, with `?` when it may be null (`'text?'`), or the long form. */
export type ColumnSpec =
  | ColumnType
  | `${ColumnType}?`
  | {
      type: ColumnType;
      nullable?: boolean;
      /** The value of rows stored before the column existed (and of inserts that leave it out). */
      default?: string | number | boolean;
      /** The column's former name: an existing database has it renamed. */
      was?: string;
      /** Read back as absent, not null, when null (the audit record's `error`). */
      omitWhenNull?: boolean;
    };

export interface TableSpec {
  /**
   * With `sequenced`, a `seq` column (AUTOINCREMENT / BIGSERIAL, never reused) gives a stable,
   * creation-ordered position that pages point into, and `key` is UNIQUE; otherwise `key` is the
   * primary key.
   */
  sequenced?: boolean;
  key?: string;
  columns: Record<string, ColumnSpec>;
  /** Index name -> its columns (`'backend, seq'`), optionally partial (`'owner WHERE owner IS NOT NULL'`). */
  indexes?: Record<string, string>;
  /** The columns a page of the table may be filtered on (equality), beyond its position. */
  filters?: readonly string[];
  /** Tables only PostgreSQL has: what servers sharing a store coordinate with. */
  postgresOnly?: boolean;
}

const record = { created_at: 'text', updated_at: 'text', status_reason: 'text?' } as const;

export const TABLES = {
  volumes: {
    sequenced: true,
    key: 'id',
    columns: {
      id: 'text',
      backend: 'text',
      name: 'text',
      description: 'text',
      size: 'integer',
      status: 'text',
      pool_name: 'text',
      bootable: 'boolean',
      ...record,
      provider_location: 'text?',
      failed_operation: 'text?',
      owner: 'text?',
      lease_expires_at: 'stamp?',
      snapshot_id: 'text?',
      source_volume_id: 'text?',
      provider_auth: 'text?',
      cinderlib_extra: 'json?',
    },
    indexes: {
      volumes_by_backend: 'backend, seq',
      volumes_by_status: 'status, seq',
      volumes_by_backend_status: 'backend, status, seq',
      volumes_by_snapshot: 'snapshot_id',
    },
    filters: ['backend', 'status', 'snapshot_id'],
  },
  snapshots: {
    sequenced: true,
    key: 'id',
    columns: {
      id: 'text',
      volume_id: 'text',
      backend: 'text',
      name: 'text',
      description: 'text',
      volume_size: 'integer',
      status: 'text',
      ...record,
      provider_location: 'text?',
      failed_operation: 'text?',
      owner: 'text?',
      lease_expires_at: 'stamp?',
      cinderlib_extra: 'json?',
    },
    indexes: {
      snapshots_by_backend: 'backend, seq',
      snapshots_by_volume: 'volume_id, seq',
      snapshots_by_status: 'status, seq',
      snapshots_by_backend_status: 'backend, status, seq',
    },
    filters: ['backend', 'volume_id', 'status'],
  },
  connections: {
    sequenced: true,
    key: 'id',
    columns: {
      id: 'text',
      volume_id: 'text',
      backend: 'text',
      status: 'text',
      attach_mode: 'text',
      connector: 'json',
      connection_info: 'json',
      device: 'json?',
      ...record,
      owner: 'text?',
      lease_expires_at: 'stamp?',
      cinderlib_extra: 'json?',
    },
    indexes: { connections_by_backend: 'backend, seq', connections_by_volume: 'volume_id, seq', connections_by_owner: 'owner WHERE owner IS NOT NULL' },
    filters: ['backend', 'volume_id'],
  },
  tombstones: {
    key: 'object_id',
    columns: {
      object_id: { type: 'text', was: 'volume_id' },
      backend: 'text',
      pool_name: 'text',
      size: 'integer',
      provider_location: 'text?',
      checks_done: 'integer',
      next_check_at: 'stamp',
      kind: { type: 'text', default: 'volume' },
      parent_volume_id: 'text?',
    },
    indexes: { tombstones_by_backend: 'backend' },
  },
  requests: {
    key: 'request_id',
    columns: { request_id: 'text', tool: 'text', fingerprint: 'text', object_kind: 'text', object_id: 'text', created_at: 'text' },
  },
  audit_log: {
    sequenced: true,
    columns: {
      time: 'stamp',
      server: 'text',
      client: 'text',
      tool: 'text',
      arguments: 'json',
      outcome: 'text',
      error: { type: 'text', nullable: true, omitWhenNull: true },
      dry_run: { type: 'boolean', nullable: true, omitWhenNull: true },
    },
    indexes: { audit_log_by_time: 'time, seq' },
  },
  capacity_holds: {
    postgresOnly: true,
    key: 'id',
    columns: { id: 'text', domain: 'text', gb: 'real', owner: 'text', lease_expires_at: 'stamp' },
    indexes: { capacity_holds_by_domain: 'domain, lease_expires_at', capacity_holds_by_owner: 'owner' },
  },
  capacity_domains: {
    postgresOnly: true,
    key: 'domain',
    // changes: how many operations have changed the domain's use (see CapacityRoom.changes).
    columns: { domain: 'text', changes: 'integer' },
  },
  backend_fingerprints: {
    postgresOnly: true,
    key: 'id',
    // id: the backend and the server, as a JSON pair; fingerprint: BackendFingerprint (no secret values).
    columns: { id: 'text', backend: 'text', server_id: 'text', fingerprint: 'json', lease_expires_at: 'stamp' },
    indexes: { backend_fingerprints_by_backend: 'backend', backend_fingerprints_by_server: 'server_id' },
  },
  servers: {
    postgresOnly: true,
    key: 'server_id',
    columns: { server_id: 'text', description: 'text', lease_expires_at: 'stamp' },
  },
} as const satisfies Record<string, TableSpec>;

export type TableName = keyof typeof TABLES;

/** A column's declaration in its long form. */
export interface Column {
  name: string;
  type: ColumnType;
  nullable: boolean;
  default?: string | number | boolean;
  was?: string;
  omitWhenNull: boolean;
}

const columnCache = new Map<string, readonly Column[]>();

/** The declared columns of `table`, in declaration order (`seq` is not among them). */
export function columnsOf(table: TableName): readonly Column[] {
  let columns = columnCache.get(table);
  if (!columns) {
    columns = Object.entries(TABLES[table].columns as Record<string, ColumnSpec>).map(([name, spec]): Column => {
      if (typeof spec === 'string') {
        const nullable = spec.endsWith('?');
        return { name, type: (nullable ? spec.slice(0, -1) : spec) as ColumnType, nullable, omitWhenNull: false };
      }
      return { name, type: spec.type, nullable: spec.nullable ?? false, default: spec.default, was: spec.was, omitWhenNull: spec.omitWhenNull ?? false };
    });
    columnCache.set(table, columns);
  }
  return columns;
}

export function tableSpec(table: TableName): TableSpec {
  return TABLES[table];
}
