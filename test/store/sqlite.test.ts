import Database from 'better-sqlite3';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SqliteVolumeStore } from '../../src/store/sqlite.js';
import { defineStoreBehaviours, record, startUp } from './behaviours.js';

const root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-store-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

defineStoreBehaviours('sqlite', () => new SqliteVolumeStore(join(root, `${Math.random()}.sqlite`)));

describe('sqlite specifics', () => {
  it('uses WAL, records its schema version, and keeps data across reopen', async () => {
    const path = join(root, 'reopen.sqlite');
    const store = new SqliteVolumeStore(path);
    await store.volumes.insert(record(9));
    await store.close();
    const db = new Database(path, { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('user_version', { simple: true })).toBe(9);
    const plan = db.prepare("EXPLAIN QUERY PLAN SELECT * FROM volumes WHERE seq > 0 AND backend = 'x' AND status = 'available' ORDER BY seq LIMIT 10").all() as Array<{
      detail: string;
    }>;
    expect(plan.map((row) => row.detail).join(' ')).toMatch(/USING INDEX volumes_by_backend_status/);
    db.close();
    expect((await new SqliteVolumeStore(path).volumes.get(record(9).id))?.name).toBe('v9');
  });

  it('migrates a store written by the first schema forward, keeping its volumes', async () => {
    const path = join(root, 'v1.sqlite');
    const db = new Database(path);
    db.exec(`CREATE TABLE volumes (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, backend TEXT NOT NULL, name TEXT NOT NULL,
      description TEXT NOT NULL, size INTEGER NOT NULL, status TEXT NOT NULL, pool_name TEXT NOT NULL, bootable INTEGER NOT NULL,
      created_at TEXT NOT NULL, updated_at TEXT NOT NULL, status_reason TEXT, provider_location TEXT)`);
    const old = record(4, { status: 'creating' });
    db.prepare(
      `INSERT INTO volumes (id, backend, name, description, size, status, pool_name, bootable, created_at, updated_at, status_reason, provider_location)
      VALUES (@id, @backend, @name, @description, @size, @status, @pool_name, 0, @created_at, @updated_at, NULL, NULL)`,
    ).run(old);
    db.pragma('user_version = 1');
    db.close();
    const store = new SqliteVolumeStore(path);
    expect(await store.volumes.get(old.id)).toMatchObject({ name: 'v4', status: 'creating', failed_operation: null });
    await store.surfaceInterrupted(startUp, () => 'interrupted');
    expect(await store.volumes.get(old.id)).toMatchObject({ status: 'error', failed_operation: 'create' });
    expect(await store.tombstones('even')).toEqual([]);
    await store.close();
  });

  /** Tables, their columns and the indexes of a file, order aside. */
  const schemaOf = (path: string) => {
    const db = new Database(path, { readonly: true });
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{ name: string }>).map(({ name }) => ({
      name,
      columns: (db.pragma(`table_info(${name})`) as Array<{ name: string }>)
        .map(({ name: column, ...rest }) => ({ column, ...rest, cid: undefined }))
        .sort((a, b) => a.column.localeCompare(b.column)),
    }));
    const indexes = db.prepare("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' ORDER BY name").all();
    db.close();
    return { tables, indexes };
  };
  const legacy = readFileSync(new URL('./fixtures/sqlite-migrations-1-9.sql', import.meta.url), 'utf8').split('\n-- next\n');

  it('opens files every earlier schema version wrote, keeping their records, and brings them to the schema of a new file', async () => {
    const fresh = join(root, 'fresh.sqlite');
    await new SqliteVolumeStore(fresh).close();
    for (const version of [1, 2, 5, 6, 9]) {
      const path = join(root, `legacy-${version}.sqlite`);
      const db = new Database(path);
      for (const step of legacy.slice(0, version)) db.exec(step);
      db.prepare(
        `INSERT INTO volumes (id, backend, name, description, size, status, pool_name, bootable, created_at, updated_at) VALUES (?, 'b', 'old', '', 1, 'available', 'p', 1, 't', 't')`,
      ).run(record(version).id);
      if (version >= 2)
        db.prepare(
          `INSERT INTO tombstones (${version >= 6 ? 'object_id' : 'volume_id'}, backend, pool_name, size, checks_done, next_check_at) VALUES ('gone', 'b', 'p', 1, 0, 't')`,
        ).run();
      db.pragma(`user_version = ${version}`);
      db.close();
      const store = new SqliteVolumeStore(path);
      expect(await store.volumes.get(record(version).id)).toMatchObject({ name: 'old', bootable: true, cinderlib_extra: null });
      if (version >= 2) expect(await store.tombstones('b')).toEqual([expect.objectContaining({ object_id: 'gone', kind: 'volume', parent_volume_id: null })]);
      await store.close();
      expect(schemaOf(path)).toEqual(schemaOf(fresh));
      expect(new Database(path, { readonly: true }).pragma('user_version', { simple: true })).toBe(9);
    }
  });

  it('adds a column declared after the file was written; a reader beside the server asks for the upgrade first', async () => {
    const path = join(root, 'column-added-later.sqlite');
    await new SqliteVolumeStore(path).close();
    const db = new Database(path);
    db.exec('ALTER TABLE volumes DROP COLUMN cinderlib_extra'); // as a file from before that column
    db.close();
    expect(() => new SqliteVolumeStore(path, undefined, { readOnly: true })).toThrow(/without every column this cinderlib-mcp reads.*upgrade it first/);
    const store = new SqliteVolumeStore(path);
    await store.volumes.insert(record(1, { cinderlib_extra: { host: 'h@b#p' } }));
    expect(await store.volumes.get(record(1).id)).toMatchObject({ cinderlib_extra: { host: 'h@b#p' } });
    await store.close();
  });

  it('refuses a store written by a newer version instead of corrupting it', () => {
    const path = join(root, 'future.sqlite');
    const db = new Database(path);
    db.pragma('user_version = 99');
    db.close();
    expect(() => new SqliteVolumeStore(path)).toThrow(/schema version 99 is newer/);
  });
});
