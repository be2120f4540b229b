import { afterAll, describe, expect, it } from 'vitest';
import type { VolumeStore } from '../../src/store/store.js';
import type { SnapshotRecord } from '../../src/model/snapshot.js';
import type { VolumeRecord } from '../../src/model/volume.js';

export function record(n: number, overrides: Partial<VolumeRecord> = {}): VolumeRecord {
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

/** A snapshot of record(1) carrying a field this project does not model, as a loaded dump has. */
export function snapshotRecord(overrides: Partial<SnapshotRecord> = {}): SnapshotRecord {
  const now = new Date().toISOString();
  return {
    id: '10000000-0000-4000-8000-000000000001',
    volume_id: record(1).id,
    backend: 'odd',
    name: 's1',
    description: '',
    volume_size: 1,
    status: 'available',
    created_at: now,
    updated_at: now,
    status_reason: null,
    provider_location: null,
    cinderlib_extra: { user_id: 'u' },
    ...overrides,
  };
}

/** Recovery as a server restarting: its own operations and abandoned ones. */
export const startUp = { owner: 'this-server', now: new Date().toISOString(), includeOwn: true };

/**
 * The behaviour every VolumeStore has, whatever its engine: test/store/memory.test.ts,
 * sqlite.test.ts and postgres.test.ts run it. `open` gives a fresh, empty store per test.
 */
export function defineStoreBehaviours(name: string, openStore: () => VolumeStore | Promise<VolumeStore>): void {
  describe(`${name} volume store`, () => {
    const opened: VolumeStore[] = [];
    const open = async (): Promise<VolumeStore> => {
      const store = await openStore();
      opened.push(store);
      return store;
    };
    afterAll(async () => {
      await Promise.allSettled(opened.map((store) => store.close()));
    });

    it('refuses a duplicate id and keeps the first record', async () => {
      const store = await open();
      expect((await store.volumes.insert(record(1))).inserted).toBe(true);
      expect((await store.volumes.insert(record(1, { name: 'impostor' }))).inserted).toBe(false);
      expect((await store.volumes.get(record(1).id))?.name).toBe('v1');
    });

    it('pages in creation order with filters, and the last page has no next position', async () => {
      const store = await open();
      for (let n = 1; n <= 7; n++) await store.volumes.insert(record(n));
      const first = await store.volumes.list({ backend: 'odd', limit: 2 });
      expect(first.records.map((r) => r.size)).toEqual([1, 3]);
      const second = await store.volumes.list({ backend: 'odd', limit: 2, after: first.nextAfter });
      expect(second.records.map((r) => r.size)).toEqual([5, 7]);
      expect(second.nextAfter).toBeUndefined();
      await store.volumes.remove(record(3).id);
      expect((await store.volumes.list({ backend: 'odd', limit: 10 })).records.map((r) => r.size)).toEqual([1, 5, 7]);
    });

    it('updates only from the expected statuses', async () => {
      const store = await open();
      await store.volumes.insert(record(1));
      expect(await store.volumes.update(record(1).id, { status: 'deleting' }, ['creating'])).toBeUndefined();
      expect((await store.volumes.update(record(1).id, { status: 'deleting' }, ['available']))?.status).toBe('deleting');
    });

    it("writes a call's audit record with its outcome update, in one transaction: only when the update is written", async () => {
      const store = await open();
      await store.volumes.insert(record(1, { status: 'creating' }));
      const audit = (tool: string) => ({ time: new Date().toISOString(), server: 's', client: 'c', tool, arguments: { size: 1 }, outcome: 'ok' as const });
      // Expected another status: nothing written, and no audit record.
      expect(await store.volumes.update(record(1).id, { status: 'available' }, ['extending'], audit('refused'))).toBeUndefined();
      expect(await store.volumes.update(record(1).id, { status: 'available' }, ['creating'], audit('create_volume'))).toMatchObject({ status: 'available' });
      expect(await store.volumes.update('no-such-volume', { status: 'available' }, undefined, audit('missing'))).toBeUndefined();
      const records = (await store.listAudit({ limit: 10 })).records;
      expect(records).toEqual([audit('create_volume')].map((expected) => ({ ...expected, time: expect.any(String) })));
    });

    it('surfaces interrupted operations as errors with a reason and the operation that was cut short', async () => {
      const store = await open();
      await store.volumes.insert(record(1, { status: 'creating' }));
      await store.volumes.insert(record(2, { status: 'extending' }));
      await store.volumes.insert(record(3));
      await store.volumes.insert(record(4, { status: 'creating', failed_operation: 'manage' })); // an adoption under way
      const surfaced = (await store.surfaceInterrupted(startUp, (r) => `was ${r.status}${r.failed_operation ? ` (${r.failed_operation})` : ''}`)).volumes;
      expect(surfaced.map((r) => r.status_reason).sort()).toEqual(['was creating', 'was creating (manage)', 'was extending']);
      expect(await store.volumes.get(record(1).id)).toMatchObject({ status: 'error', status_reason: 'was creating', failed_operation: 'create' });
      // An adoption stays one: its delete must leave the array volume.
      expect(await store.volumes.get(record(4).id)).toMatchObject({ status: 'error', failed_operation: 'manage' });
      expect((await store.volumes.get(record(3).id))?.status).toBe('available');
    });

    it("recovers its own and abandoned operations, never a live server's, and renews its own leases", async () => {
      const store = await open();
      const soon = new Date(Date.now() + 60_000).toISOString();
      const past = new Date(Date.now() - 1_000).toISOString();
      await store.volumes.insert(record(1, { status: 'creating', owner: 'me', lease_expires_at: soon }));
      await store.volumes.insert(record(2, { status: 'creating', owner: 'other', lease_expires_at: soon }));
      await store.volumes.insert(record(3, { status: 'deleting', owner: 'dead', lease_expires_at: past }));
      await store.volumes.insert(record(4, { status: 'extending', owner: 'late', lease_expires_at: past }));
      const now = new Date().toISOString();

      // "late" renews before anyone looks: it is alive, and its operation is left alone.
      await store.renewLeases('late', soon);
      expect(await store.volumes.get(record(4).id)).toMatchObject({ status: 'extending', lease_expires_at: soon });
      // While running: a lapsed lease is recovered; a live server's operation and our own are not.
      expect((await store.surfaceInterrupted({ owner: 'me', now, includeOwn: false }, () => 'lapsed')).volumes.map((r) => r.size)).toEqual([3]);
      expect(await store.volumes.get(record(3).id)).toMatchObject({ status: 'error', status_reason: 'lapsed', failed_operation: 'delete' });

      // At start-up: our own from before the restart too.
      expect((await store.surfaceInterrupted({ owner: 'me', now, includeOwn: true }, () => 'restarted')).volumes.map((r) => r.size)).toEqual([1]);
      expect(await store.volumes.get(record(1).id)).toMatchObject({ status: 'error', owner: null, lease_expires_at: null, failed_operation: 'create' });
      expect(await store.volumes.get(record(2).id)).toMatchObject({ status: 'creating', owner: 'other' });
    });

    it("keeps snapshots: pages by backend, volume and status, lists a volume's and the volumes made from one", async () => {
      const store = await open();
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
      for (const [n, volume, status] of [
        [1, 1],
        [2, 3],
        [3, 1, 'error'],
        [4, 1],
      ] as const) {
        expect(await store.snapshots.insert(snapshot(n, volume, status), undefined)).toEqual({ inserted: true });
      }
      expect(await store.snapshots.insert(snapshot(1, 1), undefined)).toEqual({ inserted: false });
      const first = await store.snapshots.list({ volume_id: record(1).id, limit: 2 });
      expect(first.records.map((r) => r.name)).toEqual(['s1', 's3']);
      const rest = await store.snapshots.list({ volume_id: record(1).id, limit: 2, after: first.nextAfter });
      expect(rest).toEqual({ records: [expect.objectContaining({ name: 's4' })] });
      expect((await store.snapshots.list({ status: 'error', limit: 10 })).records.map((r) => r.name)).toEqual(['s3']);
      expect((await store.snapshots.all({ volume_id: record(1).id })).map((r) => r.name)).toEqual(['s1', 's3', 's4']);
      expect(await store.snapshots.update(snapshot(2, 3).id, { status: 'deleting' }, ['creating'])).toBeUndefined();
      expect((await store.snapshots.update(snapshot(2, 3).id, { status: 'deleting' }, ['available']))?.status).toBe('deleting');
      expect(await store.snapshots.remove(snapshot(2, 3).id)).toBe(true);
      expect(await store.snapshots.get(snapshot(2, 3).id)).toBeUndefined();
      await store.volumes.insert(record(8, { snapshot_id: snapshot(1, 1).id }));
      expect((await store.volumes.all({ snapshot_id: snapshot(1, 1).id })).map((r) => r.name)).toEqual(['v8']);
    });

    it("keeps connections with their connector and connection_info, pages them, and lists a volume's", async () => {
      const store = await open();
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
      for (const [n, volume] of [
        [1, 1],
        [2, 2],
        [3, 1],
      ] as const)
        expect((await store.connections.insert(connection(n, volume))).inserted).toBe(true);
      expect((await store.connections.insert(connection(1, 1))).inserted).toBe(false);
      expect(await store.connections.get(connection(1, 1).id)).toEqual(connection(1, 1));
      const first = await store.connections.list({ backend: 'odd', limit: 1 });
      expect(first.records.map((c) => c.id)).toEqual([connection(1, 1).id]);
      expect((await store.connections.list({ backend: 'odd', limit: 1, after: first.nextAfter })).records.map((c) => c.id)).toEqual([connection(3, 1).id]);
      expect((await store.connections.all({ volume_id: record(1).id })).map((c) => c.connector.host)).toEqual(['host-1', 'host-3']);
      const device = { type: 'block', path: '/dev/loop7' };
      expect(await store.connections.update(connection(3, 1).id, { device }, ['error'])).toBeUndefined();
      expect((await store.connections.update(connection(3, 1).id, { device }, ['attached']))?.device).toEqual(device);
      expect(await store.connections.remove(connection(3, 1).id)).toBe(true);
      expect(await store.connections.all({ volume_id: record(1).id })).toHaveLength(1);
    });

    it('answers a request_id with what it made, in one step with the insert, until it is a day old', async () => {
      const store = await open();
      const entry = (id: string, object: number, created_at = new Date().toISOString()) => ({
        request_id: id,
        tool: 'create_volume',
        fingerprint: '{"size":1}',
        object_kind: 'volume' as const,
        object_id: record(object).id,
        created_at,
      });
      expect(await store.volumes.insert(record(1), entry('retry-me', 1))).toEqual({ inserted: true });
      expect(await store.volumes.insert(record(2), entry('retry-me', 2))).toEqual({ inserted: false, existingRequest: entry('retry-me', 1, expect.any(String)) });
      expect(await store.volumes.get(record(2).id)).toBeUndefined(); // nothing written for the repeat
      expect((await store.findRequest('retry-me'))?.object_id).toBe(record(1).id);
      expect(await store.findRequest('never-used')).toBeUndefined();
      const dayOld = new Date(Date.now() - 25 * 3600 * 1000).toISOString();
      expect(await store.volumes.insert(record(3), entry('old', 3, dayOld))).toEqual({ inserted: true });
      expect(await store.findRequest('old')).toBeUndefined();
      expect(await store.volumes.insert(record(4), entry('old', 4))).toEqual({ inserted: true });
      expect((await store.findRequest('old'))?.object_id).toBe(record(4).id);
    });

    it('leaves a tombstone in the same step as it forgets a record, and reschedules or forgets it', async () => {
      const store = await open();
      await store.volumes.insert(record(1, { status: 'error', failed_operation: 'create' }));
      const tombstone = {
        object_id: record(1).id,
        kind: 'volume' as const,
        parent_volume_id: null,
        backend: 'odd',
        pool_name: 'p',
        size: 1,
        provider_location: null,
        checks_done: 0,
        next_check_at: new Date().toISOString(),
      };
      expect(await store.removeLeavingTombstone(record(1).id, tombstone)).toBe(true);
      expect(await store.volumes.get(record(1).id)).toBeUndefined();
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
      await store.snapshots.insert(
        {
          id: snapshotId,
          volume_id: record(1).id,
          backend: 'odd',
          name: '',
          description: '',
          volume_size: 1,
          status: 'error',
          created_at: now,
          updated_at: now,
          status_reason: null,
          provider_location: null,
        },
        undefined,
      );
      const snapshotGrave = { ...tombstone, object_id: snapshotId, kind: 'snapshot' as const, parent_volume_id: record(1).id };
      expect(await store.removeLeavingTombstone(snapshotId, snapshotGrave)).toBe(true);
      expect(await store.snapshots.get(snapshotId)).toBeUndefined();
      expect(await store.tombstones('odd')).toEqual([snapshotGrave]);
    });

    it('loads a batch all or nothing, naming the id already there', async () => {
      const store = await open();
      await store.volumes.insert(record(2));
      const snapshot = snapshotRecord();
      const rejected = store.importRecords({ volumes: [record(1), record(2)], snapshots: [snapshot], connections: [] });
      await expect(rejected).rejects.toMatchObject({ code: 'ALREADY_EXISTS', message: expect.stringContaining(record(2).id) });
      expect(await store.volumes.get(record(1).id)).toBeUndefined();
      expect(await store.snapshots.get(snapshot.id)).toBeUndefined();
      await store.importRecords({ volumes: [record(1, { cinderlib_extra: { host: 'h@b#p' } })], snapshots: [snapshot], connections: [] });
      expect(await store.volumes.get(record(1).id)).toMatchObject({ name: 'v1', cinderlib_extra: { host: 'h@b#p' } });
      expect(await store.snapshots.get(snapshot.id)).toEqual(expect.objectContaining({ name: 's1', cinderlib_extra: { user_id: 'u' } }));
    });

    it('appends audit records and lists them in order from a time on, in pages', async () => {
      const store = await open();
      const at = (minute: number) => `2030-01-01T00:${String(minute).padStart(2, '0')}:00.000Z`;
      for (let minute = 1; minute <= 4; minute++) {
        await store.appendAudit({
          time: at(minute),
          server: 's',
          client: 'c',
          tool: 'create_volume',
          arguments: { size: minute, nested: { a: [1, 'two'] } },
          outcome: minute === 3 ? 'error' : 'ok',
          ...(minute === 3 ? { error: 'OUT_OF_CAPACITY: full' } : {}),
        });
      }
      const all = await store.listAudit({ limit: 10 });
      expect(all.records.map((r) => r.time)).toEqual([at(1), at(2), at(3), at(4)]);
      expect(all.records[2]).toEqual({
        time: at(3),
        server: 's',
        client: 'c',
        tool: 'create_volume',
        arguments: { size: 3, nested: { a: [1, 'two'] } },
        outcome: 'error',
        error: 'OUT_OF_CAPACITY: full',
      });
      expect(all.records[0]).not.toHaveProperty('error');
      expect(all.nextAfter).toBeUndefined();
      const first = await store.listAudit({ since: at(2), limit: 2 });
      expect(first.records.map((r) => r.time)).toEqual([at(2), at(3)]);
      const rest = await store.listAudit({ since: at(2), limit: 2, after: first.nextAfter });
      expect(rest.records.map((r) => r.time)).toEqual([at(4)]);
      expect(rest.nextAfter).toBeUndefined();
    });
  });
}
