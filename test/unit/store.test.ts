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

/** Recovery as a server restarting: its own operations and abandoned ones. */
const startUp = { owner: 'this-server', now: new Date().toISOString(), includeOwn: true };

const storages: Array<[string, () => VolumeStore]> = [
  ['sqlite', () => new SqliteVolumeStore(join(root, `${Math.random()}.sqlite`))],
  ['memory', () => new MemoryVolumeStore()],
];

describe.each(storages)('%s volume store', (_name, open) => {
  it('refuses a duplicate id and keeps the first record', async () => {
    const store = open();
    expect(await store.insert(record(1))).toBe(true);
    expect(await store.insert(record(1, { name: 'impostor' }))).toBe(false);
    expect((await store.get(record(1).id))?.name).toBe('v1');
  });

  it('pages in creation order with filters, and the last page has no next position', async () => {
    const store = open();
    for (let n = 1; n <= 7; n++) await store.insert(record(n));
    const first = await store.list({ backend: 'odd', limit: 2 });
    expect(first.records.map((r) => r.size)).toEqual([1, 3]);
    const second = await store.list({ backend: 'odd', limit: 2, after: first.nextAfter });
    expect(second.records.map((r) => r.size)).toEqual([5, 7]);
    expect(second.nextAfter).toBeUndefined();
    await store.remove(record(3).id);
    expect((await store.list({ backend: 'odd', limit: 10 })).records.map((r) => r.size)).toEqual([1, 5, 7]);
  });

  it('updates only from the expected statuses', async () => {
    const store = open();
    await store.insert(record(1));
    expect(await store.update(record(1).id, { status: 'deleting' }, ['creating'])).toBeUndefined();
    expect((await store.update(record(1).id, { status: 'deleting' }, ['available']))?.status).toBe('deleting');
  });

  it('surfaces interrupted operations as errors with a reason and the operation that was cut short', async () => {
    const store = open();
    await store.insert(record(1, { status: 'creating' }));
    await store.insert(record(2, { status: 'extending' }));
    await store.insert(record(3));
    const surfaced = (await store.surfaceInterrupted(startUp, (r) => `was ${r.status}`)).volumes;
    expect(surfaced.map((r) => r.status_reason).sort()).toEqual(['was creating', 'was extending']);
    expect(await store.get(record(1).id)).toMatchObject({ status: 'error', status_reason: 'was creating', failed_operation: 'create' });
    expect((await store.get(record(3).id))?.status).toBe('available');
  });

  it("recovers its own and abandoned operations, never a live server's, and renews its own leases", async () => {
    const store = open();
    const soon = new Date(Date.now() + 60_000).toISOString();
    const past = new Date(Date.now() - 1_000).toISOString();
    await store.insert(record(1, { status: 'creating', owner: 'me', lease_expires_at: soon }));
    await store.insert(record(2, { status: 'creating', owner: 'other', lease_expires_at: soon }));
    await store.insert(record(3, { status: 'deleting', owner: 'dead', lease_expires_at: past }));
    await store.insert(record(4, { status: 'extending', owner: 'late', lease_expires_at: past }));
    const now = new Date().toISOString();

    // "late" renews before anyone looks: it is alive, and its operation is left alone.
    await store.renewLeases('late', soon);
    expect(await store.get(record(4).id)).toMatchObject({ status: 'extending', lease_expires_at: soon });
    // While running: a lapsed lease is recovered; a live server's operation and our own are not.
    expect((await store.surfaceInterrupted({ owner: 'me', now, includeOwn: false }, () => 'lapsed')).volumes.map((r) => r.size)).toEqual([3]);
    expect(await store.get(record(3).id)).toMatchObject({ status: 'error', status_reason: 'lapsed', failed_operation: 'delete' });

    // At start-up: our own from before the restart too.
    expect((await store.surfaceInterrupted({ owner: 'me', now, includeOwn: true }, () => 'restarted')).volumes.map((r) => r.size)).toEqual([1]);
    expect(await store.get(record(1).id)).toMatchObject({ status: 'error', owner: null, lease_expires_at: null, failed_operation: 'create' });
    expect(await store.get(record(2).id)).toMatchObject({ status: 'creating', owner: 'other' });
  });

  it('keeps snapshots: pages by backend, volume and status, lists a volume\'s and the volumes made from one', async () => {
    const store = open();
    const now = new Date().toISOString();
    const snapshot = (n: number, volume: number, status: 'available' | 'error' = 'available') => ({
      id: `10000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
      volume_id: record(volume).id,
      backend: 'odd',
      name: `s${n}`,
      description: '',
      volume_size: 1,
      status,
      created_at: now,
      updated_at: now,
      status_reason: null,
      provider_location: null,
    });
    for (const [n, volume, status] of [[1, 1], [2, 3], [3, 1, 'error'], [4, 1]] as const) {
      expect(await store.insertSnapshotForRequest(snapshot(n, volume, status), undefined)).toEqual({ inserted: true });
    }
    expect(await store.insertSnapshotForRequest(snapshot(1, 1), undefined)).toEqual({ inserted: false });
    const first = await store.listSnapshots({ volume_id: record(1).id, limit: 2 });
    expect(first.records.map((r) => r.name)).toEqual(['s1', 's3']);
    const rest = await store.listSnapshots({ volume_id: record(1).id, limit: 2, after: first.nextAfter });
    expect(rest).toEqual({ records: [expect.objectContaining({ name: 's4' })] });
    expect((await store.listSnapshots({ status: 'error', limit: 10 })).records.map((r) => r.name)).toEqual(['s3']);
    expect((await store.snapshotsOf(record(1).id)).map((r) => r.name)).toEqual(['s1', 's3', 's4']);
    expect(await store.updateSnapshot(snapshot(2, 3).id, { status: 'deleting' }, ['creating'])).toBeUndefined();
    expect((await store.updateSnapshot(snapshot(2, 3).id, { status: 'deleting' }, ['available']))?.status).toBe('deleting');
    expect(await store.removeSnapshot(snapshot(2, 3).id)).toBe(true);
    expect(await store.getSnapshot(snapshot(2, 3).id)).toBeUndefined();
    await store.insert(record(8, { snapshot_id: snapshot(1, 1).id }));
    expect((await store.volumesFromSnapshot(snapshot(1, 1).id)).map((r) => r.name)).toEqual(['v8']);
  });

  it('keeps connections with their connector and connection_info, pages them, and lists a volume\'s', async () => {
    const store = open();
    const now = new Date().toISOString();
    const connection = (n: number, volume: number) => ({
      id: `20000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
      volume_id: record(volume).id,
      backend: volume % 2 ? 'odd' : 'even',
      status: 'attached' as const,
      attach_mode: 'rw',
      connector: { host: `host-${n}`, initiator: `iqn.1993-08.org.debian:01:${n}` },
      connection_info: { driver_volume_type: 'iscsi', data: { target_lun: 1, target_discovered: false } },
      device: null,
      created_at: now,
      updated_at: now,
      status_reason: null,
      owner: null,
      lease_expires_at: null,
      cinderlib_extra: null,
    });
    for (const [n, volume] of [[1, 1], [2, 2], [3, 1]] as const) expect(await store.insertConnection(connection(n, volume))).toBe(true);
    expect(await store.insertConnection(connection(1, 1))).toBe(false);
    expect(await store.getConnection(connection(1, 1).id)).toEqual(connection(1, 1));
    const first = await store.listConnections({ backend: 'odd', limit: 1 });
    expect(first.records.map((c) => c.id)).toEqual([connection(1, 1).id]);
    expect((await store.listConnections({ backend: 'odd', limit: 1, after: first.nextAfter })).records.map((c) => c.id)).toEqual([connection(3, 1).id]);
    expect((await store.connectionsOf(record(1).id)).map((c) => c.connector.host)).toEqual(['host-1', 'host-3']);
    const device = { type: 'block', path: '/dev/loop7' };
    expect(await store.updateConnection(connection(3, 1).id, { device }, ['error'])).toBeUndefined();
    expect((await store.updateConnection(connection(3, 1).id, { device }, ['attached']))?.device).toEqual(device);
    expect(await store.removeConnection(connection(3, 1).id)).toBe(true);
    expect(await store.connectionsOf(record(1).id)).toHaveLength(1);
  });

  it('answers a request_id with what it made, in one step with the insert, until it is a day old', async () => {
    const store = open();
    const entry = (id: string, object: number, created_at = new Date().toISOString()) => ({
      request_id: id, tool: 'create_volume', fingerprint: '{"size":1}', object_kind: 'volume' as const, object_id: record(object).id, created_at,
    });
    expect(await store.insertForRequest(record(1), entry('retry-me', 1))).toEqual({ inserted: true });
    expect(await store.insertForRequest(record(2), entry('retry-me', 2))).toEqual({ inserted: false, existingRequest: entry('retry-me', 1, expect.any(String)) });
    expect(await store.get(record(2).id)).toBeUndefined(); // nothing written for the repeat
    expect((await store.findRequest('retry-me'))?.object_id).toBe(record(1).id);
    expect(await store.findRequest('never-used')).toBeUndefined();
    const dayOld = new Date(Date.now() - 25 * 3600 * 1000).toISOString();
    expect(await store.insertForRequest(record(3), entry('old', 3, dayOld))).toEqual({ inserted: true });
    expect(await store.findRequest('old')).toBeUndefined();
    expect(await store.insertForRequest(record(4), entry('old', 4))).toEqual({ inserted: true });
    expect((await store.findRequest('old'))?.object_id).toBe(record(4).id);
  });

  it('leaves a tombstone in the same step as it forgets a record, and reschedules or forgets it', async () => {
    const store = open();
    await store.insert(record(1, { status: 'error', failed_operation: 'create' }));
    const tombstone = {
      object_id: record(1).id, kind: 'volume' as const, parent_volume_id: null, backend: 'odd', pool_name: 'p', size: 1, provider_location: null, checks_done: 0, next_check_at: new Date().toISOString(),
    };
    expect(await store.removeLeavingTombstone(record(1).id, tombstone)).toBe(true);
    expect(await store.get(record(1).id)).toBeUndefined();
    expect(await store.tombstones('odd')).toEqual([tombstone]);
    expect(await store.tombstones('even')).toEqual([]);
    await store.rescheduleTombstone(record(1).id, { checks_done: 1, next_check_at: tombstone.next_check_at });
    expect((await store.tombstones('odd'))[0]?.checks_done).toBe(1);
    await store.rescheduleTombstone(record(1).id, null);
    expect(await store.tombstones('odd')).toEqual([]);
    expect(await store.removeLeavingTombstone(record(1).id, tombstone)).toBe(false); // no record, no tombstone
    expect(await store.tombstones('odd')).toEqual([]);
    // A snapshot leaves one the same way, naming its volume.
    const now = new Date().toISOString();
    const snapshotId = '10000000-0000-4000-8000-000000000009';
    await store.insertSnapshotForRequest(
      { id: snapshotId, volume_id: record(1).id, backend: 'odd', name: '', description: '', volume_size: 1, status: 'error', created_at: now, updated_at: now, status_reason: null, provider_location: null },
      undefined,
    );
    const snapshotGrave = { ...tombstone, object_id: snapshotId, kind: 'snapshot' as const, parent_volume_id: record(1).id };
    expect(await store.removeLeavingTombstone(snapshotId, snapshotGrave)).toBe(true);
    expect(await store.getSnapshot(snapshotId)).toBeUndefined();
    expect(await store.tombstones('odd')).toEqual([snapshotGrave]);
  });
});

describe('sqlite specifics', () => {
  it('uses WAL, records its schema version, and keeps data across reopen', async () => {
    const path = join(root, 'reopen.sqlite');
    const store = new SqliteVolumeStore(path);
    await store.insert(record(9));
    await store.close();
    const db = new Database(path, { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('user_version', { simple: true })).toBe(9);
    const plan = db.prepare("EXPLAIN QUERY PLAN SELECT * FROM volumes WHERE seq > 0 AND backend = 'x' AND status = 'available' ORDER BY seq LIMIT 10").all() as Array<{ detail: string }>;
    expect(plan.map((row) => row.detail).join(' ')).toMatch(/USING INDEX volumes_by_backend_status/);
    db.close();
    expect((await new SqliteVolumeStore(path).get(record(9).id))?.name).toBe('v9');
  });

  it('migrates a store written by the first schema forward, keeping its volumes', async () => {
    const path = join(root, 'v1.sqlite');
    const db = new Database(path);
    db.exec(`CREATE TABLE volumes (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, backend TEXT NOT NULL, name TEXT NOT NULL,
      description TEXT NOT NULL, size INTEGER NOT NULL, status TEXT NOT NULL, pool_name TEXT NOT NULL, bootable INTEGER NOT NULL,
      created_at TEXT NOT NULL, updated_at TEXT NOT NULL, status_reason TEXT, provider_location TEXT)`);
    const old = record(4, { status: 'creating' });
    db.prepare(`INSERT INTO volumes (id, backend, name, description, size, status, pool_name, bootable, created_at, updated_at, status_reason, provider_location)
      VALUES (@id, @backend, @name, @description, @size, @status, @pool_name, 0, @created_at, @updated_at, NULL, NULL)`).run(old);
    db.pragma('user_version = 1');
    db.close();
    const store = new SqliteVolumeStore(path);
    expect(await store.get(old.id)).toMatchObject({ name: 'v4', status: 'creating', failed_operation: null });
    await store.surfaceInterrupted(startUp, () => 'interrupted');
    expect(await store.get(old.id)).toMatchObject({ status: 'error', failed_operation: 'create' });
    expect(await store.tombstones('even')).toEqual([]);
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
