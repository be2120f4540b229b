import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryVolumeStore } from '../../src/persistence/memory.js';
import { SqliteVolumeStore } from '../../src/persistence/sqlite.js';
import type { VolumeStore } from '../../src/persistence/store.js';
import type { VolumeRecord } from '../../src/volume.js';

const root = mkdtempSync(join(tmpdir(), 'cinderlib-mcp-store-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function record(n: number, overrides: Partial<VolumeRecord> = {}): VolumeRecord {
  const now = new Date().toISOString();
  return {
    id: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
    backend: n % 2 ? 'odd' : 'even',
    name: `v${n}`,
    description: '',
    size: n,
    status: 'available',
    pool_name: 'p',
    bootable: false,
    created_at: now,
    updated_at: now,
    status_reason: null,
    provider_location: null,
    ...overrides,
  };
}

const storages: Array<[string, () => VolumeStore]> = [
  ['sqlite', () => new SqliteVolumeStore(join(root, `${Math.random()}.sqlite`))],
  ['memory', () => new MemoryVolumeStore()],
];

describe.each(storages)('%s volume store', (_name, open) => {
  it('refuses a duplicate id and keeps the first record', () => {
    const store = open();
    expect(store.insert(record(1))).toBe(true);
    expect(store.insert(record(1, { name: 'impostor' }))).toBe(false);
    expect(store.get(record(1).id)?.name).toBe('v1');
  });

  it('pages in creation order with filters, and the last page has no next position', () => {
    const store = open();
    for (let n = 1; n <= 7; n++) store.insert(record(n));
    const first = store.list({ backend: 'odd', limit: 2 });
    expect(first.records.map((r) => r.size)).toEqual([1, 3]);
    const second = store.list({ backend: 'odd', limit: 2, after: first.nextAfter });
    expect(second.records.map((r) => r.size)).toEqual([5, 7]);
    expect(second.nextAfter).toBeUndefined();
    store.remove(record(3).id);
    expect(store.list({ backend: 'odd', limit: 10 }).records.map((r) => r.size)).toEqual([1, 5, 7]);
  });

  it('updates only from the expected statuses', () => {
    const store = open();
    store.insert(record(1));
    expect(store.update(record(1).id, { status: 'deleting' }, ['creating'])).toBeUndefined();
    expect(store.update(record(1).id, { status: 'deleting' }, ['available'])?.status).toBe('deleting');
  });

  it('surfaces interrupted operations as errors with a reason', () => {
    const store = open();
    store.insert(record(1, { status: 'creating' }));
    store.insert(record(2, { status: 'extending' }));
    store.insert(record(3));
    const surfaced = store.surfaceInterrupted((r) => `was ${r.status}`);
    expect(surfaced.map((r) => r.status_reason).sort()).toEqual(['was creating', 'was extending']);
    expect(store.get(record(1).id)).toMatchObject({ status: 'error', status_reason: 'was creating' });
    expect(store.get(record(3).id)?.status).toBe('available');
  });
});

describe('sqlite specifics', () => {
  it('uses WAL, records its schema version, and keeps data across reopen', () => {
    const path = join(root, 'reopen.sqlite');
    const store = new SqliteVolumeStore(path);
    store.insert(record(9));
    store.close();
    const db = new Database(path, { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('user_version', { simple: true })).toBe(2);
    const plan = db.prepare("EXPLAIN QUERY PLAN SELECT * FROM volumes WHERE seq > 0 AND backend = 'x' AND status = 'available' ORDER BY seq LIMIT 10").all() as Array<{ detail: string }>;
    expect(plan.map((row) => row.detail).join(' ')).toMatch(/USING INDEX volumes_by_backend_status/);
    db.close();
    expect(new SqliteVolumeStore(path).get(record(9).id)?.name).toBe('v9');
  });

  it('refuses a store written by a newer version instead of corrupting it', () => {
    const path = join(root, 'future.sqlite');
    const db = new Database(path);
    db.pragma('user_version = 99');
    db.close();
    expect(() => new SqliteVolumeStore(path)).toThrow(/schema version 99 is newer/);
  });
});
