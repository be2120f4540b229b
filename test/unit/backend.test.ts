import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Backend } from '../../src/core/backend.js';
import { CapacityLedger } from '../../src/core/capacity-ledger.js';
import type { StorageError } from '../../src/base/errors.js';
import { KeyedMutex } from '../../src/base/locks.js';
import { createLogger } from '../../src/base/log.js';
import { MemoryVolumeStore } from '../../src/store/memory.js';
import { SecretRegistry } from '../../src/base/secrets.js';
import { DRIVER_CATALOG, findDriver } from '../../drivers/catalog.js';

/**
 * Core semantics that need control over timing: a file backend whose driver calls are observed.
 * The real file driver runs underneath; only its timing is stretched to expose races.
 */
async function makeBackend(dir: string) {
  const store = new MemoryVolumeStore();
  const backend = new Backend(
    { name: 'b', options: { volume_backend_name: 'b', volume_driver: 'file', volumes_dir: dir } },
    {
      store,
      secrets: new SecretRegistry(),
      log: createLogger('test'),
      dataDir: dir,
      rootHelper: '',
      outputAllBackendInfo: false,
      volumeLocks: new KeyedMutex(),
      capacity: new CapacityLedger(),
      serverId: 'unit-test-server',
      leaseMs: 30_000,
      serving: true,
      attachers: {},
      ownConnector: async () => ({ host: 'unit-test-host' }),
    },
  );
  await backend.initialize();
  expect(backend.initialized, backend.error).toBe(true);
  await backend.stats(false);
  // Reach the driver the backend built, to count and slow its calls.
  const driver = (backend as unknown as { driver: Record<string, (...args: unknown[]) => Promise<unknown>> }).driver;
  const calls: string[] = [];
  for (const method of ['getStats', 'createVolume', 'extendVolume', 'deleteVolume']) {
    const original = driver[method].bind(driver);
    driver[method] = async (...args: unknown[]) => {
      calls.push(`${method}:start`);
      await new Promise((resolve) => setTimeout(resolve, 30));
      try {
        return await original(...args);
      } finally {
        calls.push(`${method}:end`);
      }
    };
  }
  (backend as unknown as { invalidateStats(): void }).invalidateStats();
  return { backend, store, calls, driver };
}

const made: string[] = [];
afterAll(() => made.forEach((dir) => rmSync(dir, { recursive: true, force: true })));
const tempDir = async () => {
  const dir = mkdtempSync(join(tmpdir(), 'clmcp-unit-'));
  made.push(dir);
  return dir;
};

describe('Backend', () => {
  it('collapses concurrent stats refreshes into one driver call and caches the answer', async () => {
    const { backend, calls } = await makeBackend(await tempDir());
    const answers = await Promise.all([backend.stats(true), backend.stats(true), backend.stats(true), backend.stats(false)]);
    expect(calls.filter((c) => c === 'getStats:start').length).toBe(1);
    expect(new Set(answers).size).toBe(1);
    await backend.stats(false);
    expect(calls.filter((c) => c === 'getStats:start').length).toBe(1);
    await backend.stats(true);
    expect(calls.filter((c) => c === 'getStats:start').length).toBe(2);
  });

  it('serializes operations on one volume: a delete waits for the extend under way', async () => {
    const { backend, calls } = await makeBackend(await tempDir());
    const volume = await backend.lifecycle.createVolume({ size: 1 });
    calls.length = 0;
    const [extended, deleted] = await Promise.allSettled([backend.lifecycle.extendVolume(volume.id, 2), backend.lifecycle.deleteVolume(volume.id)]);
    expect(extended.status).toBe('fulfilled');
    expect(deleted.status).toBe('fulfilled');
    const driverCalls = calls.filter((c) => !c.startsWith('getStats'));
    expect(driverCalls).toEqual(['extendVolume:start', 'extendVolume:end', 'deleteVolume:start', 'deleteVolume:end']);
  });

  it('does not overbook a pool with concurrent creates', async () => {
    const { backend, driver } = await makeBackend(await tempDir());
    poolOf(driver, { total: 10, free: 10, ratio: 1 });
    const results = await Promise.allSettled([backend.lifecycle.createVolume({ size: 6 }), backend.lifecycle.createVolume({ size: 6 })]);
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(refused.length).toBe(1);
    expect((refused[0].reason as StorageError).code).toBe('OUT_OF_CAPACITY');
    expect((refused[0].reason as StorageError).message).toMatch(/4 GiB of room left \(thin pool: 10 GiB total x 1 over-subscription - 0 GiB provisioned - 6 GiB being created/);
  });

  it('counts creates that finished after a slow stats answer was taken: no overbooking from stale stats', async () => {
    const { backend, driver } = await makeBackend(await tempDir());
    poolOf(driver, { total: 10, free: 10, ratio: 1, delayMs: [100, 200] });
    // Creates of uneven length, so some finish while a stats answer is on its way.
    const driverCreate = driver.createVolume;
    driver.createVolume = async (...args: unknown[]) => {
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 250));
      return driverCreate(...args);
    };
    const creates: Promise<unknown>[] = [];
    for (let i = 0; i < 60; i++) {
      const create = backend.lifecycle.createVolume({ size: 1 });
      create.catch(() => undefined); // judged below, once all have settled
      creates.push(create);
      await new Promise((resolve) => setTimeout(resolve, 15));
    }
    const results = await Promise.allSettled(creates);
    const made = results.filter((r) => r.status === 'fulfilled').length;
    expect(made).toBeLessThanOrEqual(10);
    expect((await backend.stats(true)).pools[0].provisioned_capacity_gb).toBeLessThanOrEqual(10);
    for (const r of results) if (r.status === 'rejected') expect((r.reason as StorageError).code).toBe('OUT_OF_CAPACITY');
  });

  it('admits a burst of thin creates that fit one by one: pending GiB are virtual, not physical', async () => {
    const { backend, driver } = await makeBackend(await tempDir());
    poolOf(driver, { total: 100, free: 100, ratio: 20 });
    const sizes = Array.from({ length: 200 }, (_, i) => 1 + (i % 3));
    const results = await Promise.allSettled(sizes.map((size) => backend.lifecycle.createVolume({ size })));
    expect(results.filter((r) => r.status === 'rejected').map((r) => String(r.reason))).toEqual([]);
  });

  it('records intent before the array call: the volume is "creating" while the driver works', async () => {
    const { backend, store } = await makeBackend(await tempDir());
    const pending = backend.lifecycle.createVolume({ size: 1, name: 'watch me' });
    await new Promise((resolve) => setTimeout(resolve, 45)); // stats (30 ms) done, create (30 ms) under way
    const during = (await store.volumes.list({ limit: 10 })).records;
    expect(during.map((r) => r.status)).toEqual(['creating']);
    const created = await pending;
    expect((await store.volumes.get(created.id))?.status).toBe('available');
  });

  it('refuses to delete a connected volume, naming the connection, and deletes it once disconnected', async () => {
    const { backend, store } = await makeBackend(await tempDir());
    const volume = await backend.lifecycle.createVolume({ size: 1 });
    const now = new Date().toISOString();
    const connection = {
      id: '30000000-0000-4000-8000-000000000001',
      volume_id: volume.id,
      backend: 'b',
      status: 'attached' as const,
      attach_mode: 'rw',
      connector: { host: 'web-1', initiator: 'iqn.1993-08.org.debian:01:web-1' },
      connection_info: {},
      device: null,
      created_at: now,
      updated_at: now,
      status_reason: null,
    };
    await store.connections.insert(connection);
    await expect(backend.lifecycle.deleteVolume(volume.id)).rejects.toMatchObject({
      code: 'IN_USE',
      message: expect.stringMatching(/is connected \(connection 30000000-0000-4000-8000-000000000001 to web-1\); disconnect it first/),
    });
    expect((await store.volumes.get(volume.id))?.status).toBe('available'); // nothing was touched
    await store.connections.remove(connection.id);
    await backend.lifecycle.deleteVolume(volume.id);
    expect(await store.volumes.get(volume.id)).toBeUndefined();
  });

  it('finds every driver of the catalog by alias and by Cinder path, and nothing else', () => {
    for (const entry of DRIVER_CATALOG) {
      expect(findDriver(entry.alias)).toBe(entry);
      expect(findDriver(entry.alias.toUpperCase())).toBe(entry);
      for (const path of entry.cinderPaths) expect(findDriver(path)).toBe(entry);
    }
    expect(findDriver('cinder.volume.drivers.lvm.LVMVolumeDriver')?.alias).toBe('lvm');
    expect(findDriver('cinder.volume.drivers.lvm.LVMISCSIDriver')).toBeUndefined();
  });
});

/**
 * Makes the driver report a pool of the given size (GiB) around its real provisioned figure, so
 * capacity rules can be exercised on a real file backend without filling a disk.
 */
function poolOf(driver: Record<string, (...args: unknown[]) => Promise<unknown>>, pool: { total: number; free: number; ratio: number; delayMs?: [number, number] }) {
  const real = driver.getStats;
  driver.getStats = async (...args: unknown[]) => {
    const stats = (await real(...args)) as { pools: Array<Record<string, unknown>> };
    if (pool.delayMs) {
      const [min, max] = pool.delayMs;
      await new Promise((resolve) => setTimeout(resolve, min + Math.random() * (max - min)));
    }
    for (const p of stats.pools)
      Object.assign(p, { total_capacity_gb: pool.total, free_capacity_gb: pool.free, max_over_subscription_ratio: pool.ratio, thin_provisioning_support: true });
    return stats;
  };
}
