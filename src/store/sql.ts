/**
 * What SQLite and PostgreSQL share, derived from the declarations in schema.ts: DDL, the upgrade
 * of an existing database to the declarations, the statements on record tables, and the mapping
 * of records to rows and back. Each engine supplies its dialect and runs the statements.
 */
import { TABLES, columnsOf, tableSpec, type Column, type TableName } from './schema.js';

export type Engine = 'sqlite' | 'postgresql';

/** How an engine spells types and parameters. */
export interface Dialect {
  engine: Engine;
  /** The n-th (1-based) parameter of a statement: `?` or `$n`. */
  param(n: number): string;
}

export const SQLITE: Dialect = { engine: 'sqlite', param: () => '?' };
export const POSTGRES: Dialect = { engine: 'postgresql', param: (n) => `$${n}` };

const TYPES: Record<Engine, Record<Column['type'], string>> = {
  sqlite: { text: 'TEXT', stamp: 'TEXT', integer: 'INTEGER', real: 'REAL', boolean: 'INTEGER', json: 'TEXT' },
  postgresql: { text: 'TEXT', stamp: 'TEXT COLLATE "C"', integer: 'INTEGER', real: 'DOUBLE PRECISION', boolean: 'BOOLEAN', json: 'TEXT' },
};

/** The tables an engine has. */
export function tablesOf(engine: Engine): TableName[] {
  return (Object.keys(TABLES) as TableName[]).filter((table) => engine === 'postgresql' || !tableSpec(table).postgresOnly);
}

function literal(engine: Engine, value: string | number | boolean): string {
  if (typeof value === 'string') return `'${value.replace(/'/g, "''")}'`;
  if (typeof value === 'boolean') return engine === 'sqlite' ? (value ? '1' : '0') : value ? 'TRUE' : 'FALSE';
  return String(value);
}

function columnDdl(engine: Engine, table: TableName, column: Column): string {
  const spec = tableSpec(table);
  let ddl = `${column.name} ${TYPES[engine][column.type]}`;
  if (column.name === spec.key) return `${ddl} ${spec.sequenced ? 'NOT NULL UNIQUE' : 'PRIMARY KEY'}`;
  if (!column.nullable) ddl += ' NOT NULL';
  if (column.default !== undefined) ddl += ` DEFAULT ${literal(engine, column.default)}`;
  return ddl;
}

export function createTable(engine: Engine, table: TableName): string {
  const columns = columnsOf(table).map((column) => columnDdl(engine, table, column));
  if (tableSpec(table).sequenced) columns.unshift(engine === 'sqlite' ? 'seq INTEGER PRIMARY KEY AUTOINCREMENT' : 'seq BIGSERIAL PRIMARY KEY');
  return `CREATE TABLE ${table} (\n  ${columns.join(',\n  ')}\n)`;
}

export interface UpgradeStep {
  sql: string;
  /** Indexes only speed things up: a reader may use a database that lacks one. */
  kind: 'table' | 'column' | 'index';
}

/**
 * The statements that bring a database holding `existing` (table -> its columns) to the
 * declarations: missing tables created, missing columns renamed from their former name or added,
 * missing indexes created. Empty when it already matches. Columns it does not declare are left.
 */
export function upgradeSteps(engine: Engine, existing: ReadonlyMap<string, ReadonlySet<string>>, existingIndexes?: ReadonlySet<string>): UpgradeStep[] {
  const steps: UpgradeStep[] = [];
  for (const table of tablesOf(engine)) {
    const present = existing.get(table);
    if (!present) {
      steps.push({ sql: createTable(engine, table), kind: 'table' });
    } else {
      for (const column of columnsOf(table)) {
        if (present.has(column.name)) continue;
        if (column.was && present.has(column.was)) {
          steps.push({ sql: `ALTER TABLE ${table} RENAME COLUMN ${column.was} TO ${column.name}`, kind: 'column' });
        } else if (!column.nullable && column.default === undefined) {
          throw new Error(`the metadata store's ${table} table lacks column ${column.name}, which is NOT NULL without a default; declare a default in src/persistence/schema.ts`);
        } else {
          steps.push({ sql: `ALTER TABLE ${table} ADD COLUMN ${columnDdl(engine, table, column)}`, kind: 'column' });
        }
      }
    }
    for (const [name, on] of Object.entries(tableSpec(table).indexes ?? {})) {
      // Known present: no statement, so no lock on a table other servers are writing (PostgreSQL's
      // CREATE INDEX IF NOT EXISTS locks the table before it looks).
      if (existingIndexes?.has(name)) continue;
      const [columns, where] = on.split(/ WHERE /);
      steps.push({ sql: `CREATE INDEX IF NOT EXISTS ${name} ON ${table} (${columns})${where ? ` WHERE ${where}` : ''}`, kind: 'index' });
    }
  }
  return steps;
}

// ---- rows ----

export type Row = Record<string, unknown>;

/** A record's field as its column holds it. */
function toDb(engine: Engine, column: Column, value: unknown): unknown {
  if (value === undefined || value === null) return column.default === undefined ? null : toDb(engine, column, column.default);
  switch (column.type) {
    case 'boolean':
      return engine === 'sqlite' ? (value ? 1 : 0) : value === true;
    case 'json':
      return JSON.stringify(value);
    default:
      return value;
  }
}

function fromDb(engine: Engine, column: Column, value: unknown): unknown {
  if (value === undefined || value === null) return null;
  switch (column.type) {
    case 'boolean':
      return engine === 'sqlite' ? value === 1 : value === true;
    case 'json':
      return value === '' ? null : JSON.parse(value as string);
    default:
      return value;
  }
}

/** The values of an insert of `record`, in declaration order. */
export function rowValues(engine: Engine, table: TableName, record: object): unknown[] {
  const fields = record as Record<string, unknown>;
  return columnsOf(table).map((column) => toDb(engine, column, fields[column.name]));
}

/** The record a row holds: its declared columns (no `seq`), JSON parsed, booleans as booleans. */
export function recordOf<R>(engine: Engine, table: TableName, row: Row): R {
  const record: Record<string, unknown> = {};
  for (const column of columnsOf(table)) {
    const value = fromDb(engine, column, row[column.name]);
    if (value !== null || !column.omitWhenNull) record[column.name] = value;
  }
  return record as R;
}

/** A patch's defined fields as [column, value] pairs; a field that is not a declared column is refused (names are spliced into SQL). */
export function patchValues(engine: Engine, table: TableName, patch: object): Array<[string, unknown]> {
  const columns = new Map(columnsOf(table).map((column) => [column.name, column]));
  return Object.entries(patch)
    .filter(([field, value]) => value !== undefined && field !== 'updated_at')
    .map(([field, value]) => {
      const column = columns.get(field);
      if (!column) throw new Error(`not a column of ${table}: ${field}`);
      return [field, value === null ? null : toDb(engine, column, value)];
    });
}

/** Whether `column` may filter a page of `table` (names are spliced into SQL). */
function checkFilter(table: TableName, column: string): string {
  if (!(tableSpec(table).filters ?? []).includes(column)) throw new Error(`not a filter of ${table}: ${column}`);
  return column;
}

// ---- statements ----

/** INSERT of a whole record; with `replace`, a row with the same key is overwritten, else the insert does nothing. */
export function insertSql(dialect: Dialect, table: TableName, conflict: 'ignore' | 'replace' | 'none' = 'ignore'): string {
  const names = columnsOf(table).map((column) => column.name);
  const key = tableSpec(table).key;
  let sql = `INSERT INTO ${table} (${names.join(', ')}) VALUES (${names.map((_, i) => dialect.param(i + 1)).join(', ')})`;
  if (conflict === 'ignore') sql += ` ON CONFLICT (${key}) DO NOTHING`;
  if (conflict === 'replace')
    sql += ` ON CONFLICT (${key}) DO UPDATE SET ${names
      .filter((n) => n !== key)
      .map((n) => `${n} = excluded.${n}`)
      .join(', ')}`;
  return sql;
}

export const selectSql = (dialect: Dialect, table: TableName): string => `SELECT * FROM ${table} WHERE ${tableSpec(table).key} = ${dialect.param(1)}`;
export const deleteSql = (dialect: Dialect, table: TableName): string => `DELETE FROM ${table} WHERE ${tableSpec(table).key} = ${dialect.param(1)}`;

/**
 * UPDATE of `columns` and updated_at (parameters in that order, then the key, then `expected`
 * statuses), when the row's status is one of `expected`; the row as written comes back.
 */
export function updateSql(dialect: Dialect, table: TableName, columns: readonly string[], expected: number): string {
  const sets = [...columns, 'updated_at'].map((column, i) => `${column} = ${dialect.param(i + 1)}`);
  let where = `${tableSpec(table).key} = ${dialect.param(sets.length + 1)}`;
  if (expected > 0) where += ` AND status IN (${Array.from({ length: expected }, (_, i) => dialect.param(sets.length + 2 + i)).join(', ')})`;
  return `UPDATE ${table} SET ${sets.join(', ')} WHERE ${where} RETURNING *`;
}

/**
 * A page in creation order: parameters are the position after which it starts, the `filters`
 * values, then how many rows to take (one more than the page: whether another exists, without a COUNT).
 */
export function pageSql(dialect: Dialect, table: TableName, filters: readonly string[], nameContains = false): string {
  const conditions = [`seq > ${dialect.param(1)}`, ...filters.map((column, i) => `${checkFilter(table, column)} = ${dialect.param(i + 2)}`)];
  // The parameter is a LIKE pattern made by namePattern: lower case, its own wildcards escaped.
  if (nameContains) conditions.push(`LOWER(name) LIKE ${dialect.param(filters.length + 2)} ESCAPE '\\'`);
  return `SELECT * FROM ${table} WHERE ${conditions.join(' AND ')} ORDER BY seq LIMIT ${dialect.param(filters.length + (nameContains ? 3 : 2))}`;
}

/** The LIKE pattern of a case-insensitive substring search for `text`. */
export function namePattern(text: string): string {
  return `%${text.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** Every row whose `column` equals the parameter, oldest first. */
export const matchingSql = (dialect: Dialect, table: TableName, column: string): string =>
  `SELECT * FROM ${table} WHERE ${checkFilter(table, column)} = ${dialect.param(1)} ORDER BY seq`;

/** The filters of a page query that are set, in a fixed order (one statement per combination). */
export function setFilters(table: TableName, query: object): Array<[string, unknown]> {
  const fields = query as Record<string, unknown>;
  return (tableSpec(table).filters ?? []).filter((column) => fields[column] !== undefined).map((column) => [column, fields[column]]);
}

/** The single filter of an `all` query. */
export function onlyFilter(table: TableName, filter: object): [string, unknown] {
  const entries = Object.entries(filter).filter(([, value]) => value !== undefined);
  if (entries.length !== 1) throw new Error(`${table}: all() takes one filter, not ${entries.length}`);
  return [checkFilter(table, entries[0][0]), entries[0][1]];
}

/** Which rows a page returns and where the next one starts. */
export function cutPage<T>(rows: T[], limit: number, seqOf: (row: T) => unknown): { rows: T[]; nextAfter?: number } {
  const page = rows.slice(0, limit);
  return { rows: page, nextAfter: rows.length > limit ? Number(seqOf(page[page.length - 1])) : undefined };
}
