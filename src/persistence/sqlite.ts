import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { HeldLock } from '../process-lock.js';
import { TRANSITIONAL_STATUSES, type VolumeRecord, type VolumeStatus } from '../volume.js';
import type { VolumePage, VolumePatch, VolumeQuery, VolumeStore } from './store.js';

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
];

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
}

function fromRow(row: Row): VolumeRecord {
  const { seq: _seq, bootable, ...rest } = row;
  return { ...rest, bootable: bootable === 1 };
}

export class SqliteVolumeStore implements VolumeStore {
  private readonly db: Database.Database;
  private readonly statements;

  /** `lock`, when given, is the process lock guarding the file; it is released on close. */
  constructor(
    path: string,
    private readonly lock?: HeldLock,
  ) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
    this.statements = {
      insert: this.db.prepare(
        `INSERT OR IGNORE INTO volumes (id, backend, name, description, size, status, pool_name, bootable, created_at, updated_at, status_reason, provider_location)
         VALUES (@id, @backend, @name, @description, @size, @status, @pool_name, @bootable, @created_at, @updated_at, @status_reason, @provider_location)`,
      ),
      get: this.db.prepare('SELECT * FROM volumes WHERE id = ?'),
      remove: this.db.prepare('DELETE FROM volumes WHERE id = ?'),
    };
  }

  insert(record: VolumeRecord): boolean {
    const result = this.statements.insert.run({ ...record, bootable: record.bootable ? 1 : 0 });
    return result.changes === 1;
  }

  get(id: string): VolumeRecord | undefined {
    const row = this.statements.get.get(id) as Row | undefined;
    return row ? fromRow(row) : undefined;
  }

  update(id: string, patch: VolumePatch, expected?: readonly VolumeStatus[]): VolumeRecord | undefined {
    const fields = Object.keys(patch).filter((key) => patch[key as keyof VolumePatch] !== undefined);
    const sets = [...fields.map((field) => `${field} = @${field}`), 'updated_at = @updated_at'];
    const params: Record<string, unknown> = { ...patch, id, updated_at: new Date().toISOString() };
    let where = 'id = @id';
    if (expected) {
      where += ` AND status IN (${expected.map((_, i) => `@expected${i}`).join(', ')})`;
      expected.forEach((status, i) => (params[`expected${i}`] = status));
    }
    const result = this.db.prepare(`UPDATE volumes SET ${sets.join(', ')} WHERE ${where}`).run(params);
    return result.changes === 1 ? this.get(id) : undefined;
  }

  remove(id: string): boolean {
    return this.statements.remove.run(id).changes === 1;
  }

  list(query: VolumeQuery): VolumePage {
    const conditions = ['seq > @after'];
    if (query.backend !== undefined) conditions.push('backend = @backend');
    if (query.status !== undefined) conditions.push('status = @status');
    // One row past the page tells whether another page exists without a COUNT over the table.
    const rows = this.db
      .prepare(`SELECT * FROM volumes WHERE ${conditions.join(' AND ')} ORDER BY seq LIMIT @take`)
      .all({ after: query.after ?? 0, backend: query.backend, status: query.status, take: query.limit + 1 }) as Row[];
    const page = rows.slice(0, query.limit);
    return {
      records: page.map(fromRow),
      nextAfter: rows.length > query.limit ? page[page.length - 1]!.seq : undefined,
    };
  }

  surfaceInterrupted(reason: (record: VolumeRecord) => string): VolumeRecord[] {
    const placeholders = TRANSITIONAL_STATUSES.map(() => '?').join(', ');
    const rows = this.db.prepare(`SELECT * FROM volumes WHERE status IN (${placeholders})`).all(...TRANSITIONAL_STATUSES) as Row[];
    const surfaced: VolumeRecord[] = [];
    const mark = this.db.transaction((records: VolumeRecord[]) => {
      for (const record of records) {
        const updated = this.update(record.id, { status: 'error', status_reason: reason(record) }, [record.status]);
        if (updated) surfaced.push(updated);
      }
    });
    mark(rows.map(fromRow));
    return surfaced;
  }

  /** For benchmarks and imports: many records in one transaction. */
  insertMany(records: VolumeRecord[]): void {
    const insertAll = this.db.transaction((batch: VolumeRecord[]) => {
      for (const record of batch) this.insert(record);
    });
    insertAll(records);
  }

  close(): void {
    if (this.db.open) this.db.close();
    this.lock?.release();
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
