import Database from 'better-sqlite3';
import { mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { StorageError } from '../errors.js';
import type { HeldLock } from '../process-lock.js';
import { OPERATION_OF_STATUS, TRANSITIONAL_STATUSES, type VolumeRecord, type VolumeStatus } from '../volume.js';
import { OutcomeBuffer } from './outcome-buffer.js';
import { isRecoverable } from './recovery.js';
import type { RecoveryClaim, Tombstone, VolumePage, VolumePatch, VolumeQuery, VolumeStore } from './store.js';

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
  failed_operation: VolumeRecord['failed_operation'];
  owner: string | null;
  lease_expires_at: string | null;
}

function fromRow(row: Row): VolumeRecord {
  const { seq: _seq, bootable, ...rest } = row;
  return { ...rest, bootable: bootable === 1 };
}

export class SqliteVolumeStore implements VolumeStore {
  private readonly db: Database.Database;
  private readonly statements;
  private readonly unwritten = new OutcomeBuffer();
  /** The file's identity at open: a store deleted or replaced under the server must not take writes into nowhere. */
  private readonly fileIdentity?: { dev: number; ino: number };

  /** `lock`, when given, is the process lock guarding the file; it is released on close. */
  constructor(
    private readonly path: string,
    private readonly lock?: HeldLock,
  ) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
    if (path !== ':memory:') {
      const { dev, ino } = statSync(path);
      this.fileIdentity = { dev, ino };
    }
    this.statements = {
      insert: this.db.prepare(
        `INSERT OR IGNORE INTO volumes (id, backend, name, description, size, status, pool_name, bootable, created_at, updated_at, status_reason, provider_location, failed_operation, owner, lease_expires_at)
         VALUES (@id, @backend, @name, @description, @size, @status, @pool_name, @bootable, @created_at, @updated_at, @status_reason, @provider_location, @failed_operation, @owner, @lease_expires_at)`,
      ),
      get: this.db.prepare('SELECT * FROM volumes WHERE id = ?'),
      remove: this.db.prepare('DELETE FROM volumes WHERE id = ?'),
      bury: this.db.prepare(
        `INSERT OR REPLACE INTO tombstones (volume_id, backend, pool_name, size, provider_location, checks_done, next_check_at)
         VALUES (@volume_id, @backend, @pool_name, @size, @provider_location, @checks_done, @next_check_at)`,
      ),
      tombstones: this.db.prepare('SELECT * FROM tombstones WHERE backend = ? ORDER BY next_check_at'),
      reschedule: this.db.prepare('UPDATE tombstones SET checks_done = @checks_done, next_check_at = @next_check_at WHERE volume_id = @volume_id'),
      forget: this.db.prepare('DELETE FROM tombstones WHERE volume_id = ?'),
      renew: this.db.prepare(
        `UPDATE volumes SET lease_expires_at = @until WHERE owner = @owner AND status IN (${TRANSITIONAL_STATUSES.map((status) => `'${status}'`).join(', ')})`,
      ),
    };
  }

  async insert(record: VolumeRecord): Promise<boolean> {
    return this.write('record a new volume', () => {
      const result = this.statements.insert.run(this.row(record));
      return result.changes === 1;
    });
  }

  async get(id: string): Promise<VolumeRecord | undefined> {
    return this.read(() => this.readRecord(id));
  }

  async update(id: string, patch: VolumePatch, expected?: readonly VolumeStatus[]): Promise<VolumeRecord | undefined> {
    return this.write(`update volume ${id}`, () => this.applyUpdate(id, patch, expected));
  }

  deferUpdate(id: string, patch: VolumePatch): void {
    this.unwritten.defer(id, patch);
  }

  async remove(id: string): Promise<boolean> {
    return this.write(`forget volume ${id}`, () => {
      const removed = this.statements.remove.run(id).changes === 1;
      this.unwritten.forget(id);
      return removed;
    });
  }

  async list(query: VolumeQuery): Promise<VolumePage> {
    const conditions = ['seq > @after'];
    if (query.backend !== undefined) conditions.push('backend = @backend');
    if (query.status !== undefined) conditions.push('status = @status');
    // One row past the page tells whether another page exists without a COUNT over the table.
    const rows = this.read(
      () =>
        this.db
          .prepare(`SELECT * FROM volumes WHERE ${conditions.join(' AND ')} ORDER BY seq LIMIT @take`)
          .all({ after: query.after ?? 0, backend: query.backend, status: query.status, take: query.limit + 1 }) as Row[],
    );
    const page = rows.slice(0, query.limit);
    return {
      records: page.map((row) => this.unwritten.apply(fromRow(row))),
      nextAfter: rows.length > query.limit ? page[page.length - 1]!.seq : undefined,
    };
  }

  async surfaceInterrupted(claim: RecoveryClaim, reason: (record: VolumeRecord) => string): Promise<VolumeRecord[]> {
    const placeholders = TRANSITIONAL_STATUSES.map(() => '?').join(', ');
    return this.write('mark interrupted operations', () => {
      const rows = this.db.prepare(`SELECT * FROM volumes WHERE status IN (${placeholders})`).all(...TRANSITIONAL_STATUSES) as Row[];
      const surfaced: VolumeRecord[] = [];
      this.db.transaction((records: VolumeRecord[]) => {
        for (const record of records) {
          if (!isRecoverable(record, claim)) continue;
          const patch = { status: 'error' as const, status_reason: reason(record), failed_operation: OPERATION_OF_STATUS[record.status] ?? null, owner: null, lease_expires_at: null };
          const updated = this.applyUpdate(record.id, patch, [record.status]);
          if (updated) surfaced.push(updated);
        }
      })(rows.map(fromRow));
      return surfaced;
    });
  }

  async renewLeases(owner: string, until: string): Promise<void> {
    this.write('renew the leases of operations under way', () => void this.statements.renew.run({ owner, until }));
  }

  async removeLeavingTombstone(id: string, tombstone: Tombstone): Promise<boolean> {
    return this.write(`forget volume ${id}`, () => {
      const removed = this.db.transaction(() => {
        if (this.statements.remove.run(id).changes !== 1) return false;
        this.statements.bury.run(tombstone);
        return true;
      })();
      this.unwritten.forget(id);
      return removed;
    });
  }

  async tombstones(backend: string): Promise<Tombstone[]> {
    return this.read(() => this.statements.tombstones.all(backend) as Tombstone[]);
  }

  async rescheduleTombstone(volumeId: string, next: { checks_done: number; next_check_at: string } | null): Promise<void> {
    this.write(`reschedule the tombstone of volume ${volumeId}`, () => {
      if (next) this.statements.reschedule.run({ volume_id: volumeId, ...next });
      else this.statements.forget.run(volumeId);
    });
  }

  /** For benchmarks and imports: many records in one transaction. */
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
    return { failed_operation: null, owner: null, lease_expires_at: null, ...record, bootable: record.bootable ? 1 : 0 };
  }

  private applyUpdate(id: string, patch: VolumePatch, expected?: readonly VolumeStatus[]): VolumeRecord | undefined {
    const fields = Object.keys(patch).filter((key) => patch[key as keyof VolumePatch] !== undefined);
    const sets = [...fields.map((field) => `${field} = @${field}`), 'updated_at = @updated_at'];
    const params: Record<string, unknown> = { ...patch, id, updated_at: new Date().toISOString() };
    let where = 'id = @id';
    if (expected) {
      where += ` AND status IN (${expected.map((_, i) => `@expected${i}`).join(', ')})`;
      expected.forEach((status, i) => (params[`expected${i}`] = status));
    }
    const result = this.db.prepare(`UPDATE volumes SET ${sets.join(', ')} WHERE ${where}`).run(params);
    if (result.changes !== 1) return undefined;
    this.unwritten.forget(id);
    return this.readRecord(id);
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
